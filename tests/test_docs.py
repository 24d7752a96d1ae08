"""``/docs`` renders in headless Chromium with every request kept on 127.0.0.1.

The api runs as ``salescycle api`` on a free loopback port. Chromium resolves every
other host name to "not found", so a page that needed a CDN would stay blank. Its
NetLog records which URLs the page requested.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.cli_support import running_api
from tests.conftest import Servers

BROWSER_TIMEOUT_SECONDS = 120
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str:
    configured = os.environ.get("SALESCYCLE_CHROMIUM")
    candidates = [configured] if configured else list(CHROMIUM_NAMES)
    for name in candidates:
        path = shutil.which(name)
        if path is not None:
            return path
    pytest.fail(
        "Chromium is not installed, so /docs cannot be rendered. Run 'make chromium' "
        "(apt-get install chromium) or set SALESCYCLE_CHROMIUM to a Chromium binary."
    )


@pytest.fixture
async def api_url(servers: Servers, tmp_path: Path) -> AsyncIterator[str]:
    async with running_api(servers, tmp_path / "api.log") as api:
        yield api.url


async def run_chromium(*args: str, profile: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        find_chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--no-default-browser-check",
        "--no-first-run",
        "--no-pings",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        # Swagger UI renders after fetching the bundle and the schema; virtual time
        # lets the page settle before the DOM is dumped.
        "--virtual-time-budget=15000",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(BROWSER_TIMEOUT_SECONDS):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise AssertionError(
            f"Chromium did not finish within {BROWSER_TIMEOUT_SECONDS} s"
        ) from None
    assert process.returncode == 0, stderr.decode(errors="replace")[-4000:]
    return stdout.decode()


def page_requests(net_log: Path, origin: str) -> list[str]:
    """List the URLs that the page (not the browser's own services) requested."""
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    site = f"{urlsplit(origin).scheme}://{urlsplit(origin).hostname}"
    urls = []
    for event in log["events"]:
        params = event.get("params", {})
        if event["type"] != start_job or "url" not in params:
            continue
        from_page = params.get("initiator") == origin or params.get(
            "network_isolation_key", ""
        ).startswith(site)
        if from_page:
            urls.append(params["url"])
    return urls


class TestDocs:
    async def test_html_uses_local_assets(self, api_url: str) -> None:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{api_url}/docs")

        assert response.status_code == 200
        references = re.findall(
            r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)""", response.text
        )
        assert len(references) >= 4, response.text
        for reference in references:
            assert reference.startswith("/"), reference
        assert "http://" not in response.text
        assert "https://" not in response.text

    async def test_renders_offline(self, api_url: str, tmp_path: Path) -> None:
        net_log = tmp_path / "netlog.json"

        dom = await run_chromium(
            f"--log-net-log={net_log}",
            "--dump-dom",
            f"{api_url}/docs",
            profile=tmp_path / "profile",
        )

        assert 'class="swagger-ui"' in dom
        assert "Create a lead" in dom
        assert "leads_create" in dom
        assert 'data-path="/v1/leads/{lead_id}"' in dom
        requested = page_requests(net_log, api_url)
        paths = {urlsplit(url).path for url in requested}
        assert {
            "/docs",
            "/docs-assets/swagger-ui-bundle.js",
            "/docs-assets/swagger-ui.css",
            "/openapi.json",
        } <= paths
        for url in requested:
            assert urlsplit(url).hostname == "127.0.0.1", url
