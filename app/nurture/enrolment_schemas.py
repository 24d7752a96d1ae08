"""Request and response bodies of batch enrollment and enrollment jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from app.core.openapi import Problem
from app.core.schemas import (
    CampaignId,
    EnrollmentJobId,
    InputModel,
    OutputModel,
    PartnerId,
    SequenceId,
    Timestamp,
    UserId,
)
from app.leads.listing import MAX_ATTRIBUTE_FILTERS
from app.leads.schemas import LeadSource, LeadStatus, Tag
from app.models import EnrollmentJob as EnrollmentJobRow
from app.nurture.schemas import Enrollment

MAX_BATCH_LEADS = 1_000

EnrollmentJobStatus = Literal["queued", "running", "succeeded", "failed"]
BatchItemStatus = Literal["created", "skipped", "invalid", "duplicate"]


class EnrollmentBatchCreate(InputModel):
    lead_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1,
        max_length=MAX_BATCH_LEADS,
        description=f"Up to {MAX_BATCH_LEADS} lead ids. Each is enrolled on its own: "
        "an id that is malformed, unknown or not enrollable fails alone.",
    )


class EnrollmentBatchItem(OutputModel):
    index: int = Field(description="Position of the id in the request's lead_ids.")
    lead_id: str = Field(description="The id as sent.")
    status: BatchItemStatus = Field(
        description="created; skipped when the lead cannot be enrolled now (its "
        "status, an unsubscribed address, an enrollment already running, the "
        "re-enrollment policy); invalid when the id is malformed or no such lead "
        "exists; duplicate when an earlier item has the same lead."
    )
    enrollment: Enrollment | None = Field(
        description="The new enrollment, when status is created."
    )
    duplicate_of_index: int | None = Field(
        default=None, description="The earlier item of the same lead, for duplicate."
    )
    error: Problem | None = Field(
        description="Why the item was skipped or invalid, as a problem whose code "
        "says which rule applied."
    )


class EnrollmentBatchResult(OutputModel):
    object: Literal["enrollment_batch"] = "enrollment_batch"
    created: int
    skipped: int
    invalid: int
    duplicates: int
    items: list[EnrollmentBatchItem]


class EnrollmentJobFilter(InputModel):
    """The filters of GET /v1/leads, as a JSON object; each one given must hold."""

    status: list[LeadStatus] | None = Field(
        default=None, max_length=10, description="Only these statuses."
    )
    owner_id: UserId | None = Field(default=None, description="Only this owner.")
    email: str | None = Field(default=None, max_length=320, description="Exact email.")
    q: str | None = Field(
        default=None,
        max_length=200,
        description="Case-insensitive substring of name, email or company.",
    )
    created_after: Timestamp | None = None
    created_before: Timestamp | None = None
    campaign_id: CampaignId | None = Field(
        default=None, description="Only leads with a touch of this campaign."
    )
    partner_id: PartnerId | None = Field(
        default=None, description="Only leads with a touch of this partner."
    )
    source: list[LeadSource] | None = Field(
        default=None, max_length=10, description="Only these sources."
    )
    score_min: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)
    score_max: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)
    tag: list[Tag] | None = Field(
        default=None, max_length=20, description="Only leads with every one of these."
    )
    updated_after: Timestamp | None = None
    updated_before: Timestamp | None = None
    attribute: list[Annotated[str, Field(max_length=300)]] | None = Field(
        default=None,
        max_length=MAX_ATTRIBUTE_FILTERS,
        description="Custom field conditions <key>:<operator>:<value>, as the "
        "attribute parameter of GET /v1/leads takes them.",
    )


class EnrollmentJobCreate(InputModel):
    filter: EnrollmentJobFilter = Field(
        description="Which leads to enroll. Leads created after the job are not "
        "matched. An empty object matches every lead of the workspace."
    )


class EnrollmentJobCounts(OutputModel):
    matched: int = Field(description="Leads that matched the filter, so far.")
    enrolled: int
    skipped: int
    skipped_reasons: dict[str, int] = Field(
        description="How many leads were skipped per problem code, such as "
        "enrollment_exists or lead_unsubscribed."
    )


class EnrollmentJob(OutputModel):
    object: Literal["enrollment_job"] = "enrollment_job"
    id: EnrollmentJobId
    sequence_id: SequenceId
    status: EnrollmentJobStatus = Field(
        description="queued until a worker starts it, running, then succeeded once "
        "every matching lead was processed, or failed with error_code."
    )
    filter: dict[str, Any]
    counts: EnrollmentJobCounts
    error_code: str | None
    error_message: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, job: EnrollmentJobRow) -> EnrollmentJob:
        return cls(
            id=job.id,
            sequence_id=job.sequence_id,
            status=job.status,
            filter=job.filter,
            counts=EnrollmentJobCounts(
                matched=job.matched_count,
                enrolled=job.enrolled_count,
                skipped=job.skipped_count,
                skipped_reasons=job.skipped_reasons,
            ),
            error_code=job.error_code,
            error_message=job.error_message,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )
