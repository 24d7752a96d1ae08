"""``/v1/meta``: machine-readable facts about the API, such as its state machines."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.billing import states as invoice_states
from app.core.openapi import PUBLIC, problem_responses
from app.core.routing import UnitOfWorkRoute
from app.leads import states as lead_states
from app.nurture import states as enrollment_states
from app.opportunities import proposal_states
from app.opportunities import states as opportunity_states

# Public: these describe the API itself and reveal nothing about any workspace.
router = APIRouter(prefix="/meta", tags=["meta"], route_class=UnitOfWorkRoute)


class StateMachine(BaseModel):
    """The statuses of one resource and the statuses each may move to."""

    resource: str
    initial: str
    transitions: dict[str, list[str]]
    reason_required: list[str] | None = Field(
        default=None,
        description="Statuses that a client may move to only with a status_reason; "
        "omitted for resources without status reasons.",
    )
    required_fields: dict[str, list[str]] | None = Field(
        default=None,
        description="For each status that needs more than the move itself, the "
        "request fields a client must send to move to it; omitted when none does.",
    )


class StateMachines(BaseModel):
    data: list[StateMachine]


STATE_MACHINES = [
    StateMachine(
        resource="lead",
        initial="new",
        transitions={
            key: list(value) for key, value in lead_states.TRANSITIONS.items()
        },
        reason_required=sorted(lead_states.REASON_REQUIRED),
    ),
    StateMachine(
        resource="invoice",
        initial=invoice_states.INITIAL,
        transitions={
            key: list(value) for key, value in invoice_states.TRANSITIONS.items()
        },
    ),
    StateMachine(
        resource="enrollment",
        initial="active",
        transitions={
            key: list(value) for key, value in enrollment_states.TRANSITIONS.items()
        },
    ),
    StateMachine(
        resource="opportunity",
        initial=opportunity_states.INITIAL,
        transitions={
            key: list(value) for key, value in opportunity_states.TRANSITIONS.items()
        },
        required_fields={
            status: list(fields)
            for status, fields in opportunity_states.REQUIRED_FIELDS.items()
        },
    ),
    StateMachine(
        resource="proposal",
        initial=proposal_states.INITIAL,
        transitions={
            key: list(value) for key, value in proposal_states.TRANSITIONS.items()
        },
    ),
]


@router.get(
    "/state-machines",
    operation_id="meta_state_machines",
    summary="List the state machines",
    response_model=StateMachines,
    response_model_exclude_none=True,
    responses=problem_responses(),
    openapi_extra=PUBLIC,
)
async def state_machines() -> StateMachines:
    """Return each resource's statuses and allowed transitions."""
    return StateMachines(data=STATE_MACHINES)
