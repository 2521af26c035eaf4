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
"""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException


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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
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
        return _render(422, "invalid_value", str(getattr(exc, "orig", exc)).splitlines()[0][:200])

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return _render(exc.status_code, code, exc.detail, getattr(exc, "headers", None))
