"""Giving memory back when the system runs short, before it swaps.

The engine polls the system's memory pressure (`aigw.engine.memory.Pressure`) every
`EngineLimits.pressure_poll_s` (2 s; a read costs microseconds) and, when it is not normal,
calls `Engine.relieve(level)`:

* warning: first the prompt caches of idle models are dropped (each model's `drop_cache()`,
  run on its owner thread). If that freed nothing, the least recently used idle model is
  unloaded — one a round; a model kept loaded on purpose (keep-alive -1) is spared. After a
  round that freed something the watch waits `SETTLE_S` before acting on a warning again: the
  system's measures lag (Linux's PSI is a 10-second average), and acting on every poll would
  empty the engine before the first unload shows.
* critical: every idle model is unloaded at once, kept-loaded ones too; the watch acts on every
  poll while it lasts.

Busy models (running or queued work) are never touched, nor their caches: they would be
rebuilt at once. What was freed and why is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aigw.engine.memory import GiB, Pressure

log = logging.getLogger("aigw.local")

POLL_S = 2.0
"""How often the engine reads the system's memory pressure by default."""
SETTLE_S = 10.0
"""After relieving a warning, how long to let the system's measures catch up before acting again."""


@dataclass(frozen=True, slots=True)
class Idle:
    """An idle model as the relief policy sees it."""

    key: str
    pinned: bool
    """Kept loaded on purpose (keep-alive -1)."""


@dataclass(frozen=True, slots=True)
class Relief:
    """What one round of relief gave back."""

    level: Pressure
    caches: Mapping[str, int] = field(default_factory=dict)
    """Model -> bytes its dropped prompt caches freed (only models that freed something)."""
    unloaded: tuple[str, ...] = ()

    @property
    def acted(self) -> bool:
        return bool(self.caches or self.unloaded)

    def describe(self) -> str:
        parts = []
        if self.caches:
            dropped = ", ".join(f"{k} ({n / GiB:.2f} GiB)" for k, n in self.caches.items())
            parts.append(f"dropped the prompt caches of {dropped}")
        if self.unloaded:
            parts.append(f"unloaded idle {', '.join(self.unloaded)}")
        return "; ".join(parts) or "nothing idle to free"


def to_unload(level: Pressure, idle: Sequence[Idle], freed_by_caches: int) -> list[str]:
    """Which idle models (least recently used first) to unload at this level."""
    if level is Pressure.CRITICAL:
        return [m.key for m in idle]
    if level is Pressure.WARNING and freed_by_caches == 0:
        return next(([m.key] for m in idle if not m.pinned), [])
    return []


def report(relief: Relief) -> None:
    if relief.acted:
        log.warning("memory pressure %s: %s", relief.level.name.lower(), relief.describe())


class PressureWatch:
    """Polls `read` and hands a level that is not normal to `relieve` (see the module's docstring)."""

    def __init__(
        self,
        read: Callable[[], Pressure],
        relieve: Callable[[Pressure], Awaitable[Relief]],
        *,
        poll_s: float = POLL_S,
        settle_s: float = SETTLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._relieve = relieve
        self.poll_s = poll_s
        self._settle_s = settle_s
        self._clock = clock
        self._quiet_until = float("-inf")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.tick()
            except Exception as e:  # the watch must outlive one bad round
                log.warning("memory pressure watch: %s: %s", type(e).__name__, e)

    async def tick(self) -> Relief | None:
        """One poll: the relief given, or None when there was no call for it."""
        level = self._read()
        if level is Pressure.NORMAL:
            return None
        now = self._clock()
        if level is Pressure.WARNING and now < self._quiet_until:
            return None
        relief = await self._relieve(level)
        if relief.acted:
            self._quiet_until = now + self._settle_s
        return relief
