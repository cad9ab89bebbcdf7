"""Maps every error to OpenAI's error object `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from types import MappingProxyType
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from aigw.api.headers import header_safe
from aigw.api.ollama.errors import error_response as ollama_error_response
from aigw.api.ollama.errors import speaks_ollama
from aigw.errors import (
    AigwError,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
    quoted,
)

log = logging.getLogger("aigw.api")

_HTTP_TYPES = MappingProxyType(
    {404: "not_found_error", 405: "invalid_request_error", 401: "authentication_error"}
)


# No error message or param echoes unbounded input: the messages quote input cut short
# (`errors.quoted`), and this is the backstop for any that does not.
_MAX_TEXT = 2000


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"


def error_body(message: str, etype: str, param: str | None = None, code: str | None = None) -> bytes:
    if param is not None:
        param = _cut(param)
    return orjson.dumps({"error": {"message": _cut(message), "type": etype, "param": param, "code": code}})


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
    headers: dict[str, str] = dict(exc.headers) if isinstance(exc, RateLimited) else {}
    retry_after = (
        exc.retry_after if isinstance(exc, UpstreamError | ServiceUnavailable | RateLimited) else None
    )
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if isinstance(exc, UpstreamError):
        headers["x-aigw-provider"] = header_safe(exc.provider)
    if isinstance(exc, PayloadTooLarge):
        headers["connection"] = "close"  # the rest of the body is not worth reading
    return error_response(
        exc.status_code, exc.message, exc.error_type, param=exc.param, code=exc.code, headers=headers
    )


def dialect_error_response(path: str, exc: AigwError) -> Response:
    """The error in the shape of the dialect `path` speaks: Ollama's for /api/, else OpenAI's
    (Anthropic's routes render their own)."""
    if speaks_ollama(path):
        response = ollama_error_response(exc)
        if isinstance(exc, PayloadTooLarge):
            response.headers["connection"] = "close"
        return response
    return aigw_error_response(exc)


_TYPE_TAGS = MappingProxyType(
    {
        "str": "a string",
        "int": "an integer",
        "float": "a number",
        "bool": "a boolean",
        "list": "an array",
        "dict": "an object",
    }
)


def _is_tag(part: str) -> bool:
    """pydantic's markers for union members and validators inside an error location."""
    return part in _TYPE_TAGS or "[" in part or "-" in part


def _loc(loc: tuple[int | str, ...]) -> tuple[str, str | None]:
    """The field path the way OpenAI names fields (`messages[0].role`), and the union member, if any."""
    out, tag = "", None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _is_tag(part):
            tag = tag or part
        else:
            out += ("." if out else "") + part
    return out, tag


def _tag_name(tag: str) -> str:
    return _TYPE_TAGS.get(tag.split("[", maxsplit=1)[0], tag)


def invalid_request_from_validation(err: ValidationError | RequestValidationError) -> InvalidRequest:
    """The first problem, naming its field; a value matching no member of a union says which were allowed."""
    errors = err.errors()
    param, tag = _loc(tuple(errors[0]["loc"]))
    same_field = [e for e in errors if _loc(tuple(e["loc"]))[0] == param]
    others = len(errors) - len(same_field)
    if errors[0]["type"] == "missing":
        msg = f"Missing required parameter: '{param}'."
    elif tag is not None and len(same_field) > 1:
        allowed = []
        for e in same_field:
            t = _loc(tuple(e["loc"]))[1]
            name = _tag_name(t) if t else "null"
            if name not in allowed:
                allowed.append(name)
        msg = f"Invalid type for '{param}': expected {' or '.join(allowed)}"
    else:
        detail = str(errors[0]["msg"]).removeprefix("Value error, ")
        msg = f"Invalid value for '{param}': {detail}" if param else f"Invalid request: {detail}"
    if others:
        msg += f" (and {others} more problem{'s' if others > 1 else ''})"
    return InvalidRequest(msg, param=param or None)


def endpoints(routers: Iterable[APIRouter]) -> list[str]:
    """The routers' documented endpoints, as "METHOD /path"."""
    out: list[str] = []
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.include_in_schema:
                out.extend(f"{method} {route.path}" for method in sorted(route.methods or ()))
    return out


def install_error_handlers(app: FastAPI, served: Sequence[str] = ()) -> None:
    """OpenAI-shaped errors for everything the app raises; a 404 lists the `served` endpoints."""
    listed = ", ".join(served) or "see the API section of aigw's README"

    async def on_aigw(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AigwError)
        if exc.status_code >= 500:
            log.warning("%s: %s", type(exc).__name__, exc.message)
        return dialect_error_response(request.url.path, exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return dialect_error_response(request.url.path, invalid_request_from_validation(exc))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        etype = _HTTP_TYPES.get(exc.status_code, "invalid_request_error")
        message = str(exc.detail)
        asked = f"{request.method} {quoted(request.url.path)}"
        if exc.status_code == 404:
            message = f"aigw has no endpoint {asked}. It serves: {listed}"
        elif exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "other methods")
            message = f"{asked} is not allowed; this path takes {allow}"
        if speaks_ollama(request.url.path):
            return Response(orjson.dumps({"error": message}), exc.status_code, dict(exc.headers or {}))
        return error_response(exc.status_code, message, etype, headers=dict(exc.headers or {}))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        message = "Internal error in aigw; see `aigw logs`"
        if speaks_ollama(request.url.path):
            return Response(orjson.dumps({"error": message}), 500, media_type="application/json")
        return error_response(500, message, "server_error")

    app.add_exception_handler(AigwError, on_aigw)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
