"""``salescycle dev``: embedded servers, migrations, api and worker in one process.

The api (uvicorn) and the worker (arq) share one event loop. The first SIGINT or SIGTERM
stops both gracefully: uvicorn finishes the requests in flight and the worker the jobs
it runs, each within ``GRACE_SECONDS``. A second signal cancels what is left. The
embedded servers stop last, once every connection to them has closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
import uvicorn
from arq.worker import Worker

from app import embedded
from app.admin import DevAccess, ensure_dev_access, masked_url
from app.core import ids
from app.core.db import Database
from app.core.logging import configure_logging
from app.core.migrate import upgrade
from app.main import create_app
from app.settings import Settings
from workers.settings import worker_settings

log = structlog.get_logger(__name__)

GRACE_SECONDS = 10


class DevServerError(RuntimeError):
    """A failure that stops ``salescycle dev``; the message names what to change."""


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the api's socket first, so a busy port fails before anything starts."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        raise DevServerError(f"Cannot resolve the host {host!r}: {error}.") from error
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise DevServerError(
            f"Cannot listen on {host}:{port}: {error.strerror}. Stop the process "
            "using that port, or pass another --port."
        ) from error
    return sock


def base_url(host: str, port: int) -> str:
    """Build the URL a local client uses; a wildcard address is reached on loopback."""
    if host in {"0.0.0.0", ""}:
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the supervisor."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class _Supervisor:
    """Routes SIGINT and SIGTERM to the api and the worker of one dev process."""

    server: _Server | None = None
    worker: Worker | None = None
    signals: int = 0

    def __post_init__(self) -> None:
        self.stopping = asyncio.Event()

    def on_signal(self, signum: signal.Signals) -> None:
        self.signals += 1
        if self.signals == 1:
            log.info("dev.stopping", signal=signum.name, grace_seconds=GRACE_SECONDS)
            self.stopping.set()
            if self.server is not None:
                self.server.should_exit = True
            if self.worker is not None:
                self.worker.handle_sig_wait_for_completion(signum)
            return
        log.warning("dev.stopping_now", signal=signum.name)
        if self.server is not None:
            self.server.force_exit = True
        if self.worker is not None:
            self.worker.handle_sig(signum)

    def stop(self) -> None:
        """Stop the other half after the api or the worker ended on its own."""
        if not self.stopping.is_set():
            self.on_signal(signal.SIGTERM)


def cli_command(executable: str | None = None, cwd: Path | None = None) -> str:
    """Return how to call the ``salescycle`` script beside the running interpreter.

    ``make run`` starts ``.venv/bin/salescycle`` without putting ``.venv/bin`` on
    ``PATH``, so a bare ``salescycle`` in the banner would be "command not found". The
    path is relative when the script is under ``cwd``, and plain ``salescycle`` when
    no script sits beside the interpreter (as under ``python -m``).
    """
    script = Path(executable or sys.executable).parent / "salescycle"
    if not script.is_file():
        return "salescycle"
    folder = cwd or Path.cwd()
    if script.is_relative_to(folder):
        return shlex.quote(str(script.relative_to(folder)))
    return shlex.quote(str(script))


def _key_lines(
    settings: Settings, access: DevAccess, embedded_database: bool, cli: str
) -> tuple[list[str], str]:
    """Describe the API key; return the lines and the Authorization header to show."""
    if access.created is not None:
        secret = access.created.secret
        lines = [
            "  A secret API key with every scope was created. It is shown only",
            "  now and stored only as a hash, so copy it:",
            "",
            f"    {secret}",
        ]
        return lines, f"Authorization: Bearer {secret}"

    assert access.existing is not None
    existing = access.existing
    key_id = ids.encode("api_key", existing.id)
    create = f"{cli} api-keys create --name mine --all-scopes"
    if embedded_database:
        # The embedded server's URL carries no password, so it is safe to print.
        url = shlex.quote(settings.database_url)
        command = [f"    SALESCYCLE_DATABASE_URL={url} \\", f"      {create}"]
    else:
        command = [f"    {create}"]
    lines = [
        f"  An API key exists ({key_id}, {existing.prefix}…); its secret was",
        "  shown when it was created. To create another, run:",
        "",
        *command,
        "",
        "  and set SALESCYCLE_API_KEY to it for the request below.",
    ]
    return lines, "Authorization: Bearer $SALESCYCLE_API_KEY"


def banner(
    settings: Settings,
    access: DevAccess,
    url: str,
    servers: embedded.EmbeddedServers,
    cli: str | None = None,
) -> str:
    """Describe where the api listens, the API key (only when new) and a request.

    ``cli`` is how the banner calls the command line, by default ``cli_command()``.
    """
    workspace_id = ids.encode("workspace", access.workspace.id)
    database_lines: list[str] = []
    if servers.postgres is not None:
        storage = f"{settings.data_dir} (embedded PostgreSQL and Redis, kept)"
        # Commands such as `salescycle api-keys` reach the embedded server through
        # this URL. It carries no password, so printing it is safe.
        database_lines = [f"  Database   {shlex.quote(settings.database_url)}"]
    else:
        storage = f"PostgreSQL at {masked_url(settings.database_url)}"
    key_lines, authorization = _key_lines(
        settings,
        access,
        embedded_database=servers.postgres is not None,
        cli=cli or cli_command(),
    )

    lines = [
        "",
        "salescycle is running in dev mode.",
        "",
        f"  API        {url}/v1",
        f"  Reference  {url}/docs",
        f"  Data       {storage}",
        *database_lines,
        f"  Workspace  {workspace_id} ({access.workspace.name})",
        "",
        *key_lines,
        "",
        "  Create a lead:",
        "",
        f"    curl -sS -X POST {url}/v1/leads \\",
        f'      -H "{authorization}" \\',
        '      -H "Content-Type: application/json" \\',
        """      -d '{"email": "ada@example.com", "first_name": "Ada"}'""",
        "",
        "  Press Ctrl-C to stop.",
        "",
    ]
    return "\n".join(lines)


async def _until_stopped(supervisor: _Supervisor, awaitable: Any) -> tuple[bool, Any]:
    """Await ``awaitable`` unless a stop signal comes first.

    Return ``(True, result)`` when it finished, or ``(False, None)`` when the signal
    came first and it was cancelled.
    """
    task = asyncio.ensure_future(awaitable)
    stop = asyncio.create_task(supervisor.stopping.wait())
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False, None
    return True, task.result()


async def _bootstrap(settings: Settings) -> DevAccess:
    database = Database(settings)
    try:
        async with database.session() as session:
            access = await ensure_dev_access(session)
            await session.commit()
    finally:
        await database.dispose()
    return access


async def serve(
    settings: Settings,
    sock: socket.socket,
    url: str,
    servers: embedded.EmbeddedServers,
) -> int:
    """Run the api and the worker until a signal stops them; return the exit status."""
    loop = asyncio.get_running_loop()
    supervisor = _Supervisor()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, supervisor.on_signal, signum)

    finished, access = await _until_stopped(supervisor, _bootstrap(settings))
    if not finished:
        return 0

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACE_SECONDS,
    )
    server = _Server(config)
    worker = Worker(
        **worker_settings(settings),
        job_completion_wait=GRACE_SECONDS,
        handle_signals=True,
    )
    # arq installed its own handlers on the loop; the supervisor's replace them so one
    # signal reaches both halves.
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, supervisor.on_signal, signum)
    supervisor.server = server
    supervisor.worker = worker
    if supervisor.stopping.is_set():
        return 0

    api_task = asyncio.create_task(server.serve(sockets=[sock]), name="api")
    worker_task = asyncio.create_task(worker.async_run(), name="worker")
    started, _ = await _until_stopped(supervisor, _wait_started(server, api_task))
    if started and server.started:
        print(banner(settings, access, url, servers), flush=True)
        log.info("dev.started", url=url, data_dir=str(settings.data_dir))

    done, _ = await asyncio.wait(
        {api_task, worker_task}, return_when=asyncio.FIRST_COMPLETED
    )
    failed = False
    if not supervisor.stopping.is_set():
        failed = True
        log.error("dev.part_stopped", part=next(iter(done)).get_name())
        supervisor.stop()
    await asyncio.gather(api_task, worker_task, return_exceptions=True)
    for task in (api_task, worker_task):
        if task.cancelled():
            continue
        error = task.exception()
        if error is not None:
            failed = True
            log.error("dev.failed", part=task.get_name(), error=repr(error))
    await worker.close()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(signum)
    if not server.started:
        failed = True
    return 1 if failed else 0


async def _wait_started(server: _Server, api_task: asyncio.Task[None]) -> None:
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait({ready, api_task}, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def dev_settings(host: str, port: int, data_dir: Path) -> Settings:
    """Build the settings of ``salescycle dev`` on top of the environment."""
    from_environment = Settings()
    overrides: dict[str, Any] = {"env": "dev", "data_dir": data_dir}
    if "log_format" not in from_environment.model_fields_set:
        overrides["log_format"] = "console"
    if "public_base_url" not in from_environment.model_fields_set:
        overrides["public_base_url"] = base_url(host, port)
    return from_environment.model_copy(update=overrides)


def _start_servers(
    settings: Settings, data_dir: Path, servers: embedded.EmbeddedServers
) -> Settings:
    """Start the embedded servers that no URL in the environment replaces."""
    updates: dict[str, Any] = {}
    if "database_url" not in settings.model_fields_set:
        updates["database_url"], servers.postgres = embedded.start_postgres(data_dir)
    if "redis_url" not in settings.model_fields_set:
        updates["redis_url"], servers.redis = embedded.start_redis(data_dir)
    return settings.model_copy(update=updates)


def run_dev(host: str, port: int, data_dir: Path) -> int:
    """Run ``salescycle dev`` and return its exit status."""
    data_dir = data_dir.expanduser().resolve()
    settings = dev_settings(host, port, data_dir)
    configure_logging(settings.log_format, settings.log_level)
    sock = bind_socket(host, port)
    lock = embedded.lock_data_dir(data_dir)
    servers = embedded.EmbeddedServers()

    # Until the event loop takes over, SIGTERM interrupts startup like Ctrl-C does, so
    # servers already started are still stopped below.
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    status = 1
    try:
        settings = _start_servers(settings, data_dir, servers)
        log.info("dev.migrating", database=masked_url(settings.database_url))
        upgrade(settings.database_url)
        status = asyncio.run(serve(settings, sock, base_url(host, port), servers))
    except KeyboardInterrupt:
        log.info("dev.interrupted_during_startup")
        status = 0
    finally:
        # A signal while the servers stop would leave them half stopped. Both stops
        # are bounded, so ignoring signals here cannot hang the process.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sock.close()
        servers.stop()
        lock.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, previous)

    log.info("dev.stopped", status=status)
    return status
