"""One Redis that every aigw instance of a team shares: its client, the names of aigw's keys in it,
and whether it answers now.

Calls are synchronous, on loopback or a LAN a round trip of well under a millisecond, bounded by
`[state] timeout_s`. A failure holds Redis off for `retry_s` (no call waits on a dead server in
the meantime), and `on_state_error` says what requests get until it answers again: `open` serves
them with this instance's own state, `closed` refuses them with a 503. Reconnection is the next
call after the hold-off: nothing to restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aigw.errors import ServiceUnavailable
from aigw.state.redis.outbox import Outbox

if TYPE_CHECKING:
    import redis

    from aigw.config.model import StateConfig

T = TypeVar("T")
log = logging.getLogger("aigw.state")


class SharedState:
    def __init__(
        self,
        cfg: StateConfig,
        *,
        client: redis.Redis | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis as redis_lib

        assert cfg.url is not None  # checked by the config
        self.client: redis.Redis = client or redis_lib.Redis.from_url(
            cfg.url.get_secret_value(),
            socket_timeout=cfg.timeout_s,
            socket_connect_timeout=cfg.timeout_s,
            decode_responses=True,
        )
        self.raw_client: redis.Redis = redis_lib.Redis.from_url(
            cfg.url.get_secret_value(), socket_timeout=cfg.timeout_s, socket_connect_timeout=cfg.timeout_s
        )
        """The same Redis, replies as bytes (cached answers)."""
        self.errors: tuple[type[BaseException], ...] = (redis_lib.RedisError, OSError)
        """What a failing Redis raises."""
        self.prefix = cfg.prefix
        self.fail_open = cfg.on_state_error == "open"
        self._retry_s = cfg.retry_s
        self._clock = clock
        self.clock = clock
        """Monotonic seconds (the stores' leases and hold-offs)."""
        self._down_until = 0.0
        self.down_since: float | None = None
        self.last_error: str | None = None
        self.outages = 0
        self.outbox = Outbox(self)
        """Writes no request waits for (settles, leases going back), sent by a thread of their own."""

    def name(self, tag: str, *rest: str) -> str:
        """A key's name: `{prefix:tag}` is its Redis Cluster hash tag (keys of one tag share a slot)."""
        return ":".join((f"{{{self.prefix}:{tag}}}", *rest))

    def call(self, fn: Callable[[redis.Redis], T]) -> T | None:
        """`fn(client)`; None when Redis is failing and the state fails open (the caller uses this
        instance's own), ServiceUnavailable when it fails closed."""
        now = self._clock()
        if now < self._down_until:
            self._unavailable()
            return None
        try:
            out = fn(self.client)
        except self.errors as e:
            self._failed(now, e)
            self._unavailable()
            return None
        if self.down_since is not None:
            log.warning("shared state (Redis) answers again after %.1f s", now - self.down_since)
            self.down_since = None
        return out

    def _failed(self, now: float, e: BaseException) -> None:
        self._down_until = now + self._retry_s
        self.last_error = f"{type(e).__name__}: {e}"[:300]
        if self.down_since is None:
            self.down_since = now
            self.outages += 1
            mode = "serving with this instance's own limits" if self.fail_open else "refusing requests (503)"
            log.warning("shared state (Redis) unreachable (%s): %s until it answers", self.last_error, mode)

    def _unavailable(self) -> None:
        """Nothing when failing open; the 503 when failing closed."""
        if self.fail_open:
            return
        raise ServiceUnavailable(
            "the shared state (Redis) is unreachable and [state] on_state_error is \"closed\"; "
            f"retry in {self._retry_s:g} s",
            retry_after=self._retry_s,
        )

    def subscribe(self, channel: str, handler: Callable[[str | None], None]) -> Callable[[], None]:
        """Call `handler` (on a thread of its own) with each message on `channel`, and with None
        each time the subscription starts (messages may have been missed while it was down); a
        broken connection is retried every second. Returns how to stop."""
        stop = threading.Event()

        def listen() -> None:
            while not stop.is_set():
                try:
                    pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(channel)
                    handler(None)
                    while not stop.is_set():
                        message = pubsub.get_message(timeout=0.2)
                        if message is not None:
                            handler(str(message.get("data")))
                    pubsub.close()
                except self.errors:
                    stop.wait(1.0)

        thread = threading.Thread(target=listen, name=f"aigw-watch-{channel}", daemon=True)
        thread.start()

        def end() -> None:
            stop.set()
            thread.join(timeout=2)

        return end

    def health(self) -> dict[str, Any]:
        """What /health/detailed shows."""
        return {
            "backend": "redis",
            "reachable": self.down_since is None,
            "on_state_error": "open" if self.fail_open else "closed",
            "degraded": self.down_since is not None and self.fail_open,
            "last_error": self.last_error,
            "outages": self.outages,
        }

    def close(self) -> None:
        self.outbox.close()
        self.client.close()
        self.raw_client.close()
