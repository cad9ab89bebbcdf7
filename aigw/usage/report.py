"""Usage summaries for `aigw usage` and the admin API: requests, errors, tokens and cost by group."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import sqlite_utils

from aigw.errors import InvalidRequest

# Group name -> SQL expression over `usage u LEFT JOIN api_keys k`.
GROUPS: Mapping[str, str] = MappingProxyType(
    {
        "key": "COALESCE(k.name, u.key_id)",
        "model": (
            "CASE WHEN u.provider IS NOT NULL AND u.model IS NOT NULL"
            " THEN u.provider || '/' || u.model ELSE COALESCE(u.model, u.alias) END"
        ),
        "alias": "u.alias",
        "provider": "u.provider",
        "day": "date(u.ts, 'unixepoch', 'localtime')",
    }
)
METRICS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd", "cache_hits")


def check_groups(by: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for g in by:
        if g not in GROUPS:
            raise InvalidRequest(f"cannot group usage by {g!r}; choose from {', '.join(GROUPS)}", param="by")
        if g not in out:
            out.append(g)
    return tuple(out)


def summarise(
    db: sqlite_utils.Database,
    *,
    since_ts: float | None = None,
    by: Sequence[str] = ("key", "model", "day"),
) -> list[dict[str, Any]]:
    """One dict per group: the group's columns, then requests, errors (status >= 400),
    prompt_tokens, completion_tokens, cost_usd and cache_hits. `by=()` gives one total row
    (none when nothing was recorded)."""
    groups = check_groups(by)
    select = [f"{GROUPS[g]} AS {g}" for g in groups]
    select += [
        "COUNT(*) AS requests",
        "COALESCE(SUM(u.status >= 400), 0) AS errors",
        "COALESCE(SUM(u.prompt_tokens), 0) AS prompt_tokens",
        "COALESCE(SUM(u.completion_tokens), 0) AS completion_tokens",
        "COALESCE(SUM(u.cost_usd), 0.0) AS cost_usd",
        "COALESCE(SUM(u.cache_hit), 0) AS cache_hits",
    ]
    sql = f"SELECT {', '.join(select)} FROM usage u LEFT JOIN api_keys k ON k.id = u.key_id"
    params: list[Any] = []
    if since_ts is not None:
        sql += " WHERE u.ts >= ?"
        params.append(since_ts)
    if groups:
        cols = ", ".join(str(i + 1) for i in range(len(groups)))
        sql += f" GROUP BY {cols} ORDER BY {cols}"
    else:
        sql += " HAVING COUNT(*) > 0"
    rows = list(db.query(sql, params))
    for r in rows:
        r["cost_usd"] = float(r["cost_usd"])
    return rows


def total(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The metrics of `rows` added up."""
    out: dict[str, Any] = {m: sum(r[m] for r in rows) for m in METRICS}
    out["cost_usd"] = float(out["cost_usd"])
    return out


def spend_by_key(db: sqlite_utils.Database) -> dict[str, float]:
    """USD spent so far by each key id with any usage."""
    rows = db.execute(
        "SELECT key_id, SUM(cost_usd) FROM usage WHERE key_id IS NOT NULL GROUP BY key_id"
    ).fetchall()
    return {str(k): float(v) for k, v in rows}


def spend_since(conn: sqlite3.Connection, since_ts: float) -> dict[str, float]:
    """USD spent since `since_ts` by each key id with any usage then."""
    rows = conn.execute(
        "SELECT key_id, SUM(cost_usd) FROM usage WHERE ts >= ? AND key_id IS NOT NULL GROUP BY key_id",
        (since_ts,),
    ).fetchall()
    return {str(k): float(v or 0.0) for k, v in rows}


def cache_figures(conn: sqlite3.Connection | None) -> dict[str, Any]:
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
