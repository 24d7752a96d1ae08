"""Domain errors and their rendering as RFC 9457 ``application/problem+json``.

Services raise a subclass of ``DomainError``; one handler turns it into a problem document
with a stable ``type`` URI and ``code``. FastAPI's own validation errors, unknown routes,
wrong methods and unexpected exceptions go through the same renderer, so a client sees
one error format everywhere and a 500 never carries a stack trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

log = structlog.get_logger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:problem:salescycle:"


class FieldError(dict[str, str]):
    """One invalid field: ``{"field": ..., "message": ..., "code": ...}``."""

    def __init__(self, field: str, message: str, code: str) -> None:
        super().__init__(field=field, message=message, code=code)


class DomainError(Exception):
    """An expected failure that maps to a 4xx (or 503) problem response."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors or [])
        self.headers = headers or {}
        self.extra = extra


class NotFound(DomainError):
    """The object does not exist, or belongs to another workspace.

    A subclass whose code is ``<kind>_not_found`` is the error of that id kind, which
    ``for_kind`` returns, so that a malformed id and an unknown one give one code.
    """

    status = 404
    code = "not_found"
    title = "Not found"
    _by_code: ClassVar[dict[str, type[NotFound]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        NotFound._by_code.setdefault(cls.code, cls)

    @classmethod
    def for_kind(cls, kind: str) -> type[NotFound]:
        """Return the error of a missing object of id kind ``kind``, such as
        ``LeadNotFound`` for ``lead``, or ``NotFound`` when the kind has none."""
        return cls._by_code.get(f"{kind}_not_found", cls)


class Conflict(DomainError):
    """The request conflicts with the current state of the object."""

    status = 409
    code = "conflict"
    title = "Conflict"


class InvalidInput(DomainError):
    """The request is well formed but one or more fields are invalid."""

    status = 422
    code = "validation_failed"
    title = "Invalid input"


class Unauthenticated(DomainError):
    """The request carries no valid API key."""

    status = 401
    code = "unauthenticated"
    title = "Unauthenticated"


class Forbidden(DomainError):
    """The API key lacks a scope the operation needs."""

    status = 403
    code = "forbidden"
    title = "Forbidden"


class PreconditionFailed(DomainError):
    """The ``If-Match`` version does not match the object's current version."""

    status = 412
    code = "version_mismatch"
    title = "Precondition failed"


class PreconditionRequired(DomainError):
    """Reserved for operations that demand ``If-Match``."""

    status = 428
    code = "precondition_required"
    title = "Precondition required"


class PayloadTooLarge(DomainError):
    """The request body exceeds the configured limit."""

    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class UnsupportedMediaType(DomainError):
    """The request body is not JSON."""

    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class ServiceUnavailable(DomainError):
    """A dependency (PostgreSQL, Redis) is unreachable; the request can be retried."""

    status = 503
    code = "service_unavailable"
    title = "Service unavailable"


class TransactionConflict(ServiceUnavailable):
    """PostgreSQL aborted the transaction to resolve a deadlock or a serialization failure.

    The transaction was rolled back, so the request changed nothing and the client can
    send it again unchanged.
    """

    code = "concurrent_conflict"
    title = "Concurrent conflict"


def problem_body(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    instance: str | None,
    errors: Sequence[dict[str, str]] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + code,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "code": code,
    }
    if errors:
        body["errors"] = list(errors)
    if extra:
        body.update(extra)
    return body


def problem_response(
    body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    return Response(
        content=orjson.dumps(body),
        status_code=int(body["status"]),
        media_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def render_domain_error(error: DomainError, instance: str | None) -> Response:
    # A ``code`` passed as an extra member narrows the class's code, and the problem
    # ``type`` follows it, so the two always name the same kind of error.
    extra = dict(error.extra)
    code = str(extra.pop("code", error.code))
    body = problem_body(
        status=error.status,
        code=code,
        title=error.title,
        detail=error.detail,
        instance=instance,
        errors=error.errors,
        extra=extra,
    )
    return problem_response(body, error.headers)


def _field_path(location: Sequence[int | str]) -> str:
    parts = list(location)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        source = parts.pop(0)
        if source != "body" and parts:
            parts[0] = f"{source}.{parts[0]}"
    return ".".join(str(part) for part in parts) or "body"


def with_article(word: str) -> str:
    """Prefix ``word`` with "a" or "an" by its first letter, for messages."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


# Characters of a caller's value that a message repeats; the rest is cut.
QUOTED_LIMIT = 60


def quoted(value: str, limit: int = QUOTED_LIMIT) -> str:
    """Quote a caller's value for a message, cut to ``limit`` characters and an
    ellipsis, so that a long invalid value does not fill the problem."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


# Pydantic prefixes the message of a ValueError raised in a validator with this.
_VALUE_ERROR_PREFIX = "Value error, "


# Without this, a malformed If-Match header gets pydantic's message, which only
# prints the header's regular expression.
_IF_MATCH_MESSAGE = (
    'If-Match must be an ETag in double quotes, such as "3", as the ETag response '
    "header sends it, or *"
)


def _describe(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "Invalid value"))
    kind = error.get("type", "")
    location = tuple(str(part).lower() for part in error.get("loc", ()))
    if kind == "string_pattern_mismatch" and location == ("header", "if-match"):
        message = _IF_MATCH_MESSAGE
    if kind == "value_error":
        message = message.removeprefix(_VALUE_ERROR_PREFIX)
    if kind == "missing":
        return "This field is required. Add it to the request."
    if kind == "extra_forbidden":
        return "This field is not accepted here. Remove it, or check its spelling."
    value = error.get("input")
    if (
        isinstance(value, str | int | float | bool)
        and len(repr(value)) <= 80
        and repr(value) not in message
    ):
        return f"{message}; got {value!r}."
    return message.rstrip(".") + "."


def validation_field_errors(errors: Sequence[Any]) -> list[FieldError]:
    return [
        FieldError(
            field=_field_path(error.get("loc", ())),
            message=_describe(error),
            code=str(error.get("type", "invalid")),
        )
        for error in errors
    ]


async def _handle_domain_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, DomainError)
    return render_domain_error(error, request.url.path)


# FastAPI's detail when reading the JSON body failed other than by a syntax error.
_BODY_PARSE_FAILED = "There was an error parsing the body"


def _malformed_json(request: Request, fault: str, advice: str) -> Response:
    """Return the malformed JSON problem, with ``fault`` written after "invalid JSON"."""
    body = problem_body(
        status=400,
        code="malformed_json",
        title="Malformed JSON",
        detail=f"The request body is not valid JSON{fault}. {advice}",
        instance=request.url.path,
        errors=[FieldError("body", f"invalid JSON{fault}", "json_invalid")],
    )
    return problem_response(body)


def _unparsable_body(request: Request, error: StarletteHTTPException) -> Response:
    """Return the malformed JSON problem for a body FastAPI could not parse."""
    if isinstance(error.__cause__, RecursionError):
        return _malformed_json(
            request,
            ", nested too deeply",
            "Send a JSON document with fewer levels of arrays and objects.",
        )
    return _malformed_json(request, ", unreadable", "Send a JSON document in UTF-8.")


async def _handle_validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    raw = list(error.errors())
    invalid = [item for item in raw if item.get("type") == "json_invalid"]
    if invalid:
        # FastAPI puts the character offset where the parser stopped in the location.
        location = list(invalid[0].get("loc", ()))
        offset = location[-1] if len(location) > 1 else None
        where = f" at character {offset}" if isinstance(offset, int) else ""
        return _malformed_json(request, where, "Send a JSON document.")
    body = problem_body(
        status=422,
        code="validation_failed",
        title="Invalid input",
        detail="One or more fields are invalid. See errors for each field and fix them.",
        instance=request.url.path,
        errors=validation_field_errors(raw),
    )
    return problem_response(body)


_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthenticated", "Unauthenticated"),
    403: ("forbidden", "Forbidden"),
    404: ("route_not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}


async def _handle_http_exception(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 400 and error.detail == _BODY_PARSE_FAILED:
        return _unparsable_body(request, error)
    code, title = _HTTP_CODES.get(error.status_code, ("http_error", "HTTP error"))
    headers = dict(error.headers or {})
    detail = str(error.detail)
    if error.status_code == 404:
        detail = (
            f"No route matches {request.method} {request.url.path}. Check the path."
        )
    elif error.status_code == 405:
        allowed = _allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        detail = (
            f"{request.method} is not allowed on {request.url.path}. "
            f"Allowed: {', '.join(allowed)}."
        )
    body = problem_body(
        status=error.status_code,
        code=code,
        title=title,
        detail=detail,
        instance=request.url.path,
    )
    return problem_response(body, headers)


def _allowed_methods(request: Request) -> list[str]:
    # Starlette's Allow header names only the methods of the first route that matched the
    # path. GET and POST on /v1/leads are two routes, so every route is asked per method.
    routes = request.app.router.routes
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in routes):
            allowed.append(method)
    return allowed


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


async def _handle_unexpected(request: Request, error: Exception) -> Response:
    log.error(
        "request.failed",
        path=request.url.path,
        method=request.method,
        exc_info=error,
    )
    body = problem_body(
        status=500,
        code="internal_error",
        title="Internal server error",
        detail="The server failed to handle the request. Retry later, or report the "
        "request id.",
        instance=request.url.path,
    )
    return problem_response(body)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _handle_domain_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(Exception, _handle_unexpected)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)
