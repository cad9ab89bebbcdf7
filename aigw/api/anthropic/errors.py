"""Errors as Anthropic's API gives them: `{"type": "error", "error": {"type", "message"}}`, with its
status codes (a gateway that cannot serve right now is `overloaded_error`, 529, which Anthropic's
SDKs retry)."""

from __future__ import annotations

import math
from types import MappingProxyType

import orjson
from starlette.responses import Response

from aigw.errors import AigwError, RateLimited, ServiceUnavailable, UpstreamError

PATHS = ("/v1/messages", "/messages")
"""The path prefixes that speak this dialect (the same without /v1, like every endpoint)."""
_MAX_TEXT = 2000

_TYPES = MappingProxyType(
    {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        415: "invalid_request_error",
        429: "rate_limit_error",
        529: "overloaded_error",
    }
)


def speaks_anthropic(path: str) -> bool:
    return path.startswith(PATHS)


def status_of(e: AigwError) -> int:
    return 529 if isinstance(e, ServiceUnavailable) else e.status_code


def error_payload(e: AigwError) -> dict[str, str]:
    message = e.message if len(e.message) <= _MAX_TEXT else e.message[:_MAX_TEXT] + "…"
    return {"type": _TYPES.get(status_of(e), "api_error"), "message": message}


def error_body(e: AigwError) -> bytes:
    return orjson.dumps({"type": "error", "error": error_payload(e)})


def error_headers(e: AigwError) -> dict[str, str]:
    headers: dict[str, str] = dict(e.headers) if isinstance(e, RateLimited) else {}
    retry_after = e.retry_after if isinstance(e, UpstreamError | ServiceUnavailable | RateLimited) else None
    if retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry_after)))
    return headers


def error_response(e: AigwError) -> Response:
    return Response(error_body(e), status_of(e), error_headers(e), media_type="application/json")
