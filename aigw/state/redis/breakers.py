"""Circuit breakers every instance shares: when one instance's breaker for a target opens (or its
probe closes it), it says so on a Redis channel and every other instance's breaker for that target
does the same, with the cooldown that is left. Nothing is asked of Redis on the request path:
only transitions are published, so a dead upstream found by one instance is skipped by all at
once, and a recovered one is used by all again. `[state] shared_breakers = false` keeps each
instance's breakers its own.

A message is JSON: {"from": the instance, "provider", "model", "state": "open" | "closed",
"left_s"}. Breakers of an instance that starts, or whose subscription was down, learn of the next
transition only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aigw.domain import Target
from aigw.errors import ServiceUnavailable
from aigw.routing.breaker import BreakerBoard, BreakerState

if TYPE_CHECKING:
    import asyncio

    from aigw.state.redis.conn import SharedState

log = logging.getLogger("aigw.state")


class SharedBreakers:
    def __init__(self, state: SharedState, board: BreakerBoard) -> None:
        self._state = state
        self._board = board
        self.channel = state.name("breakers", "changed")
        self._me = secrets.token_hex(8)

    def start(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Publish this instance's transitions and follow the others'; returns how to stop."""
        self._board.changed = self._publish

        def heard(message: str | None) -> None:
            if message is None:
                return
            try:
                d: dict[str, Any] = json.loads(message)
                if d.get("from") == self._me:
                    return  # our own news, come back
                target = Target(str(d["provider"]), str(d["model"]))
                state, left = BreakerState(d["state"]), float(d["left_s"])
            except (ValueError, KeyError, TypeError):
                log.warning("ignored a malformed breaker message: %.200s", message)
                return
            loop.call_soon_threadsafe(self._board.follow, target, state, left)

        return self._state.subscribe(self.channel, heard)

    def _publish(self, target: Target, state: BreakerState, left_s: float) -> None:
        message = json.dumps(
            {"from": self._me, "provider": target.provider, "model": target.model, "state": state.value,
             "left_s": left_s}
        )  # fmt: skip
        with contextlib.suppress(ServiceUnavailable):  # best effort: requests are never refused for it
            self._state.call(lambda r: r.publish(self.channel, message))
