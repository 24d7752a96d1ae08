"""``/v1/forms`` (secret keys) and the public ``/v1/capture/{form_id}`` (publishable keys).

A browser posts a capture form straight to the API, so the capture route authenticates
a ``pk_`` key from the Authorization header, the ``key`` query parameter or a ``key``
body field, responds to CORS preflights for the form's allowed origins, and rate-limits
by client address and by form before it reads the body.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
import structlog
from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.security import HTTPBearer
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, RedirectResponse

from app.core import ids
from app.core.auth import Principal, hash_key, require
from app.core.concurrency import IfMatch, set_etag
from app.core.errors import (
    DomainError,
    FieldError,
    Forbidden,
    InvalidInput,
    PayloadTooLarge,
    Unauthenticated,
    UnsupportedMediaType,
)
from app.core.idempotency import HEADER, run_idempotent, validate_key
from app.core.middleware import BodyTooLarge
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.leads.attribution_errors import (
    FormNotFound,
    MalformedBody,
    OriginNotAllowed,
    RateLimited,
)
from app.leads.attribution_repository import AttributionRepository
from app.leads.attribution_schemas import MAX_PAGE_URL, check_page_url
from app.leads.capture import (
    Client,
    capture_service,
    form_service,
    is_honeypot_filled,
    parse_submission,
)
from app.leads.capture_limits import count_capture
from app.leads.capture_schemas import (
    KEY_FIELD,
    CaptureReceipt,
    Form,
    FormCreate,
    FormUpdate,
    PublishableKey,
    PublishableKeyCreate,
)
from app.models import CaptureForm
from app.settings import Settings

log = structlog.get_logger(__name__)

forms_router = APIRouter(prefix="/forms", tags=["forms"], route_class=UnitOfWorkRoute)

_JSON = "application/json"
_FORM_ENCODED = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"
_PREFLIGHT_MAX_AGE = "600"
# IPv6 clients are counted per network of this prefix length, one IPv6 subnet.
# NOTE: a subscriber given a /56 or a /48 still has 256 or 65,536 such networks.
IPV6_PREFIX_LENGTH = 64
_ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-Id"
_EXPOSED_HEADERS = (
    "RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After, X-Request-Id"
)


@forms_router.post(
    "",
    operation_id="forms_create",
    summary="Create a capture form",
    status_code=status.HTTP_201_CREATED,
    response_model=Form,
    responses=problem_responses(403, 413, 415),
)
async def create_form(
    request: Request,
    response: Response,
    payload: FormCreate,
    principal: Principal = Depends(require("leads:write")),
) -> Form:
    """Create a capture form; publish it with a key from POST /v1/forms/{form_id}/publishable-keys."""
    form = await form_service.create(request.state.session, principal, payload)
    set_etag(response, form.version)
    response.headers["Location"] = f"/v1/forms/{ids.encode('form', form.id)}"
    return Form.model_validate(form)


@forms_router.get(
    "",
    operation_id="forms_list",
    summary="List capture forms",
    response_model=Page[Form],
    responses=problem_responses(403),
)
async def list_forms(
    request: Request,
    principal: Principal = Depends(require("leads:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[Form]:
    """List capture forms, newest first."""
    rows, next_cursor, has_more = await form_service.list(
        request.state.session, principal.workspace_id, limit=limit, cursor=cursor
    )
    return Page[Form](
        data=[Form.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@forms_router.get(
    "/{form_id}",
    operation_id="forms_get",
    summary="Get a capture form",
    response_model=Form,
    responses=problem_responses(403, 404),
)
async def get_form(
    request: Request,
    response: Response,
    form_id: str,
    principal: Principal = Depends(require("leads:read")),
) -> Form:
    """Fetch one capture form by id."""
    form = await form_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("form", form_id, "form"),
    )
    set_etag(response, form.version)
    return Form.model_validate(form)


@forms_router.patch(
    "/{form_id}",
    operation_id="forms_update",
    summary="Update a capture form",
    response_model=Form,
    responses=problem_responses(403, 404, 412, 413, 415),
)
async def update_form(
    request: Request,
    response: Response,
    form_id: str,
    payload: FormUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("leads:write")),
) -> Form:
    """Change a capture form or disable it; send If-Match to guard against races."""
    form = await form_service.update(
        request.state.session,
        principal,
        parse_path_id("form", form_id, "form"),
        payload,
        if_match=if_match,
    )
    set_etag(response, form.version)
    return Form.model_validate(form)


@forms_router.post(
    "/{form_id}/publishable-keys",
    operation_id="forms_publishable_keys_create",
    summary="Create a publishable key for a form",
    status_code=status.HTTP_201_CREATED,
    response_model=PublishableKey,
    responses=problem_responses(403, 404, 413, 415),
)
async def create_publishable_key(
    request: Request,
    form_id: str,
    payload: PublishableKeyCreate | None = None,
    principal: Principal = Depends(require("leads:write")),
) -> PublishableKey:
    """Create a pk_ key that can only submit this form; revoke it with 'salescycle api-keys revoke'."""
    parsed_id = parse_path_id("form", form_id, "form")
    created = await form_service.create_publishable_key(
        request.state.session, principal, parsed_id, payload or PublishableKeyCreate()
    )
    record = created.record
    return PublishableKey(
        id=record.id,
        form_id=parsed_id,
        name=record.name,
        prefix=record.prefix,
        key=created.secret,
        created_at=record.created_at,
    )


@dataclass(frozen=True)
class CaptureContext:
    """The form, caller and body that the capture route resolved before the handler."""

    form: CaptureForm
    principal: Principal
    values: dict[str, Any]
    form_encoded: bool


_CONTEXT = "capture_context"
_ORIGIN = "capture_origin"
_RATE_HEADERS = "capture_rate_headers"


def _state(request: Request) -> dict[str, Any]:
    state: dict[str, Any] = request.scope.setdefault("state", {})
    return state


def _response_headers(request: Request) -> dict[str, str]:
    state = _state(request)
    headers = {"Vary": "Origin", **state.get(_RATE_HEADERS, {})}
    origin = state.get(_ORIGIN)
    if origin is not None:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = _EXPOSED_HEADERS
    return headers


class CaptureRoute(UnitOfWorkRoute):
    """The unit-of-work route of public captures.

    It resolves the form, the Origin, the rate limit and the publishable key before
    ``Idempotency-Key`` handling, which needs the caller, and adds the CORS and
    RateLimit headers to every response, errors included.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await inner(request)
            except BodyTooLarge as error:
                raise PayloadTooLarge(
                    str(error.detail), headers=_response_headers(request)
                ) from None
            except DomainError as error:
                error.headers.update(_response_headers(request))
                raise
            response.headers.update(_response_headers(request))
            return response

        return handler

    async def _run(
        self, request: Request, call: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.method != "POST":
            return await call(request)
        context = await _prepare(request)
        key = request.headers.get(HEADER)
        if key is None:
            return await call(request)
        return await run_idempotent(
            request,
            request.state.session,
            context.principal,
            _client_scoped_key(request, validate_key(key)),
            call,
            request.app.state.settings.idempotency_ttl_seconds,
        )


def _client_scoped_key(request: Request, key: str) -> str:
    """Return the digest of ``key`` and the client address, as the stored key.

    Every visitor of a page sends the same publishable key, so without the address
    two visitors whose frontends pick the same Idempotency-Key would share one
    stored response. A visitor would get 422 for another visitor's key, and could
    learn from it that a key, such as one derived from an email, was used.
    """
    digest = hashlib.sha256(f"{_client_address(request)}\n{key}".encode())
    return f"capture:{digest.hexdigest()}"


capture_router = APIRouter(
    prefix="/capture", tags=["capture"], route_class=CaptureRoute
)
# The path prefix of the capture routes, under the API's /v1.
CAPTURE_PATH_PREFIX = "/v1/capture/"

_publishable_key = HTTPBearer(
    scheme_name="publishable_key",
    description="A publishable key, `pk_…`, created with POST "
    "/v1/forms/{form_id}/publishable-keys. Browsers that cannot send headers pass it "
    "as the `key` query parameter or form field instead.",
    auto_error=False,
)

_CAPTURE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The form's fields, attribute keys, utm_* values, referral_code, "
        "landing_page, referrer, consent and optionally key. Empty values count as "
        "missing.",
        "content": {
            _JSON: {
                "schema": {
                    "type": "object",
                    "additionalProperties": {
                        "type": ["string", "boolean", "integer", "number"]
                    },
                    "examples": [{"email": "ada@example.com", "consent": True}],
                }
            },
            _FORM_ENCODED: {
                "schema": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                }
            },
        },
    }
}


