"""Circuit breakers, one per target (provider + upstream model). Clock injected; no I/O.

    closed ──(N consecutive failures, or failure ratio over the window)──▶ open
    open ──(cooldown elapsed; the next request becomes the single probe)──▶ half-open
    half-open ──probe succeeds──▶ closed        half-open ──probe fails──▶ open (cooldown restarts)

A probe that ends without a verdict (the client left, the request itself was bad) frees the
half-open slot for the next request instead of wedging the breaker.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from aigw.config import BreakerConfig
from aigw.routing.resolve import Target


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker:
    __slots__ = ("_cfg", "_clock", "_consecutive", "_opened_at", "_outcomes", "_probing", "opens", "state")

    def __init__(self, cfg: BreakerConfig, clock: Callable[[], float]) -> None:
        self._cfg = cfg
        self._clock = clock
        self.state = BreakerState.CLOSED
        self._consecutive = 0
        self._outcomes: deque[tuple[float, bool]] = deque()  # (time, failed) within the window
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

    def allow(self) -> bool:
        """May a request use this target now? In half-open, only the one probe may."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if self.retry_in() > 0:
                return False
            self.state = BreakerState.HALF_OPEN
            self._probing = False
        if self._probing:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        self._consecutive = 0
        if self.state is not BreakerState.CLOSED:
            self.state = BreakerState.CLOSED
            self._outcomes.clear()
        self._probing = False
        self._note(failed=False)

    def failure(self) -> None:
        self._probing = False
        if self.state is BreakerState.HALF_OPEN:
            self._open()
            return
        if self.state is BreakerState.OPEN:
            return  # a request admitted before the breaker opened; the cooldown stands
        self._consecutive += 1
        self._note(failed=True)
        if self._consecutive >= self._cfg.failures or self._ratio_tripped():
            self._open()

    def release(self) -> None:
        """An attempt ended with no verdict on the target's health."""
        self._probing = False

    def _open(self) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._consecutive = 0
        self._outcomes.clear()
        self.opens += 1

    def _note(self, *, failed: bool) -> None:
        now = self._clock()
        self._outcomes.append((now, failed))
        horizon = now - self._cfg.window_s
        while self._outcomes and self._outcomes[0][0] < horizon:
            self._outcomes.popleft()

    def _ratio_tripped(self) -> bool:
        n = len(self._outcomes)
        if n < self._cfg.min_requests:
            return False
        failed = sum(1 for _, f in self._outcomes if f)
        return failed / n >= self._cfg.failure_ratio

    def snapshot(self) -> dict[str, Any]:
        n = len(self._outcomes)
        failed = sum(1 for _, f in self._outcomes if f)
        return {
            "state": self.state.value,
            "consecutive_failures": self._consecutive,
            "window_requests": n,
            "window_failures": failed,
            "retry_in_s": round(self.retry_in(), 3),
            "opens": self.opens,
        }


class BreakerBoard:
    """The breakers of every target seen so far, created on first use."""

    def __init__(self, cfg: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._cfg = cfg
        self._clock = clock
        self._breakers: dict[Target, Breaker] = {}

    def get(self, target: Target) -> Breaker:
        b = self._breakers.get(target)
        if b is None:
            b = self._breakers[target] = Breaker(self._cfg, self._clock)
        return b

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {f"{t.provider}/{t.model}": b.snapshot() for t, b in self._breakers.items()}
