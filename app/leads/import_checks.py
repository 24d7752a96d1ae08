"""The checks of imported rows that need the database: custom fields and owners.

They run once per chunk, with one query each for the chunk's custom field
definitions and named owners, so the rules of POST /v1/leads apply to every row
without a query per row.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.errors import InvalidInput
from app.customfields.service import attribute_errors, load_definitions
from app.leads import assignment
from app.leads.assignment import Decision
from app.leads.assignment_repository import AssignmentRepository
from app.leads.importer import RowError, ValidRow
from app.users.repository import UserRepository
from app.users.service import user_service


async def check_new_rows(
    session: AsyncSession, workspace_id: uuid.UUID, rows: dict[str, ValidRow]
) -> list[RowError]:
    """Check the attributes and named owners of new leads; drop the failing rows.

    ``rows`` maps each normalized email to its row; a failing row is removed from it
    and returned as row errors.
    """
    errors: list[RowError] = []
    keys = {key for row in rows.values() for key in row.values["attributes"]}
    definitions = await load_definitions(session, workspace_id, "lead", keys)
    requested = {
        row.values["owner_id"]
        for row in rows.values()
        if row.values["owner_id"] is not None
    }
    users = (
        await UserRepository.from_session(session).get_many(
            workspace_id, list(requested)
        )
        if requested
        else {}
    )
    for email, row in list(rows.items()):
        failed: list[RowError] = []
        for problem in attribute_errors(definitions, row.values["attributes"]):
            name = problem["field"]
            failed.append(
                RowError(
                    row.row,
                    row.columns.get(name, name),
                    _text(row.values["attributes"].get(name.partition(".")[2])),
                    f"{name} {problem['message']}. GET /v1/custom-fields shows the "
                    "definition.",
                )
            )
        owner_id = row.values["owner_id"]
        if owner_id is not None:
            user = users.get(owner_id)
            if user is None or not user.active:
                failed.append(_owner_error(row, owner_id, user is not None))
        if failed:
            errors.extend(failed)
            del rows[email]
    return errors


async def choose_owners(
    session: AsyncSession, principal: Principal, rows: dict[str, ValidRow]
) -> tuple[dict[str, Decision], list[RowError]]:
    """Choose the owner of each new lead as ``assignment.initial_owner`` does.

    A row's own owner wins, then the On-Behalf-Of user of the upload, then the
    workspace's assignment rules. Only the rules run per row, and only when the
    workspace has enabled rules. Each row's owner_id is set to the decision. When the
    On-Behalf-Of user is no longer active, every row without an owner fails.
    """
    decisions: dict[str, Decision] = {}
    errors: list[RowError] = []
    unowned = [email for email, row in rows.items() if row.values["owner_id"] is None]
    for email, row in rows.items():
        if row.values["owner_id"] is not None:
            decisions[email] = Decision(row.values["owner_id"])
    if not unowned:
        return decisions, errors

    try:
        acting = await user_service.acting_user(session, principal)
    except InvalidInput as error:
        for email in unowned:
            errors.append(RowError(rows.pop(email).row, None, None, error.detail))
        return decisions, errors
    if acting is not None:
        decisions.update(dict.fromkeys(unowned, Decision(acting)))
    else:
        workspace_id = principal.workspace_id
        rules = await AssignmentRepository.from_session(session).enabled_rules(
            workspace_id
        )
        for email in unowned:
            decisions[email] = (
                await assignment.apply_rules(
                    session, workspace_id, rules, rows[email].values
                )
                if rules
                else Decision(None, None, "rule")
            )
    for email in unowned:
        rows[email].values["owner_id"] = decisions[email].owner_id
    return decisions, errors


def _owner_error(row: ValidRow, owner_id: uuid.UUID, inactive: bool) -> RowError:
    encoded = ids.encode("user", owner_id)
    problem = (
        f"owner_id names the user {encoded}, who is inactive"
        if inactive
        else f"owner_id names no user of this workspace ({encoded})"
    )
    return RowError(
        row.row,
        row.columns.get("owner_id", "owner_id"),
        encoded,
        f"{problem}. Name an active user (GET /v1/users), or leave the cell empty "
        "so the assignment rules choose the owner.",
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
