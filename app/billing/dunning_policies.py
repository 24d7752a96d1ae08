"""Dunning policies, and which one applies to an invoice.

An invoice follows its own policy if it has one, else its customer's, else the
workspace's default policy, else none: an invoice without a policy gets no reminders.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.debt import debt_service
from app.billing.dunning_schemas import (
    REMINDER_FIELDS,
    DunningPolicyCreate,
    DunningPolicyUpdate,
    DunningStepIn,
)
from app.billing.dunning_schemas import DunningPolicy as DunningPolicySchema
from app.billing.errors import DunningPolicyNotFound
from app.billing.service import invoice_service
from app.core import ids
from app.core.auth import Principal
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.core.pagination import paginate
from app.customers.service import customer_service
from app.models import Customer, DunningPolicy, Invoice, Pipeline
from app.nurture import templates

log = structlog.get_logger(__name__)

PolicySource = Literal["invoice", "customer", "workspace"]


def policy_data(policy: DunningPolicy) -> dict[str, Any]:
    """Serialize a policy as the API shows it, for events."""
    return DunningPolicySchema.model_validate(policy).model_dump(mode="json")


def _check_offsets(steps: Sequence[DunningStepIn]) -> None:
    # A reminder is unique per invoice and step offset, so a second step at the same
    # offset would never be sent.
    first_index: dict[int, int] = {}
    errors = []
    for index, step in enumerate(steps):
        earlier = first_index.setdefault(step.offset_days, index)
        if earlier != index:
            errors.append(
                FieldError(
                    f"steps.{index}.offset_days",
                    f"{step.offset_days} is already the offset_days of "
                    f"steps.{earlier}. Give each step its own offset_days",
                    "duplicate_offset",
                )
            )
    if errors:
        raise InvalidInput(
            f"{errors[0]['field']} repeats an offset_days of an earlier step. Each step "
            "needs its own offset_days, so change it or merge the two steps into one.",
            errors=errors,
        )


def _check_templates(steps: Sequence[DunningStepIn]) -> None:
    errors = []
    for index, step in enumerate(steps):
        for part in ("subject", "body"):
            for problem in templates.check(getattr(step, part), REMINDER_FIELDS):
                errors.append(
                    FieldError(f"steps.{index}.{part}", problem.message, problem.code)
                )
    if errors:
        raise InvalidInput(
            f"{errors[0]['field']}: {errors[0]['message']}", errors=errors
        )


def _stored_steps(steps: Sequence[DunningStepIn]) -> list[dict[str, Any]]:
    return [
        step.model_dump() for step in sorted(steps, key=lambda step: step.offset_days)
    ]


class DunningPolicyService:
    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        policy_id: uuid.UUID,
        *,
        for_update: bool = False,
        field: str | None = None,
    ) -> DunningPolicy:
        """Return a policy; a missing one is 404, or 422 on ``field`` in a body."""
        statement = select(DunningPolicy).where(
            DunningPolicy.workspace_id == workspace_id, DunningPolicy.id == policy_id
        )
        if for_update:
            statement = statement.with_for_update()
        policy = await session.scalar(statement)
        if policy is not None:
            return policy
        encoded = ids.encode("dunning_policy", policy_id)
        if field is not None:
            raise InvalidInput(
                f"No dunning policy with id {encoded} exists in this workspace. List "
                "them with GET /v1/dunning-policies.",
                errors=[
                    FieldError(field, f"no policy {encoded} here", "policy_not_found")
                ],
            )
        raise DunningPolicyNotFound(
            f"No dunning policy with id {encoded} exists in this workspace."
        )

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[DunningPolicy], str | None, bool]:
        statement = select(DunningPolicy).where(
            DunningPolicy.workspace_id == workspace_id
        )
        return await paginate(
            session, statement, DunningPolicy.id, limit=limit, cursor=cursor
        )

    async def create(
        self, session: AsyncSession, principal: Principal, payload: DunningPolicyCreate
    ) -> DunningPolicy:
        _check_offsets(payload.steps)
        _check_templates(payload.steps)
        if payload.renewal_pipeline_id is not None:
            await _check_pipeline(
                session, principal.workspace_id, payload.renewal_pipeline_id
            )
        if payload.is_default:
            await self._clear_default(session, principal)

        policy = DunningPolicy(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            name=payload.name,
            is_default=payload.is_default,
            steps=_stored_steps(payload.steps),
            send_hour=payload.send_hour,
            renewal_pipeline_id=payload.renewal_pipeline_id,
            mark_uncollectible=payload.mark_uncollectible,
            final_task=payload.final_task,
            final_action_delay_days=payload.final_action_delay_days,
        )
        session.add(policy)
        await session.flush()
        await session.refresh(policy)

        await self._emit(session, principal, policy, "dunning_policy.created")
        log.info("dunning_policy.created", dunning_policy_id=str(policy.id))
        return policy

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        policy_id: uuid.UUID,
        payload: DunningPolicyUpdate,
        *,
        if_match: str | None,
    ) -> DunningPolicy:
        policy = await self.get(
            session, principal.workspace_id, policy_id, for_update=True
        )
        check_if_match(if_match, policy.version)
        changes = payload.model_dump(exclude_unset=True)
        nulls = [
            name
            for name, value in changes.items()
            if value is None and name != "renewal_pipeline_id"
        ]
        if nulls:
            raise InvalidInput(
                f"{nulls[0]} cannot be null. Omit it to keep the current value.",
                errors=[
                    FieldError(name, "cannot be null", "null_not_allowed")
                    for name in nulls
                ],
            )
        if payload.steps is not None:
            _check_offsets(payload.steps)
            _check_templates(payload.steps)
            changes["steps"] = _stored_steps(payload.steps)
        if payload.renewal_pipeline_id is not None:
            await _check_pipeline(
                session, principal.workspace_id, payload.renewal_pipeline_id
            )
        if "renewal_pipeline_id" in changes:
            changes["renewal_pipeline_id"] = payload.renewal_pipeline_id
        if changes.get("is_default") and not policy.is_default:
            await self._clear_default(session, principal)
        for name, value in changes.items():
            setattr(policy, name, value)
        if not session.is_modified(policy):
            return policy
        await session.flush()
        await session.refresh(policy)

        await self._emit(session, principal, policy, "dunning_policy.updated")
        log.info(
            "dunning_policy.updated",
            dunning_policy_id=str(policy.id),
            fields=sorted(changes),
        )
        return policy

    async def delete(
        self,
        session: AsyncSession,
        principal: Principal,
        policy_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> None:
        """Delete a policy; invoices and customers that named it follow the default."""
        policy = await self.get(
            session, principal.workspace_id, policy_id, for_update=True
        )
        check_if_match(if_match, policy.version)

        await self._emit(session, principal, policy, "dunning_policy.deleted")
        await session.delete(policy)
        await session.flush()
        log.info("dunning_policy.deleted", dunning_policy_id=str(policy.id))

    async def effective(
        self, session: AsyncSession, invoice: Invoice
    ) -> tuple[DunningPolicy | None, PolicySource | None]:
        """Return the policy that applies to ``invoice`` and where it comes from."""
        if invoice.dunning_policy_id is not None:
            policy = await session.get(DunningPolicy, invoice.dunning_policy_id)
            if policy is not None:
                return policy, "invoice"
        customer_policy = await session.scalar(
            select(Customer.dunning_policy_id).where(Customer.id == invoice.customer_id)
        )
        if customer_policy is not None:
            policy = await session.get(DunningPolicy, customer_policy)
            if policy is not None:
                return policy, "customer"
        policy = await session.scalar(
            select(DunningPolicy).where(
                DunningPolicy.workspace_id == invoice.workspace_id,
                DunningPolicy.is_default.is_(True),
            )
        )
        return (policy, "workspace") if policy is not None else (None, None)

    async def _clear_default(self, session: AsyncSession, principal: Principal) -> None:
        # Two requests that both make a policy the default queue on this lock, so the
        # second clears the first's flag instead of failing on the unique index.
        await session.execute(
            select(
                func.pg_advisory_xact_lock(
                    func.hashtextextended(
                        f"dunning_default:{principal.workspace_id}", 0
                    )
                )
            )
        )
        previous = await session.scalars(
            select(DunningPolicy)
            .where(
                DunningPolicy.workspace_id == principal.workspace_id,
                DunningPolicy.is_default.is_(True),
            )
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        for policy in previous.all():
            policy.is_default = False
            await session.flush()
            await session.refresh(policy)
            await self._emit(session, principal, policy, "dunning_policy.updated")

    async def assign_to_invoice(
        self,
        session: AsyncSession,
        principal: Principal,
        invoice_id: uuid.UUID,
        policy_id: uuid.UUID | None,
        *,
        if_match: str | None,
    ) -> Invoice:
        """Set or clear the policy of one invoice; emits invoice.updated on a change."""
        invoice = await invoice_service.get(
            session, principal.workspace_id, invoice_id, for_update=True
        )
        check_if_match(if_match, invoice.version)
        if policy_id is not None:
            await self.get(
                session, principal.workspace_id, policy_id, field="dunning_policy_id"
            )
        if invoice.dunning_policy_id == policy_id:
            return invoice

        invoice.dunning_policy_id = policy_id
        await session.flush()
        await session.refresh(invoice)

        await debt_service.emit_invoice(
            session, invoice, "invoice.updated", principal.actor
        )
        log.info(
            "invoice.dunning_policy_set",
            invoice_id=str(invoice.id),
            dunning_policy_id=str(policy_id) if policy_id else None,
        )
        return invoice

    async def assign_to_customer(
        self,
        session: AsyncSession,
        principal: Principal,
        customer_id: uuid.UUID,
        policy_id: uuid.UUID | None,
        *,
        if_match: str | None,
    ) -> Customer:
        """Set or clear a customer's policy; emits customer.updated on a change."""
        customer = await customer_service.get(
            session, principal.workspace_id, customer_id, for_update=True
        )
        check_if_match(if_match, customer.version)
        if policy_id is not None:
            await self.get(
                session, principal.workspace_id, policy_id, field="dunning_policy_id"
            )
        if customer.dunning_policy_id == policy_id:
            return customer

        customer.dunning_policy_id = policy_id
        await session.flush()
        await session.refresh(customer)

        view = await customer_service.view(session, customer)
        await emit(
            session,
            workspace_id=customer.workspace_id,
            type="customer.updated",
            object_type="customer",
            object_id=customer.id,
            data=view.model_dump(mode="json"),
            actor=principal.actor,
        )
        log.info(
            "customer.dunning_policy_set",
            customer_id=str(customer.id),
            dunning_policy_id=str(policy_id) if policy_id else None,
        )
        return customer

    @staticmethod
    async def _emit(
        session: AsyncSession, principal: Principal, policy: DunningPolicy, type: str
    ) -> None:
        await emit(
            session,
            workspace_id=policy.workspace_id,
            type=type,
            object_type="dunning_policy",
            object_id=policy.id,
            data=policy_data(policy),
            actor=principal.actor,
        )


async def _check_pipeline(
    session: AsyncSession, workspace_id: uuid.UUID, pipeline_id: uuid.UUID
) -> None:
    found = await session.scalar(
        select(Pipeline.id).where(
            Pipeline.workspace_id == workspace_id, Pipeline.id == pipeline_id
        )
    )
    if found is None:
        encoded = ids.encode("pipeline", pipeline_id)
        raise InvalidInput(
            f"No pipeline with id {encoded} exists in this workspace. Send the id of "
            "the pipeline your renewal opportunities move through, or null.",
            errors=[
                FieldError(
                    "renewal_pipeline_id",
                    f"no pipeline {encoded}",
                    "pipeline_not_found",
                )
            ],
        )


dunning_policy_service = DunningPolicyService()