async def _load_form(request: Request, form_id: str) -> CaptureForm:
    try:
        parsed = ids.decode("form", form_id)
    except ids.InvalidId:
        form = None
    else:
        repository = AttributionRepository.from_session(request.state.session)
        form = await repository.get_form(None, parsed)
    if form is None or not form.enabled:
        raise FormNotFound(f"No enabled form with id {form_id!r} exists.")
    return form


def _check_origin(request: Request, form: CaptureForm) -> None:
    origin = request.headers.get("origin")
    if origin is None:
        return
    if origin not in form.allowed_origins:
        raise OriginNotAllowed(
            f"The origin {origin!r} may not submit this form. Add it to the form's "
            "allowed_origins.",
            origin=origin,
        )
    _state(request)[_ORIGIN] = origin


async def _read_values(request: Request) -> tuple[dict[str, Any], bool]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == _JSON or media_type.endswith("+json"):
        body = await request.body()
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            fault = f"invalid JSON at character {error.pos}: {error.msg}"
            raise MalformedBody(
                f"The request body is {fault}. Send a JSON object in UTF-8.",
                errors=[FieldError("body", fault, "json_invalid")],
            ) from error
        if not isinstance(document, dict):
            raise InvalidInput(
                "The request body must be a JSON object of field names and values.",
                errors=[FieldError("body", "not a JSON object", "object_type")],
            )
        return document, False
    if media_type in (_FORM_ENCODED, _MULTIPART):
        try:
            form = await request.form()
        except HTTPException as error:
            # Starlette rejects a multipart body without a boundary and a form of
            # more than 1,000 fields this way. A DomainError gets the CORS headers.
            raise DomainError(
                f"The form body could not be read: {error.detail} Send the form as "
                f"{_FORM_ENCODED} with at most 1,000 fields.",
                errors=[FieldError("body", str(error.detail), "form_unreadable")],
            ) from error
        values: dict[str, Any] = {}
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                raise InvalidInput(
                    "Capture forms take no file uploads. Remove the file field.",
                    errors=[FieldError(name, "file uploads are not accepted", "file")],
                )
            if name in values:
                raise InvalidInput(
                    f"The field {name!r} appears more than once. Send it once.",
                    errors=[FieldError(name, "repeated field", "repeated")],
                )
            values[name] = value
        return values, True
    sent = repr(media_type) if media_type else "no Content-Type"
    raise UnsupportedMediaType(
        f"The body must be {_JSON} or {_FORM_ENCODED}, not {sent}. Set Content-Type."
    )


