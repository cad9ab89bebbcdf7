"""Circuit breakers, one per target (provider + upstream model). Clock injected; no I/O.

    closed ──(N consecutive failures, or failure ratio over the window)──▶ open
    open ──(cooldown elapsed; the next request becomes the single probe)──▶ half-open
    half-open ──probe succeeds──▶ closed        half-open ──probe fails──▶ open (cooldown restarts)

`allow()` hands out a `Permit`; outcomes are reported with it. Only the probe's permit can
close a half-open breaker, re-open it or free its slot: a request admitted before the breaker
opened that ends late (a long stream, a cancelled call) changes nothing. A probe that ends
without a verdict (the client left, the request itself was bad) frees the slot for the next
request instead of wedging the breaker.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aigw.config import BreakerConfig
from aigw.domain import Target

WINDOW_SLOTS = 20


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to use a target once. `epoch` is the breaker's open count when it was issued."""

    probe: bool
    epoch: int


Changed = Callable[[BreakerState, float], None]
"""Told when a breaker opens (with its cooldown left) or a probe closes it: how instances that
share their breakers tell each other (`aigw.state.redis.breakers`)."""


class Breaker:
    __slots__ = (
        "_cfg", "_changed", "_clock", "_consecutive", "_opened_at", "_outcomes", "_probing", "opens", "state",
    )  # fmt: skip

    def __init__(
        self, cfg: BreakerConfig, clock: Callable[[], float], changed: Changed | None = None
    ) -> None:
        self._cfg = cfg
        self._clock = clock
        self._changed = changed
        self.state = BreakerState.CLOSED
        self._consecutive = 0
        # Outcomes within the window, counted per slot of window_s / WINDOW_SLOTS: [slot, total,
        # failed]. Memory stays constant however many requests a second a target serves.
        self._outcomes: deque[list[int]] = deque()
        self._opened_at = 0.0
        self._probing = False
        self.opens = 0

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._cfg.cooldown_s - self._clock())

    def available(self) -> bool:
        """Whether `allow()` would now say yes (without taking the half-open probe)."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            return self.retry_in() <= 0
        return not self._probing

    def allow(self) -> Permit | None:
        """Leave to use the target now, or None. In half-open, only the one probe gets it."""
        if self.state is BreakerState.CLOSED:
            return Permit(False, self.opens)
        if self.state is BreakerState.OPEN:
            if self.retry_in() > 0:
                return None
            self.state = BreakerState.HALF_OPEN
            self._probing = False
        if self._probing:
            return None
        self._probing = True
        return Permit(True, self.opens)

    @property
    def healthy(self) -> bool:
        """Closed, with no failure since the last success: nothing worth remembering."""
        return self.state is BreakerState.CLOSED and self._consecutive == 0

    def _owns_probe(self, permit: Permit) -> bool:
        return permit.probe and permit.epoch == self.opens and self.state is BreakerState.HALF_OPEN

    def success(self, permit: Permit) -> None:
        if self.state is BreakerState.CLOSED:
            self._consecutive = 0
            self._note(failed=False)
        elif self._owns_probe(permit):
            self._close()
            self._note(failed=False)
            if self._changed is not None:
                self._changed(BreakerState.CLOSED, 0.0)

    def _close(self) -> None:
        self.state = BreakerState.CLOSED
        self._probing = False
        self._consecutive = 0
        self._outcomes.clear()

    def follow(self, state: BreakerState, cooldown_left_s: float) -> None:
        """Take the state another instance's breaker for this target reached (open for the
        cooldown it has left, or closed by its probe), without telling anyone again."""
        if state is BreakerState.OPEN:
            if self.state is not BreakerState.OPEN or self.retry_in() < cooldown_left_s:
                self._open(notify=False)
                self._opened_at = self._clock() - self._cfg.cooldown_s + cooldown_left_s
        elif state is BreakerState.CLOSED and self.state is not BreakerState.CLOSED:
            self._close()

    def failure(self, permit: Permit) -> None:
        if self.state is BreakerState.CLOSED:
            self._consecutive += 1
            self._note(failed=True)
            if self._consecutive >= self._cfg.failures or self._ratio_tripped():
                self._open()
        elif self._owns_probe(permit):
            self._probing = False
            self._open()
        # Otherwise a request admitted before the breaker opened: the cooldown stands.

    def release(self, permit: Permit) -> None:
        """The attempt ended with no verdict on the target's health."""
        if self._owns_probe(permit):
            self._probing = False

    def _open(self, *, notify: bool = True) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._consecutive = 0
        self._outcomes.clear()
        self.opens += 1
        if notify and self._changed is not None:
            self._changed(BreakerState.OPEN, self._cfg.cooldown_s)

    def _slot_now(self) -> int:
        """The current slot; slots older than the window are dropped."""
        slot = math.floor(self._clock() * WINDOW_SLOTS / self._cfg.window_s)
        while self._outcomes and self._outcomes[0][0] < slot - WINDOW_SLOTS:
            self._outcomes.popleft()
        return slot

    def _note(self, *, failed: bool) -> None:
        slot = self._slot_now()
        last = self._outcomes[-1] if self._outcomes else None
        if last is None or last[0] != slot:
            last = [slot, 0, 0]
            self._outcomes.append(last)
        last[1] += 1
        last[2] += failed

    def _window(self) -> tuple[int, int]:
        """(requests, failures) within the window."""
        self._slot_now()
        return sum(s[1] for s in self._outcomes), sum(s[2] for s in self._outcomes)

    def _ratio_tripped(self) -> bool:
        n, failed = self._window()
        return n >= self._cfg.min_requests and failed / n >= self._cfg.failure_ratio

    def snapshot(self) -> dict[str, Any]:
        n, failed = self._window()
        return {
            "state": self.state.value,
            "consecutive_failures": self._consecutive,
            "window_requests": n,
            "window_failures": failed,
            "retry_in_s": round(self.retry_in(), 3),
            "opens": self.opens,
        }


class BreakerBoard:
    """The breakers of the targets in use, created on first use. Requests may name any
    `provider/model`, so the board is bounded: past `capacity` it forgets the least recently
    used breakers that are closed (which hold nothing a new breaker would not)."""

    def __init__(
        self, cfg: BreakerConfig, clock: Callable[[], float] = time.monotonic, capacity: int = 1024
    ) -> None:
        self._cfg = cfg
        self._clock = clock
        self._capacity = capacity
        self._breakers: OrderedDict[Target, Breaker] = OrderedDict()
        self.changed: Callable[[Target, BreakerState, float], None] | None = None
        """Told of each breaker's own transitions (set when breakers are shared)."""

    def _new(self, target: Target) -> Breaker:
        if self.changed is None:
            return Breaker(self._cfg, self._clock)
        tell = self.changed
        return Breaker(self._cfg, self._clock, lambda state, left: tell(target, state, left))

    def follow(self, target: Target, state: BreakerState, cooldown_left_s: float) -> None:
        """Another instance's breaker for `target` opened or closed: this one does the same."""
        self.get(target).follow(state, cooldown_left_s)

    def get(self, target: Target) -> Breaker:
        b = self._breakers.get(target)
        if b is None:
            b = self._breakers[target] = self._new(target)
            if len(self._breakers) > self._capacity:
                self._evict()
        else:
            self._breakers.move_to_end(target)
        return b

    def _evict(self) -> None:
        for t, b in self._breakers.items():
            if b.healthy:
                del self._breakers[t]
                return

    def __len__(self) -> int:
        return len(self._breakers)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {f"{t.provider}/{t.model}": b.snapshot() for t, b in self._breakers.items()}
