from __future__ import annotations

import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.customfields.errors import (
    CustomFieldInUse,
    CustomFieldLimitReached,
    CustomFieldNotFound,
    DuplicateCustomField,
)
from app.customfields.repository import CustomFieldRepository
from app.customfields.schemas import CustomField as CustomFieldSchema
from app.customfields.schemas import CustomFieldCreate, CustomFieldUpdate
from app.customfields.values import Definition, value_problem
from app.models import CustomFieldDefinition

log = structlog.get_logger(__name__)


def custom_field_data(definition: CustomFieldDefinition) -> dict[str, Any]:
    """Serialize a definition as the API shows it, for events."""
    return CustomFieldSchema.model_validate(definition).model_dump(mode="json")


def as_definition(row: CustomFieldDefinition) -> Definition:
    return Definition(
        key=row.key,
        type=row.type,
        choices=tuple(row.choices),
        required=row.required,
        max_length=row.max_length,
    )


async def load_definitions(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    object_type: str,
    keys: Iterable[str],
) -> list[Definition]:
    """Load the definitions of ``keys`` and the required ones, sorted by key.

    The rows are share-locked until the transaction ends (see
    ``CustomFieldRepository.for_write``), so a type change cannot slip in before the
    write commits.
    """
    rows = await CustomFieldRepository.from_session(session).for_write(
        workspace_id, object_type, keys
    )
    return sorted((as_definition(row) for row in rows), key=lambda item: item.key)


def attribute_errors(
    definitions: Sequence[Definition], attributes: Mapping[str, Any]
) -> list[FieldError]:
    """Return one error per attribute that breaks its definition; none when all fit.

    The attributes replace the stored ones, so required keys must be present. A null
    value counts as absent. Keys without a definition are kept as given.
    """
    errors: list[FieldError] = []
    for definition in definitions:
        value = attributes.get(definition.key)
        if value is None:
            if definition.required:
                errors.append(
                    FieldError(f"attributes.{definition.key}", "is required", "missing")
                )
            continue
        problem = value_problem(definition, value)
        if problem is not None:
            errors.append(
                FieldError(
                    f"attributes.{definition.key}",
                    problem,
                    f"invalid_{definition.type}",
                )
            )
    return errors


async def check_attributes(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    object_type: str,
    attributes: Mapping[str, Any] | None,
) -> None:
    """Raise ``InvalidInput`` naming every attribute that breaks its definition.

    ``None`` means the write leaves the attributes as they are, so nothing is checked.
    """
    if attributes is None:
        return
    definitions = await load_definitions(
        session, workspace_id, object_type, attributes.keys()
    )
    errors = attribute_errors(definitions, attributes)
    if errors:
        first = errors[0]
        raise InvalidInput(
            f"{first['field']} {first['message']}. Fix the values listed in errors; "
            "GET /v1/custom-fields shows each definition.",
            errors=errors,
        )


