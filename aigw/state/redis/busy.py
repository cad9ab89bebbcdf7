"""least_busy's in-flight counts across every instance: each instance counts its own requests in
memory (what the request path reads and changes: no Redis call there), and a thread of its own
every `PERIOD_S` writes them to Redis and reads the others'. A target's count is then this
instance's exact count plus the others' as of at most a period ago.

Each instance writes a hash `{prefix:busy}:INSTANCE` (target -> count) that expires unless
refreshed, and keeps its heartbeat in the sorted set `{prefix:busy}:instances`; an instance that
stops or crashes drops out within a second. Failing Redis, the counts are this instance's own.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from aigw.domain import Target
from aigw.errors import ServiceUnavailable
from aigw.routing.balance import InFlight

if TYPE_CHECKING:
    import redis

    from aigw.state.redis.conn import SharedState

PERIOD_S = 0.1
STALE_S = 1.0
"""An instance whose heartbeat is older than this counts for nothing."""


def _key(t: Target) -> str:
    return f"{t.provider}/{t.model}"


class SharedBusy(InFlight):
    __slots__ = ("_me", "_others", "_state")

    def __init__(self, state: SharedState) -> None:
        super().__init__()
        self._state = state
        self._me = secrets.token_hex(8)
        self._others: dict[str, int] = {}
        """The other instances' counts by target, as last read (replaced whole, never mutated)."""

    def counts(self, targets: Sequence[Target]) -> list[int]:
        others = self._others
        return [n + others.get(_key(t), 0) for t, n in zip(targets, super().counts(targets), strict=True)]

    def sync(self) -> None:
        """One exchange: this instance's counts out, the others' in (one pipelined round trip)."""
        mine = {_key(t): n for t, n in list(self._n.items())}
        own, roll = self._state.name("busy", self._me), self._state.name("busy", "instances")
        now = time.time()

        def exchange(r: redis.Redis) -> Any:
            pipe = r.pipeline(transaction=False)
            pipe.delete(own)
            if mine:
                pipe.hset(own, mapping=mine)  # type: ignore[arg-type]
                pipe.pexpire(own, int(STALE_S * 2000))
            pipe.zadd(roll, {self._me: now})
            pipe.zremrangebyscore(roll, "-inf", now - STALE_S)
            pipe.zrangebyscore(roll, now - STALE_S, "+inf")
            alive = pipe.execute()[-1]
            pipe = r.pipeline(transaction=False)
            names = [str(i) for i in alive if str(i) != self._me]
            for name in names:
                pipe.hgetall(self._state.name("busy", name))
            return pipe.execute() if names else []

        try:
            got = self._state.call(exchange)
        except ServiceUnavailable:
            got = None
        total: dict[str, int] = {}
        for counts in got or ():
            for target, n in counts.items():
                total[str(target)] = total.get(str(target), 0) + int(n)
        self._others = total

    def start_syncing(self) -> Callable[[], None]:
        """Exchange counts every PERIOD_S on a thread of its own; returns how to stop."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(PERIOD_S):
                self.sync()

        thread = threading.Thread(target=loop, name="aigw-busy-sync", daemon=True)
        thread.start()

        def end() -> None:
            stop.set()
            thread.join(timeout=2)

        return end
