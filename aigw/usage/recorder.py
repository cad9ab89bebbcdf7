"""The usage log: one row per request, written off the request path in batches.

`UsageRecorder.record(row)` only appends to a deque: no lock, no I/O, O(1). A daemon thread with
its own SQLite connection writes what accumulated every `flush_interval_s` (sooner once
`max_batch` rows wait), each batch in one transaction. A failed write (a locked or full
database) is logged and its rows kept for the next try; past `max_pending` rows the oldest are
dropped with a warning, and past `max_content_bytes` of prompts and completions waiting
(`log_content = true`) new rows are kept without their content, with a warning: memory stays
bounded in rows and in bytes through a long outage. Nothing is ever raised to the caller.
`close()` writes what is left and stops the thread.

A batch is one INSERT ... SELECT over `json_each` of the batch serialized once, not an
`executemany`: the sqlite3 module drops and retakes the GIL around every row's step, so under load
an executemany of 500 rows waits for the busy event loop 500 times, and interrupts it as often.
One statement takes the GIL back once per batch.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from operator import attrgetter
from pathlib import Path

import orjson

from aigw.state.db import DEFAULT_BUSY_TIMEOUT_MS, connect, migrate

log = logging.getLogger(__name__)


@dataclass(slots=True)
class UsageRow:
    """One request as the `usage` table stores it (the table's `id` is assigned on insert)."""

    ts: float
    status: int
    key_id: str | None = None
    alias: str | None = None
    provider: str | None = None
    model: str | None = None
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cache_hit: bool = False
    fallbacks: int = 0
    error_kind: str | None = None
    content: str | None = None
    cache: str | None = None
    """hit, miss or bypass (None: a request the cache never saw, such as one that failed early)."""
    saved_usd: float = 0.0
    """What a cache hit would have cost."""
    request_id: str | None = None
    """The x-request-id the response carried."""
    dialect: str | None = None
    """The API the request spoke: openai, anthropic, responses, rag (see `aigw.api.dialects`)."""
    cached_tokens: int | None = None
    """Prompt tokens the upstream read from its prompt cache (None: it did not say)."""
    prefill_ms: float | None = None
    """A local model's time to its first generated token (None for any other answer)."""
    decode_tps: float | None = None
    """A local model's generated tokens per second after the first (None: other answers, or
    fewer than two tokens)."""


WRITER_CACHE_KIB = 256
_COLUMNS = tuple(f.name for f in fields(UsageRow))
_as_tuple = attrgetter(*_COLUMNS)
_FAILURE_LOG_EVERY_S = 60.0  # while writes keep failing, say so at most this often
_INSERT = (
    f"INSERT INTO usage ({', '.join(_COLUMNS)}) SELECT "
    + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(_COLUMNS)))
    + " FROM json_each(?) ORDER BY key"
)


