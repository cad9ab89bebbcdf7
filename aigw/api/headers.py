"""Response headers aigw adds to proxied calls."""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import Response

from aigw.gateway.call import Facts


def header_safe(value: str) -> str:
    """A header value: printable ASCII as is; anything else (a model named in Unicode, a stray
    newline) percent-encoded, so no client input can break or forge a response header."""
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe="/:@!$&'()*+,;=-._~ ")


def fact_headers(facts: Facts) -> dict[str, str]:
    """The x-aigw-* headers of a proxied call, then the caller's x-ratelimit-* headers."""
    headers = {
        "x-aigw-provider": header_safe(facts.target.provider),
        "x-aigw-model": header_safe(facts.target.model),
        "x-aigw-fallbacks": str(facts.fallbacks),
        "x-aigw-retries": str(facts.retries),
        "x-aigw-cache": facts.cache,
        "x-aigw-overhead-ms": f"{max(0.0, facts.overhead_s) * 1000:.3f}",
    }
    headers.update(facts.limits)
    return headers


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
