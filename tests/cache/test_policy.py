"""aigw.cache.policy: whether the cache may answer a request, and whether its answer may be stored."""

from __future__ import annotations

from typing import Any

import pytest

from aigw.cache.policy import BYPASS, Decision, Mode, asks_for_determinism, cache_control, decide

BOTH = Decision(lookup=True, store=True)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({}, False, id="nothing"),
        pytest.param({"temperature": 0}, True, id="temperature-0"),
        pytest.param({"temperature": 0.0}, True, id="temperature-0.0"),
        pytest.param({"temperature": -0.0}, True, id="temperature--0.0"),
        pytest.param({"temperature": 0.7}, False, id="temperature-0.7"),
        pytest.param({"temperature": 1e-9}, False, id="temperature-tiny"),
        pytest.param({"temperature": None}, False, id="temperature-null"),
        pytest.param({"temperature": "0"}, False, id="temperature-string"),
        pytest.param({"temperature": True}, False, id="temperature-true"),
        pytest.param({"temperature": False}, False, id="temperature-false-is-not-0"),
        pytest.param({"seed": 0}, True, id="seed-0"),
        pytest.param({"seed": 42}, True, id="seed-42"),
        pytest.param({"seed": None}, False, id="seed-null"),
        pytest.param({"seed": None, "temperature": 0}, True, id="seed-null-temperature-0"),
        pytest.param({"seed": 1, "temperature": 1.2}, True, id="seed-with-high-temperature"),
        pytest.param({"top_p": 0}, False, id="top_p-0-is-not-enough"),
    ],
)
def test_asks_for_determinism(body: dict[str, Any], expected: bool) -> None:
    assert asks_for_determinism(body) is expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(None, (False, False), id="none"),
        pytest.param("", (False, False), id="empty"),
        pytest.param("no-cache", (True, False), id="no-cache"),
        pytest.param("no-store", (False, True), id="no-store"),
        pytest.param("no-cache, no-store", (True, True), id="both"),
        pytest.param("no-store,no-cache", (True, True), id="both-no-space"),
        pytest.param("NO-CACHE", (True, False), id="upper-case"),
        pytest.param("No-Cache", (True, False), id="mixed-case"),
        pytest.param("max-age=0, No-Store", (False, True), id="with-max-age"),
        pytest.param("  no-cache  ,  max-age=0 ", (True, False), id="spaces"),
        pytest.param('no-cache="set-cookie"', (True, False), id="no-cache-with-argument"),
        pytest.param("max-age=0", (False, False), id="max-age-only"),
        pytest.param("private, must-revalidate", (False, False), id="other-directives"),
        pytest.param("no-cachex, xno-store", (False, False), id="lookalikes"),
        pytest.param("max-age=no-cache", (False, False), id="value-not-directive"),
    ],
)
def test_cache_control(header: str | None, expected: tuple[bool, bool]) -> None:
    assert cache_control(header) == expected


DET_CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
RANDOM_CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.7}
PLAIN_CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
EMBED = {"model": "e", "input": "hi"}


@pytest.mark.parametrize(
    ("mode", "kind", "body", "header", "expected"),
    [
        pytest.param("deterministic", "chat", DET_CHAT, None, BOTH, id="det-temperature-0"),
        pytest.param("deterministic", "chat", {**PLAIN_CHAT, "seed": 3}, None, BOTH, id="det-seed"),
        pytest.param("deterministic", "chat", RANDOM_CHAT, None, BYPASS, id="det-random"),
        pytest.param("deterministic", "chat", PLAIN_CHAT, None, BYPASS, id="det-no-temperature"),
        pytest.param("deterministic", "embed", EMBED, None, BOTH, id="det-embed"),
        pytest.param("deterministic", "embed", {**EMBED, "temperature": 0.7}, None, BOTH, id="det-embed-odd"),
        pytest.param("all", "chat", RANDOM_CHAT, None, BOTH, id="all-random"),
        pytest.param("all", "chat", PLAIN_CHAT, None, BOTH, id="all-plain"),
        pytest.param("all", "embed", EMBED, None, BOTH, id="all-embed"),
        pytest.param("off", "chat", DET_CHAT, None, BYPASS, id="off-deterministic-chat"),
        pytest.param("off", "embed", EMBED, None, BYPASS, id="off-embed"),
        pytest.param("off", "chat", DET_CHAT, "no-cache", BYPASS, id="off-with-header"),
        pytest.param("deterministic", "chat", DET_CHAT, "no-cache", Decision(False, True), id="det-no-cache"),
        pytest.param("deterministic", "chat", DET_CHAT, "No-Store", Decision(True, False), id="det-no-store"),
        pytest.param("deterministic", "chat", DET_CHAT, "no-cache, no-store", BYPASS, id="det-both"),
        pytest.param("deterministic", "chat", RANDOM_CHAT, "no-store", BYPASS, id="det-random-header"),
        pytest.param(
            "all", "chat", RANDOM_CHAT, "max-age=0, No-Store", Decision(True, False), id="all-no-store"
        ),
        pytest.param("all", "embed", EMBED, "no-cache", Decision(False, True), id="all-embed-no-cache"),
        pytest.param("all", "chat", RANDOM_CHAT, "max-age=0", BOTH, id="all-other-directive"),
    ],
)
def test_decide(mode: Mode, kind: str, body: dict[str, Any], header: str | None, expected: Decision) -> None:
    decision = decide(mode, kind, body, header)
    assert decision == expected
    assert decision.uses_cache is (expected.lookup or expected.store)


def test_uses_cache() -> None:
    assert not BYPASS.uses_cache
    assert Decision(lookup=True, store=False).uses_cache
    assert Decision(lookup=False, store=True).uses_cache
    assert BOTH.uses_cache
