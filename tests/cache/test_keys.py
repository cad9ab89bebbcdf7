"""aigw.cache.keys: which request fields make two requests different cache entries, and which do not."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from aigw.cache.keys import IGNORED_FIELDS, canonical, request_digest, target_key

IDENTITY = "openai/gpt-4o-mini"

ADD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"a": {"type": "integer", "minimum": 0}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}

# A chat request with (nearly) every OpenAI chat-completions field set, so that each case below
# changes an existing value rather than only adding a field.
CHAT: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is 2+2?"},
    ],
    "temperature": 0.2,
    "top_p": 0.9,
    "max_tokens": 100,
    "max_completion_tokens": 120,
    "stop": ["\n\n"],
    "seed": 7,
    "n": 1,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "top_logprobs": 2,
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}},
        },
    },
    "tools": [{"type": "function", "function": {"name": "add", "parameters": ADD_SCHEMA}}],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "reasoning_effort": "low",
    "service_tier": "auto",
    "modalities": ["text"],
    "prediction": {"type": "content", "content": "4"},
    "audio": {"voice": "alloy", "format": "wav"},
    "metadata": {"run": "a"},
    "store": False,
    "top_k": 40,
    # fields that do not change the answer
    "stream": True,
    "stream_options": {"include_usage": True},
    "user": "user-1",
    "provider": "openai",
    "keep_alive": "5m",
}

EMBED: dict[str, Any] = {
    "model": "text-embedding-3-small",
    "input": ["hello world"],
    "dimensions": 256,
    "encoding_format": "float",
    "user": "user-1",
}

Mutation = Callable[[dict[str, Any]], None]


def _set(*path_then_value: Any) -> Mutation:
    """Set body[p0][p1]...[pn] = value (the last argument)."""
    path, value = path_then_value[:-1], path_then_value[-1]

    def apply(body: dict[str, Any]) -> None:
        node: Any = body
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value

    return apply


def _drop(field: str) -> Mutation:
    def apply(body: dict[str, Any]) -> None:
        del body[field]

    return apply


def _append_message(body: dict[str, Any]) -> None:
    body["messages"].append({"role": "assistant", "content": "4"})


def key(kind: str, body: dict[str, Any], identity: str = IDENTITY) -> str:
    return target_key(request_digest(kind, body), identity)


def mutated(base: dict[str, Any], mutation: Mutation) -> dict[str, Any]:
    body = copy.deepcopy(base)
    mutation(body)
    assert body != base, "the case must actually change the request"
    return body


TOOL_PARAMS = ("tools", 0, "function", "parameters")

CHANGES_KEY: list[Any] = [
    pytest.param("chat", _set("messages", 1, "content", "What is 2+3?"), id="message-content"),
    pytest.param("chat", _set("messages", 0, "role", "developer"), id="message-role"),
    pytest.param("chat", _append_message, id="message-added"),
    pytest.param("chat", _set("model", "gpt-4o"), id="model"),
    pytest.param("chat", _set("temperature", 0.3), id="temperature"),
    pytest.param("chat", _drop("temperature"), id="temperature-removed"),
    pytest.param("chat", _set("top_p", 0.95), id="top_p"),
    pytest.param("chat", _set("max_tokens", 101), id="max_tokens"),
    pytest.param("chat", _set("max_completion_tokens", 121), id="max_completion_tokens"),
    pytest.param("chat", _set("stop", ["END"]), id="stop"),
    pytest.param("chat", _set("seed", 8), id="seed"),
    pytest.param("chat", _set("n", 2), id="n"),
    pytest.param("chat", _set("presence_penalty", 0.5), id="presence_penalty"),
    pytest.param("chat", _set("frequency_penalty", 0.5), id="frequency_penalty"),
    pytest.param("chat", _set("logit_bias", "50256", 100), id="logit_bias-value"),
    pytest.param("chat", _set("logit_bias", {"1234": -100}), id="logit_bias-token"),
    pytest.param("chat", _set("logprobs", False), id="logprobs"),
    pytest.param("chat", _set("top_logprobs", 3), id="top_logprobs"),
    pytest.param("chat", _set("response_format", {"type": "json_object"}), id="response_format-json_object"),
    pytest.param(
        "chat",
        _set("response_format", "json_schema", "schema", "properties", "n", "type", "number"),
        id="response_format-other-schema",
    ),
    pytest.param(
        "chat", _set("response_format", "json_schema", "name", "other"), id="response_format-schema-name"
    ),
    pytest.param(
        "chat",
        _set(*TOOL_PARAMS, {"type": "object", "properties": {"x": {"type": "string"}}}),
        id="tools-other-parameters",
    ),
    pytest.param("chat", _set(*TOOL_PARAMS, "properties", "a", "minimum", 1), id="tools-nested-minimum"),
    pytest.param("chat", _set(*TOOL_PARAMS, "required", ["a"]), id="tools-nested-required"),
    pytest.param("chat", _set("tools", 0, "function", "name", "sum"), id="tools-name"),
    pytest.param("chat", _set("tool_choice", "required"), id="tool_choice-required"),
    pytest.param(
        "chat",
        _set("tool_choice", {"type": "function", "function": {"name": "add"}}),
        id="tool_choice-named",
    ),
    pytest.param("chat", _set("parallel_tool_calls", False), id="parallel_tool_calls"),
    pytest.param("chat", _set("reasoning_effort", "high"), id="reasoning_effort"),
    pytest.param("chat", _set("service_tier", "flex"), id="service_tier"),
    pytest.param("chat", _set("modalities", ["text", "audio"]), id="modalities"),
    pytest.param("chat", _set("prediction", "content", "5"), id="prediction"),
    pytest.param("chat", _set("audio", "voice", "verse"), id="audio"),
    pytest.param("chat", _set("metadata", {"run": "b"}), id="metadata"),
    pytest.param("chat", _set("store", True), id="store"),
    pytest.param("chat", _set("top_k", 41), id="unknown-top_k-value"),
    pytest.param("chat", _drop("top_k"), id="unknown-top_k-removed"),
    pytest.param("chat", _set("extra_body_field", {"x": 1}), id="unknown-extra_body_field-added"),
    # only top-level `stream`, `user`, ... are ignored: the same names nested are content
    pytest.param("chat", _set("metadata", "user", "someone"), id="nested-user-is-content"),
    pytest.param("chat", _set("metadata", "stream", True), id="nested-stream-is-content"),
    pytest.param("embed", _set("input", ["hello world!"]), id="embed-input"),
    pytest.param("embed", _set("input", "hello world"), id="embed-input-string-vs-list"),
    pytest.param("embed", _set("input", ["hello world", "again"]), id="embed-input-more"),
    pytest.param("embed", _set("dimensions", 512), id="embed-dimensions"),
    pytest.param("embed", _set("encoding_format", "base64"), id="embed-encoding_format"),
    pytest.param("embed", _set("model", "text-embedding-3-large"), id="embed-model"),
]


@pytest.mark.parametrize(("kind", "mutation"), CHANGES_KEY)
def test_a_field_that_changes_the_answer_changes_the_key(kind: str, mutation: Mutation) -> None:
    base = CHAT if kind == "chat" else EMBED
    assert key(kind, mutated(base, mutation)) != key(kind, base)


KEEPS_KEY: list[Any] = [
    pytest.param("chat", _set("stream", False), id="stream-false"),
    pytest.param("chat", _drop("stream"), id="stream-absent"),
    pytest.param("chat", _set("stream_options", {"include_usage": False}), id="stream_options"),
    pytest.param("chat", _drop("stream_options"), id="stream_options-absent"),
    pytest.param("chat", _set("user", "user-2"), id="user"),
    pytest.param("chat", _drop("user"), id="user-absent"),
    pytest.param("chat", _set("provider", "azure"), id="provider"),
    pytest.param("chat", _drop("provider"), id="provider-absent"),
    pytest.param("chat", _set("keep_alive", "1h"), id="keep_alive"),
    pytest.param("chat", _drop("keep_alive"), id="keep_alive-absent"),
    pytest.param("embed", _set("user", "user-2"), id="embed-user"),
]


@pytest.mark.parametrize(("kind", "mutation"), KEEPS_KEY)
def test_a_field_that_does_not_change_the_answer_keeps_the_key(kind: str, mutation: Mutation) -> None:
    base = CHAT if kind == "chat" else EMBED
    assert key(kind, mutated(base, mutation)) == key(kind, base)


NUMBER_SPELLINGS: list[Any] = [
    pytest.param(("temperature",), 0, 0.0, id="temperature-0-vs-0.0"),
    pytest.param(("temperature",), 1, 1.0, id="temperature-1-vs-1.0"),
    pytest.param(("max_tokens",), 100, 100.0, id="max_tokens-100-vs-100.0"),
    pytest.param(("presence_penalty",), 0, -0.0, id="presence_penalty-0-vs--0.0"),
    pytest.param(("logit_bias", "50256"), -100, -100.0, id="logit_bias--100-vs--100.0"),
    pytest.param((*TOOL_PARAMS, "properties", "a", "minimum"), 0, 0.0, id="nested-minimum-0-vs-0.0"),
    pytest.param(("seed",), 100, orjson.loads(b"1e2"), id="seed-100-vs-1e2-parsed"),
    pytest.param(("top_p",), [1, {"x": 2}], [1.0, {"x": 2.0}], id="inside-lists-and-dicts"),
]


@pytest.mark.parametrize(("path", "a", "b"), NUMBER_SPELLINGS)
def test_one_number_spelled_two_ways_gives_one_key(path: tuple[str | int, ...], a: Any, b: Any) -> None:
    body_a, body_b = copy.deepcopy(CHAT), copy.deepcopy(CHAT)
    _set(*path, a)(body_a)
    _set(*path, b)(body_b)
    assert orjson.dumps(body_a) != orjson.dumps(body_b)  # the spellings really differ on the wire
    assert key("chat", body_a) == key("chat", body_b)


def test_ignored_fields_are_exactly_the_documented_ones() -> None:
    assert frozenset({"stream", "stream_options", "user", "provider", "keep_alive"}) == IGNORED_FIELDS
    text = canonical(CHAT)
    for name in IGNORED_FIELDS:
        assert f'"{name}":'.encode() not in text
    assert b'"top_k":40' in text


def _reversed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed(v) for v in value]
    return value


def _dig(body: dict[str, Any], path: tuple[str | int, ...]) -> Any:
    node: Any = body
    for step in path:
        node = node[step]
    return node


@pytest.mark.parametrize("base", [CHAT, EMBED], ids=["chat", "embed"])
def test_key_order_at_every_level_does_not_matter(base: dict[str, Any]) -> None:
    flipped = _reversed(base)
    assert flipped == base
    assert orjson.dumps(flipped) != orjson.dumps(base)  # the order really differs
    kind = "chat" if "messages" in base else "embed"
    if kind == "chat":  # the nested orders differ too
        params = ("tools", 0, "function", "parameters", "properties")
        assert list(_dig(flipped, params)) == list(reversed(list(_dig(base, params))))
    assert key(kind, flipped) == key(kind, base)


def test_canonical_form_sorts_keys_at_every_level_and_normalises_numbers() -> None:
    body = {"b": [{"z": 1.0, "y": -0.0}], "a": {"d": 2.5, "c": 1e0}, "stream": True}
    assert canonical(body) == b'{"a":{"c":1,"d":2.5},"b":[{"y":0,"z":1}]}'


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(0.1, 0.10000001, id="0.1-vs-0.10000001"),
        pytest.param(1, 1.5, id="1-vs-1.5"),
        pytest.param(True, 1, id="True-vs-1"),
        pytest.param(False, 0, id="False-vs-0"),
        pytest.param(True, 1.0, id="True-vs-1.0"),
        pytest.param([True], [1], id="True-vs-1-nested"),
        pytest.param({"x": False}, {"x": 0.0}, id="False-vs-0.0-nested"),
        pytest.param(None, 0, id="None-vs-0"),
        pytest.param("1", 1, id="string-vs-number"),
        pytest.param(2**53, 2**53 + 1, id="large-ints"),
    ],
)
def test_different_values_give_different_keys(a: Any, b: Any) -> None:
    assert key("chat", {**CHAT, "temperature": a}) != key("chat", {**CHAT, "temperature": b})


def test_bool_is_not_a_number_in_the_canonical_form() -> None:
    assert canonical({"x": True}) == b'{"x":true}'
    assert canonical({"x": 1}) == b'{"x":1}'
    assert canonical({"x": 1.0}) == b'{"x":1}'


def test_the_same_request_at_another_target_has_another_key() -> None:
    digest = request_digest("chat", CHAT)
    a = target_key(digest, "openai/gpt-4o-mini")
    b = target_key(digest, "azure/gpt-4o-mini")
    local = target_key(digest, "llama_cpp/qwen2.5-0.5b@sha256:aaaa")
    assert len({a, b, local}) == 3
    assert a == target_key(request_digest("chat", copy.deepcopy(CHAT)), "openai/gpt-4o-mini")
    assert len(a) == 64
    int(a, 16)  # hex


def test_chat_and_embed_of_the_same_body_differ() -> None:
    body = {"model": "m", "input": "hello"}
    assert request_digest("chat", body) != request_digest("embed", body)
    assert key("chat", body) != key("embed", body)


def test_digest_is_sha256_of_kind_and_canonical_body() -> None:
    body = {"model": "m", "input": "x", "user": "u"}
    expected = hashlib.sha256(b'embed\0{"input":"x","model":"m"}').digest()
    assert request_digest("embed", body) == expected
    assert target_key(expected, "p/m") == hashlib.sha256(expected + b"\0p/m").hexdigest()


def test_key_does_not_depend_on_the_callers_copy() -> None:
    body = copy.deepcopy(CHAT)
    before = copy.deepcopy(body)
    key("chat", body)
    assert body == before  # canonical() must not strip fields from the request it is given


def test_integral_floats_up_to_two_to_the_64_are_integers() -> None:
    from aigw.cache.keys import canonical

    assert canonical({"x": 9223372036854775808.0}) == canonical({"x": 9223372036854775808})
    assert canonical({"x": -9223372036854775808.0}) == canonical({"x": -9223372036854775808})
    assert canonical({"x": 1e300}) != canonical({"x": 1e299})