def _token(request: Request, values: dict[str, Any]) -> str:
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                "The Authorization header must be 'Bearer pk_…'.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return token.strip()
    sent = request.query_params.get(KEY_FIELD) or values.get(KEY_FIELD)
    if not isinstance(sent, str) or not sent.strip():
        raise Unauthenticated(
            "No publishable key was sent. Send 'Authorization: Bearer pk_…', or the "
            "key as the 'key' query parameter or form field.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return sent.strip()


async def _authenticate(
    request: Request, form: CaptureForm, values: dict[str, Any]
) -> Principal:
    token = _token(request, values)
    repository = AttributionRepository.from_session(request.state.session)
    found = await repository.find_form_key(hash_key(token), form.id)
    if found is None or found[1] != form.workspace_id:
        log.info("capture.key_rejected", form_id=str(form.id), key_prefix=token[:11])
        raise Unauthenticated(
            "The publishable key is invalid, revoked, or not issued for this form. "
            "Create one with POST /v1/forms/{form_id}/publishable-keys.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    api_key_id, workspace_id, kind = found
    if kind == "secret":
        raise Forbidden(
            "Secret keys cannot submit capture forms, and must never be put in a web "
            "page. Use the form's publishable key.",
        )
    principal = Principal(
        api_key_id=api_key_id,
        workspace_id=workspace_id,
        scopes=frozenset(),
        kind=kind,
    )
    request.state.principal = principal
    return principal


async def _prepare(request: Request) -> CaptureContext:
    """Resolve the form, Origin, rate limit and key of a capture, once per request."""
    cached = _state(request).get(_CONTEXT)
    if isinstance(cached, CaptureContext):
        return cached
    form = await _load_form(request, request.path_params["form_id"])
    _check_origin(request, form)

    settings: Settings = request.app.state.settings
    limit = await count_capture(
        request.app.state.queue,
        form_key=str(form.id),
        client_address=_client_address(request),
        per_client=settings.capture_rate_limit_per_minute,
        per_form=settings.capture_form_rate_limit_per_minute,
    )
    if limit is not None:
        _state(request)[_RATE_HEADERS] = limit.headers()
        if limit.exceeded:
            log.info("capture.rate_limited", form_id=str(form.id))
            raise RateLimited(
                f"Too many submissions. Retry in {limit.reset_seconds} seconds.",
            )

    values, form_encoded = await _read_values(request)
    principal = await _authenticate(request, form, values)
    context = CaptureContext(
        form=form, principal=principal, values=values, form_encoded=form_encoded
    )
    _state(request)[_CONTEXT] = context
    return context


def _client_address(request: Request) -> str:
    """Return the rate-limit key of the caller: its IPv4 address or its IPv6 /64.

    One IPv6 subscriber is usually given a whole /64 and can pick any address in it,
    so counting single IPv6 addresses would let one visitor skip the limit.
    """
    # The peer, or the X-Forwarded-For client when the peer is one that uvicorn
    # trusts: 127.0.0.1 and ::1 by default, or the FORWARDED_ALLOW_IPS variable.
    host = request.client.host if request.client is not None else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX_LENGTH), strict=False))
    return str(address)


