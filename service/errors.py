"""Every error the API answers is JSON: {"error": {"code", "message", "field"}}.

Bad input is a 4xx naming the field; a database that is down is a 503 with Retry-After, never a
500, since the client can do nothing but retry.
"""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException

log = logging.getLogger("gradq.service")

DATABASE_RETRY_AFTER_SECONDS = 5
HTTP_CODES = {
    400: "malformed_body",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ErrorDetail(BaseModel):
    field: str | None
    message: str
    type: str | None


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None
    details: list[ErrorDetail] | None = None  # every broken rule of a 422 validation_error


class ErrorOut(BaseModel):
    """What every error answer holds (the OpenAPI document describes each one with it)."""

    error: ErrorBody


ERROR_DESCRIPTIONS = {
    400: "The body could not be parsed (a malformed multipart form).",
    401: "No valid bearer token, when tokens are configured.",
    404: "No such resource.",
    409: "In conflict with the resource's state or an earlier request.",
    413: "The request body is over its limit.",
    415: "The request body is not of the route's media type.",
    422: "Invalid input; error.field names the field and error.message the reason.",
    429: "Over a quota; retry after Retry-After seconds.",
    503: "A dependency is unavailable; retry (after Retry-After when given).",
}


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI ``responses`` for these error statuses, in the shape of ErrorOut."""
    return {
        status: {"model": ErrorOut, "description": ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }


class APIError(HTTPException):
    """An answer other than success. An HTTPException, so that FastAPI re-raises it untouched
    even from inside body parsing."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code, self.message, self.field = code, message, field


def not_found(what: str, key: str) -> APIError:
    return APIError(404, "not_found", f"no {what} {key!r}")


def invalid(field: str, message: str) -> APIError:
    return APIError(422, "validation_error", f"{field}: {message}", field)


def error_response(
    status_code: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    **extra,
) -> JSONResponse:
    body = {"code": code, "message": message, "field": field, **extra}
    return JSONResponse({"error": body}, status_code=status_code, headers=headers)


SOURCES = ("body", "query", "path", "header", "cookie")


def _field_of(loc: tuple) -> str | None:
    # loc starts with where the value came from: ("body", "training", "learning_rate").
    parts = [str(part) for part in loc[1:]] if loc and loc[0] in SOURCES else list(map(str, loc))
    if parts[-1:] == ["[key]"]:  # a bad dict key: ("tags", "owner!", "[key]") is tags.owner!
        parts.pop()
    return ".".join(parts) or None


def _reason(error: dict) -> str:
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


async def _on_validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        position = first["loc"][-1] if first.get("loc") else "?"
        reason = (first.get("ctx") or {}).get("error", "malformed")
        return error_response(
            422, "invalid_json", f"the request body is not valid JSON: {reason} at {position}"
        )
    details = [
        {"field": _field_of(tuple(e.get("loc", ()))), "message": _reason(e), "type": e.get("type")}
        for e in errors
    ]
    field = details[0]["field"]
    message = f"{field}: {details[0]['message']}" if field else details[0]["message"]
    if first.get("type") == "missing" and field is None:
        message = "the request body is required"
    return error_response(422, "validation_error", message, field, details=details)


async def _on_http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    if isinstance(exc, APIError):
        return error_response(exc.status_code, exc.code, exc.message, exc.field, exc.headers)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _on_database_error(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError):
        log.warning("database unavailable: %s", exc)
    else:  # still a 503 for the client, but likely a bug worth its traceback in the log
        log.exception("database error", exc_info=exc)
    return error_response(
        503,
        "database_unavailable",
        "the jobs database is unavailable; retry later",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


async def _on_unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "an unexpected error; it was logged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(DBAPIError, _on_database_error)
    app.add_exception_handler(PoolTimeoutError, _on_database_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
