"""Cache keys: what makes two requests the same request.

The key is the SHA-256 of the request's canonical JSON (keys sorted at every level, numbers
normalised so that 1, 1.0 and 1e0 are one value) together with the identity of the target that
answers it (provider, upstream model, and for a local model a fingerprint of its weights).

Only fields known not to change the answer are left out: `stream` and `stream_options` (a cached
answer is served either way), `user` (an end-user id for abuse tracking), and aigw's own hints
(`provider`, which only pins the route and is part of the target identity; `keep_alive`, which
only says how long a local model stays loaded). Every other field — including ones aigw has never
heard of — stays in the key, so a new upstream option can never make two different requests share
an answer.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

IGNORED_FIELDS = frozenset({"stream", "stream_options", "user", "provider", "keep_alive"})


def _normalise(value: Any) -> Any:
    if isinstance(value, float):
        if value.is_integer() and -(2**63) <= value < 2**64:  # what orjson can write as an integer
            return int(value)  # 1.0 -> 1 (and -0.0 -> 0)
        return value
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def canonical(body: dict[str, Any]) -> bytes:
    """The request as canonical JSON bytes, without the fields that do not change the answer."""
    kept = {k: _normalise(v) for k, v in body.items() if k not in IGNORED_FIELDS}
    return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)


def request_digest(kind: str, body: dict[str, Any]) -> bytes:
    """The digest of one request (`kind`: "chat" or "embed") before a target is chosen."""
    return hashlib.sha256(kind.encode() + b"\0" + canonical(body)).digest()


def target_key(digest: bytes, identity: str) -> str:
    """The cache key of a request answered by the target with this identity."""
    return hashlib.sha256(digest + b"\0" + identity.encode()).hexdigest()
