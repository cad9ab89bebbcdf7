"""Budgets every instance shares: each key's spend and what its requests in flight hold, in Redis,
so a budget is never overshot by more than one request's reservation, whichever instances serve
the key's requests. A hold is taken only if the budget still has room for it (a Lua script: one
atomic round trip), and settled with the request's real cost.

Each key is one hash, `{prefix:budget:KEY_ID}` (fields `spent`, `held`), its own Redis Cluster
slot. Spend counts from when the key's requests first reach Redis (the team's keys are made
there).

Off the hot path, as for rate limits (`aigw.state.redis.limits`):
- a hold may take a lease with it: a little more of the budget held for this instance (at most
  1/`LEASE_SHARE` of what is left, for up to `LEASE_REQUESTS` holds like it), from which its next
  holds are taken in memory. Close to the budget the leases shrink to nothing and every hold is a
  round trip; a lease goes back when it expires, when it cannot cover a hold (in that hold's
  call) or when the daemon stops. Other instances see a lease as held.
- a settle is pending in memory until the key's next hold carries it (the same script call) or
  the outbox (`aigw.state.redis.outbox`) sends it within a tick. Until then the hold stays
  counted, so a late settle can only make a budget stricter, never overshoot it; this instance's
  own figures include it at once.

When Redis fails and the state fails open, this instance's own figures answer instead (its own
spend and the holds it took meanwhile); settles meant for Redis wait until it answers, since a
budget, unlike a rate limit, never refills what a lost settle would keep held.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aigw.access.budget import Budgets
from aigw.errors import ServiceUnavailable
from aigw.state.redis.limits import LEASE_REQUESTS, LEASE_S, LEASE_SHARE
from aigw.state.redis.outbox import Write

if TYPE_CHECKING:
    from collections.abc import Sequence

    from aigw.access.keys import ApiKey
    from aigw.state.redis.conn import SharedState

SEEN_S = 5.0
"""How long what a key's last hold saw may stand in for Redis's figures (see `committed`)."""
SEEN_KEYS = 10_000
"""Keys whose figures are remembered at most (the oldest are forgotten first)."""

# ARGV: the held amount given back and the cost charged (a pending settle, a lease's rest; or 0, 0)
_SETTLE = """
local back, cost = tonumber(ARGV[1]), tonumber(ARGV[2])
if back ~= 0 then
  local held = redis.call('HINCRBYFLOAT', KEYS[1], 'held', -back)
  if tonumber(held) < 1e-9 then redis.call('HSET', KEYS[1], 'held', '0') end
end
if cost ~= 0 then redis.call('HINCRBYFLOAT', KEYS[1], 'spent', ARGV[2]) end
"""
# ARGV[3..]: the amount to hold, the budget, the lease wanted, LEASE_SHARE.
# Returns whether it holds, the figures after, and the lease taken.
TAKE = _SETTLE + """
local h = redis.call('HMGET', KEYS[1], 'spent', 'held')
local spent, held = tonumber(h[1]) or 0, tonumber(h[2]) or 0
local amount, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
if spent + held + amount > budget + 1e-9 then
  return {0, tostring(spent), tostring(held), '0'}
end
local extra = math.max(0, math.min(tonumber(ARGV[5]), (budget - spent - held - amount) / tonumber(ARGV[6])))
held = redis.call('HINCRBYFLOAT', KEYS[1], 'held', amount + extra)
return {1, tostring(spent), held, tostring(extra)}
"""
SETTLE = _SETTLE + "return 1\n"


@dataclass(slots=True)
class _Seen:
    """A key's figures as its last hold on this instance saw them, with this instance's settles
    since, and its lease (part of `held`, room for this instance)."""

    spent: float
    held: float
    at: float
    budget: float
    """The key's budget when its lease was taken (a lease serves that budget only)."""
    lease: float = 0.0
    until: float = 0.0


