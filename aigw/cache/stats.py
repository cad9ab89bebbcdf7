"""What the cache holds and what it has saved: the store's size, and hits, misses, tokens and cost
saved from the usage log (so the figures survive restarts and need no daemon; the query is the usage
log's own, `aigw.usage.report.cache_figures`)."""

from __future__ import annotations

import sqlite3
from typing import Any

from aigw.cache.store import ResponseStore
from aigw.usage.report import cache_figures


def cache_stats(store: ResponseStore | None, conn: sqlite3.Connection | None, mode: str) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": mode, "available": store is not None and store.available}
    if store is not None:
        s = store.stats()
        out.update(
            entries=s.entries,
            size_bytes=s.size_bytes,
            max_size_bytes=s.max_size_bytes,
            ttl_s=store.ttl_s,
            memory_entries=s.memory_entries,
            memory_bytes=s.memory_bytes,
            directory=str(store.directory),
        )
    out.update(cache_figures(conn))
    return out
