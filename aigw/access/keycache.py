"""API keys by plain token, cached: the request path hashes the token and finds the key in memory;
the database is asked on a miss and again after `ttl_s`, so a revocation made by the CLI reaches
a running daemon within that time (at once when the CLI asks it to reload)."""

from __future__ import annotations

import time
from collections.abc import Callable

from aigw.access.keys import ApiKey, hash_key
from aigw.errors import ServiceUnavailable

MAX_ENTRIES = 10_000


class KeyCache:
    def __init__(
        self,
        lookup: Callable[[str], ApiKey | None],
        *,
        ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[ApiKey | None, float]] = {}

    def resolve(self, token: str) -> ApiKey | None:
        """The active key for `token`, or None (unknown or revoked)."""
        digest = hash_key(token)
        now = self._clock()
        hit = self._entries.get(digest)
        if hit is not None and now - hit[1] < self._ttl_s:
            return hit[0]
        try:
            key = self._lookup(digest)
        except ServiceUnavailable:
            if hit is not None:  # the shared state is down: the last answer stands until it is back
                return hit[0]
            raise
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()  # a flood of made-up keys must not grow memory
        self._entries[digest] = (key, now)
        return key

    def clear(self) -> None:
        self._entries.clear()