class SharedBudgets(Budgets):
    """`_lock` guards what is pending, the leases and this instance's own figures (the outbox's
    thread takes expired leases, and settles here what Redis did not take)."""

    __slots__ = ("_here", "_leasing", "_lock", "_outbox", "_owed", "_seen", "_settle", "_state", "_take")

    def __init__(
        self, state: SharedState, spent: dict[str, float] | None = None, *, leases: bool = True
    ) -> None:
        super().__init__(spent)
        self._state = state
        self._take = state.client.register_script(TAKE)
        self._settle = state.client.register_script(SETTLE)
        self._lock = threading.Lock()
        self._leasing = leases
        self._owed: dict[str, tuple[float, float]] = {}
        """Settles not sent yet, by key: (held given back, cost charged). Kept until Redis takes
        them (a budget, unlike a rate limit, never refills: a lost settle would hold for good)."""
        self._here: dict[str, float] = {}
        """Holds taken on this instance's own figures while Redis failed (given back there)."""
        self._seen: dict[str, _Seen] = {}
        self._outbox = state.outbox
        self._outbox.register(self._sweep)

    def _key(self, key_id: str) -> str:
        return self._state.name(f"budget:{key_id}")

    def standing(self, key_id: str) -> tuple[float, float]:
        """Redis's figures now, with this instance's pending settles; its own lease is not held."""
        got: Any = self._state.call(lambda r: r.hmget(self._key(key_id), ["spent", "held"]))
        with self._lock:
            if got is None:
                return super().standing(key_id)
            back, cost = self._owed.get(key_id, (0.0, 0.0))
            seen = self._seen.get(key_id)
            lease = seen.lease if seen is not None else 0.0
        return float(got[0] or 0.0) + cost, max(0.0, float(got[1] or 0.0) - back - lease)

    def committed(self, key_id: str, *, fresh: bool = True) -> tuple[float, bool]:
        """What the key's last hold on this instance saw (within `SEEN_S`, no round trip), or
        Redis's figures now."""
        if not fresh:
            with self._lock:
                seen = self._seen.get(key_id)
                if seen is not None and self._state.clock() - seen.at < SEEN_S:
                    return seen.spent + seen.held - seen.lease, False
        return sum(self.standing(key_id)), True

    def spent(self, key_id: str) -> float:
        return self.standing(key_id)[0]

    def held(self, key_id: str) -> float:
        return self.standing(key_id)[1]

    def take(self, key: ApiKey, amount: float) -> bool:
        budget = key.budget_usd if key.budget_usd is not None else float("inf")
        with self._lock:
            seen = self._seen.get(key.id)
            if seen is not None and seen.budget == budget and seen.lease + 1e-9 >= amount:  # float sums
                seen.lease = max(0.0, seen.lease - amount)
                return True
            lease = seen.lease if seen is not None else 0.0
            if seen is not None:
                seen.lease = 0.0  # it goes back with this call
            back, cost = self._owed.pop(key.id, (0.0, 0.0))
            back += lease
        want = amount * LEASE_REQUESTS if self._leasing else 0.0
        args = [repr(back), repr(cost), repr(float(amount)), repr(float(budget)), repr(want)]
        args.append(str(LEASE_SHARE))
        try:
            got: Any = self._state.call(lambda _r: self._take(keys=[self._key(key.id)], args=args))
        except ServiceUnavailable:  # failing closed: the hold is refused, the settle kept for later
            self._requeue(key.id, back, cost)
            raise
        if got is None:  # failing open: this instance's own figures hold it
            self._requeue(key.id, back, cost)
            with self._lock:
                taken = super().take(key, amount)
                if taken:
                    self._here[key.id] = self._here.get(key.id, 0.0) + amount
                return taken
        now = self._state.clock()
        extra = float(got[3])
        with self._lock:
            self._seen.pop(key.id, None)  # the most recently used last
            self._seen[key.id] = _Seen(float(got[1]), float(got[2]), now, budget, extra, now + LEASE_S)
            if len(self._seen) > SEEN_KEYS:  # the oldest is forgotten; its lease goes back
                oldest = next(iter(self._seen))
                if gone := self._seen.pop(oldest).lease:
                    back, cost = self._owed.get(oldest, (0.0, 0.0))
                    self._owed[oldest] = (back + gone, cost)
        if extra:
            self._outbox.poke()
        return bool(int(got[0]))

    def settle(self, key_id: str, held: float, cost: float) -> None:
        """Pending until the key's next hold or the outbox's next tick (never raises)."""
        if not held and not cost:
            return
        with self._lock:
            here = min(held, self._here.get(key_id, 0.0))  # a hold taken while Redis failed
            if here and (left := self._here[key_id] - here) > 1e-12:
                self._here[key_id] = left
            elif here:
                del self._here[key_id]
            super().settle(key_id, here, cost)  # this instance's own figures: its spend, its holds
            back, charged = self._owed.get(key_id, (0.0, 0.0))
            self._owed[key_id] = (back + held - here, charged + cost)
            seen = self._seen.get(key_id)
            if seen is not None:
                seen.spent += cost
                seen.held = max(0.0, seen.held - held + here)
        self._outbox.poke()

    def _requeue(self, key_id: str, back: float, cost: float) -> None:
        """Redis did not take a settle: it waits for the next try."""
        if back or cost:
            with self._lock:
                was_back, was_cost = self._owed.get(key_id, (0.0, 0.0))
                self._owed[key_id] = (was_back + back, was_cost + cost)

    def _sweep(self, final: bool) -> tuple[Sequence[Write], bool]:
        """The outbox's pass: every pending settle, and the rest of each lease that expired."""
        now = self._state.clock()
        with self._lock:
            owed, self._owed = self._owed, {}
            for key_id, seen in self._seen.items():
                if seen.lease and (final or now >= seen.until):
                    back, cost = owed.get(key_id, (0.0, 0.0))
                    owed[key_id] = (back + seen.lease, cost)
                    seen.held = max(0.0, seen.held - seen.lease)
                    seen.lease = 0.0
            later = bool(owed) or any(seen.lease for seen in self._seen.values())
        return [self._write(key_id, back, cost) for key_id, (back, cost) in owed.items()], later

    def _write(self, key_id: str, back: float, cost: float) -> Write:
        key, args = self._key(key_id), [repr(back), repr(cost)]
        return Write(
            lambda pipe: self._settle(keys=[key], args=args, client=pipe),
            lambda: self._requeue(key_id, back, cost),
        )
