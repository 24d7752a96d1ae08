"""CSV imports of leads: the upload, the chunked run, its lease and its resumption.

An upload stores the file and a ``queued`` import in PostgreSQL and defers a
``run_lead_import`` job. The run parses the whole file, then writes it in chunks of
``settings.import_chunk_rows`` records. Each chunk commits its leads, their events, its
row errors, the counts and the next row offset in one transaction. That transaction
locks the import row and checks the offset first, so no row is imported twice, even
when two runs race or a run dies mid-chunk. A run stops after
``settings.import_run_seconds`` and defers its continuation, so no job outlives the
worker's job timeout. The sweep restarts an import whose lease has lapsed, so a
flushed Redis or a killed worker loses nothing.

Dedupe policies, for a row whose email matches an open lead (or an earlier row of the
same file):

- ``skip``: the row is counted as skipped.
- ``update``: the lead gets every non-empty value of the row; its attributes are merged,
  the row's keys winning. The email and source stay as they are.
- ``create``: like ``skip`` for an open lead, because one open lead per email is a
  unique rule of the database. A row whose email only matches closed leads (converted,
  disqualified, junk, merged) creates a new lead under every policy.

A dry run validates, looks up duplicates and counts exactly as a real run does, and
records the row errors, but writes no lead and no event.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import phonenumbers
import structlog
from pydantic import Field, TypeAdapter, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.db import defer_job
from app.core.errors import DomainError, FieldError, InvalidInput, NotFound
from app.core.schemas import InputModel
from app.leads import assignment
from app.leads.assignment import Decision
from app.leads.attribution import record_touch
from app.leads.import_checks import check_new_rows, choose_owners
from app.leads.importer import (
    DATE_FORMATS,
    ImportFileError,
    ParsedFile,
    Record,
    RowError,
    RowValidator,
    ValidRow,
    read_file,
    read_header,
)
from app.leads.imports_repository import LeadImportRepository
from app.leads.schemas import Lead as LeadSchema
from app.leads.schemas import LeadUpdate
from app.leads.service import lead_service
from app.models import Lead, LeadImport, LeadImportFile
from app.settings import Settings

log = structlog.get_logger(__name__)

RUN_JOB = "run_lead_import"
# A run that keeps failing (a bug, or a file that crashes the parser) stops here, with
# the import failed, instead of being retried forever by the sweep.
MAX_ATTEMPTS = 5
SWEEP_LIMIT = 100

Dedupe = Literal["skip", "update", "create"]
DateFormat = Literal["YYYY-MM-DD", "DD/MM/YYYY", "MM/DD/YYYY", "DD.MM.YYYY"]
Unit = Callable[[], AbstractAsyncContextManager[AsyncSession]]
Progress = Callable[[int, int], None]


class ImportOptions(InputModel):
    """How to read and apply a file."""

    mapping: dict[str, str] = Field(
        default_factory=dict,
        description="CSV column → lead field, `attributes`, `attributes.<key>`, "
        "`attributes.<key>:date` or `ignore`. Columns it omits are recognised by "
        "their header, or go into attributes under a key made from the header.",
    )
    dedupe: Dedupe = Field(
        default="skip",
        description="What a row does when an open lead has its email: skip it, "
        "update the lead with the row's non-empty values, or create (the same as "
        "skip for an open lead; a lead is created when only closed ones match).",
    )
    dry_run: bool = Field(
        default=False, description="Validate and count every row, but write no lead."
    )
    default_phone_region: str | None = Field(
        default=None,
        description="ISO 3166 region (`DE`) to read phone numbers without a "
        "country code in. Defaults to the default_phone_region setting; without "
        "either, such a number is a row error.",
    )
    date_format: DateFormat | None = Field(
        default=None,
        description="The day and month order of date columns, when their values do "
        "not show it.",
    )

    @field_validator("default_phone_region")
    @classmethod
    def _known_region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(
                f"{value!r} is not a region phonenumbers knows; use an ISO 3166 "
                "alpha-2 code such as DE or US"
            )
        return region


assert set(DATE_FORMATS) == set(DateFormat.__args__)  # type: ignore[attr-defined]


class LeadImportNotFound(NotFound):
    """No import with that id in the caller's workspace."""

    code = "lead_import_not_found"


