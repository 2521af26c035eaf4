"""Named domain errors and the one place they become HTTP.

Business code raises a ``DomainError`` subclass named after the rule it enforces; it never builds an HTTP
response. ``install_error_handlers`` renders every error — domain, validation, auth, unknown route — as
``{"error": "<snake_case_code>", "detail": ...}`` with the matching status.

    DomainError (400)
    ├── InvalidInput (422)            malformed values that passed the schema but break a rule
    ├── NotFound (404)
    ├── Conflict (409)                duplicates, illegal state transitions, refused redemptions
    ├── AuthenticationFailed (401)
    └── PermissionDenied (403)

Errors of the database layer are rendered here too, so no endpoint has to catch them:

- ``DataError`` (SQLAlchemy, psycopg): 422 ``invalid_value`` — a value no column can hold.
- ``OverflowError`` raised inside the driver: 422 ``invalid_value`` — an integer past 64 bits, which
  SQLite's driver refuses before the statement runs.
- ``OperationalError`` (SQLAlchemy, psycopg), a ``DBAPIError`` that invalidated its connection, a pool
  checkout timeout: 503 ``database_unavailable`` with ``Retry-After`` — the database cannot be reached
  or gave up (connection lost or refused, shut down, serialisation failure, lock timeout). The caller
  retries the same request; a redemption retried with the same id is applied at most once.
- ``IntegrityError`` (SQLAlchemy, psycopg): 409 ``constraint_violated`` — a unique or foreign key the
  request ran into and its use case did not turn into a named refusal; its transaction rolled back.
  Sessions (``card_backend.deps``) convert it at commit; the ledger's use cases run their own
  transactions, so theirs reaches this handler — before, the ``DBAPIError`` handler re-raised it, and
  the server answered a plain-text 500.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2
"""What a 503 tells the caller to wait before retrying (the engine reconnects within 50 ms; a database
restart takes seconds)."""


class DomainError(Exception):
    code: str = "bad_request"
    status: int = 400

    def __init__(self, detail: Any = None, *, code: str | None = None) -> None:
        super().__init__(detail if detail is not None else self.code)
        self.detail = detail
        if code is not None:
            self.code = code


class InvalidInput(DomainError):
    code = "invalid_input"
    status = 422


class NotFound(DomainError):
    code = "not_found"
    status = 404


class Conflict(DomainError):
    code = "conflict"
    status = 409


class AuthenticationFailed(DomainError):
    code = "not_authenticated"
    status = 401


class PermissionDenied(DomainError):
    code = "forbidden"
    status = 403


# Registry rules -----------------------------------------------------------------------------------
class InvalidNationalId(InvalidInput):
    code = "invalid_national_id"


class UnknownGovernorate(InvalidInput):
    code = "unknown_governorate"


class DuplicateFamilyBook(Conflict):
    code = "duplicate_family_book"


class DuplicateNationalId(Conflict):
    code = "duplicate_national_id"


class DuplicateVehicle(Conflict):
    code = "duplicate_vehicle"


class VehicleWithoutOwner(InvalidInput):
    code = "vehicle_without_owner"


class IllegalCardTransition(Conflict):
    code = "illegal_card_transition"


class HolderHasActiveCard(Conflict):
    code = "holder_has_active_card"


class DuplicateSerial(Conflict):
    code = "duplicate_card_serial"


class ImportRejected(InvalidInput):
    code = "import_rejected"


def _first_line(exc: BaseException) -> str:
    """The first line of a database error's own message (the driver's, under SQLAlchemy's wrapper)."""
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).splitlines() or [""])[0][:200]


def _render(status: int, code: str, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
}


def _raised_by_database_layer(tb: TracebackType | None) -> bool:
    """Whether a traceback passes through SQLAlchemy or a database driver (not our own arithmetic)."""
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.split(".", 1)[0] in {"sqlalchemy", "sqlite3", "psycopg"}:
            return True
        tb = tb.tb_next
    return False


def _connection_lost(exc: Exception) -> bool:
    """A database error that says "cannot be reached now", as opposed to "your statement is wrong"."""
    if isinstance(exc, OperationalError | psycopg.OperationalError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        headers = None
        if exc.status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        elif exc.status == 503:
            headers = {"Retry-After": str(RETRY_AFTER_S)}
        return _render(exc.status, exc.code, exc.detail, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        return _render(422, "validation_error", errors)

    @app.exception_handler(DataError)
    @app.exception_handler(psycopg.DataError)
    async def _data(_: Request, exc: Exception) -> JSONResponse:
        # The database refused a value the schema let through (a NUL character, a number out of the
        # column's range): bad input, nothing was written — the transaction rolled back.
        return _render(422, "invalid_value", _first_line(exc))

    @app.exception_handler(OverflowError)
    async def _overflow(_: Request, exc: OverflowError) -> JSONResponse:
        # SQLite's driver refuses an integer past 64 bits before the statement runs. The schemas bound
        # every id (``card_backend.types.Id``); this catches a field that escaped them. An overflow in
        # our own code is a bug, not bad input: it stays a 500.
        if not _raised_by_database_layer(exc.__traceback__):
            raise exc
        return _render(422, "invalid_value", f"a number is out of the database's range: {exc}"[:200])

    @app.exception_handler(IntegrityError)
    @app.exception_handler(psycopg.IntegrityError)
    async def _integrity(request: Request, exc: Exception) -> JSONResponse:
        # A constraint no use case named (a retry that lost the unique index twice, a row changed under
        # the request): the request's transaction rolled back, nothing was written. A conflict, not a
        # server error: answered as JSON like every other error.
        first_line = _first_line(exc)
        log.warning("constraint violated on %s %s: %s", request.method, request.url.path, first_line)
        return _render(409, "constraint_violated", first_line)

    @app.exception_handler(DBAPIError)
    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Raised wherever the database is first needed: a request's session, a device lookup, or the
        # group commit engine's future (its writers hand the error to every caller of the group).
        if not _connection_lost(exc):
            raise exc
        cause = getattr(exc, "orig", None) or exc
        log.warning("database unavailable on %s %s: %s: %s", request.method, request.url.path,
                    type(cause).__name__, _first_line(exc))
        return _render(
            503,
            "database_unavailable",
            "the database cannot be reached now; retry later with the same request "
            "(a redemption retried with the same id is applied at most once)",
            {"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return _render(exc.status_code, code, exc.detail, getattr(exc, "headers", None))
