"""Offer codes issued by special-offer steps, and the offer checks of step input."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.clock import isoformat
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.models import (
    Enrollment,
    Offer,
    OfferCode,
    SequenceStep,
)
from app.nurture import merge, templates
from app.nurture.offer_repository import OfferRepository
from app.nurture.offer_views import (
    code_data,
    format_discount,
)
from app.nurture.schemas import EmailStepCreate, StepCreate

log = structlog.get_logger(__name__)

# Letters and digits without 0, O, 1 and I, which readers confuse when typing a code.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
# 10 characters of 32 symbols: 50 random bits, so a guess hits one of a million codes
# with a chance of about 1 in 10^9.
CODE_RANDOM_LENGTH = 10
# A new random code almost never collides with a stored one, so a failure after a
# few retries points to a bug rather than to bad luck.
MAX_CODE_ATTEMPTS = 5

OFFER_FIELDS = tuple(merge.OFFER_FIELDS)
# The values of the offer.* merge fields, keyed without the prefix as compose takes them.
NO_OFFER: dict[str, str | None] = dict.fromkeys(("code", "discount", "expires_at"))


def new_code(prefix: str) -> str:
    """Generate a code: the offer's prefix, a dash, and random unambiguous characters."""
    random_part = "".join(
        secrets.choice(CODE_ALPHABET) for _ in range(CODE_RANDOM_LENGTH)
    )
    return f"{prefix}-{random_part}" if prefix else random_part


def code_expiry(offer: Offer, issued_at: datetime) -> datetime | None:
    """Return when a code issued at ``issued_at`` expires: the sooner of both limits."""
    limits = []
    if offer.expires_at is not None:
        limits.append(offer.expires_at)
    if offer.valid_for_days is not None:
        limits.append(issued_at + timedelta(days=offer.valid_for_days))
    return min(limits) if limits else None


def merge_values(offer: Offer, code: OfferCode) -> dict[str, str | None]:
    return {
        "code": code.code,
        "discount": format_discount(offer),
        "expires_at": isoformat(code.expires_at) if code.expires_at else None,
    }


async def check_step_offers(
    session: AsyncSession, workspace_id: uuid.UUID, steps: Sequence[StepCreate]
) -> None:
    """Raise unless every step's ``offer_id`` is allowed and names an active offer.

    Only ``special_offer`` steps take an offer, and a body may use the offer merge
    fields only in a step that has one.
    """
    repository = OfferRepository.from_session(session)
    errors: list[FieldError] = []
    for index, step in enumerate(steps):
        if not isinstance(step, EmailStepCreate):
            continue
        field = f"steps.{index}.offer_id"
        if step.offer_id is None:
            used = _offer_fields_in(step.body_text)
            if used:
                errors.append(
                    FieldError(
                        f"steps.{index}.body_text",
                        f"the merge field {used[0]!r} needs an offer: set offer_id "
                        "on this special_offer step",
                        "offer_required",
                    )
                )
            continue
        if step.purpose != "special_offer":
            errors.append(
                FieldError(
                    field,
                    f"only special_offer steps take an offer, not {step.purpose}",
                    "offer_not_allowed",
                )
            )
            continue
        offer = await repository.get(workspace_id, step.offer_id)
        if offer is None:
            errors.append(
                FieldError(
                    field,
                    f"no offer with id {ids.encode('offer', step.offer_id)} exists in "
                    "this workspace",
                    "offer_not_found",
                )
            )
            continue
        if offer.status != "active":
            errors.append(
                FieldError(
                    field,
                    f"offer {ids.encode('offer', offer.id)} is {offer.status}; name "
                    "an active offer",
                    "offer_not_active",
                )
            )
    if errors:
        raise InvalidInput(
            f"{errors[0]['field']}: {errors[0]['message']}", errors=errors
        )


def _offer_fields_in(template: str) -> list[str]:
    try:
        parts = templates.parse(template)
    except templates.TemplateSyntaxError:
        return []
    return [
        part.name
        for part in parts
        if isinstance(part, templates.MergeTag) and part.name in OFFER_FIELDS
    ]


async def issue_for_step(
    session: AsyncSession,
    step: SequenceStep,
    enrollment: Enrollment,
    step_run_id: uuid.UUID,
    now: datetime,
) -> dict[str, str | None]:
    """Issue the lead's code of the step's offer, or reuse it; return merge values.

    A step without an offer, or whose offer was archived or expired since the step
    was saved, issues nothing and renders the offer fields empty.
    """
    if step.offer_id is None:
        return dict(NO_OFFER)
    repository = OfferRepository.from_session(session)
    offer = await repository.get(enrollment.workspace_id, step.offer_id)
    if offer is None or offer.status != "active":
        log.warning(
            "offer_code.not_issued",
            offer_id=str(step.offer_id),
            enrollment_id=str(enrollment.id),
            reason="offer_not_active",
        )
        return dict(NO_OFFER)
    code = await repository.code_for_lead(offer.id, enrollment.lead_id)
    if code is None:
        if offer.expires_at is not None and offer.expires_at <= now:
            log.warning(
                "offer_code.not_issued",
                offer_id=str(offer.id),
                enrollment_id=str(enrollment.id),
                reason="offer_expired",
            )
            return dict(NO_OFFER)
        code = await _insert_code(session, offer, enrollment, step_run_id, now)
    return merge_values(offer, code)


async def _insert_code(
    session: AsyncSession,
    offer: Offer,
    enrollment: Enrollment,
    step_run_id: uuid.UUID,
    now: datetime,
) -> OfferCode:
    repository = OfferRepository.from_session(session)
    for attempt in range(1, MAX_CODE_ATTEMPTS + 1):
        code_id = await repository.insert_code(
            {
                "id": ids.new_uuid(),
                "workspace_id": offer.workspace_id,
                "offer_id": offer.id,
                "lead_id": enrollment.lead_id,
                "enrollment_id": enrollment.id,
                "step_run_id": step_run_id,
                "code": new_code(offer.code_prefix),
                "status": "issued",
                "issued_at": now,
                "expires_at": code_expiry(offer, now),
            }
        )
        if code_id is not None:
            code = await session.get_one(OfferCode, code_id)
            await emit(
                session,
                workspace_id=code.workspace_id,
                type="offer_code.issued",
                object_type="offer_code",
                object_id=code.id,
                data=code_data(code),
            )
            log.info(
                "offer_code.issued",
                offer_code_id=str(code.id),
                offer_id=str(offer.id),
                enrollment_id=str(enrollment.id),
            )
            return code
        # Another transaction issued this lead's code first, or the random code
        # collided with a stored one: reuse the former, draw again for the latter.
        existing = await repository.code_for_lead(offer.id, enrollment.lead_id)
        if existing is not None:
            return existing
        log.warning("offer_code.collision", offer_id=str(offer.id), attempt=attempt)
    raise RuntimeError(f"no free code for offer {offer.id} after {MAX_CODE_ATTEMPTS}")
