"""Reasoning across dialects and targets, through a real daemon with the official SDKs: OpenAI's
`reasoning_effort`, Anthropic's `thinking` and the Responses API's `reasoning.effort` become each
cloud target's thinking controls (the fakes speak Anthropic's and Gemini's wire formats), and
what the target thought comes back in the client's own dialect: `reasoning_content` with signed
`thinking_blocks`, thinking blocks, reasoning items."""

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

USER = [{"role": "user", "content": "think about it"}]


class Fakes:
    def __init__(self) -> None:
        self.claude = FakeAnthropicServer().start()
        self.gemini = FakeGeminiServer().start()

    def last(self, which: str) -> dict[str, Any]:
        server = self.claude if which == "claude" else self.gemini
        got: dict[str, Any] = httpx.get(f"http://127.0.0.1:{server.port}/_last").json()
        body: dict[str, Any] = got.get("body", got)
        return body


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    f = Fakes()
    yield f
    f.claude.stop()
    f.gemini.stop()


@pytest.fixture(scope="module")
def daemon(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    home: Path = tmp_path_factory.mktemp("aigw-reasoning")
    port = free_port()
    write_config(
        home,
        f"""
[server]
port = {port}

[providers.claude]
type = "anthropic"
base_url = "{fakes.claude.base_url}"
api_key = "{API_KEY}"
discover_models = false

[providers.gem]
type = "gemini"
base_url = "{fakes.gemini.base_url}"
api_key = "{GEMINI_KEY}"
discover_models = false
""",
    )
    (home / "config.toml").chmod(0o600)
    d = DaemonProcess(home, port).start()
    yield d
    assert d.terminate() == 0, d.log()


def oai(d: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=d.url + "/v1", api_key="unused", max_retries=0)


def test_reasoning_effort_on_anthropic_comes_back_signed(daemon: DaemonProcess, fakes: Fakes) -> None:
    resp = oai(daemon).chat.completions.create(
        model="claude/thinking", messages=USER, reasoning_effort="low", max_tokens=4000  # type: ignore[arg-type]
    )
    msg = resp.choices[0].message.model_dump()
    assert msg["reasoning_content"] == "hmm"
    assert msg["thinking_blocks"] == [{"type": "thinking", "thinking": "hmm", "signature": "sig"}]
    assert fakes.last("claude")["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    # the next turn sends the signed block back before the assistant's text
    follow = [*USER, msg, {"role": "user", "content": "and then?"}]
    oai(daemon).chat.completions.create(
        model="claude/thinking", messages=follow, reasoning_effort="low", max_tokens=4000  # type: ignore[arg-type]
    )
    sent = fakes.last("claude")["messages"][1]["content"]
    assert sent[0] == {"type": "thinking", "thinking": "hmm", "signature": "sig"}


def test_streamed_reasoning_from_anthropic(daemon: DaemonProcess) -> None:
    stream = oai(daemon).chat.completions.create(
        model="claude/thinking", messages=USER, reasoning_effort="low", max_tokens=4000, stream=True  # type: ignore[arg-type]
    )
    deltas = [c.choices[0].delta.model_dump() for c in stream if c.choices]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "hmm"
    signed = [b for d in deltas for b in d.get("thinking_blocks") or []]
    assert signed == [{"type": "thinking", "signature": "sig"}]


def test_reasoning_effort_on_gemini(daemon: DaemonProcess, fakes: Fakes) -> None:
    resp = oai(daemon).chat.completions.create(
        model="gem/thinker", messages=USER, reasoning_effort="high"  # type: ignore[arg-type]
    )
    assert resp.choices[0].message.model_dump()["reasoning_content"] == "let me think"
    assert fakes.last("gemini")["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 24576


def test_anthropic_thinking_on_gemini_comes_back_as_a_thinking_block(
    daemon: DaemonProcess, fakes: Fakes
) -> None:
    c = anthropic.Anthropic(base_url=daemon.url, api_key="unused", max_retries=0)
    kwargs: Any = {"thinking": {"type": "enabled", "budget_tokens": 3000}}
    msg = c.messages.create(model="gem/thinker", max_tokens=5000, messages=USER, **kwargs)  # type: ignore[arg-type]
    assert msg.content[0].type == "thinking" and msg.content[0].thinking == "let me think"
    assert fakes.last("gemini")["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 3000
    with c.messages.stream(model="gem/thinker", max_tokens=5000, messages=USER, **kwargs) as s:  # type: ignore[arg-type]
        final = s.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "let me think"  # type: ignore[union-attr]


def test_responses_reasoning_effort_on_anthropic_is_a_reasoning_item(
    daemon: DaemonProcess, fakes: Fakes
) -> None:
    client = oai(daemon)
    resp = client.responses.create(
        model="claude/thinking", input="think", reasoning={"effort": "medium"}, max_output_tokens=6000
    )
    assert [i.type for i in resp.output] == ["reasoning", "message"]
    assert resp.output[0].content[0].text == "hmm"  # type: ignore[union-attr,index]
    assert fakes.last("claude")["thinking"] == {"type": "enabled", "budget_tokens": 3000}
    with client.responses.stream(
        model="claude/thinking", input="think", reasoning={"effort": "medium"}, max_output_tokens=6000
    ) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.reasoning_text.delta" in kinds and "response.reasoning_text.done" in kinds
    assert [i.type for i in final.output] == ["reasoning", "message"]
