"""Capture forms, their publishable keys, and public submissions.

A submission for an email that has an open lead adds a touch (and consent) to that
lead instead of creating one, and gets the same response as a new lead, so a public
caller cannot learn whether an email is known. The submitted fields of such a capture
do not overwrite the lead's, because anyone may post the form.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import NewApiKey, Principal, create_api_key
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import (
    Conflict,
    FieldError,
    InvalidInput,
    validation_field_errors,
)
from app.core.events import emit
from app.customfields.service import check_attributes, coerce_form_attributes
from app.leads.attribution import CaptureAttribution, record_touch
from app.leads.attribution_errors import FormNotFound
from app.leads.attribution_repository import AttributionRepository
from app.leads.capture_schemas import (
    ATTRIBUTION_FIELDS,
    CONSENT_FIELD,
    KEY_FIELD,
    PHONE_REGION_FIELD,
    RESERVED_FIELDS,
    FormCreate,
    FormUpdate,
    PublishableKeyCreate,
)
from app.leads.capture_schemas import Form as FormSchema
from app.leads.errors import DuplicateLead
from app.leads.identity import create_values
from app.leads.schemas import LeadCreate
from app.leads.service import lead_data, lead_service
from app.models import CaptureForm, FormPublishableKey, Lead, LeadConsent

log = structlog.get_logger(__name__)

PUBLISHABLE = "publishable"
_CONSENT_GIVEN = frozenset(("true", "on", "yes", "1"))
MAX_USER_AGENT = 512


def _check_form(values: Mapping[str, Any]) -> None:
    """Raise ``InvalidInput`` unless a form's fields, consent and honeypot fit together."""
    errors: list[FieldError] = []
    collected = {"email", *values["fields"]}
    for key in values["attribute_keys"]:
        if key in RESERVED_FIELDS:
            errors.append(
                FieldError(
                    "attribute_keys",
                    f"{key!r} is a lead or reserved field name",
                    "reserved",
                )
            )
    if len(set(values["attribute_keys"])) != len(values["attribute_keys"]):
        errors.append(FieldError("attribute_keys", "repeats a key", "duplicate"))
    known = collected | set(values["attribute_keys"])
    for name in values["required_fields"]:
        if name not in known:
            errors.append(
                FieldError(
                    "required_fields",
                    f"{name!r} is not among fields or attribute_keys",
                    "unknown_field",
                )
            )
    honeypot = values["honeypot_field"]
    if honeypot in RESERVED_FIELDS or honeypot in known:
        errors.append(
            FieldError(
                "honeypot_field", f"{honeypot!r} is a field of the form", "reserved"
            )
        )
    if (values["consent_text"] is None) != (values["consent_version"] is None):
        errors.append(
            FieldError(
                "consent_version"
                if values["consent_text"] is not None
                else "consent_text",
                "consent_text and consent_version go together",
                "consent_incomplete",
            )
        )
    if errors:
        raise InvalidInput(
            "The form is invalid: required fields must be collected, attribute keys "
            "and the honeypot must not reuse field names, and consent_text needs "
            "consent_version. See errors.",
            errors=errors,
        )


