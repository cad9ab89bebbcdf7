"""What the cache holds and what it has saved: the store's size, and hits, misses, tokens and cost
saved from the usage log (so the figures survive restarts and need no daemon)."""

from __future__ import annotations

import sqlite3
from typing import Any

from aigw.cache.store import ResponseStore


def usage_figures(conn: sqlite3.Connection | None) -> dict[str, Any]:
    """Hits, misses and bypasses recorded in the usage log, with the tokens and cost hits saved."""
    counts = {"hit": 0, "miss": 0, "bypass": 0}
    tokens = 0
    saved = 0.0
    rows = (
        []
        if conn is None
        else conn.execute(
            "SELECT cache, COUNT(*), SUM(prompt_tokens + completion_tokens), SUM(saved_usd) "
            "FROM usage WHERE cache IS NOT NULL GROUP BY cache"
        )
    )
    for status, n, toks, usd in rows:
        if status in counts:
            counts[status] = int(n)
        if status == "hit":
            tokens, saved = int(toks or 0), float(usd or 0.0)
    looked_up = counts["hit"] + counts["miss"]
    return {
        "hits": counts["hit"],
        "misses": counts["miss"],
        "bypassed": counts["bypass"],
        "hit_ratio": round(counts["hit"] / looked_up, 4) if looked_up else None,
        "tokens_saved": tokens,
        "cost_saved_usd": round(saved, 6),
    }


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
    out.update(usage_figures(conn))
    return out
