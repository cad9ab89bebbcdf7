"""aigw.state.db: the database file, its pragmas and numbered migrations."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from aigw.state.db import MIGRATIONS, connect, migrate, open_db, schema_version


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_is_private_and_its_directory_made(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "aigw.db"
    old = os.umask(0)
    try:
        db = open_db(path)
    finally:
        os.umask(old)
    db.table("usage").insert({"ts": 1.0, "status": 200})  # makes the WAL file exist too
    assert _mode(path) == 0o600
    for side in path.parent.glob("aigw.db-*"):
        assert _mode(side) == 0o600, side
    assert _mode(path.parent) == 0o700
    db.close()


def test_pragmas(tmp_path: Path) -> None:
    db = open_db(tmp_path / "aigw.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    db.close()


def test_migrations_apply_once_and_reopen_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "aigw.db"
    open_db(path).close()
    db = open_db(path)
    rows = db.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == [n for n, _ in MIGRATIONS]
    assert migrate(db.conn) == []
    assert schema_version(db.conn) == MIGRATIONS[-1][0]
    db.close()


def test_a_new_migration_applies_alone_and_in_order(tmp_path: Path) -> None:
    conn = connect(tmp_path / "aigw.db")
    last = MIGRATIONS[-1][0]
    assert migrate(conn) == [n for n, _ in MIGRATIONS]
    extra = (
        *MIGRATIONS,
        (last + 1, "CREATE TABLE extra (x INTEGER);"),
        (last + 2, "ALTER TABLE extra ADD COLUMN y TEXT;"),
    )
    assert migrate(conn, extra) == [last + 1, last + 2]
    assert migrate(conn, extra) == []
    cols = [r[1] for r in conn.execute("PRAGMA table_info(extra)")]
    assert cols == ["x", "y"]
    conn.close()


def test_a_failing_migration_leaves_nothing_behind(tmp_path: Path) -> None:
    conn = connect(tmp_path / "aigw.db")
    migrate(conn)
    last = MIGRATIONS[-1][0]
    bad = (*MIGRATIONS, (last + 1, "CREATE TABLE half (x INTEGER);\nCREATE TABLE broken (;"))
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, bad)
    assert schema_version(conn) == last
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "half" not in tables
    conn.close()


def test_migration_numbers_must_ascend(tmp_path: Path) -> None:
    conn = connect(tmp_path / "aigw.db")
    with pytest.raises(ValueError, match="ascending"):
        migrate(conn, ((2, "SELECT 1;"), (1, "SELECT 1;")))
    conn.close()


def test_concurrent_opens_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "aigw.db"
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            open_db(path).close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db = open_db(path)
    assert db.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)
    db.close()


def test_schema(tmp_path: Path) -> None:
    db = open_db(tmp_path / "aigw.db")
    assert {"api_keys", "usage", "schema_migrations"} <= set(db.table_names())
    keys = {c.name: c.type for c in db.table("api_keys").columns}
    assert keys == {
        "id": "TEXT",
        "name": "TEXT",
        "key_hash": "TEXT",
        "prefix": "TEXT",
        "rpm": "INTEGER",
        "tpm": "INTEGER",
        "budget_usd": "REAL",
        "models": "TEXT",
        "created_at": "REAL",
        "revoked_at": "REAL",
        "collections": "TEXT",
    }
    assert db.table("api_keys").pks == ["id"]
    usage = {c.name: c.type for c in db.table("usage").columns}
    assert usage == {
        "id": "INTEGER",
        "ts": "REAL",
        "key_id": "TEXT",
        "alias": "TEXT",
        "provider": "TEXT",
        "model": "TEXT",
        "status": "INTEGER",
        "latency_ms": "REAL",
        "prompt_tokens": "INTEGER",
        "completion_tokens": "INTEGER",
        "cost_usd": "REAL",
        "cache_hit": "INTEGER",
        "fallbacks": "INTEGER",
        "error_kind": "TEXT",
        "content": "TEXT",
        "cache": "TEXT",
        "saved_usd": "REAL",
        "request_id": "TEXT",
        "dialect": "TEXT",
        "cached_tokens": "INTEGER",
        "prefill_ms": "REAL",
        "decode_tps": "REAL",
    }
    responses = {c.name: c.type for c in db.table("responses").columns}
    assert responses == {
        "id": "TEXT",
        "key_id": "TEXT",
        "created_at": "REAL",
        "messages": "TEXT",
        "response": "TEXT",
    }
    indexed = {tuple(ix.columns) for ix in db.table("usage").indexes}
    assert {("ts",), ("key_id", "ts")} <= indexed
    unique = {tuple(ix.columns) for ix in db.table("api_keys").indexes if ix.unique}
    assert {("name",), ("key_hash",)} <= unique
    db.close()


def test_a_version_1_database_upgrades_keeping_its_rows(tmp_path: Path) -> None:
    conn = connect(tmp_path / "aigw.db")
    assert migrate(conn, MIGRATIONS[:1]) == [1]
    conn.execute("INSERT INTO usage (ts, status, key_id, cost_usd) VALUES (1.0, 200, 'k', 0.25)")
    conn.commit()
    assert migrate(conn) == [n for n, _ in MIGRATIONS[1:]]
    row = conn.execute("SELECT key_id, cost_usd, cache, saved_usd FROM usage").fetchone()
    assert row == ("k", 0.25, None, 0.0)
    conn.close()


def test_a_version_5_usage_log_gains_the_speed_columns_and_keeps_working(tmp_path: Path) -> None:
    """Migration 6 on a database an earlier aigw wrote: its rows stay, with no figures (NULL, not
    0: unknown), and the recorder writes rows with them into the same table."""
    from aigw.usage.recorder import UsageRecorder, UsageRow

    path = tmp_path / "aigw.db"
    conn = connect(path)
    assert migrate(conn, MIGRATIONS[:5]) == [1, 2, 3, 4, 5]
    conn.execute("INSERT INTO usage (ts, status, prompt_tokens, dialect) VALUES (1.0, 200, 42, 'openai')")
    conn.commit()
    conn.close()
    with UsageRecorder(path, flush_interval_s=60) as rec:
        row = UsageRow(ts=2.0, status=200, prompt_tokens=30, cached_tokens=24, prefill_ms=5.5, decode_tps=80)
        rec.record(row)
        assert rec.flush()
    conn = connect(path)
    assert schema_version(conn) == 6
    rows = conn.execute(
        "SELECT ts, prompt_tokens, dialect, cached_tokens, prefill_ms, decode_tps FROM usage ORDER BY ts"
    ).fetchall()
    assert rows == [(1.0, 42, "openai", None, None, None), (2.0, 30, None, 24, 5.5, 80.0)]
    conn.close()
