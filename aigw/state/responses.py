"""Stored Responses (`store: true` on /v1/responses): what `previous_response_id` continues from and
`GET`/`DELETE /v1/responses/{id}` read, for every target (OpenAI's own store is not used, so a
conversation can move between targets).

A row holds the response as the client got it and the whole conversation up to it in the
pipeline's chat form. Rows belong to the key that made them (None: anonymous callers, who share
them); retention is bounded by age and count, pruned as rows are added.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from aigw.state.db import connect

DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_AGE_S = 30 * 86_400
_PRUNE_EVERY = 100


class StoredResponses:
    def __init__(
        self,
        path: Path,
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        prune_every: int = _PRUNE_EVERY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`path` is aigw's database, already migrated (it has the `responses` table)."""
        self._conn = connect(path)
        self._lock = threading.Lock()
        self._max_rows = max_rows
        self._max_age_s = max_age_s
        self._clock = clock
        self._added = 0
        self._prune_every = prune_every

    def put(
        self, rid: str, key_id: str | None, messages: list[dict[str, Any]], response: dict[str, Any]
    ) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses (id, key_id, created_at, messages, response) "
                "VALUES (?, ?, ?, ?, ?)",
                (rid, key_id, self._clock(), orjson.dumps(messages), orjson.dumps(response)),
            )
            self._added += 1
            if self._added % self._prune_every == 0:
                self._prune()

    def _prune(self) -> None:
        self._conn.execute("DELETE FROM responses WHERE created_at < ?", (self._clock() - self._max_age_s,))
        self._conn.execute(
            "DELETE FROM responses WHERE id NOT IN "
            "(SELECT id FROM responses ORDER BY created_at DESC LIMIT ?)",
            (self._max_rows,),
        )

    def _row(self, rid: str, key_id: str | None, admin: bool) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._conn.execute(
                "SELECT key_id, messages, response FROM responses WHERE id = ?", (rid,)
            ).fetchone()
        if row is None or (not admin and row[0] != key_id):
            return None  # another key's response does not exist for this one
        return row

    def messages(self, rid: str, key_id: str | None, admin: bool = False) -> list[dict[str, Any]] | None:
        """The conversation up to and including response `rid`, as `key_id` may see it."""
        row = self._row(rid, key_id, admin)
        return None if row is None else list(orjson.loads(row[1]))

    def response(self, rid: str, key_id: str | None, admin: bool = False) -> dict[str, Any] | None:
        row = self._row(rid, key_id, admin)
        return None if row is None else dict(orjson.loads(row[2]))

    def delete(self, rid: str, key_id: str | None, admin: bool = False) -> bool:
        if self._row(rid, key_id, admin) is None:
            return False
        with self._lock, self._conn:
            self._conn.execute("DELETE FROM responses WHERE id = ?", (rid,))
        return True

    def close(self) -> None:
        with self._lock:
            self._conn.close()
