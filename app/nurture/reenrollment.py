"""Whether a lead may enroll again in a sequence it was enrolled in before.

Each sequence has a ``reenrollment_policy``. It applies once no enrollment of the lead
is running (active or paused), because a running one is a 409 ``enrollment_exists``
under every policy:

- ``always`` (the default, and the only behaviour before policies existed): the lead
  may enroll again whenever no enrollment of it is running.
- ``after_completion``: the lead may enroll again only if every earlier enrollment of
  it in the sequence completed. An exited enrollment (the lead replied, converted,
  unsubscribed, or was exited by hand) or a failed one blocks it; a failed one can be
  resumed instead.
- ``never``: a lead that was ever enrolled in the sequence cannot enroll again.

The check reads earlier enrollments without a lock. Two requests that race still
cannot both enroll the lead, because each new enrollment is active and the unique
index of running enrollments admits one.
"""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.models import Enrollment
from app.models import Sequence as SequenceRow
from app.nurture.errors import ReenrollmentNotAllowed
from app.nurture.repository import EnrollmentRepository

ReenrollmentPolicy = Literal["never", "after_completion", "always"]
DEFAULT_POLICY: ReenrollmentPolicy = "always"


async def latest_blocking(
    session: AsyncSession, sequence: SequenceRow, lead_id: uuid.UUID
) -> Enrollment | None:
    """Return the latest earlier enrollment that the sequence's policy forbids."""
    if sequence.reenrollment_policy == "always":
        return None
    return await EnrollmentRepository.from_session(session).latest_for_lead(
        sequence.id,
        lead_id,
        except_status=(
            "completed" if sequence.reenrollment_policy == "after_completion" else None
        ),
    )


async def check_reenrollment(
    session: AsyncSession, sequence: SequenceRow, lead_id: uuid.UUID
) -> None:
    """Raise ``ReenrollmentNotAllowed`` naming the earlier enrollment that blocks."""
    earlier = await latest_blocking(session, sequence, lead_id)
    if earlier is None:
        return
    earlier_id = ids.encode("enrollment", earlier.id)
    policy = sequence.reenrollment_policy
    if policy == "never":
        reason = "allows a lead to enroll only once"
    else:
        reason = "allows a lead to enroll again only after every earlier enrollment "
        reason += "completed"
    raise ReenrollmentNotAllowed(
        f"The lead was enrolled in this sequence before as {earlier_id}, which is "
        f"{earlier.status}, and the sequence's reenrollment_policy {policy} {reason}. "
        "Change the sequence's reenrollment_policy to enroll the lead again.",
        existing_id=earlier_id,
        existing_status=earlier.status,
        reenrollment_policy=policy,
    )