def _landing_page_from_referer(request: Request) -> str | None:
    # A Referer that landing_page would reject is dropped rather than reported,
    # because the caller did not send it as a field.
    referer = request.headers.get("referer")
    if referer is None or len(referer) > MAX_PAGE_URL:
        return None
    try:
        return check_page_url(referer)
    except ValueError:
        return None


@capture_router.post(
    "/{form_id}",
    operation_id="capture_submit",
    summary="Submit a capture form",
    response_model=CaptureReceipt,
    responses={
        303: {
            "description": "Received; a form-encoded post is sent to the form's "
            "success_redirect_url."
        },
        **problem_responses(401, 403, 404, 413, 415, 429),
    },
    openapi_extra=_CAPTURE_BODY,
)
async def submit_capture(
    request: Request,
    form_id: str,
    key: Annotated[
        str | None,
        Query(
            max_length=200,
            description="The publishable key, for posts that cannot send Authorization.",
        ),
    ] = None,
    _credentials: Any = Depends(_publishable_key),
) -> Response:
    """Capture a lead from a public web form, authenticated with the form's publishable key."""
    context = await _prepare(request)
    form = context.form
    if is_honeypot_filled(form, context.values):
        log.info("capture.honeypot_dropped", form_id=str(form.id))
    else:
        referer = _landing_page_from_referer(request)
        submission = parse_submission(form, context.values, landing_page=referer)
        await capture_service.submit(
            request.state.session,
            context.principal,
            form,
            submission,
            Client(
                ip_address=request.client.host if request.client else None,
                user_agent=request.headers.get("user-agent"),
            ),
            default_phone_region=request.app.state.settings.default_phone_region,
        )
    if context.form_encoded and form.success_redirect_url:
        return RedirectResponse(form.success_redirect_url, status_code=303)
    return JSONResponse(CaptureReceipt().model_dump(mode="json"))


@capture_router.options("/{form_id}", include_in_schema=False)
async def preflight_capture(request: Request, form_id: str) -> Response:
    """Respond to a CORS preflight from one of the form's allowed origins."""
    # NOTE: preflights are not rate-limited; each costs one primary-key lookup, and
    # browsers cache the response for Access-Control-Max-Age seconds.
    form = await _load_form(request, form_id)
    _check_origin(request, form)
    return Response(
        status_code=204,
        headers={
            "Allow": "OPTIONS, POST",
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": _ALLOWED_HEADERS,
            "Access-Control-Max-Age": _PREFLIGHT_MAX_AGE,
        },
    )
