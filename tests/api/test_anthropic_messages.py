"""The Anthropic Messages API in front of an OpenAI-type upstream, driven by the official `anthropic`
SDK against a real daemon: create, stream (text_stream, get_final_message), tools round trip,
count_tokens, typed errors, x-api-key, what Claude Code sends (system blocks and a system-role
entry, thinking, metadata, context_management, a server tool)."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import httpx
import pytest

from aigw.access.keys import KeyStore
from aigw.state.db import open_db
from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.process

USER = [{"role": "user", "content": "hello claude"}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}


def client(d: DaemonProcess, key: str = "unused") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=d.url, api_key=key, max_retries=0)


def last_upstream(upstream: FakeOpenAIServer) -> dict[str, Any]:
    got: dict[str, Any] = httpx.get(f"http://127.0.0.1:{upstream.port}/_last").json()["body"]
    return got


def test_create_answers_as_an_anthropic_message(daemon: DaemonProcess) -> None:
    msg = client(daemon).messages.create(model="gpt-test", max_tokens=64, messages=USER)  # type: ignore[arg-type]
    assert msg.type == "message" and msg.role == "assistant" and msg.model == "gpt-test"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "echo: hello claude"  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert msg._request_id and msg._request_id.startswith("req_")


def test_stream_with_text_stream_and_the_final_message(daemon: DaemonProcess) -> None:
    with client(daemon).messages.stream(model="gpt-test", max_tokens=64, messages=USER) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: hello claude"
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


def test_the_raw_stream_has_anthropic_events_in_order(daemon: DaemonProcess) -> None:
    body = {"model": "gpt-test", "max_tokens": 32, "stream": True, "messages": USER}
    with httpx.stream("POST", daemon.url + "/v1/messages", json=body) as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        names = [line[len("event: ") :] for line in s.iter_lines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}


def test_a_tool_round_trip(daemon: DaemonProcess, upstream: FakeOpenAIServer) -> None:
    c = client(daemon)
    first = c.messages.create(
        model="fake/tool-call",
        max_tokens=64,
        messages=[{"role": "user", "content": "Paris"}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert first.stop_reason == "tool_use"
    call = first.content[-1]
    assert call.type == "tool_use" and call.name == "get_weather" and call.input == {"text": "Paris"}
    sent = last_upstream(upstream)
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    second = c.messages.create(
        model="fake/tool-call",
        max_tokens=64,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "Paris"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}],
            },
        ],
    )
    assert second.content[0].text == "echo: tool said sunny"  # type: ignore[union-attr]
    sent = last_upstream(upstream)
    assert sent["messages"][1]["tool_calls"][0]["id"] == call.id
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny"}


def test_a_streamed_tool_call_arrives_as_input_json(daemon: DaemonProcess) -> None:
    with client(daemon).messages.stream(
        model="fake/tool-call",
        max_tokens=64,
        messages=[{"role": "user", "content": "Oslo"}],
        tools=[WEATHER],  # type: ignore[list-item]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == {"text": "Oslo"}


def test_what_claude_code_sends_is_served(daemon: DaemonProcess, upstream: FakeOpenAIServer) -> None:
    body = {
        "model": "gpt-test",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi there"}]},
            {"role": "system", "content": "Reminder: be brief."},
        ],
        "tools": [WEATHER, {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
        "metadata": {"user_id": "u1"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "context_management": {"edits": []},
    }
    resp = daemon.post(
        "/v1/messages", json=body, headers={"anthropic-beta": "interleaved-thinking-2025-05-14"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["content"][0]["text"] == "echo: hi there"
    dropped = {d.strip() for d in resp.headers["x-aigw-dropped"].split(",")}
    assert dropped == {"metadata", "context_management", "cache_control", "tools[web_search]"}
    sent = last_upstream(upstream)
    assert "reasoning_effort" not in sent  # thinking is a hint an OpenAI-compatible target ignores
    assert sent["messages"][0] == {"role": "system", "content": "You are Claude Code.\n\nReminder: be brief."}
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"]


def test_count_tokens(daemon: DaemonProcess) -> None:
    counted = client(daemon).messages.count_tokens(model="gpt-test", messages=USER)  # type: ignore[arg-type]
    assert counted.input_tokens > 0


def test_errors_are_anthropic_typed(daemon: DaemonProcess) -> None:
    c = client(daemon)
    with pytest.raises(anthropic.NotFoundError) as nf:
        c.messages.create(model="no-such-model", max_tokens=8, messages=USER)  # type: ignore[arg-type]
    assert nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.AuthenticationError):
        client(daemon, "aigw-unknown").messages.create(model="gpt-test", max_tokens=8, messages=USER)  # type: ignore[arg-type]
    with pytest.raises(anthropic.InternalServerError):
        c.messages.create(model="fake/fail-500", max_tokens=8, messages=USER)  # type: ignore[arg-type]
    bad = daemon.post("/v1/messages", json={"model": "gpt-test", "messages": USER})
    assert bad.status_code == 400
    assert bad.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "'max_tokens' is required: a positive integer"},
    }
    unknown = daemon.post(
        "/v1/messages", json={"model": "gpt-test", "max_tokens": 8, "messages": USER, "mcp_servers": []}
    )
    assert unknown.status_code == 400 and "mcp_servers" in unknown.json()["error"]["message"]
    doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
    refused = daemon.post(
        "/v1/messages",
        json={"model": "gpt-test", "max_tokens": 8, "messages": [{"role": "user", "content": [doc]}]},
    )
    assert refused.status_code == 400 and "messages[0].content[0].type" in refused.json()["error"]["message"]


def test_a_stream_that_breaks_ends_with_an_error_event(daemon: DaemonProcess) -> None:
    body = {"model": "fake/break-stream", "max_tokens": 32, "stream": True, "messages": USER}
    with httpx.stream("POST", daemon.url + "/v1/messages", json=body) as s:
        lines = list(s.iter_lines())
    assert "event: error" in lines
    assert "message_stop" not in "".join(lines)


def test_an_aigw_key_in_x_api_key_is_the_caller(daemon: DaemonProcess) -> None:
    store = KeyStore(open_db(daemon.home / "aigw.db"))
    key, plain = store.create("claude-client", models=["gpt-test"])
    msg = client(daemon, plain).messages.create(model="gpt-test", max_tokens=16, messages=USER)  # type: ignore[arg-type]
    assert msg.content
    with pytest.raises(anthropic.PermissionDeniedError):
        client(daemon, plain).messages.create(model="smart", max_tokens=16, messages=USER)  # type: ignore[arg-type]
    db = open_db(daemon.home / "aigw.db")
    rows: list[tuple[int, str]] = []
    for _ in range(50):
        query = "SELECT status, dialect FROM usage WHERE key_id = ?"
        rows = sorted((int(r["status"]), str(r["dialect"])) for r in db.query(query, [key.id]))
        if len(rows) >= 2:
            break
        time.sleep(0.1)
    assert rows == [(200, "anthropic"), (403, "anthropic")]


def test_an_agents_own_model_name_goes_where_a_pattern_sends_it(daemon: DaemonProcess) -> None:
    raw = client(daemon).messages.with_raw_response.create(
        model="claude-haiku-4-5-20251001",
        max_tokens=16,
        messages=USER,  # type: ignore[arg-type]
    )
    assert raw.headers["x-aigw-provider"] == "fake" and raw.headers["x-aigw-model"] == "gpt-test"
    assert raw.parse().model == "claude-haiku-4-5-20251001"
    with pytest.raises(anthropic.NotFoundError):
        client(daemon).messages.create(model="claude-opus-5-5", max_tokens=16, messages=USER)  # type: ignore[arg-type]
