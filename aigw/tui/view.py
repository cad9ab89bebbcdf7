"""What the dashboard shows, as plain rows and lines made from a GET /admin/stats snapshot.
Pure functions: the Textual app only places them on screen, and tests can check them directly."""

from __future__ import annotations

import math
import time
from typing import Any


def figure(v: float) -> str:
    """`v` with at least two significant digits and no decimals it does not need:
    0.042, 0.42, 4.2, 42, 420, 1234."""
    if not math.isfinite(v) or v == 0:
        return f"{v:.0f}"
    rounded = abs(float(f"{v:.2g}"))
    if rounded >= 10:
        return f"{v:.0f}"
    return f"{v:.{1 - math.floor(math.log10(rounded))}f}"


def latency(v: Any) -> str:
    """A latency in milliseconds, as `figure` shows it ("-" when there is none yet)."""
    return "-" if v is None else f"{figure(float(v))} ms"


def _size(n: Any) -> str:
    b = float(n or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1000 or unit == "GB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1000
    return f"{b:.1f} GB"


def traffic_line(s: dict[str, Any]) -> str:
    t = s["traffic"]
    return (
        f"{t['requests_per_s']:.1f} req/s · p50 {latency(t['p50_ms'])} · p95 {latency(t['p95_ms'])} · "
        f"{t['errors_1m']} errors / {t['requests_1m']} requests in the last minute · "
        f"up {int(s['uptime_s'])} s · v{s['version']}"
    )


def cache_line(s: dict[str, Any]) -> str:
    c = s["cache"]
    ratio = "-" if c.get("hit_ratio") is None else f"{c['hit_ratio']:.0%}"
    size = f" · {c.get('entries', 0)} entries, {_size(c.get('size_bytes'))}" if "entries" in c else ""
    return f"cache ({c['mode']}): hit ratio {ratio} ({c['hits']} hits, {c['misses']} misses){size}"


def rag_line(s: dict[str, Any]) -> str:
    if not s.get("rag"):
        return "RAG: no collections (aigw rag index ./docs)"
    parts = [f"{c['name']} ({c['files']} files, {c['chunks']} chunks)" for c in s["rag"]]
    return "RAG: " + ", ".join(parts)


def provider_rows(s: dict[str, Any]) -> list[tuple[str, ...]]:
    """(target, type, health, breaker) for each provider, and each breaker's target."""
    breakers = s.get("breakers") or {}
    rows: list[tuple[str, ...]] = []
    for name, p in sorted(s["providers"].items()):
        health = {True: "ok", False: "unreachable", None: "unknown"}[p.get("reachable")]
        if p.get("last_error") and p.get("reachable") is not False:
            health = "error"
        states = [
            f"{t}: {b.get('state', '?')}" for t, b in sorted(breakers.items()) if t.startswith(name + "/")
        ]
        rows.append((name, str(p.get("type") or ""), health, ", ".join(states) or "closed"))
    return rows


def _or_dash(v: Any, unit: str = "") -> str:
    return "-" if v is None else f"{figure(float(v))}{unit}"


def local_rows(s: dict[str, Any], now: float | None = None) -> list[tuple[str, ...]]:
    """(model, state, memory, queue, unloads in, slots in use/slots, prompt cache, prefill p50,
    decode tokens/s) for local models in memory; the last two from its last minute's answers."""
    now = time.time() if now is None else now
    speed = {m.get("model"): m for m in s.get("local_requests") or []}
    rows: list[tuple[str, ...]] = []
    for m in s["local"].get("loaded") or []:
        unload = m.get("unloads_in_s")
        answered = speed.get(m.get("model")) or {}
        rows.append(
            (
                str(m.get("model")),
                str(m.get("state", "")),
                _size(m.get("memory_bytes")),
                str(m.get("queue_depth", 0)),
                "never" if unload is None else f"{float(unload):.0f} s",
                f"{m.get('active', 0)}/{m.get('parallel', 1)}",
                _size(m.get("cache_bytes")),
                _or_dash(answered.get("prefill_p50_ms"), " ms"),
                _or_dash(answered.get("decode_tps")),
            )
        )
    return rows


def key_rows(s: dict[str, Any]) -> list[tuple[str, ...]]:
    """(key, requests used/limit, tokens used/limit, spent today, budget)."""

    def use(b: dict[str, Any]) -> str:
        if b.get("limit") in (None, 0):
            return "unlimited"
        return f"{int(b['limit']) - int(b.get('remaining') or 0)}/{b['limit']}"

    rows: list[tuple[str, ...]] = []
    for k in s.get("keys") or []:
        budget = "-" if k.get("budget_usd") is None else f"${k['budget_usd']:.2f}"
        rows.append((k["name"], use(k["requests"]), use(k["tokens"]), f"${k['spent_today_usd']:.4f}", budget))
    return rows


def request_rows(s: dict[str, Any]) -> list[tuple[str, ...]]:
    """The latest requests, newest first: (time, model, provider, status, latency, tokens, cache,
    fallbacks, prompt tokens, cached tokens, prefill ms, decode tokens/s); the last two only a
    local model's answer has ("-" for the others)."""
    rows: list[tuple[str, ...]] = []
    for r in reversed(s.get("recent") or []):
        rows.append(
            (
                time.strftime("%H:%M:%S", time.localtime(r["ts"])),
                str(r["model"]),
                str(r["provider"]),
                str(r["status"]),
                figure(float(r["latency_ms"])),
                str(r["tokens"]),
                str(r.get("cache") or "-"),
                str(r["fallbacks"]),
                str(r.get("prompt_tokens", "-")),
                "-" if r.get("cached_tokens") is None else str(r["cached_tokens"]),
                _or_dash(r.get("prefill_ms")),
                _or_dash(r.get("decode_tps")),
            )
        )
    return rows
