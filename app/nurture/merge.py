"""Merge fields of steps: which ones each template may use, and their values.

Fields are namespaced. ``lead.*`` is the enrolled lead, and ``owner.*`` the lead's
owner, empty when the lead has none. ``company.name`` is the name of the workspace,
which is the sending company, because the lead's own company is ``lead.company``.
``offer.*`` exists only in special offer emails, with values the caller supplies at
send time. The names without a namespace (``first_name``, ``company``, ...) from
before namespaces stay valid aliases of the ``lead.*`` fields, so existing sequences
still render.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from app.core.errors import FieldError, InvalidInput
from app.nurture import templates

if TYPE_CHECKING:
    from app.nurture.compose import Recipient

UNSUBSCRIBE_FIELD = "unsubscribe_url"

MergeValues = dict[str, str | None]

LEAD_FIELDS: dict[str, str] = {
    f"lead.{name}": description for name, description in templates.LEAD_FIELDS.items()
}
OWNER_FIELDS: dict[str, str] = {
    "owner.first_name": "The first word of the owner's name.",
    "owner.last_name": "The owner's name after its first word.",
    "owner.full_name": "The owner's name.",
    "owner.email": "The owner's email address.",
}
COMPANY_FIELDS: dict[str, str] = {
    "company.name": "The name of the workspace that sends the sequence.",
}
OFFER_FIELDS: dict[str, str] = {
    "offer.code": "The lead's code of the step's offer.",
    "offer.discount": "The offer's discount, such as 15% or 25.00 EUR.",
    "offer.expires_at": "When the lead's offer code expires, in RFC 3339 UTC.",
}
# The un-namespaced names, kept as aliases of the lead.* fields.
ALIASES: dict[str, str] = {name: f"lead.{name}" for name in templates.LEAD_FIELDS}
COMMON_FIELDS: dict[str, str] = {
    **LEAD_FIELDS,
    **OWNER_FIELDS,
    **COMPANY_FIELDS,
    **{alias: f"Alias of {target}." for alias, target in ALIASES.items()},
}


def allowed_fields(kind: str, purpose: str | None, part: str) -> dict[str, str]:
    """Map each merge field that ``part`` of a step of ``kind`` may use to its meaning.

    ``part`` is ``subject`` or ``body_text`` of an email, or ``title`` or ``body`` of
    a task. Only an email body gets ``unsubscribe_url``, and only a special offer
    email gets the ``offer.*`` fields.
    """
    fields = dict(COMMON_FIELDS)
    if kind == "email" and purpose == "special_offer":
        fields.update(OFFER_FIELDS)
    if kind == "email" and part == "body_text":
        fields[UNSUBSCRIBE_FIELD] = templates.BODY_FIELDS[UNSUBSCRIBE_FIELD]
    return fields


def _step_templates(step: object) -> list[tuple[str, str]]:
    parts = ("subject", "body_text", "title", "body")
    found = []
    for part in parts:
        value = getattr(step, part, None)
        if isinstance(value, str):
            found.append((part, value))
    return found


def check_step_templates(steps: list[object], prefix: str = "steps") -> None:
    """Raise ``InvalidInput`` naming every step template with a bad merge field."""
    errors = []
    for index, step in enumerate(steps):
        kind = str(getattr(step, "kind", "email"))
        purpose = getattr(step, "purpose", None)
        for part, template in _step_templates(step):
            allowed = allowed_fields(kind, purpose, part)
            # The aliases are accepted but not suggested, so new templates use lead.*.
            listed = [name for name in allowed if name not in ALIASES]
            for problem in templates.check(template, allowed, listed):
                errors.append(
                    FieldError(
                        f"{prefix}.{index}.{part}", problem.message, problem.code
                    )
                )
    if errors:
        raise InvalidInput(
            f"{errors[0]['field']}: {errors[0]['message']}",
            errors=errors,
        )


def lead_values(recipient: Recipient) -> MergeValues:
    """Map the lead.* fields, their aliases, owner.* and company.name to values."""
    lead = recipient.merge_values()
    values: MergeValues = {f"lead.{name}": value for name, value in lead.items()}
    values.update(lead)
    owner_name = recipient.owner_name or ""
    first, _, rest = owner_name.strip().partition(" ")
    values.update(
        {
            "owner.first_name": first or None,
            "owner.last_name": rest.strip() or None,
            "owner.full_name": owner_name.strip() or None,
            "owner.email": recipient.owner_email,
            "company.name": recipient.workspace_name,
        }
    )
    return values


def offer_values(offer: Mapping[str, str | None] | None) -> MergeValues:
    """Map the offer.* fields to the given values, and to None where missing."""
    supplied = offer or {}
    return {field: supplied.get(field.removeprefix("offer.")) for field in OFFER_FIELDS}
