"""Pure translation between OpenAI chat/embeddings bodies and Gemini's documented wire format."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from aigw.domain import Reasoning
from aigw.errors import CapabilityError, InvalidRequest, UpstreamProtocolError, UpstreamStatusError
from aigw.providers.gemini.parts import SKIP_SIGNATURE, schema_to_gemini
from aigw.providers.gemini.provider import model_path
from aigw.providers.gemini.wire import (
    StreamTranslator,
    chat_request_to_gemini,
    embed_request_to_gemini,
    embed_response_from_gemini,
    error_from_gemini,
    models_from_gemini,
    response_from_gemini,
)

USER = {"role": "user", "content": "hi"}
PNG = "data:image/png;base64,iVBORw0KGgo="
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather in a city",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
WEATHER_DECL = {
    "name": "weather",
    "description": "Weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"], "type": "string"}},
        "required": ["city"],
    },
}


def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"call_{next(counter)}"


def req(**fields: Any) -> dict[str, Any]:
    return chat_request_to_gemini("gem", {"model": "m", "messages": [USER], **fields})


# -- requests ---------------------------------------------------------------------------------

REQUEST_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("plain", {}, {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
    (
        "generation config",
        {
            "temperature": 0.2,
            "top_p": 0.9,
            "max_tokens": 50,
            "stop": "END",
            "seed": 7,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "n": 2,
            "top_k": 40,
        },
        {
            "generationConfig": {
                "temperature": 0.2,
                "topP": 0.9,
                "topK": 40,
                "seed": 7,
                "presencePenalty": 0.5,
                "frequencyPenalty": -0.5,
                "candidateCount": 2,
                "maxOutputTokens": 50,
                "stopSequences": ["END"],
            }
        },
    ),
    (
        "max_completion_tokens wins",
        {"max_tokens": 10, "max_completion_tokens": 20, "stop": ["a", "b"]},
        {"generationConfig": {"maxOutputTokens": 20, "stopSequences": ["a", "b"]}},
    ),
    (
        "hints dropped",
        {"user": "u1", "stream": True, "stream_options": {"include_usage": True}, "service_tier": "auto"},
        {},
    ),
    (
        "parallel_tool_calls dropped, false logprobs fine",
        {"parallel_tool_calls": False, "logprobs": False},
        {},
    ),
    (
        "json mode",
        {"response_format": {"type": "json_object"}},
        {"generationConfig": {"responseMimeType": "application/json"}},
    ),
    ("text format", {"response_format": {"type": "text"}}, {}),
    (
        "json schema",
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "answer",
                    "strict": True,
                    "schema": {
                        "type": "object",
                        "properties": {
                            "n": {"type": ["integer", "null"]},
                            "tags": {"type": "array", "items": {"type": "string"}},
                        },
                        "required": ["n", "tags"],
                        "additionalProperties": False,
                    },
                },
            }
        },
        {
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseSchema": {
                    "type": "object",
                    "properties": {
                        "n": {"type": "integer", "nullable": True},
                        "tags": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["n", "tags"],
                },
            }
        },
    ),
    (
        "tools, auto",
        {"tools": [WEATHER], "tool_choice": "auto"},
        {
            "tools": [{"functionDeclarations": [WEATHER_DECL]}],
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        },
    ),
    (
        "tools, none",
        {"tools": [WEATHER], "tool_choice": "none"},
        {
            "tools": [{"functionDeclarations": [WEATHER_DECL]}],
            "toolConfig": {"functionCallingConfig": {"mode": "NONE"}},
        },
    ),
    (
        "tools, required",
        {"tools": [WEATHER], "tool_choice": "required"},
        {
            "tools": [{"functionDeclarations": [WEATHER_DECL]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        },
    ),
    (
        "tools, named",
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "weather"}}},
        {
            "tools": [{"functionDeclarations": [WEATHER_DECL]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}},
        },
    ),
    (
        "function without parameters",
        {
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "now", "parameters": {"type": "object", "properties": {}}},
                }
            ]
        },
        {"tools": [{"functionDeclarations": [{"name": "now"}]}]},
    ),
    ("tool_choice auto without tools", {"tool_choice": "auto"}, {}),
]


@pytest.mark.parametrize(
    ("fields", "expected"), [c[1:] for c in REQUEST_CASES], ids=[c[0] for c in REQUEST_CASES]
)
def test_request_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    assert req(**fields) == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], **expected}


REFUSALS = [
    ({"logit_bias": {"50256": -100}}, "logit_bias", CapabilityError),
    ({"logprobs": True}, "logprobs", CapabilityError),
    ({"top_logprobs": 3}, "top_logprobs", CapabilityError),
    ({"prediction": {"type": "content", "content": "x"}}, "prediction", CapabilityError),
    ({"response_format": {"type": "structural_tag"}}, "response_format", CapabilityError),
    ({"tool_choice": "required"}, "tool_choice", InvalidRequest),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice", InvalidRequest),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
        "response_format",
        InvalidRequest,
    ),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {"$ref": "https://x/y.json"}}}},
        "response_format",
        CapabilityError,
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]}]},
        "messages",
        CapabilityError,
    ),
    ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages", CapabilityError),
    (
        {"messages": [USER, {"role": "tool", "tool_call_id": "nope", "content": "1"}]},
        "messages",
        InvalidRequest,
    ),
    (
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}
            ]
        },
        "messages",
        InvalidRequest,
    ),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}],
                }
            ]
        },
        "messages",
        InvalidRequest,
    ),
]


@pytest.mark.parametrize(("fields", "param", "exc"), REFUSALS)
def test_refusals_name_the_field(fields: dict[str, Any], param: str, exc: type[Exception]) -> None:
    with pytest.raises(exc) as e:
        req(**fields)
    assert isinstance(e.value, InvalidRequest) and e.value.param == param
    if exc is CapabilityError and param not in ("messages", "response_format"):
        assert param in e.value.message


def test_messages_system_roles_images_and_merging() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": [{"type": "text", "text": "be kind"}]},
        {"role": "user", "content": "look", "name": "ann"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "at these"},
                {"type": "image_url", "image_url": {"url": PNG, "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://ex.com/cat.webp?size=2"}},
                {"type": "image_url", "image_url": {"url": "https://ex.com/photo"}},
            ],
        },
        {"role": "assistant", "content": "a cat"},
        {"role": "assistant", "content": [{"type": "text", "text": "and a dog"}]},
        {"role": "user", "content": ""},
        {"role": "user", "content": "thanks"},
    ]
    assert chat_request_to_gemini("gem", {"model": "m", "messages": messages}) == {
        "systemInstruction": {"parts": [{"text": "be brief"}, {"text": "be kind"}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "look"},
                    {"text": "at these"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                    {"fileData": {"fileUri": "https://ex.com/cat.webp?size=2", "mimeType": "image/webp"}},
                    {"fileData": {"fileUri": "https://ex.com/photo", "mimeType": "image/jpeg"}},
                ],
            },
            {"role": "model", "parts": [{"text": "a cat"}, {"text": "and a dog"}]},
            {"role": "user", "parts": [{"text": "thanks"}]},
        ],
    }


def test_tool_round_trip_in_history() -> None:
    messages = [
        USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                },
                {"id": "call_b", "type": "function", "function": {"name": "time", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 3}'},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "noon"}]},
        {"role": "user", "content": "so?"},
    ]
    out = chat_request_to_gemini("gem", {"model": "m", "messages": messages, "tools": [WEATHER]})
    assert out["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "weather", "args": {"city": "Oslo"}},
                    "thoughtSignature": SKIP_SIGNATURE,
                },
                {"functionCall": {"name": "time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "weather", "response": {"temp": 3}}},
                {"functionResponse": {"name": "time", "response": {"content": "noon"}}},
                {"text": "so?"},
            ],
        },
    ]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_bad_tool_call_arguments_are_invalid(arguments: str) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
    with pytest.raises(InvalidRequest) as e:
        req(messages=[USER, {"role": "assistant", "tool_calls": [call]}])
    assert e.value.param == "messages"


SCHEMAS = [
    (
        {
            "$defs": {"P": {"type": "object", "properties": {"x": {"type": "number"}}}},
            "type": "array",
            "items": {"$ref": "#/$defs/P"},
        },
        {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "number"}}}},
    ),
    ({"anyOf": [{"type": "string"}, {"type": "null"}]}, {"type": "string", "nullable": True}),
    (
        {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    ),
    ({"type": ["string", "integer"]}, {"anyOf": [{"type": "string"}, {"type": "integer"}]}),
    ({"const": 3}, {"enum": ["3"], "type": "string"}),
    ({"type": "string", "format": "email", "minLength": 1}, {"type": "string", "minLength": 1}),
    ({"type": "string", "format": "date-time"}, {"type": "string", "format": "date-time"}),
    (
        {
            "allOf": [
                {"properties": {"a": {"type": "string"}}, "required": ["a"]},
                {"properties": {"b": {"type": "string"}}},
            ],
            "type": "object",
        },
        {
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            "required": ["a"],
        },
    ),
    (
        {"type": "object", "properties": {"a": {}}, "required": ["a", "ghost"]},
        {"type": "object", "properties": {"a": {}}, "required": ["a"]},
    ),
]


@pytest.mark.parametrize(("schema", "expected"), SCHEMAS)
def test_schema_reduction(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert schema_to_gemini(schema, "tools") == expected


def test_recursive_schema_is_refused() -> None:
    schema = {
        "$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}},
        "$ref": "#/$defs/N",
    }
    with pytest.raises(CapabilityError) as e:
        schema_to_gemini(schema, "response_format")
    assert e.value.param == "response_format"


# -- responses --------------------------------------------------------------------------------


def cand(parts: list[dict[str, Any]], reason: str | None = "STOP", index: int = 0) -> dict[str, Any]:
    c: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": index}
    if reason:
        c["finishReason"] = reason
    return c


USAGE = {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6}


def test_text_response_and_usage() -> None:
    d = {
        "candidates": [cand([{"text": "hel"}, {"text": "lo"}])],
        "usageMetadata": USAGE,
        "modelVersion": "gemini-x-001",
        "responseId": "r1",
    }
    assert response_from_gemini("gem", "m", d, created=5).to_wire() == {
        "id": "chatcmpl-r1",
        "object": "chat.completion",
        "created": 5,
        "model": "gemini-x-001",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hello"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
    }


def test_thoughts_become_reasoning_content_and_are_counted() -> None:
    usage = {**USAGE, "thoughtsTokenCount": 10, "totalTokenCount": 16, "cachedContentTokenCount": 3}
    d = {"candidates": [cand([{"text": "hmm", "thought": True}, {"text": "42"}])], "usageMetadata": usage}
    r = response_from_gemini("gem", "m", d, created=0)
    assert r.choices[0]["message"]["content"] == "42"
    assert r.choices[0]["message"]["reasoning_content"] == "hmm"
    assert r.usage is not None and r.usage.to_wire() == {
        "prompt_tokens": 4,
        "completion_tokens": 12,
        "total_tokens": 16,
        "completion_tokens_details": {"reasoning_tokens": 10},
        "prompt_tokens_details": {"cached_tokens": 3},
    }


def test_function_calls_become_tool_calls_with_ids() -> None:
    parts = [
        {"text": "checking"},
        {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}},
        {"functionCall": {"name": "now"}},
    ]
    r = response_from_gemini("gem", "m", {"candidates": [cand(parts)]}, created=0, new_id=ids())
    assert r.choices[0]["finish_reason"] == "tool_calls"
    assert r.choices[0]["message"] == {
        "role": "assistant",
        "content": "checking",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
            },
            {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
        ],
    }


def test_real_ids_are_unique_call_ids() -> None:
    parts = [{"functionCall": {"name": "f", "args": {}}}] * 2
    calls = response_from_gemini("gem", "m", {"candidates": [cand(parts)]}, created=0).choices[0]["message"][
        "tool_calls"
    ]
    assert all(c["id"].startswith("call_") for c in calls) and calls[0]["id"] != calls[1]["id"]


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
        ("LANGUAGE", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
    ],
)
def test_finish_reasons(reason: str, expected: str) -> None:
    r = response_from_gemini("gem", "m", {"candidates": [cand([{"text": "x"}], reason)]}, created=0)
    assert r.choices[0]["finish_reason"] == expected


def test_several_candidates() -> None:
    d = {"candidates": [cand([{"text": "a"}], index=0), cand([{"text": "b"}], "MAX_TOKENS", index=1)]}
    r = response_from_gemini("gem", "m", d, created=0)
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in r.choices] == [
        (0, "a", "stop"),
        (1, "b", "length"),
    ]


def test_blocked_prompt_is_an_empty_filtered_answer() -> None:
    d = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3},
    }
    r = response_from_gemini("gem", "m", d, created=0)
    assert r.choices == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": ""},
            "finish_reason": "content_filter",
            "logprobs": None,
        }
    ]
    assert r.usage is not None and r.usage.prompt_tokens == 3


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"candidates": "x"},
        {"candidates": [7]},
        {"candidates": [{"content": {"parts": "x"}}]},
        {"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]},
        {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": [1]}}]}}]},
        {"candidates": [cand([{"text": "x"}])], "usageMetadata": {"promptTokenCount": "12"}},
        {"candidates": [cand([{"text": "x"}], index=-1)]},
    ],
)
def test_malformed_responses_are_protocol_errors(body: dict[str, Any]) -> None:
    with pytest.raises(UpstreamProtocolError):
        response_from_gemini("gem", "m", body, created=0)


@pytest.mark.parametrize(
    ("effort", "config"),
    [
        ("none", {"thinkingBudget": 0, "includeThoughts": False}),
        ("low", {"thinkingBudget": 2048, "includeThoughts": True}),
        ("high", {"thinkingBudget": 24576, "includeThoughts": True}),
    ],
)
def test_reasoning_effort_becomes_a_thinking_budget(effort: str, config: dict[str, Any]) -> None:
    assert req(reasoning_effort=effort)["generationConfig"]["thinkingConfig"] == config


def test_a_dialects_reasoning_hint_sets_the_budget_it_names() -> None:
    body = {"model": "m", "messages": [USER]}
    sent = chat_request_to_gemini("gem", body, Reasoning.of_budget(5000))
    assert sent["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 5000, "includeThoughts": True}
    with pytest.raises(InvalidRequest):
        req(reasoning_effort="lots")
    # a hint asks only what every thinking model takes: never a budget of 0, never over the ceiling
    assert "generationConfig" not in chat_request_to_gemini("gem", body, Reasoning("none"))
    big = chat_request_to_gemini("gem", body, Reasoning.of_budget(50000))
    assert big["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 24576


# -- streams ----------------------------------------------------------------------------------


def run_stream(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    t = StreamTranslator("gem", "m", created=1, new_id=ids())
    chunks = [c for ev in events for c in t.feed(ev)] + t.finish()
    return [c.to_wire(include_usage=True) for c in chunks]


def test_streamed_thoughts_are_reasoning_deltas() -> None:
    events = [
        {"candidates": [cand([{"text": "hmm", "thought": True}], None)], "responseId": "r"},
        {"candidates": [cand([{"text": "42"}], "STOP")], "usageMetadata": USAGE},
    ]
    out = run_stream(events)
    assert [c["choices"][0]["delta"] for c in out[:2]] == [
        {"role": "assistant", "content": "", "reasoning_content": "hmm"},
        {"content": "42"},
    ]


def test_stream_text() -> None:
    events = [
        {
            "candidates": [cand([{"text": "Hel"}], None)],
            "usageMetadata": {"promptTokenCount": 4},
            "responseId": "r",
        },
        {"candidates": [cand([{"text": "lo"}], None)]},
        {"candidates": [cand([{"text": ""}], "STOP")], "usageMetadata": USAGE},
    ]
    out = run_stream(events)
    assert {c["id"] for c in out} == {"chatcmpl-r"}
    assert [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in out[:-1]] == [
        ({"role": "assistant", "content": "Hel"}, None),
        ({"content": "lo"}, None),
        ({}, "stop"),
    ]
    assert out[-1]["choices"] == [] and out[-1]["usage"] == {
        "prompt_tokens": 4,
        "completion_tokens": 2,
        "total_tokens": 6,
    }


def test_stream_tool_calls_are_complete_and_indexed() -> None:
    events = [
        {"candidates": [cand([{"functionCall": {"name": "a", "args": {"x": 1}}}], None)]},
        {"candidates": [cand([{"functionCall": {"name": "b", "args": {}}}], "STOP")]},
    ]
    out = run_stream(events)
    deltas = [c["choices"][0]["delta"] for c in out]
    assert deltas[0] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "a", "arguments": '{"x":1}'},
            }
        ],
    }
    assert deltas[1]["tool_calls"][0]["index"] == 1 and deltas[1]["tool_calls"][0]["function"]["name"] == "b"
    assert out[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_blocked_prompt() -> None:
    out = run_stream([{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}])
    assert out[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert out[1]["choices"][0]["finish_reason"] == "content_filter"


def test_stream_without_finish_reason_ended_early() -> None:
    t = StreamTranslator("gem", "m", created=1)
    t.feed({"candidates": [cand([{"text": "x"}], None)]})
    with pytest.raises(UpstreamProtocolError, match="ended early"):
        t.finish()


def test_stream_error_object_is_mapped() -> None:
    t = StreamTranslator("gem", "m", created=1)
    with pytest.raises(UpstreamStatusError) as e:
        t.feed({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}})
    assert e.value.upstream_status == 503 and e.value.retryable and "overloaded" in e.value.message


# -- embeddings, models, errors ---------------------------------------------------------------


def test_embed_request() -> None:
    body = {"model": "e", "input": ["a", "b"], "dimensions": 4, "user": "u", "encoding_format": "float"}
    assert embed_request_to_gemini("gem", "text-embedding-004", body) == {
        "requests": [
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": t}]},
                "outputDimensionality": 4,
            }
            for t in ("a", "b")
        ]
    }
    assert embed_request_to_gemini("gem", "e", {"model": "e", "input": "one"})["requests"][0]["content"] == {
        "parts": [{"text": "one"}]
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "e", "input": [1, 2, 3]}, "input"),
        ({"model": "e", "input": "x", "input_type": "query"}, "input_type"),
    ],
)
def test_embed_refusals(body: dict[str, Any], param: str) -> None:
    with pytest.raises(CapabilityError) as e:
        embed_request_to_gemini("gem", "e", body)
    assert e.value.param == param


def test_embed_response_is_floats_whatever_the_encoding_asked() -> None:
    d = {"embeddings": [{"values": [0.5, -1.0]}, {"values": [0.25, 2]}]}
    r = embed_response_from_gemini("gem", "e", {"input": ["abcd", "abcdefgh"]}, d)
    assert r.to_wire() == {
        "object": "list",
        "model": "e",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -1.0]},
            {"object": "embedding", "index": 1, "embedding": [0.25, 2]},
        ],
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }
    b64 = embed_response_from_gemini(
        "gem", "e", {"input": "x", "encoding_format": "base64"}, {"embeddings": [{"values": [0.5, -1.0]}]}
    )
    assert b64.data[0]["embedding"] == [0.5, -1.0]  # the pipeline applies encoding_format


@pytest.mark.parametrize(
    "d", [{}, {"embeddings": [{"values": [1.0]}]}, {"embeddings": [{"values": ["x"]}, {"values": [1]}]}]
)
def test_embed_response_malformed(d: dict[str, Any]) -> None:
    with pytest.raises(UpstreamProtocolError):
        embed_response_from_gemini("gem", "e", {"input": ["a", "b"]}, d)


def test_models_page_keeps_chat_and_embedding_models() -> None:
    predict = {"name": "models/imagen-3.0", "supportedGenerationMethods": ["predict"]}
    embed = {"name": "models/text-embedding-004", "supportedGenerationMethods": ["embedContent"]}
    assert [
        m.id for m in models_from_gemini("gem", {"models": [predict, embed, {"name": "models/x"}]})[0]
    ] == [
        "text-embedding-004",
        "x",
    ]


def test_models_page() -> None:
    d = {
        "models": [
            {"name": "models/gemini-2.0-flash", "supportedGenerationMethods": ["generateContent"]},
            {"x": 1},
        ],
        "nextPageToken": "t2",
    }
    models, token = models_from_gemini("gem", d)
    assert [m.id for m in models] == ["gemini-2.0-flash"] and token == "t2"
    assert models_from_gemini("gem", {}) == ([], None)


def err(status: int, kind: str, message: str, details: list[Any] | None = None) -> bytes:
    return orjson.dumps(
        {"error": {"code": status, "message": message, "status": kind, "details": details or []}}
    )


RETRY = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}
KEY_INVALID = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
ERRORS = [
    # status, body, Retry-After, upstream_status, retryable, retry_after, client status, key hint
    (429, err(429, "RESOURCE_EXHAUSTED", "quota", [RETRY]), None, 429, True, 30.0, 429, False),
    (429, err(429, "RESOURCE_EXHAUSTED", "quota", [RETRY]), "4", 429, True, 4.0, 429, False),
    (
        429,
        err(429, "RESOURCE_EXHAUSTED", "quota", [{**RETRY, "retryDelay": "1.5s"}]),
        None,
        429,
        True,
        1.5,
        429,
        False,
    ),
    (503, err(503, "UNAVAILABLE", "overloaded"), None, 503, True, None, 502, False),
    (500, err(500, "INTERNAL", "oops"), None, 500, True, None, 502, False),
    (400, err(400, "INVALID_ARGUMENT", "bad field"), None, 400, False, None, 400, False),
    (
        400,
        err(400, "INVALID_ARGUMENT", "API key not valid.", [KEY_INVALID]),
        None,
        401,
        False,
        None,
        502,
        True,
    ),
    (403, err(403, "PERMISSION_DENIED", "denied"), None, 403, False, None, 502, True),
    (401, err(401, "UNAUTHENTICATED", "no creds"), None, 401, False, None, 502, True),
    (404, err(404, "NOT_FOUND", "no such model"), None, 404, False, None, 404, False),
    # The account (region, billing), not the request: not the client's fault, no key hint.
    (
        400,
        err(400, "FAILED_PRECONDITION", "not available in your region"),
        None,
        403,
        False,
        None,
        502,
        False,
    ),
    (502, b"<html>bad gateway</html>", None, 502, True, None, 502, False),
    (503, b"[" + err(503, "UNAVAILABLE", "listed") + b"]", None, 503, True, None, 502, False),
]


@pytest.mark.parametrize("case", ERRORS)
def test_error_bodies(case: tuple[Any, ...]) -> None:
    status, body, header, upstream, retryable, after, client, hint = case
    e = error_from_gemini("gem", status, body, header)
    assert (e.upstream_status, e.retryable, e.retry_after, e.status_code) == (
        upstream,
        retryable,
        after,
        client,
    )
    assert ("check the API key of providers.gem" in e.message) is hint
    assert f"HTTP {status}" in e.message


def test_error_message_and_code_come_from_the_vendor() -> None:
    e = error_from_gemini("gem", 400, err(400, "INVALID_ARGUMENT", "bad field"), None)
    assert "bad field" in e.message and e.code == "INVALID_ARGUMENT" and e.is_client_fault


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("gemini-2.0-flash", "/models/gemini-2.0-flash:generateContent"),
        ("models/gemini-2.0-flash", "/models/gemini-2.0-flash:generateContent"),
        ("../../x", "/models/..%2F..%2Fx:generateContent"),
        ("a?b#c", "/models/a%3Fb%23c:generateContent"),
    ],
)
def test_model_path_quotes_the_name(model: str, path: str) -> None:
    assert model_path(model, "generateContent") == path


def test_a_schema_that_would_expand_exponentially_is_refused_at_once() -> None:
    defs = {
        f"d{i}": {"type": "object", "properties": {f"p{j}": {"$ref": f"#/$defs/d{i + 1}"} for j in range(4)}}
        for i in range(12)
    }
    defs["d12"] = {"type": "string"}
    with pytest.raises(CapabilityError, match="expands to more than"):
        schema_to_gemini({"$ref": "#/$defs/d0", "$defs": defs}, "tools")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"functions": 5}, "functions"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"allOf": 1}}}}, None),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"$ref": "#/$defs/x", "$defs": {"x": [1]}}},
                    }
                ]
            },
            "tools",
        ),
    ],
)
def test_malformed_fields_are_a_clear_error_not_a_crash(fields: dict[str, Any], param: str | None) -> None:
    try:
        req(**fields)
    except InvalidRequest as e:  # CapabilityError included
        assert param is None or e.param == param


def test_a_null_max_completion_tokens_does_not_hide_max_tokens() -> None:
    out = req(max_completion_tokens=None, max_tokens=12)
    assert out["generationConfig"]["maxOutputTokens"] == 12