@dataclass
class ChunkCounts:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: list[RowError] = field(default_factory=list)
    failed_rows: set[int] = field(default_factory=set)

    def fail(self, errors: Sequence[RowError]) -> None:
        self.errors.extend(errors)
        self.failed_rows.update(error.row for error in errors)


def file_error(error: ImportFileError) -> InvalidInput:
    return InvalidInput(
        error.message, errors=[FieldError(error.field, error.message, error.code)]
    )


def run_job_id(lead_import: LeadImport) -> str:
    # arq skips a job id whose result it still keeps, so each resumption (another
    # start row or another attempt) gets an id of its own.
    return f"lead_import:{lead_import.id}:{lead_import.next_row}:{lead_import.attempts}"


class LeadImportService:
    async def create(
        self,
        session: AsyncSession,
        *,
        workspace_id: uuid.UUID,
        actor: str | None,
        content: bytes,
        filename: str | None,
        options: ImportOptions,
    ) -> LeadImport:
        """Check the file's encoding, header and mapping, store it and queue the run."""
        try:
            parsed = await asyncio.to_thread(read_header, content, options.mapping)
        except ImportFileError as error:
            raise file_error(error) from error

        lead_import = LeadImport(
            id=ids.new_uuid(),
            workspace_id=workspace_id,
            status="queued",
            filename=filename[:255] if filename else None,
            size_bytes=len(content),
            options=options.model_dump(mode="json"),
            columns=[column.describe() for column in parsed.columns],
            actor=actor,
        )
        session.add(lead_import)
        await session.flush()
        session.add(LeadImportFile(import_id=lead_import.id, content=content))
        await session.flush()

        defer_job(session, RUN_JOB, str(lead_import.id), job_id=run_job_id(lead_import))
        log.info(
            "lead_import.queued",
            lead_import_id=str(lead_import.id),
            size_bytes=len(content),
            delimiter=parsed.delimiter,
            encoding=parsed.encoding,
        )
        return lead_import

    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, import_id: uuid.UUID
    ) -> LeadImport:
        lead_import = await LeadImportRepository.from_session(session).get(
            workspace_id, import_id
        )
        if lead_import is None:
            raise LeadImportNotFound(
                f"No lead import with id {ids.encode('lead_import', import_id)} "
                "exists in this workspace."
            )
        return lead_import

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[LeadImport], str | None, bool]:
        return await LeadImportRepository.from_session(session).list(
            workspace_id, limit=limit, cursor=cursor
        )

    async def errors(
        self, session: AsyncSession, workspace_id: uuid.UUID, import_id: uuid.UUID
    ) -> Sequence[tuple[int, str | None, str | None, str]]:
        await self.get(session, workspace_id, import_id)
        rows = await LeadImportRepository.from_session(session).errors(import_id)
        return [
            (row.row_number, row.column_name, row.value, row.message) for row in rows
        ]

    async def claim(
        self, session: AsyncSession, import_id: uuid.UUID, lease: timedelta
    ) -> LeadImport | None:
        """Lease the import for one run; fail it once it has used up its attempts."""
        repository = LeadImportRepository.from_session(session)
        claimed = await repository.claim(import_id, utcnow(), lease)
        if claimed is None:
            return None
        if claimed.attempts > MAX_ATTEMPTS:
            self._finish(
                claimed,
                "failed",
                code="too_many_attempts",
                message=f"The import stopped after {MAX_ATTEMPTS} failed runs. "
                "Upload the file again; if it fails again, report it.",
            )
            await session.flush()
            log.error("lead_import.gave_up", lead_import_id=str(import_id))
            return None
        return claimed

    async def sweep(self, session: AsyncSession) -> int:
        """Defer a run for every unfinished import whose lease is free."""
        due = await LeadImportRepository.from_session(session).due(
            utcnow(), SWEEP_LIMIT
        )
        for lead_import in due:
            defer_job(
                session, RUN_JOB, str(lead_import.id), job_id=run_job_id(lead_import)
            )
        if due:
            log.info("lead_import.swept", count=len(due))
        return len(due)

    @staticmethod
    def _finish(
        lead_import: LeadImport,
        status: str,
        *,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        lead_import.status = status
        lead_import.claimed_until = None
        lead_import.completed_at = utcnow()
        lead_import.error_code = code
        lead_import.error_message = message


lead_import_service = LeadImportService()


@dataclass
class _Run:
    """The state of one run: the parsed file and the emails a dry run has seen."""

    lead_import: LeadImport
    parsed: ParsedFile
    validator: RowValidator
    principal: Principal
    seen: set[str] = field(default_factory=set)


async def run_import(
    unit: Unit,
    import_id: uuid.UUID,
    settings: Settings,
    *,
    progress: Progress | None = None,
    budget_seconds: float | None = None,
) -> str:
    """Run a claimed import from its next row; return ``completed``, ``failed``,
    ``continued`` (the budget ran out and a continuation job is deferred) or
    ``superseded`` (another run owns the import).

    ``unit`` opens a session that commits when its block ends.
    """
    started = time.monotonic()
    async with unit() as session:
        repository = LeadImportRepository.from_session(session)
        lead_import = await repository.get(None, import_id)
        if lead_import is None or lead_import.status != "running":
            return "superseded"
        content = await repository.content(import_id)
    options = ImportOptions.model_validate(lead_import.options)
    try:
        parsed = await asyncio.to_thread(
            read_file, content, options.mapping, max_rows=settings.import_max_rows
        )
    except ImportFileError as error:
        async with unit() as session:
            locked = await _lock(session, import_id, lead_import.next_row)
            if locked is None:
                return "superseded"
            LeadImportService._finish(
                locked, "failed", code=error.code, message=error.message
            )
        log.warning(
            "lead_import.failed", lead_import_id=str(import_id), code=error.code
        )
        return "failed"
    validator = RowValidator.for_file(
        parsed,
        date_format=options.date_format,
        phone_region=options.default_phone_region or settings.default_phone_region,
    )
    actor = lead_import.actor or f"lead_import:{ids.encode('lead_import', import_id)}"
    run = _Run(
        lead_import,
        parsed,
        validator,
        Principal(
            api_key_id=uuid.UUID(int=0),
            workspace_id=lead_import.workspace_id,
            scopes=frozenset(),
            kind="secret",
            on_behalf_of=actor,
        ),
    )
    total = len(parsed.records)
    start = lead_import.next_row
    if options.dry_run:
        run.seen = _emails(validator, parsed, end=start)
    log.info(
        "lead_import.started",
        lead_import_id=str(import_id),
        next_row=start,
        total=total,
    )

    chunk_rows = settings.import_chunk_rows
    # The next chunk is validated in a thread while the current one is written, so
    # Python's CPU time and PostgreSQL's overlap.
    pending = _validate_later(validator, parsed.records[start : start + chunk_rows])
    while True:
        # Each run writes at least one chunk, so even a tiny budget makes progress.
        if (
            budget_seconds is not None
            and start > lead_import.next_row
            and start < total
            and time.monotonic() - started > budget_seconds
        ):
            async with unit() as session:
                locked = await _lock(session, import_id, start)
                if locked is None:
                    return "superseded"
                # The continuation claims the import as soon as it starts, and its
                # progress so far does not count as a failed attempt.
                locked.claimed_until = None
                locked.attempts = 0
                defer_job(session, RUN_JOB, str(import_id), job_id=run_job_id(locked))
            log.info("lead_import.continued", lead_import_id=str(import_id), row=start)
            return "continued"
        end = min(start + chunk_rows, total)
        valid, errors = await pending
        pending = _validate_later(validator, parsed.records[end : end + chunk_rows])
        async with unit() as session:
            locked = await _lock(session, import_id, start)
            if locked is None:
                return "superseded"
            locked.total = total
            counts = await _process_chunk(session, run, options, valid, errors)
            await LeadImportRepository.from_session(session).insert_errors(
                import_id,
                [(e.row, e.column, e.value, e.message) for e in counts.errors],
            )
            locked.created_count += counts.created
            locked.updated_count += counts.updated
            locked.skipped_count += counts.skipped
            locked.failed_count += len(counts.failed_rows)
            locked.next_row = end
            # A run that commits a chunk is not failing, whatever happened before.
            locked.attempts = 1
            locked.claimed_until = utcnow() + timedelta(
                seconds=settings.claim_lease_seconds
            )
            if end >= total:
                LeadImportService._finish(locked, "completed")
        if progress is not None:
            progress(end, total)
        start = end
        if end >= total:
            log.info(
                "lead_import.completed",
                lead_import_id=str(import_id),
                created=locked.created_count,
                updated=locked.updated_count,
                skipped=locked.skipped_count,
                failed=locked.failed_count,
            )
            return "completed"


Validated = tuple[list[ValidRow], list[RowError]]


def _validate(validator: RowValidator, records: Sequence[Record]) -> Validated:
    valid: list[ValidRow] = []
    errors: list[RowError] = []
    for record in records:
        result = validator.validate(record)
        if isinstance(result, ValidRow):
            valid.append(result)
        else:
            errors.extend(result)
    return valid, errors


def _validate_later(
    validator: RowValidator, records: Sequence[Record]
) -> asyncio.Future[Validated]:
    return asyncio.ensure_future(asyncio.to_thread(_validate, validator, records))


async def _lock(
    session: AsyncSession, import_id: uuid.UUID, next_row: int
) -> LeadImport | None:
    """Lock the import; return None unless it is running and at ``next_row``."""
    locked = await LeadImportRepository.from_session(session).get(
        None, import_id, for_update=True
    )
    if locked is None or locked.status != "running" or locked.next_row != next_row:
        return None
    return locked


def _emails(validator: RowValidator, parsed: ParsedFile, *, end: int) -> set[str]:
    seen: set[str] = set()
    for record in parsed.records[:end]:
        result = validator.validate(record)
        if isinstance(result, ValidRow):
            seen.add(result.email_normalized)
    return seen


async def _process_chunk(
    session: AsyncSession,
    run: _Run,
    options: ImportOptions,
    valid: Sequence[ValidRow],
    errors: Sequence[RowError],
) -> ChunkCounts:
    counts = ChunkCounts()
    counts.fail(errors)

    workspace_id = run.lead_import.workspace_id
    repository = LeadImportRepository.from_session(session)
    existing = await repository.open_leads_by_email(
        workspace_id, sorted({row.email_normalized for row in valid})
    )
    creates: dict[str, ValidRow] = {}
    updates: list[tuple[uuid.UUID, ValidRow]] = []
    for row in valid:
        email = row.email_normalized
        if email in creates or (options.dry_run and email in run.seen):
            # An earlier row of the file has this email.
            if options.dedupe == "update":
                if email in creates:
                    _merge(creates[email].values, row.values)
                counts.updated += 1
            else:
                counts.skipped += 1
        elif email in existing:
            if options.dedupe == "update":
                updates.append((existing[email], row))
            else:
                counts.skipped += 1
        else:
            creates[email] = row

    # NOTE: a later row merged into a new lead above stays counted as updated when
    # that lead then fails these checks.
    failed = await check_new_rows(session, run.lead_import.workspace_id, creates)
    counts.fail(failed)
    if options.dry_run:
        counts.created += len(creates)
        counts.updated += len(updates)
        run.seen.update(creates)
        return counts

    decisions, failed = await choose_owners(session, run.principal, creates)
    counts.fail(failed)
    counts.created, skipped = await _insert(
        session, run, list(creates.values()), decisions
    )
    counts.skipped += skipped
    for lead_id, row in updates:
        error = await _update(
            session, run.principal, lead_id, row, run.validator.phone_region
        )
        if error is None:
            counts.updated += 1
        else:
            counts.fail([error])
    return counts


def _merge(target: dict[str, Any], values: dict[str, Any]) -> None:
    for name, value in values.items():
        if name == "attributes":
            target["attributes"] = {**target.get("attributes", {}), **value}
        elif value not in (None, "", []) and name not in _KEPT_ON_MERGE:
            target[name] = value


# A later row of the same email keeps the first row's email and source.
_KEPT_ON_MERGE = {"email", "email_normalized", "source"}


async def _insert(
    session: AsyncSession,
    run: _Run,
    rows: list[ValidRow],
    decisions: dict[str, Decision],
) -> tuple[int, int]:
    """Insert the new leads, their touches and ``lead.created`` events in bulk.

    Each event's data is the stored row as the ``Lead`` schema shows it, which is
    what GET /v1/leads/{id} returns. The events have no ``dispatch_event`` job each:
    the webhook sweep dispatches them within seconds, which spares one Redis round
    trip per lead. Imported leads keep ``scored_version`` 0, so the scoring sweep
    scores them when the workspace has scoring rules.
    """
    if not rows:
        return 0, 0
    workspace_id = run.lead_import.workspace_id
    repository = LeadImportRepository.from_session(session)
    lead_ids = [ids.new_uuid() for _ in rows]
    touch_ids = [ids.new_uuid() for _ in rows]
    values = [row.values for row in rows]
    stored = await repository.insert_leads(workspace_id, lead_ids, touch_ids, values)

    event_lead_ids: list[uuid.UUID] = []
    data: list[str] = []
    assigned: list[tuple[dict[str, Any], Decision]] = []
    for lead_id, row in zip(lead_ids, rows, strict=True):
        columns = stored.get(lead_id)
        if columns is None:
            continue
        event_lead_ids.append(lead_id)
        data.append(_event_data(columns))
        if columns["owner_id"] is not None:
            assigned.append((columns, decisions[row.email_normalized]))
    context = structlog.contextvars.get_contextvars()
    await repository.insert_events(
        workspace_id,
        event_lead_ids,
        data,
        event_ids=[ids.new_uuid() for _ in event_lead_ids],
        request_id=context.get("request_id"),
        actor=run.principal.actor,
    )
    # The audit row and lead.assigned event of each owner, as a create through the
    # API records them; one round trip each, so only owned leads pay for it.
    for columns, decision in assigned:
        await assignment.record_initial(
            session, run.principal, Lead(**columns), decision
        )
    return len(stored), len(rows) - len(stored)


_LEAD: TypeAdapter[LeadSchema] = TypeAdapter(LeadSchema)


def _event_data(stored: dict[str, Any]) -> str:
    """Serialize a stored lead row as the API shows it (the ``Lead`` schema), as JSON."""
    lead = _LEAD.validate_python(stored)
    return _LEAD.dump_json(lead).decode()


async def _update(
    session: AsyncSession,
    principal: Principal,
    lead_id: uuid.UUID,
    row: ValidRow,
    phone_region: str | None,
) -> RowError | None:
    """Fill an existing lead with the row's non-empty values through the service.

    The lead also gets a touch with channel ``import``, as a capture of a known
    person does.
    """
    lead = await lead_service.get(
        session, principal.workspace_id, lead_id, for_update=True
    )
    changes: dict[str, Any] = dict(row.changes)
    if row.values["attributes"]:
        changes["attributes"] = {**lead.attributes, **row.values["attributes"]}
    try:
        async with session.begin_nested():
            await record_touch(session, lead, channel="import", attribution=None)
            await lead_service.update(
                session,
                principal,
                lead_id,
                LeadUpdate.model_validate(changes),
                if_match=None,
                default_phone_region=phone_region,
            )
    except DomainError as error:
        return RowError(row.row, None, None, error.detail)
    return None