class UsageRecorder:
    def __init__(
        self,
        db_path: Path | str,
        *,
        flush_interval_s: float = 1.0,
        max_batch: int = 500,
        max_pending: int = 100_000,
        max_content_bytes: int = 32 << 20,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        close_timeout_s: float = 10.0,
    ) -> None:
        if flush_interval_s <= 0 or max_batch < 1 or max_pending < max_batch:
            raise ValueError("flush_interval_s > 0, max_batch >= 1 and max_pending >= max_batch")
        self._path = Path(db_path)
        self._interval = flush_interval_s
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._max_content = max_content_bytes
        # Content bytes waiting = in - out_loop - out_writer; each counter has one writing thread.
        self._content_in = 0  # recorded (event loop)
        self._content_out_loop = 0  # dropped by record() (event loop)
        self._content_out_writer = 0  # written or dropped by the writer thread
        self._stripped = 0  # rows kept without their content (event loop); logged by the writer
        self._stripped_logged = 0
        self._busy_ms = busy_timeout_ms
        self._close_timeout = close_timeout_s
        self._pending: deque[UsageRow] = deque()  # appended by callers, drained by the writer
        self._inflight: deque[UsageRow] = deque()  # taken by the writer, not yet committed
        self._mu = threading.Lock()  # pending->inflight moves, commits, and readers' snapshots
        self._wake = threading.Event()
        self._closing = False
        self._closed = False
        self._dropped = 0  # rows dropped by record() past max_pending; logged by the writer
        self._dropped_logged = 0
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._written = 0
        self._failing_since: float | None = None  # start of a streak of failed writes
        self._last_failure_log = 0.0
        self._thread = threading.Thread(target=self._run, name="aigw-usage-writer", daemon=True)
        self._thread.start()

    # -- the caller's side ---------------------------------------------------------------

    def record(self, row: UsageRow) -> None:
        """Queue a row for writing. Never blocks, never raises for database trouble."""
        if self._closing:
            self._dropped += 1
            return
        pending = self._pending
        if row.content is not None:
            waiting = self._content_in - self._content_out_loop - self._content_out_writer
            if waiting + len(row.content) > self._max_content:
                row.content = None
                self._stripped += 1
            else:
                self._content_in += len(row.content)
        if len(pending) >= self._max_pending:
            try:
                gone = pending.popleft()
                self._dropped += 1
                self._content_out_loop += len(gone.content or "")
            except IndexError:
                pass
        pending.append(row)
        if len(pending) >= self._max_batch and not self._wake.is_set():
            self._wake.set()

    @property
    def pending(self) -> int:
        """Rows recorded but not yet committed (consistent with what a reader of the table sees)."""
        with self._mu:
            return len(self._pending) + len(self._inflight)

    @property
    def content_bytes(self) -> int:
        """Prompt and completion bytes recorded and not yet written or dropped."""
        return self._content_in - self._content_out_loop - self._content_out_writer

    @property
    def stripped(self) -> int:
        """Rows kept without their content because too much content was waiting."""
        return self._stripped

    @property
    def written(self) -> int:
        """Rows committed by this recorder."""
        return self._written

    def spent_usd(self, key_id: str) -> float:
        """What `key_id` has cost so far: the database plus rows not yet written."""
        with self._mu:
            (stored,) = (
                self._read_conn()
                .execute("SELECT COALESCE(SUM(cost_usd), 0) FROM usage WHERE key_id = ?", (key_id,))
                .fetchone()
            )
            unwritten = sum(r.cost_usd for r in self._unwritten() if r.key_id == key_id)
        return float(stored) + unwritten

    def totals_by_key(self) -> dict[str, float]:
        """Cost so far of every key that has any usage: for a gateway's running budget totals."""
        with self._mu:
            rows = (
                self._read_conn()
                .execute("SELECT key_id, SUM(cost_usd) FROM usage WHERE key_id IS NOT NULL GROUP BY key_id")
                .fetchall()
            )
            totals = {str(k): float(v) for k, v in rows}
            for r in self._unwritten():
                if r.key_id is not None:
                    totals[r.key_id] = totals.get(r.key_id, 0.0) + r.cost_usd
        return totals

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Ask the writer to write now and wait until nothing is pending (False on timeout)."""
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        while self.pending and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.005)  # a failed write is retried every flush_interval_s
        return not self.pending

    def close(self) -> None:
        """Write what is left and stop the writer thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._closing = True
        self._wake.set()
        self._thread.join()
        with self._mu:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def __enter__(self) -> UsageRecorder:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the writer thread ---------------------------------------------------------------

    def _unwritten(self) -> list[UsageRow]:
        # list() of a deque runs in C without releasing the GIL: a consistent copy even while
        # record() appends from another thread. Call with self._mu held.
        return list(self._inflight) + list(self._pending)

    def _read_conn(self) -> sqlite3.Connection:
        if self._reader is None:
            self._reader = connect(self._path, busy_timeout_ms=self._busy_ms)
            migrate(self._reader)
        return self._reader

    def _run(self) -> None:
        try:
            while not self._closing:
                self._wake.wait(self._interval)
                self._wake.clear()
                self._flush_once()
            self._drain_at_close()
        finally:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def _drain_at_close(self) -> None:
        deadline = time.monotonic() + self._close_timeout
        while not self._flush_once():
            if time.monotonic() >= deadline:
                log.error("usage log: %d rows could not be written at shutdown and are lost", self.pending)
                return
            time.sleep(min(self._interval, 0.2))

    def _flush_once(self) -> bool:
        """Write every pending row; True when nothing is left."""
        with self._mu:
            pending = self._pending
            while pending:
                self._inflight.append(pending.popleft())
            excess = len(self._inflight) - self._max_pending
            for _ in range(max(excess, 0)):
                gone = self._inflight.popleft()
                self._dropped += 1
                self._content_out_writer += len(gone.content or "")
        if self._stripped != self._stripped_logged:
            log.warning(
                "usage log: kept %d rows without their prompt and completion (more than %d MiB of "
                "them waiting; database unwritable?)",
                self._stripped - self._stripped_logged,
                self._max_content >> 20,
            )
            self._stripped_logged = self._stripped
        if self._dropped != self._dropped_logged:
            log.warning(
                "usage log: dropped %d oldest unwritten rows (more than %d waiting; database unwritable?)",
                self._dropped - self._dropped_logged,
                self._max_pending,
            )
            self._dropped_logged = self._dropped
        while self._inflight:
            batch = list(itertools.islice(self._inflight, self._max_batch))
            if not self._write(batch):
                return False
        return True

    def _write(self, batch: list[UsageRow]) -> bool:
        try:
            if self._writer is None:
                self._writer = connect(self._path, busy_timeout_ms=self._busy_ms)
                # Appends need few pages in memory; the default cache (2 MB) only grows RSS.
                self._writer.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
                migrate(self._writer)
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(_INSERT, (orjson.dumps([_as_tuple(r) for r in batch]).decode(),))
            with self._mu:
                conn.execute("COMMIT")
                for _ in batch:
                    self._inflight.popleft()
                self._written += len(batch)
            self._content_out_writer += sum(len(r.content or "") for r in batch)
            if self._failing_since is not None:
                log.info("usage log: writing again after %.1f s", time.monotonic() - self._failing_since)
                self._failing_since = None
            return True
        except (sqlite3.Error, OSError) as e:
            now = time.monotonic()
            if self._failing_since is None or now - self._last_failure_log >= _FAILURE_LOG_EVERY_S:
                self._failing_since = self._failing_since or now
                self._last_failure_log = now
                log.warning("usage log: writing %d rows failed (kept for the next try): %s", self.pending, e)
            if self._writer is not None and self._writer.in_transaction:
                try:
                    self._writer.execute("ROLLBACK")
                except sqlite3.Error:
                    self._writer.close()
                    self._writer = None
            return False
