"""Both agent dialects in front of the other kinds of cloud target: an Anthropic upstream (the fake
speaking Anthropic's wire format) and Gemini's, through a real daemon with the official SDKs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fixtures.daemon import DaemonProcess, free_port, write_config
from tests.fixtures.fake_anthropic import API_KEY, FakeAnthropicServer
from tests.fixtures.fake_gemini import KEY as GEMINI_KEY
from tests.fixtures.fake_gemini import FakeGeminiServer

pytestmark = pytest.mark.process

USER = [{"role": "user", "content": "hello target"}]
WEATHER = {
    "name": "get_weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropicServer]:
    server = FakeAnthropicServer().start()
    yield server
    server.stop()


def last_anthropic(claude: FakeAnthropicServer) -> dict[str, Any]:
    got: dict[str, Any] = httpx.get(f"http://127.0.0.1:{claude.port}/_last").json()
    return got


@pytest.fixture(scope="module")
def clouds(claude: FakeAnthropicServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    gemini = FakeGeminiServer().start()
    home: Path = tmp_path_factory.mktemp("aigw-clouds")
    port = free_port()
    write_config(
        home,
        f"""
[server]
port = {port}

[providers.claude]
type = "anthropic"
base_url = "{claude.base_url}"
api_key = "{API_KEY}"
discover_models = false

[providers.gem]
type = "gemini"
base_url = "{gemini.base_url}"
api_key = "{GEMINI_KEY}"
discover_models = false

[models.chain]
targets = [{{ provider = "claude", model = "overloaded" }}, {{ provider = "gem", model = "gemini-test" }}]

[routing]
retries = 0
""",
    )
    (home / "config.toml").chmod(0o600)
    d = DaemonProcess(home, port).start()
    yield d
    assert d.terminate() == 0, d.log()
    gemini.stop()


@pytest.mark.parametrize("model", ["claude/any-model", "gem/gemini-test"])
def test_messages_in_front_of_each_cloud(clouds: DaemonProcess, model: str) -> None:
    c = anthropic.Anthropic(base_url=clouds.url, api_key="unused", max_retries=0)
    msg = c.messages.create(model=model, max_tokens=64, messages=USER)  # type: ignore[arg-type]
    assert msg.content[0].text == "echo: hello target"  # type: ignore[union-attr]
    with c.messages.stream(model=model, max_tokens=64, messages=USER) as stream:  # type: ignore[arg-type]
        assert "".join(stream.text_stream) == "echo: hello target"


def test_messages_tool_call_and_cached_tokens_from_anthropic(clouds: DaemonProcess) -> None:
    c = anthropic.Anthropic(base_url=clouds.url, api_key="unused", max_retries=0)
    msg = c.messages.create(
        model="claude/tool-call",
        max_tokens=64,
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["text", "tool_use"]
    assert msg.content[1].input == {"city": "Paris"}  # type: ignore[union-attr]
    cached = c.messages.create(model="claude/cached", max_tokens=64, messages=USER)  # type: ignore[arg-type]
    assert cached.usage.cache_read_input_tokens == 5


@pytest.mark.parametrize("model", ["claude/any-model", "gem/gemini-test"])
def test_responses_in_front_of_each_cloud(clouds: DaemonProcess, model: str) -> None:
    c = openai.OpenAI(base_url=clouds.url + "/v1", api_key="unused", max_retries=0)
    resp = c.responses.create(model=model, input="hello target")
    assert resp.output_text == "echo: hello target"
    events = list(c.responses.create(model=model, input="hello target", stream=True))
    assert events[-1].response.output_text == "echo: hello target"  # type: ignore[union-attr]


def test_an_anthropic_target_gets_the_request_unchanged(
    clouds: DaemonProcess, claude: FakeAnthropicServer
) -> None:
    """Native pass-through: thinking blocks and their signatures, cache_control, anthropic-beta
    and fields aigw does not know reach Anthropic and come back as they were."""
    body = {
        "model": "claude/thinking",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": USER,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "context_management": {"edits": []},
        "metadata": {"user_id": "u1"},
    }
    beta = {"anthropic-beta": "interleaved-thinking-2025-05-14"}
    resp = clouds.post("/v1/messages", json=body, headers=beta)
    assert resp.status_code == 200, resp.text
    got = resp.json()
    assert got["content"][0] == {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    assert got["content"][1]["text"] == "echo: hello target" and got["id"] == "msg_fake"
    assert "x-aigw-dropped" not in resp.headers
    sent = last_anthropic(claude)
    assert sent["body"]["model"] == "thinking" and sent["body"]["thinking"] == body["thinking"]
    assert sent["body"]["system"] == body["system"] and sent["body"]["context_management"] == {"edits": []}
    assert sent["headers"]["anthropic-beta"] == beta["anthropic-beta"]


def test_an_anthropic_targets_stream_is_relayed_as_it_came(clouds: DaemonProcess) -> None:
    c = anthropic.Anthropic(base_url=clouds.url, api_key="unused", max_retries=0)
    with c.messages.stream(
        model="claude/thinking",
        max_tokens=64,
        messages=USER,  # type: ignore[arg-type]
        extra_body={"thinking": {"type": "enabled", "budget_tokens": 1024}},
    ) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert final.content[0].type == "thinking" and final.content[0].signature == "sig"  # type: ignore[union-attr]
    assert final.content[1].text == "echo: hello target"  # type: ignore[union-attr]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.id == "msg_fake"


@pytest.mark.parametrize("stream", [False, True])
def test_a_failing_anthropic_target_falls_back_to_a_translated_one(
    clouds: DaemonProcess, stream: bool
) -> None:
    c = anthropic.Anthropic(base_url=clouds.url, api_key="unused", max_retries=0)
    if stream:
        with c.messages.stream(model="chain", max_tokens=64, messages=USER) as s:  # type: ignore[arg-type]
            assert "".join(s.text_stream) == "echo: hello target"
        return
    raw = c.messages.with_raw_response.create(model="chain", max_tokens=64, messages=USER)  # type: ignore[arg-type]
    assert raw.headers["x-aigw-provider"] == "gem" and raw.headers["x-aigw-fallbacks"] == "1"
    assert raw.parse().content[0].text == "echo: hello target"  # type: ignore[union-attr]


def test_count_tokens_asks_anthropic_for_an_anthropic_target(
    clouds: DaemonProcess, claude: FakeAnthropicServer
) -> None:
    c = anthropic.Anthropic(base_url=clouds.url, api_key="unused", max_retries=0)
    counted = c.messages.count_tokens(model="claude/any-model", messages=USER)  # type: ignore[arg-type]
    assert counted.input_tokens > 1000  # the upstream's own count
    assert last_anthropic(claude)["body"] == {"model": "any-model", "messages": USER}
    estimated = c.messages.count_tokens(model="gem/gemini-test", messages=USER)  # type: ignore[arg-type]
    assert 0 < estimated.input_tokens < 100
