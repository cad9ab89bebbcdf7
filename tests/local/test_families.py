"""Model families through a real daemon on the tiny GGUF written with each family's real chat
template: Mistral's (whose template requires nine-character call ids and alternating turns) and
gpt-oss's harmony (whose template takes reasoning_effort)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.fixtures.daemon import DaemonProcess, serving

pytestmark = pytest.mark.process

pytest.importorskip("llama_cpp", reason="the 'local' extra is not installed")

TEMPLATES = Path(__file__).parent.parent / "fixtures" / "templates"
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The time in a zone",
            "parameters": {
                "type": "object",
                "properties": {"zone": {"type": "string", "maxLength": 8}},
                "required": ["zone"],
                "additionalProperties": False,
            },
        },
    }
]
CALL = {
    "id": "call_0123456789abcdef",
    "type": "function",
    "function": {"name": "get_time", "arguments": '{"zone":"CET"}'},
}
LOOP: list[Any] = [
    {"role": "user", "content": "time?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": CALL["id"], "content": "12:00"},
]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    from tests.fixtures.tiny_gguf import write_tiny_llama

    home: Path = tmp_path_factory.mktemp("families")
    for name, template in [("mistral", "mistral-nemo"), ("oss", "gpt-oss")]:
        text = (TEMPLATES / f"{template}.jinja").read_text()
        write_tiny_llama(home / f"{name}.gguf", chat_template=text, n_ctx=4096)
    with serving(
        home,
        f"""
[providers.gguf]
type = "llama_cpp"
discover_models = false
models = {{ mistral = "{home}/mistral.gguf", oss = "{home}/oss.gguf" }}
""",
    ) as d:
        yield d


@pytest.fixture
def client(daemon: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("model", ["gguf/mistral", "gguf/oss"])
def test_a_tool_loop_renders_in_the_familys_own_template(client: openai.OpenAI, model: str) -> None:
    resp = client.chat.completions.create(
        model=model, messages=LOOP, tools=TOOLS, max_tokens=4, temperature=0
    )
    assert resp.choices[0].finish_reason == "length" and resp.choices[0].message.content is not None
    forced = client.chat.completions.create(
        model=model, messages=LOOP, tools=TOOLS, tool_choice="required", max_tokens=60, seed=3
    )
    assert forced.choices[0].message.tool_calls and forced.choices[0].finish_reason == "tool_calls"


def test_messages_the_template_refuses_are_a_400_naming_them(client: openai.OpenAI) -> None:
    twice: Any = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gguf/mistral", messages=twice, max_tokens=2)
    assert e.value.param == "messages" and "alternate" in str(e.value.message)
    ok = client.chat.completions.create(model="gguf/mistral", messages=twice[:1], max_tokens=2)
    assert ok.choices[0].message.content is not None  # and the daemon goes on serving


def test_reasoning_effort_goes_into_the_harmony_template(client: openai.OpenAI) -> None:
    def prompt_tokens(effort: str) -> int:
        msg: Any = [{"role": "user", "content": "hi"}]
        resp = client.chat.completions.create(
            model="gguf/oss", messages=msg, max_tokens=1, reasoning_effort=effort
        )  # type: ignore[arg-type]
        assert resp.usage is not None
        return resp.usage.prompt_tokens

    assert prompt_tokens("high") == prompt_tokens("low") + 1  # "Reasoning: high" against "low"
