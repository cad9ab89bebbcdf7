"""The Anthropic Messages request as the pipeline's chat request: each field's fate."""

from __future__ import annotations

from typing import Any

import pytest

from aigw.api.anthropic.request import to_chat
from aigw.errors import InvalidRequest

BASE: dict[str, Any] = {"model": "m", "max_tokens": 10}


def test_images_tool_results_and_errors_map() -> None:
    png = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    url = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    body = {
        **BASE,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"}, png]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {"x": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "is_error": True,
                        "content": [{"type": "text", "text": "boom"}, url],
                    },
                    {"type": "text", "text": "and?"},
                ],
            },
        ],
        "stop_sequences": ["END"],
        "top_k": 5,
    }
    t = to_chat(body)
    msgs = t.body["messages"]
    assert msgs[0]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert msgs[1] == {
        "role": "assistant",
        "content": "calling",
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "shot", "arguments": '{"x":1}'}}
        ],
    }
    assert msgs[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: boom"}
    assert msgs[3]["role"] == "user" and msgs[3]["content"][0]["image_url"]["url"].startswith("https://")
    assert msgs[3]["content"][1] == {"type": "text", "text": "and?"}
    assert t.body["stop"] == ["END"] and t.body["top_k"] == 5
    assert t.dropped == ["thinking"]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    tool = {"name": "f", "input_schema": {"type": "object"}}
    t = to_chat(
        {**BASE, "messages": [{"role": "user", "content": "x"}], "tools": [tool], "tool_choice": choice}
    )
    assert t.body["tool_choice"] == expected


def test_parallel_tool_use_can_be_disabled() -> None:
    tool = {"name": "f", "input_schema": {"type": "object"}}
    choice = {"type": "auto", "disable_parallel_tool_use": True}
    t = to_chat(
        {**BASE, "messages": [{"role": "user", "content": "x"}], "tools": [tool], "tool_choice": choice}
    )
    assert t.body["parallel_tool_calls"] is False


def test_forcing_a_dropped_server_tool_is_refused() -> None:
    tools = [{"type": "web_search_20250305", "name": "web_search"}]
    with pytest.raises(InvalidRequest, match="web_search"):
        to_chat(
            {
                **BASE,
                "messages": [{"role": "user", "content": "x"}],
                "tools": tools,
                "tool_choice": {"type": "tool", "name": "web_search"},
            }
        )


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}]},
            "messages[0].content[0].source",
        ),
        ({"temperature": "hot"}, "temperature"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"tools": [{"name": "f"}]}, "tools[0].input_schema"),
        ({"container": "c1"}, "container"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_input_names_its_field(patch: dict[str, Any], param: str) -> None:
    body = {**BASE, "messages": [{"role": "user", "content": "x"}], **patch}
    with pytest.raises(InvalidRequest) as e:
        to_chat(body)
    assert e.value.param == param
