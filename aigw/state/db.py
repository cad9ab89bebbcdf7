"""Open aigw's SQLite database and bring its schema up to date.

Every connection runs in WAL mode (readers never wait for the writer), waits up to
`busy_timeout_ms` for a lock instead of failing at once, and enforces foreign keys.
The file is created 0600: it holds key hashes and, when enabled, prompts and completions.

Migrations are numbered and applied in order, each in its own `BEGIN IMMEDIATE`
transaction that re-checks `schema_migrations` first, so two processes opening the same
file at once (the daemon and a CLI command) apply each migration exactly once.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import sqlite_utils

# (number, sql): append only; never edit a migration that has shipped.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            key_hash TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            rpm INTEGER NOT NULL DEFAULT 0,
            tpm INTEGER NOT NULL DEFAULT 0,
            budget_usd REAL,
            models TEXT,
            created_at REAL NOT NULL,
            revoked_at REAL
        );
        CREATE TABLE usage (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            key_id TEXT,
            alias TEXT,
            provider TEXT,
            model TEXT,
            status INTEGER NOT NULL,
            latency_ms REAL NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            cache_hit INTEGER NOT NULL DEFAULT 0,
            fallbacks INTEGER NOT NULL DEFAULT 0,
            error_kind TEXT,
            content TEXT
        );
        CREATE INDEX usage_ts ON usage (ts);
        CREATE INDEX usage_key_ts ON usage (key_id, ts);
        """,
    ),
    (
        2,
        """
        ALTER TABLE usage ADD COLUMN cache TEXT;
        ALTER TABLE usage ADD COLUMN saved_usd REAL NOT NULL DEFAULT 0;
        """,
    ),
    (
        3,
        """
        ALTER TABLE api_keys ADD COLUMN collections TEXT;
        ALTER TABLE usage ADD COLUMN request_id TEXT;
        """,
    ),
    (
        4,
        """
        CREATE TABLE responses (
            id TEXT PRIMARY KEY,
            key_id TEXT,
            created_at REAL NOT NULL,
            messages TEXT NOT NULL,
            response TEXT NOT NULL
        );
        CREATE INDEX responses_created ON responses (created_at);
        """,
    ),
    (
        5,
        """
        ALTER TABLE usage ADD COLUMN dialect TEXT;
        """,
    ),
    (
        6,
        """
        ALTER TABLE usage ADD COLUMN cached_tokens INTEGER;
        ALTER TABLE usage ADD COLUMN prefill_ms REAL;
        ALTER TABLE usage ADD COLUMN decode_tps REAL;
        """,
    ),
)

DEFAULT_BUSY_TIMEOUT_MS = 5000


def create_private(path: Path) -> None:
    """Create the database file 0600 (and its directory 0700) before SQLite opens it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def connect(path: Path, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """A plain sqlite3 connection with aigw's pragmas; the schema is not touched."""
    create_private(path)
    # check_same_thread=False: a connection may be handed to another thread; callers that
    # share one between threads serialise its use themselves.
    conn = sqlite3.connect(str(path), timeout=busy_timeout_ms / 1000, check_same_thread=False)
    return with_pragmas(conn, busy_timeout_ms)


def with_pragmas(conn: sqlite3.Connection, busy_timeout_ms: int) -> sqlite3.Connection:
    """aigw's pragmas on a new connection (closed again if they cannot be set)."""
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        _wal(conn, busy_timeout_ms)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _wal(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """Put the database in WAL mode. The switch needs the file to itself, and SQLite answers "database
    is locked" at once (no busy handler) when another connection opening a new file at the same
    moment holds it: try again until the busy timeout, as every other statement would wait."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except Exception as e:  # sqlite3's error, or sqlean's (the RAG store's connections)
            busy = getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def open_db(path: Path | str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> sqlite_utils.Database:
    """Open (creating if needed) the database at `path`, migrated to the latest schema."""
    conn = connect(Path(path), busy_timeout_ms=busy_timeout_ms)
    try:
        migrate(conn)
        return sqlite_utils.Database(conn, execute_plugins=False)
    except BaseException:
        conn.close()
        raise


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if row is None:
        return 0
    (version,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    return int(version)


def migrate(conn: sqlite3.Connection, migrations: tuple[tuple[int, str], ...] = MIGRATIONS) -> list[int]:
    """Apply the migrations `conn`'s database lacks, in order; return the numbers applied."""
    numbers = [n for n, _ in migrations]
    if numbers != sorted(set(numbers)):
        raise ValueError("migrations must have unique numbers in ascending order")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    if conn.in_transaction:
        conn.commit()
    applied: list[int] = []
    for number, sql in migrations:
        if number <= schema_version(conn):
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have applied it while this one waited for the lock.
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (number,)).fetchone():
                conn.execute("ROLLBACK")
                continue
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (number, time.time())
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        applied.append(number)
    return applied


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (executescript would commit the open transaction)."""
    out: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {buf.strip()[:60]!r}")
    return out
