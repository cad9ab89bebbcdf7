"""Single-flight: identical cacheable requests in flight at once make one upstream call.

The first request for a key leads: it calls the upstream and, when its answer is complete,
publishes it (or None when it failed, was cut short, or its client left). Requests for the same
key that arrive meanwhile wait for that — at most `wait_s` — and are answered from it; on None or
a timeout they call the upstream themselves, so a failing or stuck leader never fails a follower.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Generic, TypeVar

T = TypeVar("T")


class Flight(Generic[T]):
    """One leader's promise of an answer."""

    __slots__ = ("_future", "_owner", "key", "started")

    def __init__(self, owner: SingleFlight[T], key: str) -> None:
        loop = asyncio.get_running_loop()
        self._owner = owner
        self.key = key
        self.started = loop.time()
        self._future: asyncio.Future[T | None] = loop.create_future()

    async def wait(self, timeout_s: float) -> T | None:
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(self._future), timeout_s)
        return None

    def publish(self, answer: T | None) -> None:
        """Hand the answer (None: none to share) to the followers and retire the key. Idempotent."""
        if not self._future.done():
            self._future.set_result(answer)
        self._owner._retire(self)


class SingleFlight(Generic[T]):
    def __init__(self, wait_s: float) -> None:
        self._wait_s = wait_s
        self._flights: dict[str, Flight[T]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def lead(self, key: str) -> Flight[T] | None:
        """Become the leader for `key` (the caller must `publish`), or None when one exists.

        A leader that has not published within `wait_s` is presumed lost and replaced, so a bug
        that forgets to publish cannot make every later request for the key wait."""
        current = self._flights.get(key)
        if current is not None and asyncio.get_running_loop().time() - current.started < self._wait_s:
            return None
        flight = Flight(self, key)
        self._flights[key] = flight
        return flight

    async def follow(self, key: str) -> T | None:
        """The current leader's answer, or None (no leader, it had none, or it took too long)."""
        flight = self._flights.get(key)
        if flight is None:
            return None
        return await flight.wait(self._wait_s)

    def _retire(self, flight: Flight[T]) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]
