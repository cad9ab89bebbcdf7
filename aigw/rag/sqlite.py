"""An SQLite connection with the sqlite-vec extension loaded.

The standard library's sqlite3 is used when it can load extensions (most macOS and Linux
Pythons from python.org, Homebrew or uv); otherwise `sqlean` (the `sqlean.py` package, the
same DB-API with its own SQLite build). Within one process the choice never changes, so every
RAG connection of a process goes through the same SQLite library. When neither works,
`RagUnavailable` names the package to install.

The connection is in autocommit mode (`isolation_level=None`): callers open their own
`BEGIN IMMEDIATE ... COMMIT`. WAL, a busy timeout and foreign keys are on, as in `aigw.state.db`.
The database file is created 0600 in a 0700 directory.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, cast

from aigw.rag.errors import RagUnavailable
from aigw.state.db import create_private, with_pragmas

DEFAULT_BUSY_TIMEOUT_MS = 5000


def _load_vec(conn: Any) -> None:
    import sqlite_vec

    conn.enable_load_extension(True)
    try:
        sqlite_vec.load(conn)
    finally:
        conn.enable_load_extension(False)


def _open_with(module: Any, path: Path, timeout_s: float) -> sqlite3.Connection:
    conn = module.connect(str(path), timeout=timeout_s, isolation_level=None, check_same_thread=False)
    try:
        _load_vec(conn)
    except BaseException:
        conn.close()
        raise
    return cast(sqlite3.Connection, conn)


def _connect_vec(path: Path, timeout_s: float) -> sqlite3.Connection:
    try:
        import sqlite_vec  # noqa: F401
    except ImportError as exc:
        raise RagUnavailable("RAG needs the sqlite-vec package: pip install sqlite-vec") from exc
    stdlib_error: Exception | None = None
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        try:
            return _open_with(sqlite3, path, timeout_s)
        except (AttributeError, sqlite3.Error) as exc:
            stdlib_error = exc
    try:
        import sqlean
    except ImportError as exc:
        why = f" ({stdlib_error})" if stdlib_error else " (it was built without enable_load_extension)"
        raise RagUnavailable(
            f"this Python's sqlite3 cannot load the sqlite-vec extension{why}; "
            "install an SQLite that can: pip install sqlean.py"
        ) from exc
    try:
        return _open_with(sqlean, path, timeout_s)
    except (AttributeError, sqlean.Error) as exc:
        raise RagUnavailable(f"cannot load the sqlite-vec extension into SQLite: {exc}") from exc


def connect(path: Path | str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """Open `path` (creating it 0600) with sqlite-vec loaded and aigw's pragmas set."""
    path = Path(path)
    create_private(path)
    return with_pragmas(_connect_vec(path, busy_timeout_ms / 1000), busy_timeout_ms)
