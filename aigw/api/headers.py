"""Response headers aigw adds to proxied calls."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from aigw.domain import Target
from aigw.routing.router import Trace


def header_safe(value: str) -> str:
    """A header value: printable ASCII as is; anything else (a model named in Unicode, a stray
    newline) percent-encoded, so no client input can break or forge a response header."""
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe="/:@!$&'()*+,;=-._~ ")


def client_address(request: Request) -> str:
    """The peer's address: the rate-limit subject when keys are off."""
    client = request.client
    return client.host if client is not None else "unknown"


def proxy_headers(target: Target, overhead_s: float, trace: Trace, cache: str = "bypass") -> dict[str, str]:
    return {
        "x-aigw-provider": header_safe(target.provider),
        "x-aigw-model": header_safe(target.model),
        "x-aigw-fallbacks": str(trace.fallbacks),
        "x-aigw-retries": str(trace.retries),
        "x-aigw-cache": cache,
        "x-aigw-overhead-ms": f"{max(0.0, overhead_s) * 1000:.3f}",
    }


class JSONBytes(Response):
    """A JSON body already serialized (orjson), with its headers built in one pass."""

    media_type = "application/json"

    def __init__(self, body: bytes, headers: dict[str, str], media_type: bytes = b"application/json") -> None:
        # Deliberately not Response.__init__, which re-derives what is known here.
        self.status_code = 200
        self.background = None
        self.body = body
        raw = [(b"content-type", media_type), (b"content-length", str(len(body)).encode())]
        raw.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
        self.raw_headers = raw
