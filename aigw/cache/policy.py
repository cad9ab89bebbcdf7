"""Whether a request may be answered from the cache, and whether its answer may be stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["deterministic", "all", "off"]


@dataclass(frozen=True, slots=True)
class Decision:
    lookup: bool
    """Answer from the cache when an entry exists."""
    store: bool
    """Store a successful answer."""

    @property
    def uses_cache(self) -> bool:
        return self.lookup or self.store


BYPASS = Decision(lookup=False, store=False)
SAMPLED = frozenset({"chat", "completion"})
"""Kinds of request whose answers are sampled: cached in `deterministic` mode only when asked for
a repeatable one (embeddings, reranks are deterministic by nature)."""


def asks_for_determinism(body: dict[str, Any]) -> bool:
    """Temperature 0, or a seed: the client asked for a repeatable answer."""
    if body.get("seed") is not None:
        return True
    t = body.get("temperature")
    return isinstance(t, int | float) and not isinstance(t, bool) and t == 0


def cache_control(header: str | None) -> tuple[bool, bool]:
    """(no_cache, no_store) from a request's Cache-Control header (directives are case-insensitive)."""
    if not header:
        return False, False
    directives = {d.strip().split("=", 1)[0].lower() for d in header.split(",")}
    return "no-cache" in directives, "no-store" in directives


def decide(mode: Mode, kind: str, body: dict[str, Any], cache_control_header: str | None) -> Decision:
    """`kind`: "chat", "completion", "embed", ..."""
    if mode == "off":
        return BYPASS
    if mode == "deterministic" and kind in SAMPLED and not asks_for_determinism(body):
        return BYPASS
    no_cache, no_store = cache_control(cache_control_header)
    return Decision(lookup=not no_cache, store=not no_store)
