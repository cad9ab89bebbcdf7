"""OpenAI wire format <-> aigw domain types, for OpenAI-compatible upstreams. Pure functions.

Upstream bodies are untrusted: anything malformed becomes `UpstreamProtocolError` (a 502),
never a stray TypeError deep in the request path.
"""

from __future__ import annotations

import math
import time
from typing import Any

import orjson

from aigw.domain import ChatChunk, ChatResponse, ModelInfo, Usage
from aigw.errors import UpstreamProtocolError, UpstreamStatusError

_RESPONSE_KEYS = frozenset({"id", "object", "created", "model", "choices", "usage"})
MAX_RETRY_AFTER_S = 86_400.0


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header; None for absent, HTTP-date or nonsense values."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


def error_from_body(
    provider: str, status: int, body: bytes, retry_after: float | None
) -> UpstreamStatusError:
    """Map an OpenAI-style error body (or anything else) to an UpstreamStatusError."""
    message, etype, code = "", None, None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or "")
            etype = err.get("type") if isinstance(err.get("type"), str) else None
            code = err.get("code") if isinstance(err.get("code"), str) else None
        elif isinstance(err, str):
            message = err
        elif isinstance(data.get("message"), str):
            message = data["message"]
    if not message:
        message = body[:200].decode("utf-8", errors="replace").strip() or f"HTTP {status}"
    if status in (401, 403):
        message += f" (check the API key of providers.{provider})"
    return UpstreamStatusError(
        f"{provider} returned HTTP {status}: {message}",
        provider=provider,
        upstream_status=status,
        retry_after=retry_after,
        upstream_type=etype,
        upstream_code=code,
    )


def _int(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected an integer, got {value!r:.40}")
    return int(value)


def _usage(d: Any) -> Usage | None:
    if d is None:
        return None
    if not isinstance(d, dict):
        raise ValueError("usage is not an object")
    p = _int(d.get("prompt_tokens"), 0)
    c = _int(d.get("completion_tokens"), 0)
    extra = {k: v for k, v in d.items() if k not in ("prompt_tokens", "completion_tokens", "total_tokens")}
    return Usage(p, c, _int(d.get("total_tokens"), p + c), extra)


def _choices(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(c, dict) for c in value):
        raise ValueError("choices is not a list of objects")
    return value


def _fields(d: dict[str, Any], created_default: int) -> dict[str, Any]:
    return {
        "id": str(d.get("id") or ""),
        "created": _int(d.get("created"), created_default),
        "model": str(d.get("model") or ""),
        "choices": _choices(d.get("choices")),
        "usage": _usage(d.get("usage")),
        "extra": {k: v for k, v in d.items() if k not in _RESPONSE_KEYS},
    }


def response_from_wire(provider: str, d: dict[str, Any]) -> ChatResponse:
    if not isinstance(d.get("choices"), list):
        raise UpstreamProtocolError(f"{provider}: response has no choices", provider=provider)
    try:
        return ChatResponse(**_fields(d, int(time.time())))
    except ValueError as e:
        raise UpstreamProtocolError(f"{provider}: malformed response: {e}", provider=provider) from None


def chunk_from_wire(provider: str, d: dict[str, Any]) -> ChatChunk:
    try:
        return ChatChunk(**_fields(d, 0))
    except ValueError as e:
        raise UpstreamProtocolError(f"{provider}: malformed stream chunk: {e}", provider=provider) from None


def usage_from_wire(provider: str, d: Any) -> Usage | None:
    try:
        return _usage(d)
    except ValueError as e:
        raise UpstreamProtocolError(f"{provider}: malformed usage: {e}", provider=provider) from None


def models_from_wire(provider: str, d: dict[str, Any]) -> list[ModelInfo]:
    items = d.get("data")
    if not isinstance(items, list):
        raise UpstreamProtocolError(f"{provider}: model list has no data", provider=provider)
    out = []
    for m in items:
        if isinstance(m, dict) and isinstance(m.get("id"), str):
            created = m.get("created")
            if not isinstance(created, int) or isinstance(created, bool):
                created = 0
            out.append(ModelInfo(m["id"], provider, created))
    return out