class FormService:
    async def create(
        self, session: AsyncSession, principal: Principal, payload: FormCreate
    ) -> CaptureForm:
        values = {name: getattr(payload, name) for name in FormCreate.model_fields}
        values["fields"] = _with_email(values["fields"])
        values["allowed_origins"] = list(dict.fromkeys(values["allowed_origins"]))
        _check_form(values)
        await _check_campaign(session, principal.workspace_id, values["campaign_id"])

        form = CaptureForm(
            id=ids.new_uuid(), workspace_id=principal.workspace_id, **values
        )
        session.add(form)
        await session.flush()
        await session.refresh(form)

        await _emit_form(session, principal, form, "form.created")
        return form

    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        form_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> CaptureForm:
        form = await AttributionRepository.from_session(session).get_form(
            workspace_id, form_id, for_update=for_update
        )
        if form is None:
            raise _form_not_found(form_id)
        return form

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[CaptureForm], str | None, bool]:
        return await AttributionRepository.from_session(session).list_forms(
            workspace_id, limit=limit, cursor=cursor
        )

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        form_id: uuid.UUID,
        payload: FormUpdate,
        *,
        if_match: str | None,
    ) -> CaptureForm:
        form = await self.get(session, principal.workspace_id, form_id, for_update=True)
        check_if_match(if_match, form.version)

        changes = {name: getattr(payload, name) for name in payload.model_fields_set}
        required = (
            "name",
            "fields",
            "attribute_keys",
            "required_fields",
            "allowed_origins",
            "honeypot_field",
            "enabled",
        )
        nulls = [name for name in required if name in changes and changes[name] is None]
        if nulls:
            raise InvalidInput(
                f"{', '.join(nulls)} cannot be null. Omit a field to keep its value.",
                errors=[
                    FieldError(name, "cannot be null", "null_not_allowed")
                    for name in nulls
                ],
            )
        if "fields" in changes:
            changes["fields"] = _with_email(changes["fields"])
        if "allowed_origins" in changes:
            changes["allowed_origins"] = list(dict.fromkeys(changes["allowed_origins"]))
        merged = {
            name: changes.get(name, getattr(form, name))
            for name in FormCreate.model_fields
        }
        _check_form(merged)
        if "campaign_id" in changes:
            await _check_campaign(
                session, principal.workspace_id, changes["campaign_id"]
            )
        for name, value in changes.items():
            setattr(form, name, value)
        if not session.is_modified(form):
            return form
        await session.flush()
        await session.refresh(form)

        await _emit_form(session, principal, form, "form.updated")
        return form

    async def create_publishable_key(
        self,
        session: AsyncSession,
        principal: Principal,
        form_id: uuid.UUID,
        payload: PublishableKeyCreate,
    ) -> NewApiKey:
        """Create a ``pk_`` key that may submit only this form, and nothing else."""
        form = await self.get(session, principal.workspace_id, form_id)

        created = await create_api_key(
            session,
            workspace_id=form.workspace_id,
            name=payload.name,
            scopes=(),
            kind=PUBLISHABLE,
        )
        session.add(FormPublishableKey(api_key_id=created.record.id, form_id=form.id))
        await session.flush()
        await session.refresh(created.record)
        log.info(
            "form.publishable_key_created",
            form_id=str(form.id),
            api_key_id=str(created.record.id),
        )
        return created


def _with_email(fields: list[str]) -> list[str]:
    return list(dict.fromkeys(["email", *fields]))


async def _check_campaign(
    session: AsyncSession, workspace_id: uuid.UUID, campaign_id: uuid.UUID | None
) -> None:
    if campaign_id is None:
        return
    repository = AttributionRepository.from_session(session)
    if not await repository.campaign_exists(workspace_id, campaign_id):
        raise InvalidInput(
            f"No campaign with id {ids.encode('campaign', campaign_id)} exists in this "
            "workspace. Create it first, or omit campaign_id.",
            errors=[FieldError("campaign_id", "not found", "not_found")],
        )


def _form_not_found(form_id: uuid.UUID) -> FormNotFound:
    return FormNotFound(
        f"No form with id {ids.encode('form', form_id)} exists in this workspace."
    )


async def _emit_form(
    session: AsyncSession, principal: Principal, form: CaptureForm, type: str
) -> None:
    await emit(
        session,
        workspace_id=form.workspace_id,
        type=type,
        object_type="form",
        object_id=form.id,
        data=FormSchema.model_validate(form).model_dump(mode="json"),
        actor=principal.actor,
    )
    log.info(type, form_id=str(form.id))


@dataclass(frozen=True)
class Submission:
    """A validated capture: the lead to create, its attribution and whether it consents."""

    lead: LeadCreate
    attribution: CaptureAttribution
    consent: bool


@dataclass(frozen=True)
class Client:
    """The client address and user agent of a submission, stored with its consent."""

    ip_address: str | None
    user_agent: str | None


def is_honeypot_filled(form: CaptureForm, values: Mapping[str, Any]) -> bool:
    value = values.get(form.honeypot_field)
    return value is not None and value != "" and value is not False


