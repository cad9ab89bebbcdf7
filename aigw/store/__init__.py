"""SQLite state of the daemon and the CLI: one database file, numbered migrations.

open_db(path) -> sqlite_utils.Database   WAL, busy_timeout, foreign keys, migrated
"""

from __future__ import annotations

from aigw.store.db import MIGRATIONS, migrate, open_db, schema_version

__all__ = ["MIGRATIONS", "migrate", "open_db", "schema_version"]
