"""``salescycle dev`` as a person runs it: start, use, Ctrl-C, start again.

These tests set no external server URL, so the command starts its own embedded
PostgreSQL and Redis under a temporary data folder. Every wait is bounded; on failure
the process group and any server it left behind are killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from app.admin import DevAccess
from app.core import ids
from app.core.auth import NewApiKey
from app.core.ids import new_uuid
from app.devserver import DevServerError, banner, base_url, bind_socket, cli_command
from app.embedded import EmbeddedPostgres, EmbeddedServers
from app.models import ApiKey, Workspace
from app.settings import Settings
from tests.cli_support import clean_environment, command, free_port, run_cli

START_TIMEOUT_SECONDS = 180
STOP_TIMEOUT_SECONDS = 60
SECRET = re.compile(r"sk_[A-Za-z0-9_-]{43}")


@dataclass
class DevProcess:
    process: asyncio.subprocess.Process
    url: str
    stdout_path: Path
    stderr_path: Path

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def logs(self) -> str:
        return f"stdout:\n{self.stdout}\nstderr:\n{self.stderr_path.read_text()}"

    async def wait_ready(self) -> None:
        """Wait until /readyz returns 200 and the banner is printed."""
        async with httpx.AsyncClient(timeout=2) as http:
            try:
                async with asyncio.timeout(START_TIMEOUT_SECONDS):
                    while True:
                        assert self.process.returncode is None, (
                            f"dev exited with {self.process.returncode}\n{self.logs()}"
                        )
                        with contextlib.suppress(httpx.TransportError):
                            ready = await http.get(f"{self.url}/readyz")
                            if ready.status_code == 200 and "Ctrl-C" in self.stdout:
                                return
                        await asyncio.sleep(0.25)
            except TimeoutError:
                raise AssertionError(
                    f"dev was not ready within {START_TIMEOUT_SECONDS} s\n{self.logs()}"
                ) from None

    async def wait_exit(self) -> int:
        try:
            async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                return await self.process.wait()
        except TimeoutError:
            raise AssertionError(
                f"dev did not exit within {STOP_TIMEOUT_SECONDS} s\n{self.logs()}"
            ) from None

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


def log_paths(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "stdout.txt", folder / "stderr.txt"


async def start_dev(data_dir: Path, port: int, logs: Path) -> DevProcess:
    stdout_path, stderr_path = log_paths(logs)
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *command(),
            "dev",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            env=clean_environment(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            # A session of its own, so the test can signal the whole group the way a
            # terminal delivers Ctrl-C.
            start_new_session=True,
        )
    return DevProcess(process, f"http://127.0.0.1:{port}", stdout_path, stderr_path)


def server_pids(data_dir: Path) -> dict[str, int]:
    """Read the pids of the embedded servers that are still running on ``data_dir``."""
    pids = {}
    for name, path, executable in (
        ("postgres", data_dir / "postgres" / "postmaster.pid", "postgres"),
        ("redis", data_dir / "redis" / "redis.pid", "redis-server"),
    ):
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            pid = int(path.read_text().splitlines()[0])
            with contextlib.suppress(psutil.NoSuchProcess):
                process = psutil.Process(pid)
                if process.name() == executable and process.status() != "zombie":
                    pids[name] = pid
    return pids


def kill_leftover_servers(data_dir: Path) -> None:
    for pid in server_pids(data_dir).values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "data"
    yield folder
    kill_leftover_servers(folder)


class TestDevServer:
    async def test_restart_keeps_data(self, data_dir: Path, tmp_path: Path) -> None:
        port = free_port()
        first = await start_dev(data_dir, port, tmp_path / "first")
        try:
            await first.wait_ready()
            secrets = SECRET.findall(first.stdout)
            assert len(set(secrets)) == 1, first.stdout
            headers = {"Authorization": f"Bearer {secrets[0]}"}
            assert f"curl -sS -X POST {first.url}/v1/leads" in first.stdout
            async with httpx.AsyncClient(base_url=first.url, timeout=10) as http:
                created = await http.post(
                    "/v1/leads",
                    json={"email": "ada@example.com", "first_name": "Ada"},
                    headers=headers,
                )
            assert created.status_code == 201, created.text
            lead_id = created.json()["id"]
            running = server_pids(data_dir)
            assert set(running) == {"postgres", "redis"}

            os.killpg(first.process.pid, signal.SIGINT)
            status = await first.wait_exit()
        finally:
            first.kill()

        assert status == 0, first.logs()
        assert server_pids(data_dir) == {}
        for pid in running.values():
            assert not psutil.pid_exists(pid) or (
                psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            )

        second = await start_dev(data_dir, port, tmp_path / "second")
        try:
            await second.wait_ready()
            async with httpx.AsyncClient(base_url=second.url, timeout=10) as http:
                fetched = await http.get(f"/v1/leads/{lead_id}", headers=headers)
            os.kill(second.process.pid, signal.SIGTERM)
            second_status = await second.wait_exit()
        finally:
            second.kill()

        assert fetched.status_code == 200, fetched.text
        assert fetched.json()["email"] == "ada@example.com"
        assert SECRET.search(second.stdout) is None, second.stdout
        assert "An API key exists" in second.stdout
        assert "salescycle api-keys create" in second.stdout
        assert second_status == 0, second.logs()
        assert server_pids(data_dir) == {}

    async def test_data_dir_in_use(self, data_dir: Path, tmp_path: Path) -> None:
        running = await start_dev(data_dir, free_port(), tmp_path / "running")
        try:
            await running.wait_ready()

            result = await run_cli(
                "dev",
                "--port",
                str(free_port()),
                "--data-dir",
                str(data_dir),
                env=clean_environment(),
            )

            assert result.returncode == 1
            assert "is using the data folder" in result.stderr
            assert f"pid {running.process.pid}" in result.stderr
            os.killpg(running.process.pid, signal.SIGINT)
            assert await running.wait_exit() == 0, running.logs()
        finally:
            running.kill()

    async def test_port_in_use(self, data_dir: Path) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]

            result = await run_cli(
                "dev",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                env=clean_environment(),
            )

        assert result.returncode == 1
        assert f"Cannot listen on 127.0.0.1:{port}" in result.stderr
        assert not (data_dir / "postgres").exists()


class TestBaseUrl:
    @pytest.mark.parametrize(
        ("host", "expected"),
        [
            ("127.0.0.1", "http://127.0.0.1:8000"),
            ("0.0.0.0", "http://127.0.0.1:8000"),
            ("localhost", "http://localhost:8000"),
            ("::", "http://[::1]:8000"),
            ("::1", "http://[::1]:8000"),
        ],
    )
    def test_local_address(self, host: str, expected: str) -> None:
        assert base_url(host, 8000) == expected


class TestBindSocket:
    def test_busy_port(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]

            with pytest.raises(DevServerError, match="pass another --port"):
                bind_socket("127.0.0.1", port)

    def test_binds(self) -> None:
        sock = bind_socket("127.0.0.1", 0)
        try:
            host, port = sock.getsockname()
        finally:
            sock.close()

        assert host == "127.0.0.1"
        assert port > 0


def dev_access(*, created: bool) -> DevAccess:
    workspace = Workspace(id=new_uuid(), name="Acme")
    key = ApiKey(id=new_uuid(), workspace_id=workspace.id, prefix="sk_abcdefgh")
    if created:
        secret = NewApiKey(record=key, secret="sk_" + "a" * 43)
        return DevAccess(workspace=workspace, created=secret, existing=None)
    return DevAccess(workspace=workspace, created=None, existing=key)


class TestBanner:
    URL = "http://127.0.0.1:8000"
    EMBEDDED_URL = "postgresql+asyncpg://postgres@/salescycle?host=/srv/sc/postgres"

    def settings(self, database_url: str = EMBEDDED_URL) -> Settings:
        return Settings(env="dev", database_url=database_url, data_dir=Path("/srv/sc"))

    def embedded(self) -> EmbeddedServers:
        postgres = EmbeddedPostgres(
            url=self.EMBEDDED_URL, pgdata=Path("/srv/sc/postgres"), server=None
        )
        return EmbeddedServers(postgres=postgres)

    def test_new_key_shown(self) -> None:
        access = dev_access(created=True)

        text = banner(self.settings(), access, self.URL, self.embedded())

        assert access.created is not None
        secret = access.created.secret
        assert f"    {secret}\n" in text
        assert f'-H "Authorization: Bearer {secret}"' in text
        assert f"curl -sS -X POST {self.URL}/v1/leads" in text
        assert ids.encode("workspace", access.workspace.id) in text
        assert "/srv/sc (embedded PostgreSQL and Redis, kept)" in text

    def test_embedded_database_url_shown(self) -> None:
        text = banner(
            self.settings(), dev_access(created=True), self.URL, self.embedded()
        )

        assert f"  Database   '{self.EMBEDDED_URL}'\n" in text

    def test_existing_key_not_shown(self) -> None:
        access = dev_access(created=False)

        text = banner(self.settings(), access, self.URL, self.embedded())

        assert SECRET.search(text) is None
        assert "An API key exists" in text
        assert "sk_abcdefgh…" in text
        assert "$SALESCYCLE_API_KEY" in text
        assert f"SALESCYCLE_DATABASE_URL='{self.EMBEDDED_URL}'" in text

    def test_external_password_hidden(self) -> None:
        external = self.settings("postgresql://app:hunter2@db.internal:5432/sales")

        text = banner(external, dev_access(created=False), self.URL, EmbeddedServers())

        assert "hunter2" not in text
        assert "PostgreSQL at postgresql://app:***@db.internal:5432/sales" in text
        assert "SALESCYCLE_DATABASE_URL=" not in text
        assert "  Database " not in text
        assert f"    {cli_command()} api-keys create --name mine --all-scopes" in text

    def test_key_command_uses_cli(self) -> None:
        access = dev_access(created=False)

        text = banner(
            self.settings(),
            access,
            self.URL,
            self.embedded(),
            cli=".venv/bin/salescycle",
        )

        assert (
            "      .venv/bin/salescycle api-keys create --name mine --all-scopes"
            in text
        )
        assert "      salescycle api-keys create" not in text


class TestCliCommand:
    def script_folder(self, root: Path) -> Path:
        folder = root / "my venv" / "bin"
        folder.mkdir(parents=True)
        (folder / "python").touch()
        (folder / "salescycle").touch()
        return folder

    def test_relative_under_cwd(self, tmp_path: Path) -> None:
        folder = self.script_folder(tmp_path)

        command = cli_command(str(folder / "python"), cwd=tmp_path)

        assert command == "'my venv/bin/salescycle'"

    def test_absolute_outside_cwd(self, tmp_path: Path) -> None:
        folder = self.script_folder(tmp_path / "repo")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()

        command = cli_command(str(folder / "python"), cwd=elsewhere)

        assert command == f"'{folder / 'salescycle'}'"

    def test_bare_name_without_script(self, tmp_path: Path) -> None:
        (tmp_path / "python").touch()

        command = cli_command(str(tmp_path / "python"), cwd=tmp_path)

        assert command == "salescycle"