def parse_submission(
    form: CaptureForm, values: Mapping[str, Any], *, landing_page: str | None
) -> Submission:
    """Validate submitted values against the form; raise ``InvalidInput`` per field.

    Empty strings count as missing, as browsers send an empty input that way.
    """
    allowed = {
        *form.fields,
        *form.attribute_keys,
        *ATTRIBUTION_FIELDS,
        form.honeypot_field,
        CONSENT_FIELD,
        KEY_FIELD,
        *((PHONE_REGION_FIELD,) if "phone" in form.fields else ()),
    }
    errors: list[FieldError] = []
    cleaned: dict[str, Any] = {}
    for name, value in values.items():
        if name not in allowed:
            errors.append(
                FieldError(
                    name,
                    "This field is not accepted by this form. Remove it, or add it "
                    "to the form's fields or attribute_keys.",
                    "extra_forbidden",
                )
            )
        elif name == CONSENT_FIELD and isinstance(value, bool):
            cleaned[name] = value
        elif name in form.attribute_keys and isinstance(value, bool | int | float):
            # A JSON body may send typed values for custom fields.
            cleaned[name] = value
        elif not isinstance(value, str):
            errors.append(FieldError(name, "Input should be a string.", "string_type"))
        elif value.strip():
            cleaned[name] = value
    for name in dict.fromkeys(["email", *form.required_fields]):
        if name not in cleaned and not any(error["field"] == name for error in errors):
            errors.append(
                FieldError(name, "This field is required. Fill it in.", "missing")
            )
    consent = cleaned.get(CONSENT_FIELD)
    given = consent is True or (
        isinstance(consent, str) and consent.strip().lower() in _CONSENT_GIVEN
    )
    if form.consent_text is not None and not given:
        errors.append(
            FieldError(
                CONSENT_FIELD,
                "Consent is required. Send consent=true once the visitor agrees.",
                "consent_required",
            )
        )
    if errors:
        raise _invalid_submission(errors)

    attribution_values = {
        name: cleaned[name] for name in ATTRIBUTION_FIELDS if name in cleaned
    }
    attribution_values.setdefault("landing_page", landing_page)
    lead_values = {name: cleaned[name] for name in form.fields if name in cleaned}
    if PHONE_REGION_FIELD in cleaned:
        lead_values[PHONE_REGION_FIELD] = cleaned[PHONE_REGION_FIELD].strip().upper()
    attributes = {
        name: cleaned[name] for name in form.attribute_keys if name in cleaned
    }
    try:
        attribution = CaptureAttribution(
            **attribution_values, campaign_id=form.campaign_id, form_id=form.id
        )
        lead = LeadCreate(**lead_values, attributes=attributes, source="web_form")
    except ValidationError as error:
        raise _invalid_submission(validation_field_errors(error.errors())) from error
    return Submission(lead=lead, attribution=attribution, consent=given)


def _invalid_submission(errors: list[FieldError]) -> InvalidInput:
    return InvalidInput(
        "One or more fields are invalid. See errors for each field and fix them.",
        errors=errors,
    )


class CaptureService:
    async def submit(
        self,
        session: AsyncSession,
        principal: Principal,
        form: CaptureForm,
        submission: Submission,
        client: Client,
        *,
        default_phone_region: str | None = None,
    ) -> Lead:
        """Create the lead, or add a touch to the open lead with the same email."""
        # The phone, company domain and attributes are validated before the lookup, so
        # a known and an unknown email fail alike. Otherwise only a new lead would check
        # the phone and company domain.
        email_normalized = create_values(submission.lead, default_phone_region)[
            "email_normalized"
        ]
        attributes = await coerce_form_attributes(
            session, form.workspace_id, submission.lead.attributes
        )
        await check_attributes(session, form.workspace_id, "lead", attributes)
        repository = AttributionRepository.from_session(session)
        lead = await repository.get_open_lead_for_update(
            form.workspace_id, email_normalized
        )
        if lead is None:
            try:
                lead = await lead_service.create(
                    session,
                    principal,
                    submission.lead.model_copy(
                        update={
                            "attribution": submission.attribution,
                            "attributes": attributes,
                        }
                    ),
                    default_phone_region=default_phone_region,
                )
                touch_id = lead.first_touch_id
                assert touch_id is not None
            except DuplicateLead:
                # A concurrent capture created the lead after the lookup above.
                lead = await repository.get_open_lead_for_update(
                    form.workspace_id, email_normalized
                )
                if lead is None:
                    raise Conflict(
                        "The lead changed meanwhile. Submit the form again."
                    ) from None
                touch_id = await self._touch_existing(
                    session, principal, lead, submission
                )
        else:
            touch_id = await self._touch_existing(session, principal, lead, submission)

        if submission.consent and form.consent_text is not None:
            assert form.consent_version is not None
            session.add(
                LeadConsent(
                    id=ids.new_uuid(),
                    workspace_id=form.workspace_id,
                    lead_id=lead.id,
                    form_id=form.id,
                    touch_id=touch_id,
                    consent_text=form.consent_text,
                    consent_version=form.consent_version,
                    given_at=utcnow(),
                    ip_address=client.ip_address,
                    user_agent=(client.user_agent or "")[:MAX_USER_AGENT] or None,
                )
            )
            await session.flush()
        log.info("capture.received", form_id=str(form.id), lead_id=str(lead.id))
        return lead

    async def _touch_existing(
        self,
        session: AsyncSession,
        principal: Principal,
        lead: Lead,
        submission: Submission,
    ) -> uuid.UUID:
        touch = await record_touch(
            session, lead, channel="web_form", attribution=submission.attribution
        )
        await session.flush()
        await session.refresh(lead)

        await emit(
            session,
            workspace_id=lead.workspace_id,
            type="lead.touch_recorded",
            object_type="lead",
            object_id=lead.id,
            data=lead_data(lead),
            actor=principal.actor,
        )
        return touch.id


form_service = FormService()
capture_service = CaptureService()
