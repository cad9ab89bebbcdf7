"""Circuit breakers every instance shares: when one instance's breaker for a target opens (or its
probe closes it), it says so on a Redis channel and every other instance's breaker for that target
does the same, with the cooldown that is left. Nothing is asked of Redis on the request path:
only transitions are published, so a dead upstream found by one instance is skipped by all at
once, and a recovered one is used by all again. `[state] shared_breakers = false` keeps each
instance's breakers its own.

A message is JSON: {"from": the instance, "provider", "model", "state": "open" | "closed",
"left_s"}. The breakers open now are also kept in a hash, `{prefix:breakers}:open` (a target's
field holds when its cooldown ends, on the Redis server's clock; a close deletes it, an ended
cooldown is dropped when read): an instance that starts, or whose subscription was down, reads it
and opens those breakers too, for the cooldown they have left.
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

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""
# KEYS[1]: the hash of open breakers. ARGV: the target's field, "open" | "closed", the cooldown
# left, the channel, the message.
TELL = _NOW + """
if ARGV[2] == 'open' then
  redis.call('HSET', KEYS[1], ARGV[1], tostring(now + tonumber(ARGV[3])))
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return redis.call('PUBLISH', ARGV[4], ARGV[5])
"""
# The breakers open now: field, cooldown left, field, cooldown left, ...
READ = _NOW + """
local all, out = redis.call('HGETALL', KEYS[1]), {}
for i = 1, #all, 2 do
  local left = tonumber(all[i + 1]) - now
  if left > 0 then
    out[#out + 1] = all[i]
    out[#out + 1] = tostring(left)
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return out
"""


class SharedBreakers:
    def __init__(self, state: SharedState, board: BreakerBoard) -> None:
        self._state = state
        self._board = board
        self.channel = state.name("breakers", "changed")
        self._open = state.name("breakers", "open")
        self._me = secrets.token_hex(8)
        self._tell = state.client.register_script(TELL)
        self._read = state.client.register_script(READ)

    def start(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Publish this instance's transitions and follow the others'; returns how to stop."""
        self._board.changed = self._publish

        def heard(message: str | None) -> None:
            if message is None:  # (re)subscribed: what opened meanwhile
                for target, left in self.open_now():
                    loop.call_soon_threadsafe(self._board.follow, target, BreakerState.OPEN, left)
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

    def open_now(self) -> list[tuple[Target, float]]:
        """The targets whose breakers are open on some instance, with the cooldown they have left."""
        got: Any = None
        with contextlib.suppress(ServiceUnavailable):
            got = self._state.call(lambda _r: self._read(keys=[self._open]))
        found = []
        for field, left in zip(got[::2], got[1::2], strict=True) if got else ():
            try:
                provider, model = json.loads(field)
                found.append((Target(str(provider), str(model)), float(left)))
            except (ValueError, TypeError):
                log.warning("ignored a malformed open breaker: %.200s", field)
        return found

    def _publish(self, target: Target, state: BreakerState, left_s: float) -> None:
        message = json.dumps(
            {"from": self._me, "provider": target.provider, "model": target.model, "state": state.value,
             "left_s": left_s}
        )  # fmt: skip
        args = [json.dumps([target.provider, target.model]), state.value, left_s, self.channel, message]
        with contextlib.suppress(ServiceUnavailable):  # best effort: requests are never refused for it
            self._state.call(lambda _r: self._tell(keys=[self._open], args=args))
