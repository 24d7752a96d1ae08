"""Creating up to 1,000 leads in one request, with a result per item.

Validation and duplicate detection run for the whole batch before anything is
written: one query finds the open leads that have any of the batch's emails, and an
email repeated within the batch is a duplicate of its first item.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.errors import (
    Conflict,
    DomainError,
    FieldError,
    InvalidInput,
    problem_body,
    validation_field_errors,
)
from app.leads.attribution_schemas import LeadAttribution
from app.leads.dedupe import DuplicateRepository
from app.leads.errors import DuplicateLead
from app.leads.identity import create_values
from app.leads.identity_schemas import LeadBatchCreate
from app.leads.schemas import LeadCreate
from app.leads.service import lead_service
from app.models import Lead

log = structlog.get_logger(__name__)


class LeadBatchInvalid(InvalidInput):
    """At least one item of an all-or-none batch is invalid; nothing was created."""

    code = "lead_batch_invalid"
    title = "Invalid batch item"


class LeadBatchDuplicate(Conflict):
    """At least one item of an all-or-none batch is a duplicate; nothing was created."""

    code = "lead_batch_duplicate"
    title = "Duplicate batch item"


@dataclass
class ItemResult:
    index: int
    status: str = "created"
    lead: Lead | None = None
    error: dict[str, Any] | None = None
    values: dict[str, Any] = field(default_factory=dict)
    attribution: LeadAttribution | None = None

    def fail(self, status: str, error: DomainError) -> None:
        self.status = status
        self.error = problem_body(
            status=error.status,
            code=error.code,
            title=error.title,
            detail=error.detail,
            instance=None,
            errors=error.errors,
            extra=error.extra,
        )


async def create_batch(
    session: AsyncSession,
    principal: Principal,
    payload: LeadBatchCreate,
    *,
    default_phone_region: str | None,
) -> list[ItemResult]:
    """Create the valid, new items of a batch and return one result per item."""
    results = [
        _prepare(index, item, default_phone_region)
        for index, item in enumerate(payload.items)
    ]
    pending = [result for result in results if result.status == "created"]
    await _mark_duplicates(session, principal.workspace_id, pending)
    failed = [result for result in results if result.status != "created"]
    if payload.all_or_none and failed:
        raise _batch_rejected(results, failed)

    for result in results:
        if result.status != "created":
            continue
        if payload.all_or_none:
            try:
                result.lead = await lead_service.insert_new(
                    session, principal, result.values, attribution=result.attribution
                )
            except DomainError as error:
                # Checks against stored rows (custom fields, campaigns) run here.
                result.fail("invalid", error)
                raise _batch_rejected(results, [result]) from None
        else:
            await _insert_alone(session, principal, result)
        if result.status == "created" and result.lead is None:
            # A concurrent request created an open lead with this email meanwhile.
            if payload.all_or_none:
                raise _batch_rejected(results, [result], concurrent=True)
            result.fail("duplicate", _concurrent_duplicate(result.index))

    log.info(
        "lead.batch_created",
        items=len(results),
        created=sum(result.status == "created" for result in results),
    )
    return results


def _prepare(
    index: int, item: dict[str, Any], default_phone_region: str | None
) -> ItemResult:
    result = ItemResult(index)
    try:
        payload = LeadCreate.model_validate(item)
    except ValidationError as error:
        result.fail(
            "invalid",
            InvalidInput(
                f"Item {index} is invalid. See errors for each field and fix them.",
                errors=validation_field_errors(error.errors()),
            ),
        )
        return result
    if payload.on_duplicate != "reject":
        result.fail(
            "invalid",
            InvalidInput(
                f"Item {index} sets on_duplicate to {payload.on_duplicate!r}, which a "
                "batch does not support. Omit on_duplicate, or create the lead alone.",
                errors=[
                    FieldError(
                        "on_duplicate", "not supported in a batch", "unsupported"
                    )
                ],
            ),
        )
        return result
    result.attribution = payload.attribution
    try:
        result.values = create_values(payload, default_phone_region)
    except InvalidInput as error:
        result.fail("invalid", error)
    return result


async def _mark_duplicates(
    session: AsyncSession, workspace_id: uuid.UUID, pending: list[ItemResult]
) -> None:
    emails = {result.values["email_normalized"] for result in pending}
    existing = await DuplicateRepository(session).open_by_email(workspace_id, emails)
    first_index: dict[str, int] = {}
    for result in pending:
        email = result.values["email_normalized"]
        if email in existing:
            lead_id, status = existing[email]
            encoded = ids.encode("lead", lead_id)
            result.fail(
                "duplicate",
                DuplicateLead(
                    f"Item {result.index}: an open lead with this email already "
                    f"exists: {encoded}.",
                    existing_id=encoded,
                    matched_key="email",
                    candidates=[
                        {
                            "lead_id": encoded,
                            "status": status,
                            "matched_keys": ["email"],
                        }
                    ],
                ),
            )
        elif email in first_index:
            result.fail(
                "duplicate",
                DuplicateLead(
                    f"Item {result.index} has the email of item "
                    f"{first_index[email]} of the same batch.",
                    duplicate_of_index=first_index[email],
                    matched_key="email",
                    candidates=[],
                ),
            )
        else:
            first_index[email] = result.index


async def _insert_alone(
    session: AsyncSession, principal: Principal, result: ItemResult
) -> None:
    # A savepoint per item: a failing item undoes its own writes only.
    try:
        async with session.begin_nested():
            result.lead = await lead_service.insert_new(
                session, principal, result.values, attribution=result.attribution
            )
    except DomainError as error:
        # Checks against stored rows (custom fields, campaigns) run at the insert.
        log.info("lead.batch_item_invalid", index=result.index, code=error.code)
        result.fail("invalid", error)
        return
    except IntegrityError as error:
        log.warning(
            "lead.batch_item_conflict", index=result.index, error=str(error.orig)
        )
        result.fail(
            "invalid",
            Conflict(
                f"Item {result.index} conflicts with data written meanwhile. Retry it."
            ),
        )


def _concurrent_duplicate(index: int) -> DuplicateLead:
    return DuplicateLead(
        f"Item {index}: a concurrent request created an open lead with this email. "
        "List leads by email to find it.",
        matched_key="email",
        candidates=[],
    )


def _batch_rejected(
    results: list[ItemResult], failed: list[ItemResult], *, concurrent: bool = False
) -> DomainError:
    if concurrent:
        failed[0].fail("duplicate", _concurrent_duplicate(failed[0].index))
    for result in results:
        result.lead = None
    items = [
        {
            "index": result.index,
            # Nothing was written, so a valid item was not created either.
            "status": "not_created" if result.status == "created" else result.status,
            "lead": None,
            "error": result.error,
        }
        for result in results
    ]
    invalid = [result.index for result in failed if result.status == "invalid"]
    if invalid:
        return LeadBatchInvalid(
            f"{len(invalid)} item(s) are invalid, the first at index {invalid[0]}, so "
            "no lead was created. Fix them, or send all_or_none false.",
            items=items,
        )
    return LeadBatchDuplicate(
        f"{len(failed)} item(s) are duplicates, the first at index {failed[0].index}, "
        "so no lead was created. Remove them, or send all_or_none false.",
        items=items,
    )
