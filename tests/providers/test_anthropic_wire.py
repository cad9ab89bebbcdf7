"""Pure translation OpenAI <-> Anthropic Messages API, against fixtures in Anthropic's documented format."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from aigw.domain import ChatChunk, ChatRequest, Reasoning, Usage
from aigw.errors import CapabilityError, InvalidRequest, UpstreamProtocolError, UpstreamStatusError
from aigw.providers.anthropic.stream import StreamTranslator
from aigw.providers.anthropic.wire import (
    error_from_body,
    error_from_event,
    models_from_wire,
    request_to_wire,
    response_from_wire,
)

USER = {"role": "user", "content": "Hi"}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_ANTHROPIC = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PNG_B64 = "iVBORw0KGgo="


def wire(**body: Any) -> dict[str, Any]:
    body.setdefault("messages", [USER])
    return request_to_wire(ChatRequest(body={"model": "alias", **body}, model="claude-x")).body


def user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


# --- requests -------------------------------------------------------------------------------

REQUEST_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "minimal: default max_tokens",
        {},
        {"model": "claude-x", "messages": [user(text("Hi"))], "max_tokens": 4096},
    ),
    (
        "system and developer messages become the top-level system",
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                USER,
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            ]
        },
        {
            "model": "claude-x",
            "messages": [user(text("Hi"))],
            "max_tokens": 4096,
            "system": "Be brief.\n\nUse French.",
        },
    ),
    (
        "multi-turn; consecutive same-role messages merged; empty assistant turns dropped",
        {
            "messages": [
                USER,
                {"role": "user", "content": [{"type": "text", "text": "there"}]},
                {"role": "assistant", "content": "Hello!"},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "Bye"},
            ]
        },
        {
            "model": "claude-x",
            "messages": [
                user(text("Hi"), text("there")),
                {"role": "assistant", "content": [text("Hello!")]},
                user(text("Bye")),
            ],
            "max_tokens": 4096,
        },
    ),
    (
        "images: data URL -> base64 source, https URL -> url source, detail dropped",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{PNG_B64}", "detail": "low"},
                        },
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    ],
                }
            ]
        },
        {
            "model": "claude-x",
            "messages": [
                user(
                    text("What is this?"),
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                )
            ],
            "max_tokens": 4096,
        },
    ),
    (
        "tools round trip: tool_calls -> tool_use, tool results merged into one user message",
        {
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        },
                        {
                            "id": "toolu_2",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "rain"}]},
                {"role": "user", "content": "Thanks"},
            ],
            "tools": [WEATHER_TOOL],
            "tool_choice": "auto",
            "parallel_tool_calls": False,
        },
        {
            "model": "claude-x",
            "messages": [
                user(text("Weather in Paris and Rome?")),
                {
                    "role": "assistant",
                    "content": [
                        text("Checking."),
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        },
                        {
                            "type": "tool_use",
                            "id": "toolu_2",
                            "name": "get_weather",
                            "input": {"city": "Rome"},
                        },
                    ],
                },
                user(
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rain"},
                    text("Thanks"),
                ),
            ],
            "max_tokens": 4096,
            "tools": [WEATHER_ANTHROPIC],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        },
    ),
    (
        "sampling fields mapped, hints dropped, neutral values accepted",
        {
            "max_completion_tokens": 100,
            "max_tokens": 50,
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "stop": "END",
            "user": "u-42",
            "seed": 7,
            "service_tier": "auto",
            "n": 1,
            "presence_penalty": 0,
            "frequency_penalty": 0.0,
            "logprobs": False,
            "logit_bias": {},
            "stream": False,
        },
        {
            "model": "claude-x",
            "messages": [user(text("Hi"))],
            "max_tokens": 100,
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u-42"},
        },
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"), [c[1:] for c in REQUEST_CASES], ids=[c[0] for c in REQUEST_CASES]
)
def test_request_to_wire(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert wire(**body) == expected


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "expected"),
    [
        (None, None, {"type": "auto"}),
        ("auto", None, {"type": "auto"}),
        ("none", False, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_tool_choice(tool_choice: Any, parallel: bool | None, expected: dict[str, Any]) -> None:
    body = wire(tools=[WEATHER_TOOL], tool_choice=tool_choice, parallel_tool_calls=parallel)
    assert body["tool_choice"] == expected


def test_tool_choice_without_tools_is_omitted() -> None:
    assert "tool_choice" not in wire(tool_choice="none")


SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


@pytest.mark.parametrize(
    ("fmt", "tools", "name", "schema", "choice"),
    [
        (
            {"type": "json_object"},
            None,
            "json_response",
            {"type": "object", "additionalProperties": True},
            None,
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "reply", "schema": SCHEMA, "strict": True}},
            None,
            "reply",
            SCHEMA,
            None,
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "bad name!", "schema": SCHEMA}},
            None,
            "json_response",
            SCHEMA,
            None,
        ),
        ({"type": "json_object"}, [WEATHER_TOOL], "json_response", None, {"type": "any"}),
    ],
)
def test_response_format_is_a_forced_tool(
    fmt: dict[str, Any], tools: Any, name: str, schema: Any, choice: dict[str, Any] | None
) -> None:
    req = ChatRequest(
        body={"model": "a", "messages": [USER], "response_format": fmt, "tools": tools}, model="m"
    )
    w = request_to_wire(req)
    assert w.json_tool == name
    tool = w.body["tools"][-1]
    assert tool["name"] == name
    if schema is not None:
        assert tool["input_schema"] == schema
    assert w.body["tool_choice"] == (choice or {"type": "tool", "name": name})


def test_text_response_format_adds_nothing() -> None:
    w = request_to_wire(
        ChatRequest(body={"messages": [USER], "response_format": {"type": "text"}}, model="m")
    )
    assert w.json_tool is None and "tools" not in w.body


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": -1.0}, "frequency_penalty"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"temperature": 1.5}, "temperature"),
        ({"audio": {"voice": "alloy"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"reasoning_effort": "high", "temperature": 0.2}, "temperature"),
        ({"reasoning_effort": "high", "top_k": 1}, "top_k"),
        ({"reasoning_effort": "high", "max_tokens": 1000}, "max_tokens"),
        ({"some_future_field": 1}, "some_future_field"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "array"}},
                }
            },
            "response_format",
        ),
        ({"response_format": {"type": "grammar"}}, "response_format"),
        (
            {"tools": [WEATHER_TOOL], "tool_choice": "required", "response_format": {"type": "json_object"}},
            "tool_choice",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "messages",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA"}}],
                    }
                ]
            },
            "messages",
        ),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages"),
    ],
)
def test_unsupported_fields_are_refused_by_name(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(CapabilityError) as e:
        wire(**extra)
    assert e.value.param == param
    assert e.value.status_code == 400


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "system", "content": "only a system prompt"}],
        [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}}],
            }
        ],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}],
        [
            USER,
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                ],
            },
        ],
    ],
)
def test_invalid_messages(messages: list[dict[str, Any]]) -> None:
    with pytest.raises(InvalidRequest) as e:
        wire(messages=messages)
    assert e.value.param == "messages"


# --- responses ------------------------------------------------------------------------------

TEXT_MESSAGE = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Hi! My name is Claude."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 2095, "output_tokens": 503},
}
TOOL_MESSAGE = {
    **TEXT_MESSAGE,
    "content": [
        {"type": "thinking", "thinking": "The user wants weather.", "signature": "abc"},
        {"type": "text", "text": "I'll check."},
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "San Francisco"}},
    ],
    "stop_reason": "tool_use",
}


def test_text_response() -> None:
    r = response_from_wire("claude", TEXT_MESSAGE, None, 1700)
    assert r.to_wire() == {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "object": "chat.completion",
        "created": 1700,
        "model": "claude-sonnet-4-5",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi! My name is Claude."},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 2095, "completion_tokens": 503, "total_tokens": 2598},
    }


def test_tool_use_response_keeps_thinking_with_its_signature() -> None:
    choice = response_from_wire("claude", TOOL_MESSAGE, None, 0).choices[0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": "I'll check.",
        "reasoning_content": "The user wants weather.",
        "thinking_blocks": [{"type": "thinking", "thinking": "The user wants weather.", "signature": "abc"}],
        "tool_calls": [
            {
                "id": "toolu_01A",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"San Francisco"}'},
            }
        ],
    }


def test_tool_only_response_has_null_content() -> None:
    msg = {**TOOL_MESSAGE, "content": TOOL_MESSAGE["content"][2:]}
    assert response_from_wire("claude", msg, None, 0).choices[0]["message"]["content"] is None


def test_json_tool_answer_becomes_content() -> None:
    msg = {
        **TEXT_MESSAGE,
        "content": [{"type": "tool_use", "id": "toolu_9", "name": "reply", "input": {"answer": "42"}}],
        "stop_reason": "tool_use",
    }
    choice = response_from_wire("claude", msg, "reply", 0).choices[0]
    assert choice["message"] == {"role": "assistant", "content": '{"answer":"42"}'}
    assert choice["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ],
)
def test_finish_reasons(stop_reason: str, finish: str) -> None:
    msg = TOOL_MESSAGE if stop_reason == "tool_use" else TEXT_MESSAGE
    assert (
        response_from_wire("c", {**msg, "stop_reason": stop_reason}, None, 0).choices[0]["finish_reason"]
        == finish
    )


def test_usage_counts_cached_input() -> None:
    usage = {
        "input_tokens": 10,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 20,
        "output_tokens": 5,
    }
    r = response_from_wire("c", {**TEXT_MESSAGE, "usage": usage}, None, 0)
    assert r.usage == Usage(130, 5, 135, {"prompt_tokens_details": {"cached_tokens": 100}})


@pytest.mark.parametrize(
    "msg",
    [
        {**TEXT_MESSAGE, "content": "text"},
        {**TEXT_MESSAGE, "content": [{"type": "text", "text": 5}]},
        {**TEXT_MESSAGE, "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "x"}]},
        {**TEXT_MESSAGE, "usage": {"input_tokens": "12"}},
        {**TEXT_MESSAGE, "usage": [1]},
    ],
)
def test_malformed_responses_are_protocol_errors(msg: dict[str, Any]) -> None:
    with pytest.raises(UpstreamProtocolError):
        response_from_wire("c", msg, None, 0)


def test_models_pages() -> None:
    page = {
        "data": [
            {"type": "model", "id": "claude-a", "display_name": "A", "created_at": "2025-02-19T00:00:00Z"},
            {"type": "model", "id": "claude-b", "display_name": "B", "created_at": "not a date"},
            {"id": 5},
        ],
        "has_more": True,
        "first_id": "claude-a",
        "last_id": "claude-b",
    }
    models, after = models_from_wire("claude", page)
    assert [(m.id, m.created) for m in models] == [("claude-a", 1739923200), ("claude-b", 0)]
    assert after == "claude-b"
    assert models_from_wire("claude", {**page, "has_more": False})[1] is None
    with pytest.raises(UpstreamProtocolError):
        models_from_wire("claude", {"models": []})


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "etype", "retryable", "client_status"),
    [
        (400, "invalid_request_error", False, 400),
        (401, "authentication_error", False, 502),
        (403, "permission_error", False, 502),
        (404, "not_found_error", False, 404),
        (413, "request_too_large", False, 413),
        (429, "rate_limit_error", True, 429),
        (500, "api_error", True, 502),
        (529, "overloaded_error", True, 502),
    ],
)
def test_error_bodies(status: int, etype: str, retryable: bool, client_status: int) -> None:
    body = orjson.dumps(
        {"type": "error", "error": {"type": etype, "message": "vendor says no"}, "request_id": "r"}
    )
    e = error_from_body("claude", status, body, 3.0 if status == 429 else None)
    assert (e.upstream_status, e.retryable, e.status_code) == (status, retryable, client_status)
    assert "vendor says no" in e.message and e.code == etype
    assert e.retry_after == (3.0 if status == 429 else None)
    assert ("check the API key of providers.claude" in e.message) == (status in (401, 403))


def test_error_body_that_is_not_json() -> None:
    e = error_from_body("claude", 413, b"<html>413 Request Entity Too Large</html>", None)
    assert e.upstream_status == 413 and "Request Entity Too Large" in e.message


@pytest.mark.parametrize(
    ("etype", "status", "retryable"),
    [
        ("overloaded_error", 529, True),
        ("rate_limit_error", 429, True),
        ("api_error", 500, True),
        ("invalid_request_error", 400, False),
        ("brand_new_error", 500, True),
    ],
)
def test_error_events(etype: str, status: int, retryable: bool) -> None:
    e = error_from_event("claude", {"type": "error", "error": {"type": etype, "message": "Overloaded"}})
    assert isinstance(e, UpstreamStatusError)
    assert (e.upstream_status, e.retryable) == (status, retryable)


# --- streams --------------------------------------------------------------------------------


def ev(kind: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, **data}


START = ev(
    "message_start",
    message={
        "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-sonnet-4-5",
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 25, "cache_read_input_tokens": 4, "output_tokens": 1},
    },
)
TEXT_EVENTS = [
    START,
    ev("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    ev("ping"),
    ev("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hello"}),
    ev("content_block_delta", index=0, delta={"type": "text_delta", "text": "!"}),
    ev("content_block_stop", index=0),
    ev(
        "message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None}, usage={"output_tokens": 15}
    ),
    ev("message_stop"),
]
TOOL_EVENTS = [
    START,
    ev("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""}),
    ev("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "Let me think"}),
    ev("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "EqQB"}),
    ev("content_block_stop", index=0),
    ev("content_block_start", index=1, content_block={"type": "text", "text": ""}),
    ev("content_block_delta", index=1, delta={"type": "text_delta", "text": "Checking."}),
    ev("content_block_stop", index=1),
    ev(
        "content_block_start",
        index=2,
        content_block={"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}},
    ),
    ev("content_block_delta", index=2, delta={"type": "input_json_delta", "partial_json": ""}),
    ev("content_block_delta", index=2, delta={"type": "input_json_delta", "partial_json": '{"city": '}),
    ev("content_block_delta", index=2, delta={"type": "input_json_delta", "partial_json": '"Paris"}'}),
    ev("content_block_stop", index=2),
    ev(
        "content_block_start",
        index=3,
        content_block={"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}},
    ),
    ev("content_block_stop", index=3),
    ev(
        "message_delta", delta={"stop_reason": "tool_use", "stop_sequence": None}, usage={"output_tokens": 89}
    ),
    ev("message_stop"),
]


def run(
    events: list[dict[str, Any]], json_tool: str | None = None
) -> tuple[list[ChatChunk], StreamTranslator]:
    t = StreamTranslator("claude", json_tool, 1700)
    chunks = [c for e in events for c in t.feed(e)]
    return chunks, t


def deltas(chunks: list[ChatChunk]) -> list[dict[str, Any]]:
    return [c.choices[0]["delta"] for c in chunks if c.choices]


def test_text_stream() -> None:
    chunks, t = run(TEXT_EVENTS)
    assert t.done
    assert deltas(chunks) == [
        {"role": "assistant", "content": ""},
        {"content": "Hello"},
        {"content": "!"},
        {},
    ]
    assert [c.choices[0]["finish_reason"] for c in chunks if c.choices][-1] == "stop"
    assert all(
        c.id == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY" and c.model == "claude-sonnet-4-5" for c in chunks
    )
    last = chunks[-1]
    assert last.is_usage_only and last.usage == Usage(
        29, 15, 44, {"prompt_tokens_details": {"cached_tokens": 4}}
    )


def test_tool_stream() -> None:
    chunks, _ = run(TOOL_EVENTS)
    assert deltas(chunks) == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "Let me think"},
        {"thinking_blocks": [{"type": "thinking", "signature": "EqQB"}]},
        {"content": "Checking."},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "toolu_b",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
        {},
    ]
    assert [c.choices[0]["finish_reason"] for c in chunks if c.choices][-1] == "tool_calls"


def test_json_mode_stream_turns_tool_input_into_content() -> None:
    events = [
        START,
        ev(
            "content_block_start",
            index=0,
            content_block={"type": "tool_use", "id": "t", "name": "reply", "input": {}},
        ),
        ev("content_block_delta", index=0, delta={"type": "input_json_delta", "partial_json": '{"answer"'}),
        ev("content_block_delta", index=0, delta={"type": "input_json_delta", "partial_json": ': "42"}'}),
        ev("content_block_stop", index=0),
        ev("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 9}),
        ev("message_stop"),
    ]
    chunks, _ = run(events, json_tool="reply")
    assert "".join(d.get("content") or "" for d in deltas(chunks)) == '{"answer": "42"}'
    assert chunks[-2].choices[0]["finish_reason"] == "stop"


def test_stream_error_event_raises_mapped_status() -> None:
    t = StreamTranslator("claude", None, 0)
    t.feed(START)
    with pytest.raises(UpstreamStatusError) as e:
        t.feed(ev("error", error={"type": "overloaded_error", "message": "Overloaded"}))
    assert e.value.upstream_status == 529 and e.value.retryable and "Overloaded" in e.value.message


@pytest.mark.parametrize(
    "events",
    [
        [ev("content_block_delta", index=0, delta={"type": "text_delta", "text": "x"})],
        [START, ev("content_block_start", index="0", content_block={"type": "text", "text": ""})],
        [START, ev("content_block_start", index=0, content_block="text")],
        [
            START,
            ev("content_block_start", index=0, content_block={"type": "text"}),
            ev("content_block_delta", index=0, delta={"type": "text_delta", "text": None}),
        ],
        [ev("message_start", message=[])],
        [
            START,
            ev("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": "many"}),
            ev("message_stop"),
        ],
    ],
)
def test_malformed_stream_events(events: list[dict[str, Any]]) -> None:
    with pytest.raises(UpstreamProtocolError):
        run(events)


def test_unknown_events_and_deltas_are_skipped() -> None:
    events = [
        START,
        ev("some_future_event", data=1),
        ev("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        ev("content_block_delta", index=0, delta={"type": "citations_delta", "citation": {}}),
        ev("content_block_delta", index=0, delta={"type": "text_delta", "text": "ok"}),
        ev("content_block_stop", index=0),
        ev("message_delta", delta={"stop_reason": "max_tokens"}, usage={"output_tokens": 1}),
        ev("message_stop"),
    ]
    chunks, t = run(events)
    assert deltas(chunks)[1:] == [{"content": "ok"}, {}]
    assert chunks[-2].choices[0]["finish_reason"] == "length" and t.done


@pytest.mark.parametrize(
    ("json_tool", "initial", "expected"),
    [
        (None, {}, {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
        (
            None,
            {"city": "Oslo"},
            {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":"Oslo"}'}}]},
        ),
        ("get_weather", {"city": "Oslo"}, {"content": '{"city":"Oslo"}'}),
    ],
)
def test_tool_input_without_fragments(
    json_tool: str | None, initial: dict[str, Any], expected: dict[str, Any]
) -> None:
    block = {"type": "tool_use", "id": "toolu_c", "name": "get_weather", "input": initial}
    events = [
        START,
        ev("content_block_start", index=0, content_block=block),
        ev("content_block_stop", index=0),
    ]
    chunks, _ = run(events, json_tool)
    assert deltas(chunks)[-1] == expected


# --- reasoning ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effort", "max_tokens", "budget"),
    [
        ("low", None, 2048),
        ("medium", None, 2048),
        ("high", 60000, 24576),
        ("high", 30000, 15000),
        ("minimal", 5000, 1024),
    ],
)
def test_reasoning_effort_becomes_a_thinking_budget_of_at_most_half_max_tokens(
    effort: str, max_tokens: int | None, budget: int
) -> None:
    body = wire(reasoning_effort=effort, **({} if max_tokens is None else {"max_tokens": max_tokens}))
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == (max_tokens or 4096) > budget


def test_reasoning_effort_none_asks_for_no_thinking() -> None:
    assert "thinking" not in wire(reasoning_effort="none")
    with pytest.raises(InvalidRequest) as e:
        wire(reasoning_effort="extreme")
    assert e.value.param == "reasoning_effort"


def test_a_dialects_reasoning_hint_is_applied_or_gives_way() -> None:
    def sent(hint: Reasoning, **body: Any) -> dict[str, Any]:
        req = ChatRequest({"model": "a", "messages": [USER], **body}, "claude-x", hint=hint)
        return request_to_wire(req).body

    assert sent(Reasoning.of_budget(3000))["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent(Reasoning.of_budget(3000), max_tokens=8000)["thinking"]["budget_tokens"] == 3000
    assert "thinking" not in sent(Reasoning("high"), temperature=0.3)  # a hint never refuses
    assert "thinking" not in sent(Reasoning("high"), max_tokens=500)
    forced = {"tools": [WEATHER_TOOL], "tool_choice": "required"}
    assert "thinking" not in sent(Reasoning("high"), **forced)
    with pytest.raises(CapabilityError) as e:
        wire(reasoning_effort="high", **forced)
    assert e.value.param == "reasoning_effort"


def test_earlier_turns_signed_thinking_goes_back_before_their_tool_calls() -> None:
    call = {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    blocks = [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "thinking", "thinking": "unsigned"},
    ]
    assistant = {"role": "assistant", "content": None, "tool_calls": [call], "thinking_blocks": blocks}
    tool = {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}
    body = wire(messages=[USER, assistant, tool], reasoning_effort="low")
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
    ]
    with pytest.raises(InvalidRequest):
        wire(messages=[USER, {**assistant, "thinking_blocks": "no"}, tool])


def test_redacted_thinking_streams_as_a_thinking_blocks_delta() -> None:
    events = [
        START,
        ev("content_block_start", index=0, content_block={"type": "redacted_thinking", "data": "xyz"}),
        ev("content_block_stop", index=0),
        ev("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 3}),
        ev("message_stop"),
    ]
    chunks, _ = run(events)
    assert {"thinking_blocks": [{"type": "redacted_thinking", "data": "xyz"}]} in deltas(chunks)


def test_a_tool_loop_without_the_signed_thinking_cannot_think() -> None:
    call = {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    loop = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [call]},  # no thinking_blocks kept
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
    ]
    req = ChatRequest({"model": "a", "messages": loop, "max_tokens": 8000}, "claude-x", hint=Reasoning("low"))
    assert "thinking" not in request_to_wire(req).body  # a hint gives way
    with pytest.raises(CapabilityError) as e:
        wire(messages=loop, max_tokens=8000, reasoning_effort="low")
    assert e.value.param == "messages"
    signed = {**loop[1], "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}]}
    after = [*loop, {"role": "assistant", "content": "Sunny."}, {"role": "user", "content": "thanks"}]
    assert wire(messages=[USER, signed, loop[2]], max_tokens=8000, reasoning_effort="low")["thinking"]
    assert wire(messages=after, max_tokens=8000, reasoning_effort="low")["thinking"]
