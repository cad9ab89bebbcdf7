"""Writes cache entries to disk off the request path, in batches.

`submit` only appends to a deque. One thread wakes when entries wait, lets more gather for
`delay_s`, then writes everything pending in one call to `write_batch` (one transaction). A set
through diskcache costs about 90 µs with its own commit and half that inside a shared one; under
load, per-entry writes also kept taking the GIL from the event loop. Past `max_pending` entries
the oldest are dropped (their answers stay in the memory LRU): the cache is an optimisation, and
memory must stay bounded when the disk cannot keep up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger("aigw.cache")

T = TypeVar("T")


class BatchWriter(Generic[T]):
    def __init__(
        self,
        write_batch: Callable[[Sequence[T]], None],
        *,
        delay_s: float = 0.05,
        max_batch: int = 256,
        max_pending: int = 10_000,
    ) -> None:
        self._write_batch = write_batch
        self._delay_s = delay_s
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._pending: deque[T] = deque()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._closing = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="aigw-cache-writer", daemon=True)
        self._thread.start()

    def submit(self, item: T) -> None:
        if self._closing:
            return
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(item)
        if not self._wake.is_set():
            self._wake.set()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Write what is pending now and wait until it is written (False on timeout)."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while (self._pending or self._busy) and self._thread.is_alive():
                self._wake.set()
                if not self._idle.wait(max(0.0, deadline - time.monotonic())):
                    return False
        return not self._pending

    def close(self) -> None:
        """Write what is pending, then stop the thread."""
        self._closing = True
        self._wake.set()
        self._thread.join(timeout=30.0)

    def _run(self) -> None:
        logged_drops = 0
        while True:
            self._wake.wait()
            if not self._closing:
                time.sleep(self._delay_s)  # let a burst gather into one transaction
            self._wake.clear()
            with self._idle:
                self._busy = True
            try:
                while self._pending:
                    batch = [self._pending.popleft() for _ in range(min(self._max_batch, len(self._pending)))]
                    self._write_batch(batch)
            except Exception:  # a bug in a writer must not kill the thread silently
                log.exception("response cache: writing to disk failed")
            finally:
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()
            if self.dropped != logged_drops:
                log.warning(
                    "response cache: the disk fell behind; %d entries kept in memory only",
                    self.dropped - logged_drops,
                )
                logged_drops = self.dropped
            if self._closing and not self._pending:
                return
