"""Writes to the shared Redis that no request waits for: what a finished request settles (tokens
it used beyond or below its reservation, the cost it is charged and the hold it gives back) and
the unused part of leases going back (`aigw.state.redis.limits`).

The stores keep such writes as pending in memory and hand them over when asked: a thread asks
every `tick_s` while anything is pending, and sends all it gets in one pipelined round trip. A
store may also fold what is pending for one subject into its next admission's script, so that a
busy key's settles cost no round trip of their own. When Redis fails, each write's `failed`
applies it to this instance's own state instead (as the stores do for every call when the state
fails open); a settle is never a reason to fail a request.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from aigw.errors import ServiceUnavailable

if TYPE_CHECKING:
    import redis

log = logging.getLogger("aigw.state")


class Write(NamedTuple):
    send: Callable[[redis.client.Pipeline], Any]
    """Queue the write's commands on the pipeline."""
    failed: Callable[[], None]
    """Redis did not take it: apply it to this instance's own state."""


Sweep = Callable[[bool], tuple[Sequence[Write], bool]]
"""A store's pending writes, taken (with `final`: everything, as the daemon stops), and whether it
still holds something to send later (then the thread keeps ticking)."""


class _Redis(Protocol):
    """What the outbox needs of `aigw.state.redis.conn.SharedState`."""

    def call(self, fn: Callable[[redis.Redis], Any]) -> Any: ...


class Outbox:
    def __init__(self, state: _Redis, *, tick_s: float = 0.05) -> None:
        self._state = state
        self._tick_s = tick_s
        self._sweeps: list[Sweep] = []
        self._wake = threading.Event()  # something is pending
        self._hurry = threading.Event()  # a flush or close: no gathering
        self._done = threading.Condition()
        self._started = self._finished = 0
        self._closing = False  # the thread's last pass is asked for
        self._closed = False  # the thread is gone: writes go out at once
        self._thread: threading.Thread | None = None

    def register(self, sweep: Sweep) -> None:
        self._sweeps.append(sweep)

    def poke(self) -> None:
        """Something is pending: it goes out within a tick (at once, once the outbox is closed:
        a request that ends while the daemon stops still settles)."""
        if self._closed:
            self._pass(final=True)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="aigw-state-outbox", daemon=True)
            self._thread.start()
        if not self._wake.is_set():
            self._wake.set()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Send what is pending now and wait until Redis took it (or it was applied locally)."""
        if self._closed:
            self._pass(final=True)
            return True
        self.poke()
        with self._done:
            want = self._started + 1
            self._hurry.set()
            self._wake.set()
            return self._done.wait_for(lambda: self._finished >= want, timeout_s)

    def close(self) -> None:
        """Send everything still pending (leases go back too), then stop."""
        if self._thread is not None:
            with self._done:
                self._closing = True
                self._hurry.set()
                self._wake.set()
            self._thread.join(timeout=10.0)
        self._closed = True
        self._pass(final=True)  # what came after the thread's last pass

    def _run(self) -> None:
        busy = False
        while True:
            if not busy:
                self._wake.wait()
            self._hurry.wait(self._tick_s)  # let a burst gather into one round trip
            busy, final = self._pass()
            if final:
                return

    def _pass(self, final: bool = False) -> tuple[bool, bool]:
        """One pass: (whether something is still held for later, whether it was the last)."""
        with self._done:  # read with the events cleared, so that a close is never missed
            self._started += 1
            self._wake.clear()
            self._hurry.clear()
            final = final or self._closing
        writes: list[Write] = []
        busy = False
        try:
            for sweep in self._sweeps:
                taken, more = sweep(final)
                writes.extend(taken)
                busy = busy or more
            if writes:
                self._send(writes)
        except Exception:  # a bug in a store must not kill the thread silently
            log.exception("shared state: sending settled requests failed")
        finally:
            with self._done:
                self._finished += 1
                self._done.notify_all()
        return busy, final

    def _send(self, writes: Sequence[Write]) -> None:
        def run(r: redis.Redis) -> Any:
            pipe = r.pipeline(transaction=False)
            for w in writes:
                w.send(pipe)
            return pipe.execute(raise_on_error=False)

        done: Any = None
        with contextlib.suppress(ServiceUnavailable):  # failing closed is for requests, not settles
            done = self._state.call(run)
        if done is None:  # Redis did not answer: each write goes its own way
            for w in writes:
                w.failed()
            return
        errors = [reply for reply in done if isinstance(reply, Exception)]
        if errors:  # Redis answered but refused a write (a bug, not an outage): not applied twice
            log.error("shared state: Redis refused %d settle(s): %s", len(errors), errors[0])
