"""Server processes of a run: uvicorn serving an app, and the sampling of their memory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
RSS_SAMPLE_SECONDS = 0.05
LOG_TAIL_CHARACTERS = 3_000


class ServerFailed(RuntimeError):
    """A server process exited or never became ready."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def log_tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARACTERS:]
    except OSError:
        return ""


@dataclass
class Server:
    """A running process and the file that receives its output."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    log_file: IO[bytes]
    port: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def failure(self, message: str) -> ServerFailed:
        return ServerFailed(f"{self.name}: {message}\n{log_tail(self.log_path)}")

    async def stop(self) -> None:
        """Stop the process with SIGTERM, or SIGKILL once the timeout has passed."""
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.log_file.close()


async def start_process(
    name: str, command: list[str], env: dict[str, str], log_dir: Path
) -> Server:
    """Start ``command`` with ``env`` added to this process's environment."""
    log_path = log_dir / f"{name}.log"
    log_file = log_path.open("wb")
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        env={**os.environ, **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log_file,
        stderr=asyncio.subprocess.STDOUT,
    )
    return Server(name=name, process=process, log_path=log_path, log_file=log_file)


def uvicorn_command(app: str, port: int, workers: int) -> list[str]:
    """Build the command that serves every app of a run alike: uvloop, httptools and
    warnings only in the log."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "warning",
        "--no-access-log",
    ]


async def start_uvicorn(
    name: str, app: str, env: dict[str, str], workers: int, log_dir: Path
) -> Server:
    """Serve the app factory ``app`` and wait until ``/healthz`` returns 200."""
    port = free_port()
    server = await start_process(
        name, uvicorn_command(app, port, workers), env, log_dir
    )
    server.port = port
    try:
        await wait_ready(server)
    except BaseException:
        await server.stop()
        raise
    return server


async def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    url = f"http://127.0.0.1:{server.port}/healthz"
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.returncode is not None:
                raise server.failure(
                    f"exited with status {server.process.returncode} while starting"
                )
            with contextlib.suppress(httpx.TransportError):
                response = await client.get(url)
                if response.status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise server.failure(f"not ready after {READY_TIMEOUT_SECONDS:.0f} s")


def tree_cpu_seconds(pid: int) -> float:
    """Return the user and system CPU time a process and its children have used."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def postgres_cpu_seconds() -> float:
    """Return the CPU time used by every PostgreSQL process of this machine.

    Only a server that runs here, under a user whose processes this one can read,
    counts. A remote server's time is not seen.
    """
    total = 0.0
    for process in psutil.process_iter(["name"]):
        if process.info["name"] != "postgres":
            continue
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def machine_cpu_seconds() -> float:
    """Return the CPU time every process of this machine has used since boot.

    It is the time the CPUs were busy: user, nice, system and interrupt time. Idle
    time, time waiting for I/O and time the hypervisor gave to other machines (steal)
    do not count.
    """
    times = psutil.cpu_times()
    busy: float = (
        times.user
        + times.nice
        + times.system
        + getattr(times, "irq", 0.0)
        + getattr(times, "softirq", 0.0)
    )
    return busy


def machine_cpus() -> int:
    """Return how many CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def tree_rss(pid: int) -> int:
    """Return the resident memory of a process and all its children, in bytes."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total


class RssSampler:
    """The peak resident memory of a process tree, sampled while a run lasts."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_bytes = tree_rss(pid)
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak_bytes = max(self.peak_bytes, tree_rss(self.pid))
            await asyncio.sleep(RSS_SAMPLE_SECONDS)

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self.peak_bytes = max(self.peak_bytes, tree_rss(self.pid))

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 1_048_576
