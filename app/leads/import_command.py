"""``salescycle import leads``: the importer run in the command's own process.

The command stores the file and its import row like an upload does, claims the import
and runs every chunk itself, without the worker or Redis. The import stays listed in
GET /v1/lead-imports. If the command is killed, the import keeps its lease until it
lapses, and a running worker's sweep then finishes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from sqlalchemy.ext.asyncio import AsyncSession

from app import admin
from app.core import ids
from app.core.db import Database, drop_pending_jobs
from app.core.errors import Conflict
from app.leads.imports import ImportOptions, lead_import_service, run_import
from app.models import LeadImport
from app.settings import Settings

# How many row errors the command prints; the rest are in the errors report.
SHOWN_ERRORS = 20


@dataclass(frozen=True)
class CommandResult:
    lead_import: LeadImport
    errors: list[tuple[int, str | None, str | None, str]]


async def import_leads(
    settings: Settings,
    path: Path,
    options: ImportOptions,
    *,
    workspace_id: str | None,
    show_progress: bool,
) -> CommandResult:
    content = await asyncio.to_thread(path.read_bytes)
    database = Database(settings)

    @asynccontextmanager
    async def unit() -> AsyncIterator[AsyncSession]:
        async with database.session() as session:
            yield session
            await session.commit()
            # The command runs the import itself, so the upload's job is not sent.
            drop_pending_jobs(session)

    try:
        async with unit() as session:
            workspace, _ = await admin.resolve_workspace(session, workspace_id)
            lead_import = await lead_import_service.create(
                session,
                workspace_id=workspace.id,
                actor="cli",
                content=content,
                filename=path.name,
                options=options,
            )
        async with unit() as session:
            claimed = await lead_import_service.claim(
                session,
                lead_import.id,
                timedelta(seconds=settings.claim_lease_seconds),
            )
        if claimed is None:
            raise Conflict("A worker claimed the import first; follow it with the API.")

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            disable=not show_progress,
            transient=True,
        ) as bar:
            task = bar.add_task("importing rows", total=None)
            await run_import(
                unit,
                lead_import.id,
                settings,
                progress=lambda done, total: bar.update(
                    task, completed=done, total=total
                ),
            )

        async with unit() as session:
            final = await lead_import_service.get(session, workspace.id, lead_import.id)
            errors = list(
                await lead_import_service.errors(session, workspace.id, lead_import.id)
            )
        return CommandResult(final, errors)
    finally:
        await database.dispose()


def summary(result: CommandResult) -> list[str]:
    lead_import = result.lead_import
    import_id = ids.encode("lead_import", lead_import.id)
    prefix = "dry run, nothing written: " if lead_import.options.get("dry_run") else ""
    lines = [
        f"{import_id} {lead_import.status}: {prefix}{lead_import.next_row} of "
        f"{lead_import.total if lead_import.total is not None else '?'} rows, "
        f"created {lead_import.created_count}, updated {lead_import.updated_count}, "
        f"skipped {lead_import.skipped_count}, failed {lead_import.failed_count}"
    ]
    return lines


def error_lines(result: CommandResult) -> list[str]:
    lines = [
        f"row {row}"
        + (f", column {column!r}" if column else "")
        + f": {message}"
        + (f" (value {value!r})" if value else "")
        for row, column, value, message in result.errors[:SHOWN_ERRORS]
    ]
    hidden = len(result.errors) - SHOWN_ERRORS
    if hidden > 0:
        import_id = ids.encode("lead_import", result.lead_import.id)
        lines.append(
            f"… and {hidden} more; GET /v1/lead-imports/{import_id}/errors lists all."
        )
    return lines