class CustomFieldService:
    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        payload: CustomFieldCreate,
        *,
        max_definitions: int,
    ) -> CustomFieldDefinition:
        """Create a definition. A workspace has at most ``max_definitions`` per object
        type, counted under a lock so that parallel creates cannot pass the limit."""
        repository = CustomFieldRepository.from_session(session)
        count = await repository.lock_and_count(
            principal.workspace_id, payload.object_type
        )
        existing = await repository.get_by_key(
            principal.workspace_id, payload.object_type, payload.key
        )
        if existing is not None:
            raise _duplicate(payload.object_type, payload.key, existing.id)
        if count >= max_definitions:
            log.info(
                "custom_field.limit_reached",
                workspace_id=str(principal.workspace_id),
                object_type=payload.object_type,
                definitions=count,
            )
            raise CustomFieldLimitReached(
                f"This workspace has {count} {payload.object_type} custom fields, the "
                "maximum (SALESCYCLE_CUSTOM_FIELD_MAX_DEFINITIONS_PER_OBJECT_TYPE is "
                f"{max_definitions}). Delete a definition you no longer use first.",
                limit=max_definitions,
            )

        definition = CustomFieldDefinition(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            object_type=payload.object_type,
            key=payload.key,
            label=payload.label,
            type=payload.type,
            choices=payload.choices or [],
            required=payload.required,
            max_length=payload.max_length,
        )
        session.add(definition)
        # A concurrent create of the same key fails on the unique constraint, which
        # the unit of work turns into a 409.
        await session.flush()
        await session.refresh(definition)

        await emit(
            session,
            workspace_id=definition.workspace_id,
            type="custom_field.created",
            object_type="custom_field",
            object_id=definition.id,
            data=custom_field_data(definition),
            actor=principal.actor,
        )
        log.info("custom_field.created", custom_field_id=str(definition.id))
        return definition

    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        definition_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> CustomFieldDefinition:
        definition = await CustomFieldRepository.from_session(session).get(
            workspace_id, definition_id, for_update=for_update
        )
        if definition is None:
            raise CustomFieldNotFound(
                f"No custom field with id {ids.encode('custom_field', definition_id)} "
                "exists in this workspace."
            )
        return definition

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        object_type: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[CustomFieldDefinition], str | None, bool]:
        return await CustomFieldRepository.from_session(session).list(
            workspace_id, object_type=object_type, limit=limit, cursor=cursor
        )

    async def definitions_by_key(
        self, session: AsyncSession, workspace_id: uuid.UUID, object_type: str
    ) -> dict[str, Definition]:
        rows = await CustomFieldRepository.from_session(session).all_of_type(
            workspace_id, object_type
        )
        return {row.key: as_definition(row) for row in rows}

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        definition_id: uuid.UUID,
        payload: CustomFieldUpdate,
        *,
        if_match: str | None,
    ) -> CustomFieldDefinition:
        definition = await self.get(
            session, principal.workspace_id, definition_id, for_update=True
        )
        check_if_match(if_match, definition.version)

        changes = payload.model_dump(exclude_unset=True)
        for name in ("label", "type", "required"):
            if name in changes and changes[name] is None:
                raise _null_field(name)
        new_type = changes.get("type", definition.type)
        choices = changes.get(
            "choices", definition.choices if new_type == "choice" else None
        )
        if new_type == "choice" and not choices:
            raise _option_error("choices", "is required when type is choice")
        if new_type != "choice" and changes.get("choices") is not None:
            raise _option_error("choices", "is allowed only when type is choice")
        max_length = changes.get("max_length", definition.max_length)
        if new_type != "text" and changes.get("max_length") is not None:
            raise _option_error("max_length", "is allowed only when type is text")
        await _check_stored_values(session, definition, new_type, choices, max_length)

        definition.label = changes.get("label", definition.label)
        definition.type = new_type
        definition.choices = list(choices or [])
        definition.required = changes.get("required", definition.required)
        definition.max_length = max_length if new_type == "text" else None
        if not session.is_modified(definition):
            return definition
        await session.flush()
        await session.refresh(definition)

        await emit(
            session,
            workspace_id=definition.workspace_id,
            type="custom_field.updated",
            object_type="custom_field",
            object_id=definition.id,
            data=custom_field_data(definition),
            actor=principal.actor,
        )
        log.info("custom_field.updated", custom_field_id=str(definition.id))
        return definition

    async def delete(
        self,
        session: AsyncSession,
        principal: Principal,
        definition_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> None:
        definition = await self.get(
            session, principal.workspace_id, definition_id, for_update=True
        )
        check_if_match(if_match, definition.version)
        data = custom_field_data(definition)

        await session.delete(definition)
        await emit(
            session,
            workspace_id=definition.workspace_id,
            type="custom_field.deleted",
            object_type="custom_field",
            object_id=definition.id,
            data=data,
            actor=principal.actor,
        )
        log.info("custom_field.deleted", custom_field_id=str(definition.id))


async def _check_stored_values(
    session: AsyncSession,
    definition: CustomFieldDefinition,
    new_type: str,
    choices: Sequence[str] | None,
    max_length: int | None,
) -> None:
    """Raise ``CustomFieldInUse`` when the change would reject stored values.

    The caller holds the definition's row lock, which conflicts with the FOR KEY SHARE
    lock that a lead write takes on the definitions of its keys
    (``CustomFieldRepository.for_write``), so no such write can commit meanwhile.
    """
    repository = CustomFieldRepository.from_session(session)
    workspace_id, object_type, key = (
        definition.workspace_id,
        definition.object_type,
        definition.key,
    )
    field_id = ids.encode("custom_field", definition.id)
    if new_type != definition.type:
        if await repository.has_values(workspace_id, object_type, key):
            raise CustomFieldInUse(
                f"Some {object_type}s store a value for {key!r}, so its type cannot "
                f"change from {definition.type} to {new_type}. Create a field with a "
                "new key instead.",
                custom_field_id=field_id,
            )
        return

    removed = set(definition.choices) - set(choices or [])
    if new_type == "choice" and removed:
        in_use = await repository.stored_choices(
            workspace_id, object_type, key, removed
        )
        if in_use:
            listed = ", ".join(repr(choice) for choice in in_use)
            raise CustomFieldInUse(
                f"Some {object_type}s store {listed} for {key!r}, and a choice in use "
                "cannot be removed. Change those values to a remaining choice first "
                f"(GET /v1/{object_type}s?attribute={key}:eq:<choice> lists them), "
                "or keep the choice.",
                custom_field_id=field_id,
                choices_in_use=list(in_use),
            )

    if new_type != "text" or max_length is None:
        return
    if definition.max_length is not None and max_length >= definition.max_length:
        return
    longest = await repository.longest_text(workspace_id, object_type, key)
    if longest > max_length:
        raise CustomFieldInUse(
            f"Some {object_type}s store a value of {longest} characters for {key!r}, "
            f"longer than the requested max_length of {max_length}. Shorten those "
            f"values first, or set max_length to at least {longest}.",
            custom_field_id=field_id,
            longest_value_length=longest,
        )


def _duplicate(object_type: str, key: str, existing: uuid.UUID) -> DuplicateCustomField:
    existing_id = ids.encode("custom_field", existing)
    return DuplicateCustomField(
        f"The {object_type} custom field {key!r} already exists: {existing_id}. "
        "Update that definition instead.",
        existing_id=existing_id,
    )


def _null_field(name: str) -> InvalidInput:
    return InvalidInput(
        f"{name} cannot be null. Omit it to keep the current value.",
        errors=[FieldError(name, "cannot be null", "null_not_allowed")],
    )


def _option_error(name: str, message: str) -> InvalidInput:
    return InvalidInput(
        f"{name} {message}.", errors=[FieldError(name, message, "invalid_option")]
    )


custom_field_service = CustomFieldService()


_TRUE = frozenset({"true", "on", "yes", "1"})
# The maximum digits of an integer that json.dumps can store, which is Python's
# default int_max_str_digits. Converting a longer Decimal such as 1e9999999 with int()
# also takes time that grows with the square of its digits, so it stays text.
_MAX_INTEGER_DIGITS = sys.int_info.default_max_str_digits
_FALSE = frozenset({"false", "off", "no", "0"})


async def coerce_form_attributes(
    session: AsyncSession, workspace_id: uuid.UUID, attributes: Mapping[str, Any]
) -> dict[str, Any]:
    """Read the text a browser form sends as the type each lead field defines.

    An HTML form posts every value as a string: ``"40"`` for a number field, ``"on"``
    for a checkbox. Text that does not read as the type stays as sent, so the usual
    check reports it with the field's expected type.
    """
    if not attributes:
        return dict(attributes)
    rows = await CustomFieldRepository.from_session(session).for_write(
        workspace_id, "lead", attributes.keys()
    )
    types = {row.key: row.type for row in rows}
    return {
        key: _coerce(types.get(key), value) if isinstance(value, str) else value
        for key, value in attributes.items()
    }


def _coerce(type_: str | None, value: str) -> Any:
    text = value.strip()
    if type_ == "boolean":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
    elif type_ == "number":
        try:
            number = Decimal(text)
        except InvalidOperation:
            return value
        if not number.is_finite() or number.adjusted() >= _MAX_INTEGER_DIGITS:
            return value
        if number == number.to_integral_value():
            return int(number)
        # A decimal that a JSON number keeps exactly; others stay text and fail.
        if Decimal(repr(float(number))) == number:
            return float(number)
    return value
