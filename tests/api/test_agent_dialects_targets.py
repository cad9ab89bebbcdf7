"""Both agent dialects in front of the other kinds of cloud target: an Anthropic upstream (the fake
speaking Anthropic's wire format) and Gemini's, through a real daemon with the official SDKs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
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
def clouds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    claude, gemini = FakeAnthropicServer().start(), FakeGeminiServer().start()
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
""",
    )
    (home / "config.toml").chmod(0o600)
    d = DaemonProcess(home, port).start()
    yield d
    assert d.terminate() == 0, d.log()
    claude.stop()
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
