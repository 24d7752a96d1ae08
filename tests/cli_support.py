"""Running the ``salescycle`` command as a subprocess, the way an operator does."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import Servers

SALESCYCLE = Path(sys.executable).parent / "salescycle"
# A command starts a fresh interpreter and imports the app, which takes a few seconds
# on a loaded 2-core machine.
CLI_TIMEOUT_SECONDS = 90
API_START_TIMEOUT_SECONDS = 120
STOP_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def command() -> list[str]:
    assert SALESCYCLE.exists(), (
        f"{SALESCYCLE} is missing; install the project with 'make install'."
    )
    return [str(SALESCYCLE)]


def clean_environment(**overrides: str) -> dict[str, str]:
    """Copy the environment without SALESCYCLE_ settings, then apply ``overrides``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("SALESCYCLE_")
    }
    env.update(overrides)
    return env


async def run_cli(*args: str, env: dict[str, str]) -> Result:
    process = await asyncio.create_subprocess_exec(
        *command(),
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(CLI_TIMEOUT_SECONDS):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(
            f"salescycle {' '.join(args)} did not finish within {CLI_TIMEOUT_SECONDS} s"
        ) from None
    assert process.returncode is not None
    return Result(process.returncode, stdout.decode(), stderr.decode())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """Send SIGTERM to the process alone, as ``docker stop`` does; kill its group late."""
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
            await process.wait()
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def read_log(path: Path) -> str:
    return path.read_text(errors="replace")


async def wait_until_healthy(
    url: str, process: asyncio.subprocess.Process, log_path: Path
) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        async with asyncio.timeout(API_START_TIMEOUT_SECONDS):
            while True:
                assert process.returncode is None, (
                    f"salescycle api exited with {process.returncode}:\n"
                    f"{read_log(log_path)}"
                )
                try:
                    if (await http.get(f"{url}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)


@dataclass(frozen=True)
class RunningApi:
    url: str
    process: asyncio.subprocess.Process


@asynccontextmanager
async def running_api(
    servers: Servers, log_path: Path, *options: str
) -> AsyncIterator[RunningApi]:
    """Run ``salescycle api`` on a free loopback port until the block ends."""
    port = free_port()
    env = clean_environment(
        SALESCYCLE_DATABASE_URL=servers.database_url,
        SALESCYCLE_REDIS_URL=servers.redis_url,
    )
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            *command(),
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *options,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_until_healthy(url, process, log_path)
        yield RunningApi(url, process)
    finally:
        await stop_process(process)
