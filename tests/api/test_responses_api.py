"""The OpenAI Responses API in front of an OpenAI-type upstream, driven by the official `openai`
SDK's `responses` against a real daemon: create, stream, a function call round trip with
previous_response_id, retrieve and delete, what Codex sends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fixtures.daemon import DaemonProcess, free_port, write_config
from tests.fixtures.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.process

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}


def client(d: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=d.url + "/v1", api_key="unused", max_retries=0)


def last_upstream(upstream: FakeOpenAIServer) -> dict[str, Any]:
    got: dict[str, Any] = httpx.get(f"http://127.0.0.1:{upstream.port}/_last").json()["body"]
    return got


def test_create_and_retrieve_and_delete(daemon: DaemonProcess, upstream: FakeOpenAIServer) -> None:
    c = client(daemon)
    resp = c.responses.create(model="gpt-test", input="hello responses", instructions="Be brief.")
    assert resp.object == "response" and resp.status == "completed"
    assert resp.output_text == "echo: hello responses"
    assert resp.usage is not None and resp.usage.input_tokens > 0
    sent = last_upstream(upstream)
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    got = c.responses.retrieve(resp.id)
    assert got.id == resp.id and got.output_text == resp.output_text
    c.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(resp.id)


def test_stream_events_in_order(daemon: DaemonProcess) -> None:
    c = client(daemon)
    events = list(c.responses.create(model="gpt-test", input="stream me", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert text == "echo: stream me"
    assert events[-1].response.output_text == text  # type: ignore[union-attr]


def test_a_function_call_round_trip_with_previous_response_id(
    daemon: DaemonProcess, upstream: FakeOpenAIServer
) -> None:
    c = client(daemon)
    first = c.responses.create(model="fake/tool-call", input="Paris", tools=[WEATHER])  # type: ignore[list-item]
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.arguments == '{"text":"Paris"}'
    second = c.responses.create(
        model="fake/tool-call",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert second.output_text == "echo: tool said sunny"
    sent = last_upstream(upstream)
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool"]
    assert sent["messages"][1]["tool_calls"][0]["id"] == call.call_id


def test_a_streamed_function_call(daemon: DaemonProcess) -> None:
    events = list(
        client(daemon).responses.create(model="fake/tool-call", input="Oslo", tools=[WEATHER], stream=True)  # type: ignore[list-item]
    )
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done and done[0].arguments == '{"text":"Oslo"}'  # type: ignore[union-attr]
    assert events[-1].response.output[0].name == "get_weather"  # type: ignore[union-attr]


def test_what_codex_sends_is_served(daemon: DaemonProcess, upstream: FakeOpenAIServer) -> None:
    body = {
        "model": "gpt-test",
        "stream": False,
        "instructions": "You are Codex.",
        "input": [
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "sandbox: on"}],
            },
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "approval: never"}],
            },
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix the bug"}]},
        ],
        "tools": [
            WEATHER,
            {"type": "namespace", "name": "multi_agent_v1", "tools": [{"type": "function", "name": "spawn"}]},
            {"type": "web_search"},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "abc",
        "client_metadata": {"x": "y"},
    }
    resp = daemon.post("/v1/responses", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["output"][0]["content"][0]["text"] == "echo: fix the bug"
    dropped = {d.strip() for d in resp.headers["x-aigw-dropped"].split(",")}
    hints = {"reasoning.summary", "include", "client_metadata", "tools[web_search]"}
    assert dropped == hints
    sent = last_upstream(upstream)
    assert sent["prompt_cache_key"] == "abc"  # an OpenAI-compatible upstream gets it
    assert sent["messages"][0] == {
        "role": "system",
        "content": "You are Codex.\n\nsandbox: on\n\napproval: never",
    }
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather", "multi_agent_v1__spawn"]
    assert sent["parallel_tool_calls"] is False
    rid = resp.json()["id"]
    assert daemon.get(f"/v1/responses/{rid}").status_code == 404  # store: false kept nothing


def test_bad_input_is_an_openai_error(daemon: DaemonProcess) -> None:
    c = client(daemon)
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model="gpt-test", input=[{"type": "item_reference", "id": "x"}])  # type: ignore[list-item]
    assert "input[0].type" in e.value.message
    with pytest.raises(openai.NotFoundError):
        c.responses.create(model="gpt-test", input="x", previous_response_id="resp_nope")
    with pytest.raises(openai.BadRequestError):
        c.responses.create(
            model="gpt-test", input="x", tools=[{"type": "web_search"}], tool_choice={"type": "web_search"}
        )  # type: ignore[list-item,arg-type]


@pytest.fixture(scope="module")
def passthrough(
    upstream: FakeOpenAIServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    """A daemon whose OpenAI-type provider serves the Responses API itself."""
    home = tmp_path_factory.mktemp("aigw-responses")
    port = free_port()
    write_config(
        home,
        f"""
[server]
port = {port}

[providers.oai]
type = "openai"
base_url = "{upstream.base_url}"
api_key = "sk-test"
discover_models = false
responses_api = true
""",
    )
    (home / "config.toml").chmod(0o600)
    d = DaemonProcess(home, port).start()
    yield d
    assert d.terminate() == 0, d.log()


def test_an_upstream_serving_responses_gets_the_request_unchanged(
    passthrough: DaemonProcess, upstream: FakeOpenAIServer
) -> None:
    c = client(passthrough)
    first = c.responses.create(
        model="oai/gpt-test",
        input="hi there",
        tools=[{"type": "web_search"}],  # type: ignore[list-item]
        reasoning={"effort": "low"},
        include=["reasoning.encrypted_content"],
    )
    assert first.id == "resp_upstream" and first.output_text == "echo: hi there"
    assert first.output[0].type == "reasoning"  # what the upstream said, as it said it
    sent = last_upstream(upstream)
    assert sent["tools"] == [{"type": "web_search"}] and sent["reasoning"] == {"effort": "low"}
    assert sent["model"] == "gpt-test" and sent["store"] is False
    second = c.responses.create(model="oai/gpt-test", input="and now?", previous_response_id=first.id)
    assert second.output_text == "echo: and now?"
    sent = last_upstream(upstream)
    assert "previous_response_id" not in sent
    assert [(i.get("type"), i.get("role")) for i in sent["input"]] == [
        ("message", "user"),
        ("message", "assistant"),
        (None, "user"),
    ]
    assert sent["input"][1]["content"][0] == {"type": "output_text", "text": "echo: hi there"}


def test_an_upstream_serving_responses_streams_its_own_events(passthrough: DaemonProcess) -> None:
    c = client(passthrough)
    events = list(c.responses.create(model="oai/gpt-test", input="stream it", stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_item.added" in kinds
    final = events[-1].response  # type: ignore[union-attr]
    assert final.id == "resp_upstream" and final.output_text == "echo: stream it"
    assert c.responses.retrieve("resp_upstream").output_text == "echo: stream it"  # kept by aigw
