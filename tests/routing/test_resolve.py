from __future__ import annotations

import pytest

from aigw.domain import Route, Target
from aigw.errors import InvalidRequest
from aigw.routing.resolve import resolve

ALIASES = {"smart": [Target("openai", "gpt-4o-mini"), Target("local", "tiny")]}
PROVIDERS = {"openai", "local", "vllm"}
SERVED = {"gpt-4o-mini": ["openai"], "llama3": ["local", "vllm"], "org/model": ["vllm"]}


def r(model: str, pinned: str | None = None) -> Route | None:
    return resolve(model, pinned, aliases=ALIASES, providers=PROVIDERS, served_by=SERVED)


def test_alias_keeps_ordered_targets() -> None:
    route = r("smart")
    assert route is not None and route.alias == "smart"
    assert route.targets == (Target("openai", "gpt-4o-mini"), Target("local", "tiny"))


def test_provider_slash_model() -> None:
    assert r("local/llama3") == Route("local/llama3", (Target("local", "llama3"),))


def test_slash_in_upstream_model_name_when_first_segment_is_not_a_provider() -> None:
    assert r("org/model") == Route("org/model", (Target("vllm", "org/model"),))


def test_bare_model_served_by_exactly_one() -> None:
    assert r("gpt-4o-mini") == Route("gpt-4o-mini", (Target("openai", "gpt-4o-mini"),))


def test_bare_model_served_by_two_is_ambiguous() -> None:
    with pytest.raises(InvalidRequest) as e:
        r("llama3")
    assert e.value.param == "model" and "'local/llama3'" in e.value.message


def test_pinned_provider_wins_and_strips_its_prefix() -> None:
    assert r("llama3", "vllm") == Route("llama3", (Target("vllm", "llama3"),))
    assert r("vllm/llama3", "vllm") == Route("vllm/llama3", (Target("vllm", "llama3"),))
    assert r("smart", "local") == Route("smart", (Target("local", "tiny"),), alias="smart")
    with pytest.raises(InvalidRequest) as e:
        r("smart", "vllm")
    assert e.value.param == "provider"


def test_pinned_unknown_provider() -> None:
    with pytest.raises(InvalidRequest) as e:
        r("x", "ghost")
    assert e.value.param == "provider"


def test_unknown_is_none() -> None:
    assert r("nothing") is None
    assert r("ghost/model") is None


def test_model_patterns_send_agents_names_to_an_alias() -> None:
    served = {**SERVED, "claude-haiku-4-5": ["openai"]}
    patterns = {"claude-*haiku*": "smart"}

    def rp(model: str) -> Route | None:
        return resolve(model, None, aliases=ALIASES, providers=PROVIDERS, served_by=served, patterns=patterns)

    haiku = rp("claude-haiku-4-5")  # served upstream by that name too: the pattern wins
    assert haiku is not None and haiku.alias == "smart" and haiku.requested == "claude-haiku-4-5"
    assert haiku.targets == tuple(ALIASES["smart"])
    assert rp("claude-opus-5-5") is None  # no pattern, nobody serves it
    assert rp("openai/claude-haiku-4-5") == Route(
        "openai/claude-haiku-4-5", (Target("openai", "claude-haiku-4-5"),)
    )  # an explicit provider/model is not rewritten
