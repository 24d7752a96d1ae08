"""Enrolling up to 1,000 leads in one sequence in one request, with a result per item.

Each lead is enrolled under the rules of a single enrollment, in a savepoint of its
own, so a lead that cannot be enrolled undoes only its own writes and the others still
commit with the request. A lead id repeated in the list is enrolled once; its later
items are reported as duplicates of the first.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.errors import (
    DomainError,
    FieldError,
    InvalidInput,
    NotFound,
    problem_body,
)
from app.leads.service import lead_service
from app.models import Sequence as SequenceRow
from app.nurture.enrolment_schemas import BatchItemStatus, EnrollmentBatchCreate
from app.nurture.errors import EnrollmentExists
from app.nurture.schemas import Enrollment
from app.nurture.service import (
    check_not_archived,
    enrollment_service,
    sequence_service,
)

log = structlog.get_logger(__name__)


@dataclass
class BatchItem:
    index: int
    lead_id: str
    status: BatchItemStatus = "created"
    enrollment: Enrollment | None = None
    duplicate_of_index: int | None = None
    error: dict[str, Any] | None = None

    def fail(self, status: BatchItemStatus, error: DomainError) -> None:
        self.status = status
        self.error = problem_body(
            status=error.status,
            code=error.code,
            title=error.title,
            detail=f"Item {self.index}: {error.detail}",
            instance=None,
            errors=error.errors,
            extra=error.extra,
        )


async def enroll_batch(
    session: AsyncSession,
    principal: Principal,
    sequence_id: uuid.UUID,
    payload: EnrollmentBatchCreate,
) -> list[BatchItem]:
    """Enroll each lead of the batch that can be, and return one result per item."""
    sequence = await sequence_service.get_row(
        session, principal.workspace_id, sequence_id
    )
    # No lead of the batch could be enrolled, so the whole request conflicts.
    check_not_archived(sequence)

    items: list[BatchItem] = []
    first_index: dict[uuid.UUID, int] = {}
    for index, text in enumerate(payload.lead_ids):
        item = BatchItem(index, text)
        items.append(item)
        try:
            lead_id = ids.decode("lead", text)
        except ids.InvalidId:
            item.fail("invalid", _malformed(index, text))
            continue
        if lead_id in first_index:
            item.status = "duplicate"
            item.duplicate_of_index = first_index[lead_id]
            continue
        first_index[lead_id] = index
        await enroll_one(session, principal, sequence, lead_id, item)

    log.info(
        "enrollment.batch_created",
        sequence_id=str(sequence.id),
        items=len(items),
        created=sum(item.status == "created" for item in items),
    )
    return items


async def enroll_one(
    session: AsyncSession,
    principal: Principal,
    sequence: SequenceRow,
    lead_id: uuid.UUID,
    item: BatchItem,
) -> None:
    """Enroll one lead in a savepoint; on failure record why on ``item``."""
    try:
        async with session.begin_nested():
            lead = await lead_service.get(session, principal.workspace_id, lead_id)
            item.enrollment = await enrollment_service.enroll_lead(
                session, principal, sequence, lead
            )
    except NotFound as error:
        log.info(
            "enrollment.batch_item_invalid",
            index=item.index,
            lead_id=str(lead_id),
            code=error.code,
        )
        item.fail("invalid", error)
    except DomainError as error:
        log.info(
            "enrollment.batch_item_skipped",
            index=item.index,
            lead_id=str(lead_id),
            code=error.code,
        )
        item.fail("skipped", error)
    except IntegrityError as error:
        # Only a concurrent enrollment of the same lead breaks a constraint here.
        log.warning(
            "enrollment.batch_item_conflict",
            index=item.index,
            lead_id=str(lead_id),
            error=str(error.orig),
        )
        item.fail(
            "skipped",
            EnrollmentExists(
                "a concurrent request enrolled the lead meanwhile. List its "
                "enrollments to find it."
            ),
        )


def _malformed(index: int, text: str) -> InvalidInput:
    return InvalidInput(
        f"{text!r} is not a lead id. Send ids as GET /v1/leads returns them, such "
        "as lead_01jf….",
        errors=[FieldError(f"lead_ids.{index}", "not a lead id", "invalid_id")],
    )
