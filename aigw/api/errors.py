"""Maps every error to OpenAI's error object `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from aigw.errors import AigwError, InvalidRequest, ServiceUnavailable, UpstreamError

log = logging.getLogger("aigw.api")

_HTTP_TYPES = {404: "not_found_error", 405: "invalid_request_error", 401: "authentication_error"}


def error_body(message: str, etype: str, param: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": etype, "param": param, "code": code}})


def error_response(
    status: int,
    message: str,
    etype: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(error_body(message, etype, param, code), status, headers, media_type="application/json")


def error_payload(exc: AigwError) -> dict[str, Any]:
    return {"message": exc.message, "type": exc.error_type, "param": exc.param, "code": exc.code}


def aigw_error_response(exc: AigwError) -> Response:
    headers: dict[str, str] = {}
    retry_after = exc.retry_after if isinstance(exc, UpstreamError | ServiceUnavailable) else None
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    if isinstance(exc, UpstreamError):
        headers["x-aigw-provider"] = exc.provider
    return error_response(
        exc.status_code, exc.message, exc.error_type, param=exc.param, code=exc.code, headers=headers
    )


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or "[" in part:
            continue  # pydantic's internal union/validator markers
        else:
            out += ("." if out else "") + part
    return out


def invalid_request_from_validation(err: ValidationError | RequestValidationError) -> InvalidRequest:
    """The first validation error, named the way OpenAI names fields (`messages[0].role`)."""
    errors = err.errors()
    first = errors[0]
    param = _loc(tuple(first["loc"]))
    if first["type"] == "missing":
        msg = f"Missing required parameter: '{param}'."
    else:
        detail = str(first["msg"]).removeprefix("Value error, ")
        msg = f"Invalid value for '{param}': {detail}" if param else f"Invalid request: {detail}"
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return InvalidRequest(msg, param=param or None)


def install_error_handlers(app: FastAPI) -> None:
    async def on_aigw(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, AigwError)
        if exc.status_code >= 500:
            log.warning("%s: %s", type(exc).__name__, exc.message)
        return aigw_error_response(exc)

    async def on_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return aigw_error_response(invalid_request_from_validation(exc))

    async def on_http(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        etype = _HTTP_TYPES.get(exc.status_code, "invalid_request_error")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = "Unknown URL; see the API section of aigw's README for the endpoints"
        return error_response(exc.status_code, message, etype, headers=dict(exc.headers or {}))

    async def on_unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "Internal error in aigw; see `aigw logs`", "server_error")

    app.add_exception_handler(AigwError, on_aigw)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
