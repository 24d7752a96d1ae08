"""The ``salescycle`` admin commands, run as subprocesses against a real database.

The commands commit for real, so they get a database of their own next to the test
database; each test starts with its tables emptied.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, make_url, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from app import admin
from app.billing.providers.inbox import DRAIN_JOB, STATUSES
from app.core import ids
from app.core.auth import ALL_SCOPES, NewApiKey, create_api_key
from app.core.clock import utcnow
from app.core.db import async_url
from app.core.migrate import upgrade
from app.core.openapi import render_schema
from app.main import create_app
from app.models import ApiKey, ProviderEvent, Workspace
from app.settings import Settings
from tests.cli_support import clean_environment, free_port, run_cli
from tests.conftest import Servers, recreate_database

SECRET = re.compile(r"sk_[A-Za-z0-9_-]{43}")


@pytest.fixture(scope="module")
async def cli_database_url(servers: Servers) -> str:
    url = make_url(async_url(servers.database_url))
    cli_url = url.set(database=f"{url.database}_cli").render_as_string(False)
    await recreate_database(cli_url)
    # Alembic's env.py runs its own event loop, so it cannot share this one.
    await asyncio.to_thread(upgrade, cli_url)
    return cli_url


@pytest.fixture(scope="module")
async def cli_engine(cli_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(cli_database_url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
async def env(
    cli_database_url: str, cli_engine: AsyncEngine, servers: Servers
) -> dict[str, str]:
    async with cli_engine.begin() as connection:
        await connection.execute(text("TRUNCATE workspaces CASCADE"))
    return clean_environment(
        SALESCYCLE_DATABASE_URL=cli_database_url,
        SALESCYCLE_REDIS_URL=servers.redis_url,
    )


@pytest.fixture
async def cli_client(
    cli_database_url: str, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the real app on the CLI's database, so its keys authenticate."""
    app = create_app(settings.model_copy(update={"database_url": cli_database_url}))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
    await app.state.queue.close()
    await app.state.db.dispose()


async def create_key(env: dict[str, str], *args: str) -> str:
    result = await run_cli("api-keys", "create", "--name", "ci", *args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


async def seed_workspace(engine: AsyncEngine, name: str) -> Workspace:
    """Commit a workspace directly, sparing a CLI start where it is only setup."""
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        workspace = await admin.create_workspace(session, name)
        await session.commit()
    return workspace


async def seed_key(
    engine: AsyncEngine, workspace: Workspace, scopes: tuple[str, ...]
) -> NewApiKey:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        key = await create_api_key(
            session, workspace_id=workspace.id, name="seeded", scopes=scopes
        )
        await session.commit()
    return key


class TestApiKeysCreate:
    async def test_prints_only_key(self, env: dict[str, str]) -> None:
        result = await run_cli(
            "api-keys", "create", "--name", "ci", "--scope", "leads:read", env=env
        )

        assert result.returncode == 0, result.stderr
        assert SECRET.fullmatch(result.stdout.rstrip("\n"))
        assert result.stdout.count("\n") == 1
        assert "shown only now" in result.stderr

    async def test_key_authenticates(
        self, env: dict[str, str], cli_client: httpx.AsyncClient
    ) -> None:
        secret = await create_key(env, "--scope", "leads:read")
        headers = {"Authorization": f"Bearer {secret}"}

        listed = await cli_client.get("/v1/leads", headers=headers)
        created = await cli_client.post(
            "/v1/leads", json={"email": "ada@example.com"}, headers=headers
        )

        assert listed.status_code == 200, listed.text
        assert listed.json()["data"] == []
        assert created.status_code == 403
        assert created.json()["missing_scope"] == "leads:write"

    async def test_creates_workspace_when_none(
        self, env: dict[str, str], cli_engine: AsyncEngine
    ) -> None:
        result = await run_cli(
            "api-keys", "create", "--name", "ci", "--all-scopes", env=env
        )

        assert result.returncode == 0, result.stderr
        async with cli_engine.connect() as connection:
            workspaces = (await connection.execute(select(Workspace.id))).all()
            scopes = await connection.scalar(select(ApiKey.scopes))
        assert len(workspaces) == 1
        workspace_id = ids.encode("workspace", workspaces[0].id)
        assert f"Created the workspace {workspace_id}" in result.stderr
        assert scopes == sorted(ALL_SCOPES)

    async def test_reuses_only_workspace(
        self, env: dict[str, str], cli_engine: AsyncEngine
    ) -> None:
        await seed_workspace(cli_engine, "Acme")

        second = await run_cli(
            "api-keys", "create", "--name", "two", "--scope", "leads:read", env=env
        )

        assert second.returncode == 0, second.stderr
        assert "Created the workspace" not in second.stderr
        async with cli_engine.connect() as connection:
            count = await connection.scalar(select(func.count()).select_from(Workspace))
        assert count == 1

    async def test_named_workspace(
        self, env: dict[str, str], cli_engine: AsyncEngine
    ) -> None:
        await seed_workspace(cli_engine, "Acme")
        globex = ids.encode("workspace", (await seed_workspace(cli_engine, "G")).id)

        result = await run_cli(
            "api-keys",
            "create",
            "--name",
            "ci",
            "--scope",
            "leads:read",
            "--workspace",
            globex,
            env=env,
        )

        assert result.returncode == 0, result.stderr
        async with cli_engine.connect() as connection:
            owner = await connection.scalar(select(ApiKey.workspace_id))
        assert owner is not None
        assert ids.encode("workspace", owner) == globex

    async def test_several_workspaces_need_choice(
        self, env: dict[str, str], cli_engine: AsyncEngine
    ) -> None:
        await seed_workspace(cli_engine, "Acme")
        await seed_workspace(cli_engine, "Globex")

        result = await run_cli(
            "api-keys", "create", "--name", "ci", "--all-scopes", env=env
        )

        assert result.returncode == 1
        assert result.stdout == ""
        assert "--workspace" in result.stderr

    async def test_unknown_workspace(self, env: dict[str, str]) -> None:
        missing = ids.encode("workspace", ids.new_uuid())

        result = await run_cli(
            "api-keys",
            "create",
            "--name",
            "ci",
            "--all-scopes",
            "--workspace",
            missing,
            env=env,
        )

        assert result.returncode == 1
        assert f"No workspace with id '{missing}'" in result.stderr

    async def test_unknown_scope(self, env: dict[str, str]) -> None:
        result = await run_cli(
            "api-keys", "create", "--name", "ci", "--scope", "leads:delete", env=env
        )

        assert result.returncode == 1
        assert result.stdout == ""
        assert "Unknown scope 'leads:delete'" in result.stderr

    async def test_no_scope(self, env: dict[str, str]) -> None:
        result = await run_cli("api-keys", "create", "--name", "ci", env=env)

        assert result.returncode == 1
        assert "--all-scopes" in result.stderr

    async def test_blank_name(self, env: dict[str, str]) -> None:
        result = await run_cli(
            "api-keys", "create", "--name", "  ", "--all-scopes", env=env
        )

        assert result.returncode == 1
        assert "name must be 1 to 200 characters" in result.stderr

    async def test_database_unreachable(self) -> None:
        env = clean_environment(
            SALESCYCLE_DATABASE_URL="postgresql://postgres:hunter2@127.0.0.1:1/none"
        )

        result = await run_cli(
            "api-keys", "create", "--name", "ci", "--all-scopes", env=env
        )

        assert result.returncode == 1
        assert result.stdout == ""
        assert "The database at postgresql://postgres:***@127.0.0.1:1/none" in (
            result.stderr
        )
        assert "hunter2" not in result.stderr


class TestApiKeysList:
    async def test_never_shows_secret(
        self, env: dict[str, str], cli_engine: AsyncEngine
    ) -> None:
        workspace = await seed_workspace(cli_engine, "Acme")
        key = await seed_key(cli_engine, workspace, ("leads:read", "events:read"))
        await seed_key(cli_engine, workspace, ALL_SCOPES)

        table = await run_cli("api-keys", "list", env=env)
        as_json = await run_cli("api-keys", "list", "--json", env=env)

        assert table.returncode == 0, table.stderr
        assert as_json.returncode == 0, as_json.stderr
        for output in (table.stdout, table.stderr, as_json.stdout, as_json.stderr):
            assert key.secret not in output
            assert key.secret[11:] not in output
            assert key.record.key_hash not in output
        rows = json.loads(as_json.stdout)
        assert len(rows) == 2
        row = rows[0]
        assert row == {
            "id": ids.encode("api_key", key.record.id),
            "workspace_id": ids.encode("workspace", workspace.id),
            "name": "seeded",
            "kind": "secret",
            "prefix": key.secret[:11],
            "scopes": ["events:read", "leads:read"],
            "created_at": row["created_at"],
            "revoked_at": None,
        }
        header, first, second = table.stdout.splitlines()
        assert header.split() == [
            "ID",
            "NAME",
            "PREFIX",
            "SCOPES",
            "CREATED",
            "REVOKED",
        ]
        assert first.split()[3] == "events:read,leads:read"
        assert first.split()[5] == "-"
        assert second.split()[3] == "all"

    async def test_filters_by_workspace(
        self, env: dict[str, str], cli_engine: AsyncEngine
    ) -> None:
        acme = await seed_workspace(cli_engine, "Acme")
        globex = await seed_workspace(cli_engine, "Globex")
        await seed_key(cli_engine, acme, ALL_SCOPES)
        await seed_key(cli_engine, globex, ALL_SCOPES)
        globex_id = ids.encode("workspace", globex.id)

        result = await run_cli(
            "api-keys", "list", "--json", "--workspace", globex_id, env=env
        )

        rows = json.loads(result.stdout)
        assert [row["workspace_id"] for row in rows] == [globex_id]


class TestApiKeysRevoke:
    async def test_revoked_key_rejected(
        self,
        env: dict[str, str],
        cli_engine: AsyncEngine,
        cli_client: httpx.AsyncClient,
    ) -> None:
        key = await seed_key(
            cli_engine, await seed_workspace(cli_engine, "Acme"), ("leads:read",)
        )
        headers = {"Authorization": f"Bearer {key.secret}"}
        before = await cli_client.get("/v1/leads", headers=headers)

        result = await run_cli(
            "api-keys", "revoke", ids.encode("api_key", key.record.id), env=env
        )

        assert before.status_code == 200
        assert result.returncode == 0, result.stderr
        response = await cli_client.get("/v1/leads", headers=headers)
        assert response.status_code == 401
        assert response.json()["code"] == "unauthenticated"
        async with cli_engine.connect() as connection:
            revoked_at = await connection.scalar(select(ApiKey.revoked_at))
        assert revoked_at is not None

    async def test_twice(self, env: dict[str, str], cli_engine: AsyncEngine) -> None:
        key = await seed_key(
            cli_engine, await seed_workspace(cli_engine, "Acme"), ("leads:read",)
        )
        api_key_id = ids.encode("api_key", key.record.id)
        first = await run_cli("api-keys", "revoke", api_key_id, env=env)

        second = await run_cli("api-keys", "revoke", api_key_id, env=env)

        assert first.returncode == 0, first.stderr
        assert second.returncode == 1
        assert f"The API key {api_key_id} was already revoked." in second.stderr

    async def test_unknown_id(self, env: dict[str, str]) -> None:
        missing = ids.encode("api_key", ids.new_uuid())

        result = await run_cli("api-keys", "revoke", missing, env=env)

        assert result.returncode == 1
        assert f"No API key with id '{missing}'" in result.stderr

    async def test_malformed_id(self, env: dict[str, str]) -> None:
        result = await run_cli("api-keys", "revoke", "sk_not_an_id", env=env)

        assert result.returncode == 1
        assert "'sk_not_an_id' is not a valid API key id" in result.stderr


class TestWorkspaces:
    async def test_create_and_list(self, env: dict[str, str]) -> None:
        created = await run_cli("workspaces", "create", "--name", "Acme GmbH", env=env)

        listing = await run_cli("workspaces", "list", env=env)

        workspace_id = created.stdout.strip()
        assert workspace_id.startswith("ws_")
        assert listing.returncode == 0, listing.stderr
        header, *lines = listing.stdout.splitlines()
        assert header.split() == ["ID", "NAME", "TIME", "ZONE", "CURRENCY", "CREATED"]
        [line] = [line for line in lines if line.startswith(workspace_id)]
        assert line.split()[1:5] == ["Acme", "GmbH", "UTC", "USD"]

    async def test_list_as_json(self, env: dict[str, str]) -> None:
        created = await run_cli(
            "workspaces",
            "create",
            "--name",
            "Acme SA",
            "--timezone",
            "Europe/Paris",
            env=env,
        )

        listing = await run_cli("workspaces", "list", "--json", env=env)

        assert listing.returncode == 0, listing.stderr
        [row] = [
            row
            for row in json.loads(listing.stdout)
            if row["id"] == created.stdout.strip()
        ]
        assert row["name"] == "Acme SA"
        assert row["timezone"] == "Europe/Paris"
        assert row["default_currency"] == "USD"
        assert row["created_at"].endswith("Z")

    async def test_create_with_timezone(
        self, env: dict[str, str], cli_engine: AsyncEngine
    ) -> None:
        created = await run_cli(
            "workspaces",
            "create",
            "--name",
            "Acme KK",
            "--timezone",
            "Asia/Tokyo",
            env=env,
        )

        assert created.returncode == 0, created.stderr
        async with cli_engine.connect() as connection:
            zone = await connection.scalar(
                select(Workspace.timezone).where(
                    Workspace.id == ids.decode("workspace", created.stdout.strip())
                )
            )
        assert zone == "Asia/Tokyo"

    async def test_unknown_timezone(
        self, env: dict[str, str], cli_engine: AsyncEngine
    ) -> None:
        result = await run_cli(
            "workspaces", "create", "--name", "Acme", "--timezone", "Mars/Base", env=env
        )

        assert result.returncode == 1
        assert "'Mars/Base' is not an IANA time zone" in result.stderr
        async with cli_engine.connect() as connection:
            count = await connection.scalar(select(func.count()).select_from(Workspace))
        assert count == 0


class TestInvalidSettings:
    async def test_list_not_json(self, env: dict[str, str]) -> None:
        env["SALESCYCLE_WEBHOOK_ALLOW_PRIVATE_HOSTS"] = "127.0.0.1"

        result = await run_cli("api-keys", "list", env=env)

        assert result.returncode == 1
        assert result.stdout == ""
        assert "Traceback" not in result.stderr
        assert "SALESCYCLE_WEBHOOK_ALLOW_PRIVATE_HOSTS is not valid JSON" in (
            result.stderr
        )

    async def test_value_out_of_range(self, env: dict[str, str]) -> None:
        env["SALESCYCLE_WEBHOOK_MAX_ATTEMPTS"] = "100"
        env["SALESCYCLE_SMTP_PORT"] = "secret-looking-value"

        result = await run_cli("api-keys", "list", env=env)

        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert "SALESCYCLE_WEBHOOK_MAX_ATTEMPTS: Input should be less than" in (
            result.stderr
        )
        assert "SALESCYCLE_SMTP_PORT:" in result.stderr
        assert "secret-looking-value" not in result.stderr


class TestMigrate:
    async def test_upgrade_and_check(self, env: dict[str, str]) -> None:
        upgrade_result = await run_cli("migrate", env=env)
        check_result = await run_cli("migrate", "--check", env=env)

        assert upgrade_result.returncode == 0, upgrade_result.stderr
        assert "latest migration" in upgrade_result.stderr
        assert check_result.returncode == 0, check_result.stderr
        assert "matches the models" in check_result.stderr

    async def test_check_behind(
        self, env: dict[str, str], cli_engine: AsyncEngine
    ) -> None:
        async with cli_engine.begin() as connection:
            version = await connection.scalar(
                text("SELECT version_num FROM alembic_version")
            )
            await connection.execute(text("DELETE FROM alembic_version"))
        try:
            result = await run_cli("migrate", "--check", env=env)
        finally:
            async with cli_engine.begin() as connection:
                await connection.execute(
                    text("INSERT INTO alembic_version VALUES (:v)"), {"v": version}
                )

        assert result.returncode == 1
        assert "not up to date" in result.stderr


class TestOpenapi:
    async def test_matches_app(self, settings: Settings) -> None:
        result = await run_cli("openapi", env=clean_environment())

        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == create_app(settings).openapi()
        assert result.stdout == render_schema(create_app(settings).openapi())
        assert result.stdout.startswith('{\n  "components": {')
        assert result.stdout.endswith("}\n")


class TestImportLeads:
    async def test_counts_and_exit_code(
        self, env: dict[str, str], cli_engine: AsyncEngine, tmp_path: Path
    ) -> None:
        workspace = await seed_workspace(cli_engine, "Importing")
        path = tmp_path / "leads.csv"
        path.write_text("Mail;Vorname\nada@example.com;Ada\nbroken;Bo\n")

        result = await run_cli(
            "import",
            "leads",
            str(path),
            "--mapping",
            "Mail=email",
            "--mapping",
            "Vorname=first_name",
            "--workspace",
            ids.encode("workspace", workspace.id),
            env=env,
        )

        assert result.returncode == 2, result.stderr
        assert "created 1, updated 0, skipped 0, failed 1" in result.stdout
        assert result.stdout.startswith("imp_")
        assert "row 3, column 'Mail'" in result.stderr
        async with cli_engine.connect() as connection:
            names = (
                await connection.execute(text("SELECT first_name FROM leads"))
            ).scalars()
            assert list(names) == ["Ada"]

    async def test_dry_run_writes_nothing(
        self, env: dict[str, str], cli_engine: AsyncEngine, tmp_path: Path
    ) -> None:
        await seed_workspace(cli_engine, "Only")
        path = tmp_path / "leads.csv"
        path.write_text("Email\nada@example.com\n")

        result = await run_cli("import", "leads", str(path), "--dry-run", env=env)

        assert result.returncode == 0, result.stderr
        assert "dry run, nothing written" in result.stdout
        assert "created 1" in result.stdout
        async with cli_engine.connect() as connection:
            count = await connection.scalar(text("SELECT count(*) FROM leads"))
        assert count == 0

    async def test_bad_file(
        self, env: dict[str, str], cli_engine: AsyncEngine, tmp_path: Path
    ) -> None:
        await seed_workspace(cli_engine, "Only")
        path = tmp_path / "leads.csv"
        path.write_bytes("Email,Name\na@x.com,Müller\n".encode("cp1252"))

        result = await run_cli("import", "leads", str(path), env=env)

        assert result.returncode == 1
        assert "CSV UTF-8" in result.stderr

    async def test_bad_dedupe(self, env: dict[str, str], tmp_path: Path) -> None:
        path = tmp_path / "leads.csv"
        path.write_text("Email\na@x.com\n")

        result = await run_cli(
            "import", "leads", str(path), "--dedupe", "merge", env=env
        )

        assert result.returncode == 1
        assert "--dedupe" in result.stderr


async def seed_provider_event(
    engine: AsyncEngine,
    event_id: str,
    status: str,
    *,
    age: timedelta = timedelta(0),
    workspace: Workspace | None = None,
    error: str | None = None,
) -> None:
    """Commit an inbox row as the worker leaves it, received ``age`` ago."""
    received_at = utcnow() - age
    async with async_sessionmaker(engine)() as session:
        session.add(
            ProviderEvent(
                id=ids.new_uuid(),
                provider="stripe",
                event_id=event_id,
                type="payment_intent.succeeded",
                payload={"id": event_id, "data": {"object": {}}},
                status=status,
                attempts=1,
                received_at=received_at,
                processed_at=received_at + timedelta(seconds=1),
                claimed_until=received_at + timedelta(minutes=2),
                workspace_id=workspace.id if workspace else None,
                error=error,
            )
        )
        await session.commit()


async def load_provider_event(engine: AsyncEngine, event_id: str) -> ProviderEvent:
    async with async_sessionmaker(engine)() as session:
        row = await session.scalar(
            select(ProviderEvent).where(ProviderEvent.event_id == event_id)
        )
    assert row is not None
    return row


class TestProviderEventsList:
    async def test_table_and_json(
        self, env: dict[str, str], cli_engine: AsyncEngine
    ) -> None:
        workspace = await seed_workspace(cli_engine, "Acme")
        long_error = "no invoice inv_0123 exists " * 10
        await seed_provider_event(
            cli_engine, "evt_old", "processed", age=timedelta(minutes=2)
        )
        await seed_provider_event(
            cli_engine,
            "evt_review",
            "needs_review",
            age=timedelta(minutes=1),
            workspace=workspace,
            error="amount 900 differs from the invoice's 1000",
        )
        await seed_provider_event(cli_engine, "evt_new", "failed", error=long_error)

        table = await run_cli("provider-events", "list", env=env)
        as_json = await run_cli("provider-events", "list", "--json", env=env)

        assert table.returncode == 0, table.stderr
        assert as_json.returncode == 0, as_json.stderr
        rows = json.loads(as_json.stdout)
        assert [row["event_id"] for row in rows] == ["evt_new", "evt_review", "evt_old"]
        assert rows[0]["error"] == long_error
        assert rows[0]["workspace_id"] is None
        assert rows[0]["status"] == "failed"
        assert rows[0]["provider"] == "stripe"
        assert rows[0]["type"] == "payment_intent.succeeded"
        assert rows[0]["attempts"] == 1
        assert rows[0]["received_at"].endswith("Z")
        assert rows[1]["workspace_id"] == ids.encode("workspace", workspace.id)
        assert "payload" not in rows[0]
        header, new, review, old = table.stdout.splitlines()
        assert header.split() == [
            "EVENT",
            "PROVIDER",
            "TYPE",
            "STATUS",
            "ATTEMPTS",
            "RECEIVED",
            "WORKSPACE",
            "ERROR",
        ]
        assert new.split()[:7] == [
            "evt_new",
            "stripe",
            "payment_intent.succeeded",
            "failed",
            "1",
            rows[0]["received_at"],
            "-",
        ]
        assert new.endswith("…")
        assert len(new) < len(header) + 80
        assert long_error.strip() not in table.stdout
        assert review.split()[6] == ids.encode("workspace", workspace.id)
        assert review.endswith("amount 900 differs from the invoice's 1000")
        assert old.split()[-1] == "-"

    async def test_filters(self, env: dict[str, str], cli_engine: AsyncEngine) -> None:
        workspace = await seed_workspace(cli_engine, "Acme")
        await seed_provider_event(
            cli_engine, "evt_failed", "failed", age=timedelta(minutes=3)
        )
        await seed_provider_event(
            cli_engine,
            "evt_review",
            "needs_review",
            age=timedelta(minutes=2),
            workspace=workspace,
        )
        await seed_provider_event(
            cli_engine, "evt_done", "processed", age=timedelta(minutes=1)
        )

        async def listed(*options: str) -> list[str]:
            result = await run_cli(
                "provider-events", "list", "--json", *options, env=env
            )
            assert result.returncode == 0, result.stderr
            return [row["event_id"] for row in json.loads(result.stdout)]

        workspace_id = ids.encode("workspace", workspace.id)
        statuses = ("--status", "failed", "--status", "needs_review")
        assert await listed(*statuses) == ["evt_review", "evt_failed"]
        assert await listed("--workspace", workspace_id) == ["evt_review"]
        assert await listed("--provider", "paypal") == []
        assert await listed("--provider", "stripe", "--limit", "1") == ["evt_done"]

    async def test_unknown_status(self, env: dict[str, str]) -> None:
        result = await run_cli("provider-events", "list", "--status", "lost", env=env)

        assert result.returncode == 2
        assert "'lost' is not a status" in result.stderr
        for status in STATUSES:
            assert status in result.stderr

    async def test_limit_out_of_range(self, env: dict[str, str]) -> None:
        result = await run_cli("provider-events", "list", "--limit", "1001", env=env)

        assert result.returncode == 2
        assert "--limit" in result.stderr


class TestProviderEventsRetry:
    async def test_failed_event_queued(
        self,
        env: dict[str, str],
        cli_engine: AsyncEngine,
        redis_client: aioredis.Redis,
    ) -> None:
        await seed_provider_event(
            cli_engine, "evt_failed", "failed", error="no invoice inv_0123 exists"
        )

        result = await run_cli("provider-events", "retry", "evt_failed", env=env)

        assert result.returncode == 0, result.stderr
        assert "back to received" in result.stderr
        row = await load_provider_event(cli_engine, "evt_failed")
        assert row.status == "received"
        assert row.attempts == 0
        assert row.error is None
        assert row.claimed_until is None
        assert row.processed_at is None
        assert len(await redis_client.keys(f"arq:job:{DRAIN_JOB}:*")) == 1

    async def test_other_statuses_rejected(
        self, env: dict[str, str], cli_engine: AsyncEngine
    ) -> None:
        cases = {
            "received": "already waiting for the worker",
            "processed": "already applied",
            "ignored": "needed no change",
            "needs_review": "correct the invoice or payment by hand",
            "held": "waits for the payment",
        }
        for status in cases:
            await seed_provider_event(cli_engine, f"evt_{status}", status, error="kept")

        for status, reason in cases.items():
            result = await run_cli("provider-events", "retry", f"evt_{status}", env=env)

            assert result.returncode == 1, status
            assert f"is {status}" in result.stderr
            assert reason in result.stderr
            row = await load_provider_event(cli_engine, f"evt_{status}")
            assert row.status == status
            assert row.attempts == 1
            assert row.error == "kept"

    async def test_unknown_event(self, env: dict[str, str]) -> None:
        result = await run_cli(
            "provider-events", "retry", "evt_unknown", "--provider", "stripe", env=env
        )

        assert result.returncode == 1
        assert "stripe event evt_unknown was not found" in result.stderr

    async def test_redis_unreachable(
        self, env: dict[str, str], cli_engine: AsyncEngine
    ) -> None:
        await seed_provider_event(cli_engine, "evt_failed", "failed", error="kept")
        # Nothing listens on a port that was free a moment ago.
        redis_url = f"redis://127.0.0.1:{free_port()}/12"

        result = await run_cli(
            "provider-events",
            "retry",
            "evt_failed",
            env={**env, "SALESCYCLE_REDIS_URL": redis_url},
        )

        assert result.returncode == 0, result.stderr
        assert f"Redis at {redis_url} failed" in result.stderr
        assert "sweep" in result.stderr
        row = await load_provider_event(cli_engine, "evt_failed")
        assert row.status == "received"
