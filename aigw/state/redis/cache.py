"""The response cache every instance shares: this instance's memory and disk stay the first tier,
Redis the second, so an answer stored by one instance is a hit on the next; and identical requests
in flight on several instances make one upstream call.

- Answers: `{prefix:cache:KEY}` (each its own Redis Cluster slot), written by the store's writer
  thread (never on the request path) with the entry's remaining TTL; Redis's `maxmemory` policy
  bounds the total. A local miss reads Redis once (only for requests the cache may answer).
- Single-flight across instances: the request that leads on its instance also takes a lease,
  `{prefix:cache:KEY}:lease` (SET NX with an expiry of the cache's wait). A request that finds the
  lease taken follows: it reads the answer as soon as the leader stored it, or leads itself once
  the lease is gone (the leader failed, or crashed and its lease expired): a leader's crash never
  fails its followers. A leader that gets no answer releases its lease at once; one that does
  lets it expire (its answer is what followers read).

When Redis fails, the local tiers answer alone (failing open) or requests get a 503 (closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from aigw.cache.store import CachedAnswer, ResponseStore
from aigw.errors import ServiceUnavailable

if TYPE_CHECKING:
    from pathlib import Path

    import redis

    from aigw.state.redis.conn import SharedState

POLL_S = 0.02
"""How often a follower on another instance looks for its leader's answer."""


class SharedResponseStore(ResponseStore):
    def __init__(
        self,
        state: SharedState,
        directory: Path,
        *,
        ttl_s: float,
        max_size_bytes: int,
        memory_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._state = state
        super().__init__(
            directory, ttl_s=ttl_s, max_size_bytes=max_size_bytes, memory_bytes=memory_bytes, clock=clock
        )
        self._raw = state.raw_client

    def _name(self, key: str) -> str:
        return self._state.name(f"cache:{key}")

    @property
    def available(self) -> bool:
        return True  # Redis serves even when the local disk tier could not be opened

    def get(self, key: str) -> CachedAnswer | None:
        local = super().get(key)
        if local is not None:
            return local
        raw: Any = self._state.call(lambda _r: self._raw.get(self._name(key)))
        if not isinstance(raw, bytes):
            return None
        answer = CachedAnswer.decode(raw)
        if answer is None or answer.expires_at <= self._clock():
            return None
        self._remember(key, answer)
        return answer

    def put(self, key: str, answer: CachedAnswer, tag: str) -> None:
        self._remember(key, answer)
        self._writer.submit((key, answer, tag))  # to Redis (and the local disk when it is open)

    def _write(self, batch: Sequence[tuple[str, CachedAnswer, str]]) -> None:
        """Runs on the writer thread: the batch to Redis in one round trip, then to the local disk."""
        now = self._clock()

        def send(_r: redis.Redis) -> Any:
            pipe = self._raw.pipeline(transaction=False)
            for key, answer, _ in batch:
                ttl_ms = max(int((answer.expires_at - now) * 1000), 1000)
                pipe.set(self._name(key), answer.encode(), px=ttl_ms)
            return pipe.execute()

        with contextlib.suppress(ServiceUnavailable):  # failing closed is for requests, not writes
            self._state.call(send)
        super()._write(batch)

    # -- single-flight across instances ---------------------------------------------------------

    def lease(self, key: str, wait_s: float) -> bool:
        """Take the lease for `key`: True when this request leads across instances (or Redis is
        failing: nothing to follow)."""
        name = self._name(key) + ":lease"
        ttl = max(int(wait_s * 1000), 1)
        # SET NX answers None when the key exists: made a bool here, so that None is a failure
        taken = self._state.call(lambda _r: bool(self._raw.set(name, b"1", nx=True, px=ttl)))
        return taken is None or taken

    def release(self, key: str) -> None:
        name = self._name(key) + ":lease"
        with contextlib.suppress(ServiceUnavailable):  # then it expires by itself
            self._state.call(lambda _r: self._raw.delete(name))

    async def follow(self, keys: Sequence[str], lease_key: str, wait_s: float) -> CachedAnswer | None:
        """The answer another instance's leader stores under any of `keys`, or None when its lease
        is gone without one (it failed or crashed) or `wait_s` passed."""
        lease = self._name(lease_key) + ":lease"
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            for key in keys:
                found = self.get(key)
                if found is not None:
                    return found
            held: Any = self._state.call(lambda _r: self._raw.exists(lease))
            if not held:
                return None
        return None
