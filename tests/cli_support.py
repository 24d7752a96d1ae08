"""Running the ``salescycle`` command as a subprocess, the way an operator does."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

SALESCYCLE = Path(sys.executable).parent / "salescycle"
# A command starts a fresh interpreter and imports the app, which takes a few seconds
# on a loaded 2-core machine.
CLI_TIMEOUT_SECONDS = 90


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
