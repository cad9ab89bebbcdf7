"""BatchWriter: batches in order, bounded backlog, flush and close write everything."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from aigw.cache.writer import BatchWriter


def test_entries_are_written_in_order_in_batches() -> None:
    batches: list[list[int]] = []
    w: BatchWriter[int] = BatchWriter(lambda b: batches.append(list(b)), delay_s=0.01, max_batch=10)
    for i in range(25):
        w.submit(i)
    assert w.flush()
    assert [x for b in batches for x in b] == list(range(25))
    assert all(len(b) <= 10 for b in batches)
    w.close()


def test_a_backlog_past_max_pending_drops_the_oldest() -> None:
    gate = threading.Event()
    written: list[int] = []

    def slow(batch: Sequence[int]) -> None:
        gate.wait()
        written.extend(batch)

    w: BatchWriter[int] = BatchWriter(slow, delay_s=0.0, max_batch=1, max_pending=5)
    w.submit(0)  # taken by the writer, which then blocks on the gate
    while w._pending:  # the writer has picked it up
        pass
    for i in range(1, 21):
        w.submit(i)
    assert w.dropped == 15
    gate.set()
    assert w.flush()
    assert written == [0, 16, 17, 18, 19, 20]
    w.close()


def test_close_writes_what_is_pending_and_later_submits_are_ignored() -> None:
    written: list[int] = []
    w: BatchWriter[int] = BatchWriter(written.extend, delay_s=5.0)
    for i in range(3):
        w.submit(i)
    w.close()  # does not wait for the 5 s gathering delay
    assert written == [0, 1, 2]
    w.submit(9)
    assert written == [0, 1, 2]


def test_a_failing_batch_does_not_stop_the_writer() -> None:
    written: list[int] = []

    def flaky(batch: Sequence[int]) -> None:
        if 0 in batch:
            raise RuntimeError("boom")
        written.extend(batch)

    w: BatchWriter[int] = BatchWriter(flaky, delay_s=0.0, max_batch=1)
    w.submit(0)
    assert w.flush()
    w.submit(1)
    assert w.flush()
    assert written == [1]
    w.close()
