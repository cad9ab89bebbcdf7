"""`[cache] shared = false` gives each API key its own entries."""

from __future__ import annotations

from aigw.cache.service import AnswerCache
from aigw.domain import Route, Target

ROUTE = Route("m", (Target("p", "m"),))
BODY = {"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]}


def keys(shared: bool, key_id: str | None) -> dict[Target, str]:
    cache = AnswerCache(None, "deterministic", lambda t: f"{t.provider}/{t.model}", 1.0, shared=shared)
    cache.mode = "all"  # a plan needs a mode that caches; no store is needed to compute keys
    return cache.plan("chat", ROUTE, BODY, None, key_id).keys


def test_a_shared_cache_gives_every_key_the_same_entry() -> None:
    assert keys(True, "key_a") == keys(True, "key_b") == keys(True, None)


def test_an_unshared_cache_separates_keys_but_not_keyless_requests() -> None:
    a, b, anon = keys(False, "key_a"), keys(False, "key_b"), keys(False, None)
    assert len({str(a), str(b), str(anon)}) == 3
    assert a == keys(False, "key_a")
    assert anon == keys(True, None)
