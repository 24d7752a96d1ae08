"""``salescycle api`` as a production process: several workers, clean SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx

from tests.cli_support import read_log, running_api
from tests.conftest import Servers


class TestApiCommand:
    async def test_several_workers(self, servers: Servers, tmp_path: Path) -> None:
        log_path = tmp_path / "api.log"

        async with running_api(servers, log_path, "--workers", "2") as api:
            async with httpx.AsyncClient(timeout=5) as http:
                ready = await http.get(f"{api.url}/readyz")
                for _ in range(100):
                    if read_log(log_path).count('"api.started"') == 2:
                        break
                    await asyncio.sleep(0.2)

        log = read_log(log_path)
        assert ready.status_code == 200, log
        assert log.count('"api.started"') == 2, log
        assert "died" not in log
        assert log.count('"api.stopped"') == 2, log
        assert api.process.returncode == 0, log

    async def test_sigterm_stops(self, servers: Servers, tmp_path: Path) -> None:
        log_path = tmp_path / "api.log"

        async with running_api(servers, log_path) as api:
            async with httpx.AsyncClient(timeout=5) as http:
                health = await http.get(f"{api.url}/healthz")

        log = read_log(log_path)
        assert health.status_code == 200
        # uvicorn shuts down gracefully, then raises the signal it caught again, so a
        # single process ends as killed by SIGTERM (exit status 143 in a shell).
        assert api.process.returncode == -signal.SIGTERM, log
        assert '"api.stopped"' in log
        assert "Finished server process" in log
