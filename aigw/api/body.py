"""Reading request bodies: size limit before any parsing, content encodings, JSON objects.

Every endpoint's body goes through `read_body`: the hot paths call it directly, everything else
gets it from `BodyLimit` in front of FastAPI. A declared Content-Length over the limit is refused
before a byte is read; a chunked body is counted as it arrives; a gzip or deflate body is inflated
with the limit applied to what it inflates to (a small bomb is refused like a large body); any
other encoding is a 415 rather than bytes misread as JSON.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aigw.api.errors import dialect_error_response
from aigw.errors import AigwError, InvalidRequest, PayloadTooLarge, UnsupportedMediaType

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes (server.max_body_bytes)")


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return None


def has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    return (length is not None and length.strip() != "0") or _header(scope, b"transfer-encoding") is not None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request's body, decoded, at most `limit` bytes; AigwError (413, 415, 400) otherwise."""
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    encoding = (_header(scope, b"content-encoding") or "identity").strip().lower()
    if encoding not in _WBITS and encoding != "identity":
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding[:40]!r} is not supported; send the body as is, gzip or deflate"
        )
    # The raw ASGI receive loop: the body usually arrives in one message.
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest("Client disconnected while sending the body")
        chunk: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return raw if encoding == "identity" else _inflate(raw, _WBITS[encoding], limit)


def _inflate(raw: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise InvalidRequest("Request body is not valid for its Content-Encoding") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise _too_large(limit)
    if not inflater.eof:
        raise InvalidRequest("Request body is cut short for its Content-Encoding")
    return out


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise InvalidRequest("Request body is empty; expected a JSON object")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"Request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("Request body must be a JSON object")
    return data


async def read_json_object(scope: Scope, receive: Receive, limit: int) -> dict[str, Any]:
    return parse_json_object(await read_body(scope, receive, limit))


class BodyLimit:
    """ASGI middleware: reads each request's body with `read_body` before the app sees it, so no
    endpoint can be handed more than `limit` bytes or an encoding it would misread."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not has_body(scope):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive, self._limit)
        except AigwError as e:
            await dialect_error_response(scope["path"], e)(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-length", b"content-encoding")]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.app({**scope, "headers": headers}, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # after the body: a disconnect, when it comes
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
