"""The route class that gives every request one unit of work.

The handler runs with one ``AsyncSession`` in ``request.state.session``. A response
below 400 commits the session before it is returned; anything else rolls back. Jobs that
services deferred go to arq only after the commit. A POST with ``Idempotency-Key`` runs
through ``app.core.idempotency`` inside the same transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, get_args, get_origin

import orjson
import structlog
from asyncpg.exceptions import DeadlockDetectedError, SerializationError
from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError
from starlette.responses import Response

from app.core.auth import authenticate
from app.core.db import drop_pending_jobs
from app.core.errors import (
    Conflict,
    DomainError,
    FieldError,
    InvalidInput,
    PreconditionFailed,
    ServiceUnavailable,
    TransactionConflict,
    UnsupportedMediaType,
)
from app.core.idempotency import HEADER, run_idempotent
from app.core.openapi import IDEMPOTENCY_KEY_PARAMETER

log = structlog.get_logger(__name__)

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Methods whose body is checked on an operation that takes none: a DELETE body would
# be ignored as silently as a POST one.
NO_BODY_CHECKED_METHODS = BODY_METHODS | {"DELETE"}


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


# asyncpg's errors for a connection that is lost, refused or closed.
_ASYNCPG_CONNECTION_ERRORS = frozenset(
    {
        "ConnectionDoesNotExistError",
        "CannotConnectNowError",
        "InterfaceError",
        "ConnectionFailureError",
        "AdminShutdownError",
    }
)


def is_connection_error(error: BaseException) -> bool:
    """Tell whether ``error`` means PostgreSQL cannot be reached.

    Errors raised through SQLAlchemy wrap asyncpg's; a plain asyncpg connection, as
    in ``Database.autocommit``, raises them as they are.
    """
    if isinstance(error, OSError | TimeoutError):
        return True
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        original = error.orig
        name = type(original).__name__ if original is not None else ""
        return isinstance(original, OSError) or name in _ASYNCPG_CONNECTION_ERRORS
    return (
        type(error).__module__.startswith("asyncpg")
        and type(error).__name__ in _ASYNCPG_CONNECTION_ERRORS
    )


def is_transaction_conflict(error: BaseException) -> bool:
    """Tell whether PostgreSQL aborted the transaction for a deadlock (SQLSTATE 40P01)
    or a serialization failure (40001).

    SQLAlchemy wraps asyncpg's error in ``DBAPIError.orig``, whose cause is the asyncpg
    exception itself.
    """
    if isinstance(error, DBAPIError) and error.orig is not None:
        error = error.orig.__cause__ or error.orig
    return isinstance(error, DeadlockDetectedError | SerializationError)


def _takes_several(annotation: Any) -> bool:
    if get_origin(annotation) in (list, tuple, set):
        return True
    return any(_takes_several(arg) for arg in get_args(annotation))


def _query_params(dependant: Dependant) -> dict[str, bool]:
    """Map each query parameter of a route to whether it takes several values."""
    params = {
        param.alias: _takes_several(param.field_info.annotation)
        for param in dependant.query_params
    }
    for dependency in dependant.dependencies:
        params.update(_query_params(dependency))
    return params


def check_query(request: Request, known: dict[str, bool]) -> None:
    """Reject unknown query parameters, and repeats of single-valued ones."""
    unknown = sorted({name for name in request.query_params if name not in known})
    if unknown:
        accepted = ", ".join(sorted(known))
        raise InvalidInput(
            f"Unknown query parameter {unknown[0]!r}. Remove it, or check its spelling"
            + (f"; this operation accepts: {accepted}." if known else "."),
            errors=[
                FieldError(
                    f"query.{name}", "unknown query parameter", "unknown_parameter"
                )
                for name in unknown
            ],
        )
    repeated = sorted(
        {
            name
            for name in request.query_params
            if not known[name] and len(request.query_params.getlist(name)) > 1
        }
    )
    if repeated:
        raise InvalidInput(
            f"The query parameter {repeated[0]!r} appears more than once. Send it once.",
            errors=[
                FieldError(f"query.{name}", "repeated query parameter", "repeated")
                for name in repeated
            ],
        )
    # PostgreSQL text cannot hold NUL, so such a filter value is refused here rather
    # than failing in the database.
    unstorable = sorted(
        {name for name, value in request.query_params.multi_items() if "\x00" in value}
    )
    if unstorable:
        raise InvalidInput(
            f"The query parameter {unstorable[0]!r} contains a NUL character, which no "
            "stored value holds. Remove it.",
            errors=[
                FieldError(f"query.{name}", "contains a NUL character", "unstorable")
                for name in unstorable
            ],
        )


class UnitOfWorkRoute(APIRoute):
    """An ``APIRoute`` whose handler commits once, then sends deferred jobs.

    A body sent without ``Content-Type`` is parsed as JSON, as the idempotency check
    reads it.
    """

    # Whether a POST honours Idempotency-Key, which its OpenAPI operation then declares.
    honours_idempotency_key = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["strict_content_type"] = False
        super().__init__(*args, **kwargs)
        if self.honours_idempotency_key and "POST" in (self.methods or ()):
            extra = dict(self.openapi_extra or {})
            extra["parameters"] = [
                *extra.get("parameters", []),
                IDEMPOTENCY_KEY_PARAMETER,
            ]
            self.openapi_extra = extra

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        call = super().get_route_handler()
        expects_json = self.body_field is not None
        # An endpoint that documents its body in openapi_extra reads the body itself.
        takes_no_body = not expects_json and "requestBody" not in (
            self.openapi_extra or {}
        )
        known_query = _query_params(self.dependant)

        async def handler(request: Request) -> Response:
            check_query(request, known_query)
            if takes_no_body and request.method in NO_BODY_CHECKED_METHODS:
                content_type = request.headers.get("content-type", "")
                # Other bodies, such as the form a one-click unsubscribe posts, carry
                # no field the caller could expect the endpoint to read.
                if not content_type or _is_json(content_type):
                    check_no_body(await request.body())
            if expects_json and request.method in BODY_METHODS:
                content_type = request.headers.get("content-type", "")
                if content_type and not _is_json(content_type):
                    raise UnsupportedMediaType(
                        f"The body must be JSON, not {content_type!r}. Send "
                        "'Content-Type: application/json'."
                    )
            app_state = request.app.state
            session = app_state.db.sessionmaker()
            request.state.session = session
            try:
                response = await self._run(request, call)
                if response.status_code < 400:
                    await session.commit()
                else:
                    await session.rollback()
                    drop_pending_jobs(session)
            except StaleDataError as error:
                await self._abort(session)
                raise PreconditionFailed(
                    "The object was changed by another request meanwhile. Fetch it "
                    "again and retry with its new version."
                ) from error
            except IntegrityError as error:
                await self._abort(session)
                log.warning("request.integrity_error", error=str(error.orig))
                raise ConflictingWrite(
                    "The request conflicts with data written meanwhile. Fetch the "
                    "object again and retry."
                ) from error
            except DomainError:
                await self._abort(session)
                raise
            except Exception as error:
                await self._abort(session)
                if is_transaction_conflict(error):
                    log.warning(
                        "request.transaction_conflict",
                        method=request.method,
                        path=request.url.path,
                        error=repr(error),
                    )
                    raise TransactionConflict(
                        "The request ran into a concurrent request and the database "
                        "rolled it back, so it changed nothing. Retry it as it is, "
                        "with the same Idempotency-Key if it had one.",
                        headers={"Retry-After": "1"},
                    ) from error
                if is_connection_error(error):
                    log.error("database.unavailable", error=repr(error))
                    raise ServiceUnavailable(
                        "The database is unreachable. Retry in a few seconds.",
                        headers={"Retry-After": "5"},
                    ) from error
                raise
            finally:
                await session.close()
            await app_state.queue.send_pending(session)
            return response

        return handler

    async def _run(
        self, request: Request, call: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        key = request.headers.get(HEADER)
        if request.method != "POST" or key is None:
            return await call(request)
        session = request.state.session
        principal = await authenticate(request, session)
        return await run_idempotent(
            request,
            session,
            principal,
            key,
            call,
            request.app.state.settings.idempotency_ttl_seconds,
        )

    @staticmethod
    async def _abort(session: AsyncSession) -> None:
        drop_pending_jobs(session)
        try:
            await session.rollback()
        except Exception as error:
            log.warning("session.rollback_failed", error=repr(error))


class ConflictingWrite(Conflict):
    """A constraint rejected the write because another request changed the same data."""

    title = "Conflicting write"


def check_no_body(body: bytes) -> None:
    """Reject a JSON body other than ``{}`` or ``null``, or an unreadable one, on an
    endpoint that takes none, so that a field such as a reason is not silently
    dropped."""
    if not body.strip():
        return
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = body
    if document is None or document == {}:
        return
    fields = sorted(document) if isinstance(document, dict) else []
    sent = f" It sent {', '.join(repr(field) for field in fields)}." if fields else ""
    raise InvalidInput(
        "This operation takes no request body, so nothing in it would be used."
        f"{sent} Send the request without a body, or with {{}}.",
        errors=[
            FieldError("body", "this operation takes no body", "body_not_accepted")
        ],
    )


class SignedWebhookRoute(UnitOfWorkRoute):
    """A unit-of-work route for webhooks that a signature on the body authenticates.

    Their senders carry no API key. The base route authenticates ``Idempotency-Key``
    POSTs by API key, which would turn such a request into a 401, so this route skips
    that step. The receiver deduplicates by the sender's event id instead.
    """

    honours_idempotency_key = False

    async def _run(
        self, request: Request, call: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        return await call(request)
