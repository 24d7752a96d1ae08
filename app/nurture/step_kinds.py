"""Input types of the step kinds besides email, and of a sequence's sender addresses.

A step is a tagged union on ``kind``. Pydantic puts the tag into the location of each
error (``steps.2.task.title``). ``untag_step_errors`` removes it, so an error names
the field as the client wrote it (``steps.2.title``).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Sequence
from email.headerregistry import Address
from email.utils import getaddresses
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from app.core.errors import FieldError, InvalidInput
from app.webhooks.errors import InvalidWebhookUrl, WebhookUrlNotAllowed
from app.webhooks.url_safety import Address as IPAddress
from app.webhooks.url_safety import AddressPolicy, UnsafeAddress, parse_webhook_url

STEP_KINDS = ("email", "task", "webhook", "wait")
MAX_TASK_DUE_DAYS = 365
MAX_TASK_BODY_LENGTH = 10_000
MAX_WEBHOOK_HEADERS = 20
MAX_HEADER_NAME_LENGTH = 100
MAX_HEADER_VALUE_LENGTH = 1_000
MAX_ADDRESS_LENGTH = 320

# The policy with an empty allow-list: public addresses only.
STRICT_URL_POLICY = AddressPolicy()
_LOOPBACK = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
# RFC 9110 section 5.6.2: a field name is a token.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers the HTTP client sets from the request itself, and the Standard Webhooks
# signature headers, which a step must not forge.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)


def step_kind(value: Any) -> str | None:
    """Return the ``kind`` of a step given as a dict or a model, email when missing.

    Steps written before other kinds existed carry no kind, and all were emails.
    """
    # A step sent as null, a number or a list has no kind. It then fails as an
    # invalid kind instead of raising AttributeError.
    if isinstance(value, dict):
        kind = value.get("kind", "email")
    else:
        kind = getattr(value, "kind", None)
    return kind if isinstance(kind, str) and kind in STEP_KINDS else None


def untag_step_errors(value: Any, handler: Callable[[Any], Any]) -> Any:
    """Validate one step, removing the step kind from the location of each error."""
    try:
        return handler(value)
    except ValidationError as error:
        details: list[InitErrorDetails] = []
        for item in error.errors():
            location = tuple(item["loc"])
            if location and location[0] in STEP_KINDS:
                location = location[1:]
            elif item["type"] == "invalid_step_kind":
                location = (*location, "kind")
            details.append(
                InitErrorDetails(
                    type=PydanticCustomError(item["type"], item["msg"]),
                    loc=location,
                    input=item.get("input"),
                )
            )
        raise ValidationError.from_exception_data(error.title, details) from None


def _reject_line_breaks(value: str) -> str:
    for char in value:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            raise ValueError(
                f"control character U+{ord(char):04X} is not allowed, because the "
                "value must be one line"
            )
    return value


def _check_webhook_url(value: str) -> str:
    # Only the syntax is checked here. check_step_urls checks the addresses that are
    # known without DNS, and the check at connect time covers every host.
    try:
        return parse_webhook_url(value).url
    except InvalidWebhookUrl as error:
        raise ValueError(error.detail) from error


def check_step_urls(
    steps: Sequence[object], policy: AddressPolicy, prefix: str = "steps"
) -> None:
    """Raise ``InvalidInput`` for each webhook step whose URL the policy forbids.

    Only addresses known without a DNS lookup are checked when a step is saved: an
    IP literal, and ``localhost``, which RFC 6761 reserves for loopback. A host name
    may not resolve yet, so the worker checks every address again when it connects.
    """
    errors: list[FieldError] = []
    for index, step in enumerate(steps):
        url_text = getattr(step, "url", None)
        if getattr(step, "kind", None) != "webhook" or not isinstance(url_text, str):
            continue
        url = parse_webhook_url(url_text)
        try:
            policy.check_scheme(url)
        except WebhookUrlNotAllowed:
            errors.append(
                FieldError(
                    f"{prefix}.{index}.url",
                    "the webhook URL must use https://; plain http:// is accepted "
                    "only when an operator sets SALESCYCLE_WEBHOOK_ALLOW_HTTP",
                    "webhook_url_not_allowed",
                )
            )
            continue
        if url.address is not None:
            addresses: list[IPAddress] = [url.address]
        elif url.host == "localhost" or url.host.endswith(".localhost"):
            addresses = list(_LOOPBACK)
        else:
            continue
        try:
            policy.check(url.host, addresses)
        except UnsafeAddress as error:
            errors.append(
                FieldError(
                    f"{prefix}.{index}.url",
                    f"the webhook URL is not allowed: {error}. Steps call public "
                    "addresses only, unless an operator allows the host with the "
                    "SALESCYCLE_WEBHOOK_ALLOW_PRIVATE_HOSTS setting",
                    "webhook_url_not_allowed",
                )
            )
    if errors:
        raise InvalidInput(
            f"{errors[0]['field']}: {errors[0]['message']}", errors=errors
        )


def _check_headers(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_WEBHOOK_HEADERS:
        raise ValueError(
            f"at most {MAX_WEBHOOK_HEADERS} headers are allowed, got {len(value)}"
        )
    seen: set[str] = set()
    for name, header_value in value.items():
        lowered = name.lower()
        if len(name) > MAX_HEADER_NAME_LENGTH or not _HEADER_NAME.fullmatch(name):
            raise ValueError(
                f"{name[:MAX_HEADER_NAME_LENGTH]!r} is not a valid header name. Use "
                f"letters, digits and '-', at most {MAX_HEADER_NAME_LENGTH} characters"
            )
        if lowered in RESERVED_HEADERS:
            raise ValueError(
                f"the header {name!r} is set by the sender and cannot be given. "
                "Remove it"
            )
        if lowered in seen:
            raise ValueError(f"the header {name!r} is given twice, in another case")
        seen.add(lowered)
        if len(header_value) > MAX_HEADER_VALUE_LENGTH:
            raise ValueError(
                f"the value of {name!r} is longer than {MAX_HEADER_VALUE_LENGTH} "
                "characters"
            )
        for char in header_value:
            if char != "\t" and unicodedata.category(char) == "Cc":
                raise ValueError(
                    f"the value of {name!r} contains the control character "
                    f"U+{ord(char):04X}, which could inject a header"
                )
    return value


def check_sender_address(value: str) -> str:
    """Return ``value`` if it is one RFC 5322 mailbox, such as ``Acme <a@acme.example>``.

    Raises ``ValueError`` for line breaks or control characters (header injection),
    for several addresses, and for an address part that ``email-validator`` rejects.
    The display name is kept as written and the address part is normalized.
    """
    _reject_line_breaks(value)
    mailboxes = getaddresses([value])
    if len(mailboxes) != 1 or not mailboxes[0][1]:
        raise ValueError(
            f"{value!r} is not one email address. Write it as sales@example.com or "
            "Acme Sales <sales@example.com>"
        )
    display_name, address = mailboxes[0]
    try:
        checked = validate_email(address, check_deliverability=False, strict=True)
    except EmailNotValidError as error:
        raise ValueError(f"{address!r} is not a valid email address: {error}") from None
    try:
        mailbox = Address(display_name=display_name, addr_spec=checked.normalized)
    except (ValueError, IndexError) as error:
        raise ValueError(
            f"{value!r} cannot be written into a header: {error}"
        ) from None
    return str(mailbox)


TaskTitle = Annotated[
    str, Field(min_length=1, max_length=200), AfterValidator(_reject_line_breaks)
]
TaskBody = Annotated[str, Field(min_length=1, max_length=MAX_TASK_BODY_LENGTH)]
TaskDueInDays = Annotated[int, Field(ge=0, le=MAX_TASK_DUE_DAYS)]
WebhookUrlText = Annotated[
    str, Field(min_length=1, max_length=2048), AfterValidator(_check_webhook_url)
]
WebhookHeaders = Annotated[dict[str, str], AfterValidator(_check_headers)]
SenderAddress = Annotated[
    str,
    Field(min_length=3, max_length=MAX_ADDRESS_LENGTH),
    AfterValidator(check_sender_address),
]
