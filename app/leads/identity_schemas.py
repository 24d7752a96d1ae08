"""Schemas of batch create, duplicates, merge, erasure and export."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from app.core.openapi import Problem
from app.core.schemas import InputModel, LeadId, OutputModel
from app.leads.schemas import Lead

MAX_BATCH_ITEMS = 1_000

MatchedKey = Literal["email", "phone", "company_domain"]


class LeadBatchCreate(InputModel):
    items: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_BATCH_ITEMS,
        description=f"Up to {MAX_BATCH_ITEMS} leads, each a LeadCreate body without "
        "on_duplicate 'merge'. An invalid item fails alone unless all_or_none is true.",
        json_schema_extra={"items": {"$ref": "#/components/schemas/LeadCreate"}},
    )
    all_or_none: bool = Field(
        default=False,
        description="True: any invalid or duplicate item rejects the whole batch with "
        "422 or 409 and creates nothing. False: every valid item is created on its own.",
    )


class LeadBatchItem(OutputModel):
    index: int = Field(description="Position of the item in the request's items.")
    status: Literal["created", "duplicate", "invalid", "not_created"] = Field(
        description="not_created: a valid item of an all_or_none batch that another "
        "item's failure kept from being created."
    )
    lead: Lead | None = Field(description="The created lead, when status is created.")
    error: Problem | None = Field(
        description="Why the item was not created: a duplicate_lead problem naming "
        "the candidates, or a validation problem."
    )


class LeadBatchResult(OutputModel):
    object: Literal["lead_batch"] = "lead_batch"
    created: int
    duplicates: int
    invalid: int
    items: list[LeadBatchItem]


class DuplicateCandidate(OutputModel):
    object: Literal["duplicate_candidate"] = "duplicate_candidate"
    lead_id: LeadId
    status: str
    matched_keys: list[MatchedKey] = Field(
        description="The normalized keys this lead shares with the requested one."
    )


class DuplicateCandidates(OutputModel):
    data: list[DuplicateCandidate]


class LeadMerge(InputModel):
    duplicate_id: LeadId = Field(
        description="The lead to merge into the lead of the path, which survives."
    )


class LeadExport(OutputModel):
    object: Literal["lead_export"] = "lead_export"
    lead_id: LeadId
    exported_at: datetime
    data: dict[str, Any] = Field(
        description="Every stored datum about the lead, by section: lead, events, "
        "enrollments with their step runs, touches, consents, engagements, activities "
        "and email events."
    )
