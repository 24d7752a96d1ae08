"""Structure of the deployment files, checked without Docker.

No test here builds the image or starts the stack. These checks catch drift that is
easy to miss in review: a command the CLI no longer has, a setting that does not exist,
a service without a healthcheck, a root user, or an undocumented setting.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import typer.main
import yaml

from app.cli import cli
from app.core.ids import PREFIXES
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def cli_commands() -> set[str]:
    group = typer.main.get_group(cli)
    return set(group.commands)


def parse_command(arguments: list[str]) -> None:
    """Parse ``salescycle <arguments>`` as the CLI would, raising on unknown options."""
    group = typer.main.get_group(cli)
    name, *rest = arguments
    command = group.commands[name]
    command.make_context(name, list(rest))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """Split the Dockerfile into (instruction, arguments), joining continued lines."""
    text = (ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        instructions.append((instruction.upper(), arguments.strip()))
    return instructions


class TestCompose:
    def test_services(self) -> None:
        services = compose()["services"]

        assert set(services) == {"postgres", "redis", "migrate", "api", "worker"}
        assert services["postgres"]["image"].startswith("postgres:16")
        assert services["redis"]["image"].startswith("redis:7")

    def test_healthchecks(self) -> None:
        services = compose()["services"]

        for name in ("postgres", "redis", "api", "worker"):
            assert "test" in services[name]["healthcheck"], name
        assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])
        assert services["worker"]["healthcheck"]["test"][1:] == [
            "salescycle",
            "worker",
            "--check",
        ]

    def test_commands_exist(self) -> None:
        services = compose()["services"]
        commands = cli_commands()

        for name in ("migrate", "api", "worker"):
            assert services[name]["command"][0] in commands, name
            parse_command(services[name]["command"])
            assert services[name]["image"] == "salescycle:latest"
        assert services["migrate"]["restart"] == "no"

    def test_order(self) -> None:
        services = compose()["services"]

        assert services["migrate"]["depends_on"]["postgres"] == {
            "condition": "service_healthy"
        }
        for name in ("api", "worker"):
            depends_on = services[name]["depends_on"]
            assert depends_on["migrate"] == {
                "condition": "service_completed_successfully"
            }
            assert depends_on["redis"] == {"condition": "service_healthy"}

    def test_environment_names_settings(self) -> None:
        services = compose()["services"]
        fields = {f"SALESCYCLE_{name.upper()}" for name in Settings.model_fields}

        for name in ("migrate", "api", "worker"):
            environment = services[name]["environment"]
            assert set(environment) <= fields, name
            assert "SALESCYCLE_DATABASE_URL" in environment
            assert "SALESCYCLE_REDIS_URL" in environment
            assert (
                "${SALESCYCLE_SIGNING_SECRET:?"
                in (environment["SALESCYCLE_SIGNING_SECRET"])
            )

    def test_database_url_matches_postgres(self) -> None:
        services = compose()["services"]
        postgres = services["postgres"]["environment"]

        url = services["api"]["environment"]["SALESCYCLE_DATABASE_URL"]

        user = postgres["POSTGRES_USER"]
        assert url.startswith(f"postgresql+asyncpg://{user}:")
        assert url.endswith(f"@postgres:5432/{postgres['POSTGRES_DB']}")


class TestDockerfile:
    def test_multi_stage(self) -> None:
        stages = [args for name, args in dockerfile_instructions() if name == "FROM"]

        assert len(stages) >= 2
        assert stages[-1].endswith("AS runtime")

    def test_runs_unprivileged(self) -> None:
        instructions = dockerfile_instructions()
        last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")

        users = [args for name, args in instructions[last_from:] if name == "USER"]

        assert users, "the runtime stage must set USER"
        assert users[-1].split(":")[0] not in {"root", "0"}

    def test_entrypoint_is_cli(self) -> None:
        instructions = dict(dockerfile_instructions())

        assert instructions["ENTRYPOINT"] == '["salescycle"]'
        command = shlex.split(instructions["CMD"].strip("[]").replace(",", " "))
        assert command[0] == "api"
        parse_command(command)

    def test_copies_what_migrate_needs(self) -> None:
        copied = " ".join(
            args for name, args in dockerfile_instructions() if name == "COPY"
        )

        for path in (
            "alembic.ini",
            "migrations",
            "app",
            "workers",
            "requirements.lock",
        ):
            assert path in copied, path

    def test_dockerignore_excludes_local_state(self) -> None:
        ignored = (ROOT / ".dockerignore").read_text().split()

        for path in (".git", ".venv", ".salescycle", ".env"):
            assert path in ignored, path


class TestReadme:
    def test_documents_every_setting(self) -> None:
        readme = (ROOT / "README.md").read_text()

        # Each setting has a row of the settings table, not only a mention in prose.
        missing = [
            f"SALESCYCLE_{name.upper()}"
            for name in Settings.model_fields
            if f"\n| `SALESCYCLE_{name.upper()}` |" not in readme
        ]

        assert missing == [], f"README.md has no settings row for {missing}"

    def test_documents_every_id_prefix(self) -> None:
        readme = (ROOT / "README.md").read_text()

        missing = [
            prefix for prefix in PREFIXES.values() if f"`{prefix}_…`" not in readme
        ]

        assert missing == [], f"README.md does not list the id prefixes {missing}"

    def test_documents_every_command(self) -> None:
        readme = (ROOT / "README.md").read_text()

        for command in cli_commands():
            assert f"`salescycle {command}" in readme, command
