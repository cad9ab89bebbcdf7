"""GET /admin/stats: one cheap snapshot of everything the dashboard (`aigw tui`) shows, polled
about once a second: traffic over the last minute, providers and breakers, local models (and how
fast each answered in the last minute), the cache, each key's rate-limit use and spend today, RAG
collections, and the latest requests."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter

from aigw.access.meter import Recent
from aigw.api.deps import GatewayDep
from aigw.gateway.gateway import Gateway
from aigw.rag.owners import ADMIN
from aigw.state.db import connect
from aigw.usage.report import spend_since

router = APIRouter(prefix="/admin")

WINDOW_S = 60.0
RATE_WINDOW_S = 10.0
TAIL = 50


def _p95(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def traffic(recent: list[Recent], now: float) -> dict[str, Any]:
    window = [r for r in recent if r.ts >= now - WINDOW_S]
    latest = [r for r in window if r.ts >= now - RATE_WINDOW_S]
    lat = sorted(r.latency_ms for r in window)
    return {
        "requests_per_s": round(len(latest) / RATE_WINDOW_S, 2),
        "requests_1m": len(window),
        "errors_1m": sum(1 for r in window if r.status >= 400),
        "p50_ms": round(statistics.median(lat), 3) if lat else None,
        "p95_ms": round(_p95(lat), 3) if lat else None,
    }


def local_requests(recent: list[Recent], now: float) -> list[dict[str, Any]]:
    """Per local model, its answers of the last minute: prompt tokens and the cached part of them
    (totals), time to the first token (p50, p95), and the decode rate of one stream (all the
    tokens generated after each answer's first, over the time they took)."""
    models: dict[str, list[Recent]] = {}
    for r in recent:
        if r.ts >= now - WINDOW_S and r.speed.prefill_ms is not None:
            models.setdefault(r.target, []).append(r)
    out = []
    for model, rows in sorted(models.items()):
        prefill = sorted(r.speed.prefill_ms for r in rows if r.speed.prefill_ms is not None)
        decoded = [
            (r.tokens - r.prompt_tokens - 1, r.speed.decode_tps) for r in rows if r.speed.decode_tps
        ]
        seconds = sum(n / tps for n, tps in decoded)
        out.append(
            {
                "model": model,
                "requests": len(rows),
                "prompt_tokens": sum(r.prompt_tokens for r in rows),
                "cached_tokens": sum(r.speed.cached_tokens or 0 for r in rows),
                "prefill_p50_ms": round(statistics.median(prefill), 3),
                "prefill_p95_ms": round(_p95(prefill), 3),
                "decode_tps": round(sum(n for n, _ in decoded) / seconds, 1) if seconds else None,
            }
        )
    return out


def _spend_today(gw: Gateway) -> dict[str, float]:
    if gw.database is None:
        return {}
    midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    with contextlib.closing(connect(gw.database)) as conn:
        return spend_since(conn, midnight)


def _keys(gw: Gateway) -> list[dict[str, Any]]:
    if gw.keys is None:
        return []
    spend = _spend_today(gw)
    out = []
    for key in gw.keys.list():
        snap = gw.meter.limiter.snapshot(key.id, gw.meter.limits_for(key))
        out.append(
            {
                "name": key.name,
                "id": key.id,
                "requests": snap["requests"],
                "tokens": snap["tokens"],
                "spent_today_usd": round(spend.get(key.id, 0.0), 6),
                "spent_usd": round(gw.meter.spent(key.id), 6),
                "budget_usd": key.budget_usd,
            }
        )
    return out


def _cache(gw: Gateway) -> dict[str, Any]:
    counts = gw.meter.cache_counts
    looked = counts["hit"] + counts["miss"]
    out: dict[str, Any] = {
        "mode": gw.cache.mode,
        "hits": counts["hit"],
        "misses": counts["miss"],
        "hit_ratio": round(counts["hit"] / looked, 4) if looked else None,
    }
    if gw.cache.store is not None:
        s = gw.cache.store.stats()
        out.update(entries=s.entries, size_bytes=s.size_bytes)
    return out


def _blocking_parts(gw: Gateway) -> dict[str, Any]:
    return {"keys": _keys(gw), "cache": _cache(gw)}


async def _rag(gw: Gateway) -> list[dict[str, Any]]:
    if gw.rag is None or not gw.rag.database.exists():
        return []
    try:
        return [
            {"name": c.name, "files": c.files, "chunks": c.chunks, "model": c.model}
            for c in await gw.rag.stats(ADMIN)
        ]
    except Exception:  # the dashboard shows what it can; RAG errors surface on RAG calls
        return []


@router.get("/stats")
async def stats(gw: GatewayDep) -> dict[str, Any]:
    now = time.time()
    recent = list(gw.meter.recent)
    health = gw.detailed_health()
    parts, rag = await asyncio.gather(asyncio.to_thread(_blocking_parts, gw), _rag(gw))
    providers = {
        name: {k: p.get(k) for k in ("type", "reachable", "last_error", "models")}
        for name, p in health["providers"].items()
    }
    return {
        "version": health["version"],
        "uptime_s": health["uptime_s"],
        "traffic": traffic(recent, now),
        "providers": providers,
        "breakers": health["breakers"],
        "routing": health["routing"],
        "local": health["local"],
        "local_requests": local_requests(recent, now),
        "rag": rag,
        "recent": [
            {
                "ts": r.ts,
                "key": r.key,
                "model": r.model,
                "provider": r.provider,
                "status": r.status,
                "latency_ms": r.latency_ms,
                "tokens": r.tokens,
                "cache": r.cache,
                "fallbacks": r.fallbacks,
                "prompt_tokens": r.prompt_tokens,
                "cached_tokens": r.speed.cached_tokens,
                "prefill_ms": r.speed.prefill_ms,
                "decode_tps": r.speed.decode_tps,
            }
            for r in recent[-TAIL:]
        ],
        **parts,
    }
