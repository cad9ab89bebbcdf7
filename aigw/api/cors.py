"""CORS for the origins in `server.allowed_origins` (others are refused by the access guard).

A preflight from an allowed origin is answered for the headers it asks about: the browser SDKs
send their own (`x-stainless-*` from OpenAI's, `anthropic-*` from Anthropic's), and a page on an
origin the user allowed is trusted with the API anyway. Responses expose the headers clients read.
"""

from __future__ import annotations

ALWAYS_ALLOWED = (
    "authorization",
    "content-type",
    "x-aigw-cache",
    "cache-control",
    "openai-organization",
    "openai-project",
    "x-request-id",
)
EXPOSED = (
    b"x-request-id, retry-after, x-aigw-provider, x-aigw-model, x-aigw-fallbacks, x-aigw-retries, "
    b"x-aigw-cache, x-aigw-overhead-ms, x-ratelimit-limit-requests, x-ratelimit-limit-tokens, "
    b"x-ratelimit-remaining-requests, x-ratelimit-remaining-tokens, x-ratelimit-reset-requests, "
    b"x-ratelimit-reset-tokens"
)
_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~")
MAX_REQUESTED = 64


def allowed_headers(requested: bytes | None) -> bytes:
    """The Access-Control-Allow-Headers answer: the always-allowed ones and every well-formed
    header name the preflight requested (at most MAX_REQUESTED of them)."""
    names = list(ALWAYS_ALLOWED)
    if requested:
        for raw in requested.decode("latin-1").split(",")[:MAX_REQUESTED]:
            name = raw.strip().lower()
            if name and _TOKEN.issuperset(name) and name not in names:
                names.append(name)
    return ", ".join(names).encode("latin-1")


def preflight_headers(origin: bytes, requested: bytes | None) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin),
        (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
        (b"access-control-allow-headers", allowed_headers(requested)),
        (b"access-control-max-age", b"600"),
        (b"vary", b"Origin"),
        (b"content-length", b"0"),
    ]


def response_headers(origin: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin),
        (b"access-control-expose-headers", EXPOSED),
        (b"vary", b"Origin"),
    ]
