"""aigw.usage: the batched recorder, prices and summaries."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils

from aigw.access.keys import KeyStore
from aigw.config import Config
from aigw.errors import InvalidRequest
from aigw.providers.registry import ProviderRegistry
from aigw.state.db import open_db
from aigw.usage.prices import PriceTable, strip_version
from aigw.usage.recorder import UsageRecorder, UsageRow
from aigw.usage.report import summarise, total


def _count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM usage").fetchone()[0])
    finally:
        conn.close()


def _wait_for(cond: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "aigw.db"
    open_db(p).close()
    return p


@pytest.fixture
def locked(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the write lock until the test commits it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    yield conn
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.close()


# -- recorder ---------------------------------------------------------------------------


def test_record_is_queued_and_written_by_another_thread(path: Path) -> None:
    rec = UsageRecorder(path, flush_interval_s=60)
    main = threading.get_ident()
    rec.record(UsageRow(ts=1.0, status=200, key_id="k", provider="openai", model="gpt-4o", cost_usd=0.5))
    assert _count(path) == 0 and rec.pending == 1  # nothing written on the caller's thread
    assert rec._thread.ident != main and rec._thread.daemon
    assert rec.flush()
    assert _count(path) == 1 and rec.pending == 0 and rec.written == 1
    rec.close()


def test_full_batch_is_written_before_the_interval(path: Path) -> None:
    rec = UsageRecorder(path, flush_interval_s=60, max_batch=10)
    for i in range(10):
        rec.record(UsageRow(ts=float(i), status=200))
    assert _wait_for(lambda: _count(path) == 10)
    rec.close()


def test_close_flushes_everything_and_is_idempotent(path: Path) -> None:
    rec = UsageRecorder(path, flush_interval_s=60, max_batch=7)
    for i in range(1000):
        rec.record(UsageRow(ts=float(i), status=200 if i % 2 else 500, prompt_tokens=i, cache_hit=i % 3 == 0))
    rec.close()
    rec.close()
    assert _count(path) == 1000
    db = open_db(path)
    row = db.table("usage").get(4)  # id 4 is the 4th row recorded (ts 3.0)
    assert (row["ts"], row["status"], row["prompt_tokens"], row["cache_hit"]) == (3.0, 200, 3, 1)
    db.close()
    rec.record(UsageRow(ts=1.0, status=200))  # after close: ignored, no error
    assert _count(path) == 1000


def test_locked_database_keeps_rows_and_retries(
    path: Path, locked: sqlite3.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aigw.usage.recorder")
    rec = UsageRecorder(path, flush_interval_s=0.02, busy_timeout_ms=20)
    for i in range(25):
        rec.record(UsageRow(ts=float(i), status=200, key_id="k", cost_usd=0.01))
    assert _wait_for(lambda: "kept for the next try" in caplog.text)
    for i in range(25, 50):  # the writer is stuck; record() still just queues
        rec.record(UsageRow(ts=float(i), status=200, key_id="k", cost_usd=0.01))
    assert _count(path) == 0 and rec.pending == 50
    assert rec.spent_usd("k") == pytest.approx(0.5)  # readers are not blocked in WAL mode
    locked.execute("COMMIT")
    assert _wait_for(lambda: _count(path) == 50)
    assert rec.pending == 0
    assert rec.spent_usd("k") == pytest.approx(0.5)  # counted once, not twice
    rec.close()


def test_backlog_is_bounded_dropping_the_oldest(
    path: Path, locked: sqlite3.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aigw.usage.recorder")
    rec = UsageRecorder(path, flush_interval_s=0.02, max_batch=5, max_pending=20, busy_timeout_ms=20)
    for i in range(100):
        rec.record(UsageRow(ts=float(i), status=200))
    assert _wait_for(lambda: "dropped" in caplog.text)
    assert rec.pending <= 20
    locked.execute("COMMIT")
    rec.close()
    db = open_db(path)
    stamps = [r[0] for r in db.execute("SELECT ts FROM usage ORDER BY id").fetchall()]
    db.close()
    assert 0 < len(stamps) <= 20
    assert stamps[-1] == 99.0 and stamps == sorted(stamps)  # the newest kept, order preserved


def test_backlog_is_bounded_in_bytes_keeping_rows_without_content(
    path: Path, locked: sqlite3.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aigw.usage.recorder")
    rec = UsageRecorder(path, flush_interval_s=0.02, max_content_bytes=1 << 20, busy_timeout_ms=20)
    prompt = '{"messages": "' + "x" * 100_000 + '"}'
    for i in range(50):  # 5 MB of content with the database locked: about 1 MB of it is kept
        rec.record(UsageRow(ts=float(i), status=200, cost_usd=0.01, content=prompt))
    assert rec.content_bytes <= 1 << 20 and rec.stripped == 40 and rec.pending == 50
    assert _wait_for(lambda: "without their prompt and completion" in caplog.text)
    locked.execute("COMMIT")
    assert _wait_for(lambda: _count(path) == 50)
    assert rec.content_bytes == 0
    rec.record(UsageRow(ts=99.0, status=200, content=prompt))  # room again once written
    rec.close()
    db = open_db(path)
    kept = [r["content"] is not None for r in db.query("SELECT content FROM usage ORDER BY ts")]
    assert kept == [True] * 10 + [False] * 40 + [True]


def test_spent_usd_and_totals_include_unflushed_rows(path: Path) -> None:
    rec = UsageRecorder(path, flush_interval_s=60)
    rec.record(UsageRow(ts=1.0, status=200, key_id="a", cost_usd=1.0))
    rec.record(UsageRow(ts=1.0, status=200, key_id=None, cost_usd=9.0))
    assert rec.flush()
    rec.record(UsageRow(ts=2.0, status=200, key_id="a", cost_usd=0.25))
    rec.record(UsageRow(ts=2.0, status=200, key_id="b", cost_usd=0.5))
    assert _count(path) == 2
    assert rec.spent_usd("a") == pytest.approx(1.25)
    assert rec.spent_usd("b") == pytest.approx(0.5)
    assert rec.spent_usd("nobody") == 0.0
    assert rec.totals_by_key() == pytest.approx({"a": 1.25, "b": 0.5})
    rec.close()
    assert UsageRecorder(path).totals_by_key() == pytest.approx({"a": 1.25, "b": 0.5})


def test_recorder_creates_the_database(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "aigw.db"
    with UsageRecorder(path, flush_interval_s=60) as rec:
        rec.record(UsageRow(ts=1.0, status=200))
        assert rec.spent_usd("x") == 0.0
    assert _count(path) == 1


# -- prices -----------------------------------------------------------------------------


PUBLISHED = ProviderRegistry.from_entry_points().prices()


def test_builtin_table_has_the_well_known_models() -> None:
    prices = PUBLISHED
    assert (prices["gpt-4o-mini"].input, prices["gpt-4o-mini"].output) == (0.15, 0.60)
    assert (prices["gpt-4o"].input, prices["gpt-4o"].output) == (2.50, 10.00)
    assert (prices["claude-3-5-haiku"].input, prices["claude-3-5-haiku"].output) == (0.80, 4.00)
    assert (prices["claude-3-5-sonnet"].input, prices["claude-3-5-sonnet"].output) == (3.00, 15.00)
    assert (prices["gemini-2.0-flash"].input, prices["gemini-2.0-flash"].output) == (0.10, 0.40)


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("claude-3-5-sonnet@20241022", "claude-3-5-sonnet"),
        ("gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("gpt-4o", "gpt-4o"),
        ("o3-mini", "o3-mini"),
    ],
)
def test_strip_version(model: str, base: str) -> None:
    assert strip_version(model) == base


def test_cost_lookups() -> None:
    table = PriceTable(PUBLISHED)
    assert table.cost("openai", "gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert table.cost("openai", "gpt-4o-2024-08-06", 1000, 500) == pytest.approx(0.0025 + 0.005)
    assert table.cost("anthropic", "claude-3-5-sonnet-20241022", 2000, 100) == pytest.approx(0.0075)
    assert table.cost("gemini", "gemini-2.0-flash-001", 10_000, 0) == pytest.approx(0.001)
    assert table.cost("router", "openai/GPT-4o-mini", 1_000_000, 0) == pytest.approx(0.15)
    assert table.known("openai", "gpt-4o-mini-2024-07-18")


def test_local_and_unknown_models_cost_nothing() -> None:
    table = PriceTable(PUBLISHED, local_providers=frozenset({"local", "mlx"}))
    assert table.cost("local", "gpt-4o", 1_000_000, 1_000_000) == 0.0
    assert table.known("mlx", "anything")
    assert table.cost("openai", "brand-new-model", 1_000_000, 1_000_000) == 0.0
    assert not table.known("openai", "brand-new-model")
    assert table.cost("openai", "gpt-4o", -5, -5) == 0.0


def test_config_overrides_and_local_provider_names() -> None:
    cfg = Config.model_validate(
        {
            "prices": {
                "gpt-4o": {"input": 1.0, "output": 2.0},
                "openai/gpt-4o-mini": {"input": 0.0, "output": 1.0},
                "my-model": {"input": 3.0, "output": 3.0},
                "box/priced": {"input": 1.0, "output": 1.0},
            },
        }
    )
    table = PriceTable.from_config(cfg, PUBLISHED, frozenset({"box"}))
    assert table.cost("openai", "gpt-4o", 1_000_000, 1_000_000) == pytest.approx(3.0)
    assert table.cost("openai", "gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(1.0)
    assert table.cost("azure", "gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)  # built-in
    assert table.cost("vllm", "my-model", 1_000_000, 0) == pytest.approx(3.0)
    assert table.cost("box", "my-model", 1_000_000, 0) == 0.0  # a provider of a local type
    assert table.cost("box", "priced", 1_000_000, 0) == pytest.approx(1.0)  # unless priced exactly


# -- summaries --------------------------------------------------------------------------


@pytest.fixture
def filled(path: Path) -> Iterator[tuple[sqlite_utils.Database, dict[str, str]]]:
    db = open_db(path)
    store = KeyStore(db)
    ids = {name: store.create(name)[0].id for name in ("alice", "bob")}
    day1 = time.mktime((2025, 3, 1, 12, 0, 0, 0, 0, -1))
    day2 = day1 + 86400
    alice, bob = ids["alice"], ids["bob"]
    gpt = {"provider": "openai", "model": "gpt-4o", "prompt_tokens": 10, "completion_tokens": 5}
    rows = [
        UsageRow(ts=day1, status=200, key_id=alice, cost_usd=0.1, **gpt),  # type: ignore[arg-type]
        UsageRow(ts=day1, status=200, key_id=alice, cache_hit=True, **gpt),  # type: ignore[arg-type]
        UsageRow(ts=day2, status=502, key_id=alice, alias="smart", error_kind="upstream_error"),
        UsageRow(ts=day2, status=200, key_id=bob, provider="local", model="tiny", prompt_tokens=7),
        UsageRow(
            ts=day2,
            status=200,
            key_id="key_deadbeef0000",
            provider="anthropic",
            model="claude-3-5-haiku",
            cost_usd=0.2,
        ),
        UsageRow(ts=day2, status=429, key_id=None, provider="openai", model="gpt-4o"),
    ]
    with UsageRecorder(path, flush_interval_s=60) as rec:
        for r in rows:
            rec.record(r)
    yield (
        db,
        {
            "day1": time.strftime("%Y-%m-%d", time.localtime(day1)),
            "day2": time.strftime("%Y-%m-%d", time.localtime(day2)),
            "since": str(day2),
        },
    )
    db.close()


def test_summarise_by_key(filled: tuple[sqlite_utils.Database, dict[str, str]]) -> None:
    db, _ = filled
    rows = {r["key"]: r for r in summarise(db, by=("key",))}
    assert set(rows) == {None, "alice", "bob", "key_deadbeef0000"}  # an unknown key shows its id
    alice = rows["alice"]
    assert alice == {
        "key": "alice",
        "requests": 3,
        "errors": 1,
        "prompt_tokens": 20,
        "completion_tokens": 10,
        "cost_usd": pytest.approx(0.1),
        "cache_hits": 1,
    }
    assert rows[None]["errors"] == 1


def test_summarise_by_model_and_day(filled: tuple[sqlite_utils.Database, dict[str, str]]) -> None:
    db, days = filled
    rows = summarise(db, by=("day", "model"))
    got = {(r["day"], r["model"]): r["requests"] for r in rows}
    assert got == {
        (days["day1"], "openai/gpt-4o"): 2,
        (days["day2"], "smart"): 1,  # no target answered: the alias stands in
        (days["day2"], "local/tiny"): 1,
        (days["day2"], "anthropic/claude-3-5-haiku"): 1,
        (days["day2"], "openai/gpt-4o"): 1,
    }
    assert [r["day"] for r in rows] == sorted(r["day"] for r in rows)


def test_summarise_total_since_and_default_groups(
    filled: tuple[sqlite_utils.Database, dict[str, str]],
) -> None:
    db, days = filled
    (everything,) = summarise(db, by=())
    assert everything["requests"] == 6 and everything["cost_usd"] == pytest.approx(0.3)
    assert total(summarise(db)) == everything
    assert set(summarise(db)[0]) >= {"key", "model", "day", "requests", "errors", "cache_hits"}
    later = summarise(db, since_ts=float(days["since"]), by=())
    assert later[0]["requests"] == 4
    assert summarise(db, since_ts=float(days["since"]) + 86400 * 10, by=()) == []


def test_summarise_rejects_unknown_groups(filled: tuple[sqlite_utils.Database, dict[str, str]]) -> None:
    with pytest.raises(InvalidRequest, match="cannot group usage by 'week'"):
        summarise(filled[0], by=("week",))


def test_summarise_empty_database(path: Path) -> None:
    db = open_db(path)
    assert summarise(db) == []
    assert summarise(db, by=()) == []
    db.close()
