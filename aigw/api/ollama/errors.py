"""Errors as Ollama gives them: `{"error": "..."}` with its status codes (a line of that shape in an
NDJSON stream that has begun)."""

from __future__ import annotations

import math

import orjson
from starlette.responses import Response

from aigw.errors import AigwError, RateLimited, ServiceUnavailable, UpstreamError

PATHS = ("/api/",)
_MAX_TEXT = 2000


def speaks_ollama(path: str) -> bool:
    return path.startswith(PATHS)


def error_text(e: AigwError) -> str:
    text = e.message if len(e.message) <= _MAX_TEXT else e.message[:_MAX_TEXT] + "…"
    return f"{text} (param: {e.param})" if e.param and e.param not in text else text


def error_body(e: AigwError) -> bytes:
    return orjson.dumps({"error": error_text(e)})


def error_response(e: AigwError) -> Response:
    headers: dict[str, str] = dict(e.headers) if isinstance(e, RateLimited) else {}
    retry_after = e.retry_after if isinstance(e, UpstreamError | ServiceUnavailable | RateLimited) else None
    if retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry_after)))
    return Response(error_body(e), e.status_code, headers, media_type="application/json")
