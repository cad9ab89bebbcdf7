"""Reasoning on both local engines through a real daemon: a model whose real chat template opens
a <think> block (DeepSeek-R1's) answers with reasoning_content, whole and streamed, in the openai
SDK and as Anthropic thinking blocks; reasoning_effort sets Qwen3's enable_thinking; a model
with no reasoning control refuses OpenAI's reasoning_effort and ignores another dialect's hint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.fixtures.daemon import DaemonProcess, serving

pytestmark = pytest.mark.process

pytest.importorskip("llama_cpp", reason="the 'local' extra is not installed")
pytest.importorskip("mlx_lm", reason="the 'mlx' extra is not installed")

TEMPLATES = Path(__file__).parent.parent / "fixtures" / "templates"
MSG = [{"role": "user", "content": "hi"}]
EMPTY_THINK = len("<think>\n\n</think>\n\n")  # bytes: one token each in the tiny vocabularies


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    from tests.fixtures.tiny_gguf import write_tiny_llama
    from tests.fixtures.tiny_mlx import write_tiny_mlx

    home: Path = tmp_path_factory.mktemp("reasoning-local")
    r1 = (TEMPLATES / "deepseek-r1-distill.jinja").read_text()
    qwen3 = (TEMPLATES / "qwen3.jinja").read_text()
    write_tiny_llama(home / "plain.gguf")
    write_tiny_llama(home / "r1.gguf", chat_template=r1)
    write_tiny_llama(home / "qwen3.gguf", chat_template=qwen3, n_ctx=4096)
    write_tiny_mlx(home / "r1-mlx", chat_template=r1)
    write_tiny_mlx(home / "qwen3-mlx", chat_template=qwen3)
    with serving(
        home,
        f"""
[providers.gguf]
type = "llama_cpp"
discover_models = false
models = {{ plain = "{home}/plain.gguf", r1 = "{home}/r1.gguf", qwen3 = "{home}/qwen3.gguf" }}

[providers.mlx]
type = "mlx"
discover_models = false
models = {{ r1-mlx = "{home}/r1-mlx", qwen3-mlx = "{home}/qwen3-mlx" }}
""",
    ) as d:
        yield d


@pytest.fixture
def client(daemon: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("model", ["gguf/r1", "mlx/r1-mlx"])
def test_an_opened_think_block_comes_back_as_reasoning_content(client: openai.OpenAI, model: str) -> None:
    kw: Any = {"model": model, "messages": MSG, "max_tokens": 10, "temperature": 0}
    whole = client.chat.completions.create(**kw).choices[0].message.model_dump()
    assert whole["reasoning_content"] and not whole["content"]  # </think> never came: all reasoning
    chunks = list(client.chat.completions.create(stream=True, **kw))
    deltas = [c.choices[0].delta.model_dump() for c in chunks if c.choices]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == whole["reasoning_content"]
    assert not "".join(d.get("content") or "" for d in deltas)


def test_anthropic_clients_get_a_local_models_reasoning_as_a_thinking_block(daemon: DaemonProcess) -> None:
    c = anthropic.Anthropic(base_url=daemon.url, api_key="unused", max_retries=0)
    msg = c.messages.create(model="gguf/r1", max_tokens=10, messages=MSG)  # type: ignore[list-item]
    assert msg.content[0].type == "thinking" and msg.content[0].thinking
    with c.messages.stream(model="gguf/r1", max_tokens=10, messages=MSG) as s:  # type: ignore[list-item]
        assert s.get_final_message().content[0].type == "thinking"


def test_reasoning_effort_sets_qwen3s_enable_thinking(client: openai.OpenAI, daemon: DaemonProcess) -> None:
    def prompt_tokens(**kw: Any) -> int:
        resp = client.chat.completions.create(model="gguf/qwen3", messages=MSG, max_tokens=1, **kw)
        assert resp.usage is not None
        return resp.usage.prompt_tokens

    plain = prompt_tokens()
    assert prompt_tokens(reasoning_effort="high") == plain
    assert prompt_tokens(reasoning_effort="none") == plain + EMPTY_THINK  # the template closes the block
    c = anthropic.Anthropic(base_url=daemon.url, api_key="unused", max_retries=0)
    kw: Any = {"thinking": {"type": "disabled"}}
    off = c.messages.create(model="gguf/qwen3", max_tokens=1, messages=MSG, **kw)  # type: ignore[list-item]
    assert off.usage.input_tokens == plain + EMPTY_THINK  # the Anthropic dialect's hint applies too
    counted = c.messages.count_tokens(model="gguf/qwen3", messages=MSG, **kw)  # type: ignore[arg-type]
    assert counted.input_tokens == plain + EMPTY_THINK  # counted as the answer would read it
    assert c.messages.count_tokens(model="gguf/qwen3", messages=MSG).input_tokens == plain  # type: ignore[arg-type]


def test_mlx_counts_tokens_as_its_answer_reads_them(client: openai.OpenAI, daemon: DaemonProcess) -> None:
    # mlx-lm's tokenizer passes enable_thinking itself when none is asked for: false for a vocabulary
    # without think tokens (this tiny one), so the plain prompt closes the block and thinking opens it.
    c = anthropic.Anthropic(base_url=daemon.url, api_key="unused", max_retries=0)
    kw: Any = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    counted = c.messages.count_tokens(model="mlx/qwen3-mlx", messages=MSG, **kw)  # type: ignore[arg-type]
    plain = c.messages.count_tokens(model="mlx/qwen3-mlx", messages=MSG)  # type: ignore[arg-type]
    on = client.chat.completions.create(
        model="mlx/qwen3-mlx", messages=MSG, max_tokens=1, reasoning_effort="high"  # type: ignore[arg-type]
    )
    assert on.usage is not None and counted.input_tokens == on.usage.prompt_tokens
    assert counted.input_tokens == plain.input_tokens - EMPTY_THINK


def test_a_model_without_reasoning_controls(client: openai.OpenAI, daemon: DaemonProcess) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gguf/plain", messages=MSG, max_tokens=2, reasoning_effort="low")  # type: ignore[arg-type]
    assert e.value.param == "reasoning_effort"
    c = anthropic.Anthropic(base_url=daemon.url, api_key="unused", max_retries=0)
    kw: Any = {"thinking": {"type": "enabled", "budget_tokens": 2000}}
    msg = c.messages.create(model="gguf/plain", max_tokens=4, messages=MSG, **kw)  # type: ignore[list-item]
    assert msg.content[0].type == "text"  # the hint is ignored, the answer comes


def test_what_each_model_can_do_is_listed(client: openai.OpenAI, daemon: DaemonProcess) -> None:
    listed = {m.id: m.model_dump() for m in client.models.list()}
    qwen3, plain, r1_mlx = listed["gguf/qwen3"], listed["gguf/plain"], listed["mlx/r1-mlx"]
    assert {"chat", "tools", "json_schema", "reasoning"} <= set(qwen3["capabilities"])
    assert "reasoning" not in plain["capabilities"] and "tools" in plain["capabilities"]
    assert "reasoning" in r1_mlx["capabilities"] and "vision" not in r1_mlx["capabilities"]
    assert qwen3["context_length"] == 4096 and plain["context_length"] == 512
    one = client.models.retrieve("gguf/qwen3").model_dump()
    assert one["capabilities"] == qwen3["capabilities"] and one["context_length"] == 4096


def test_models_show_reads_the_same_from_the_file(daemon: DaemonProcess) -> None:
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "aigw", "models", "show", str(daemon.home / "qwen3.gguf"), "--json"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "AIGW_HOME": str(daemon.home)},
        timeout=60,
        check=True,
    )
    info = json.loads(out.stdout)
    assert info["preset"].startswith("qwen3") and info["tool_format"] == "hermes"
    assert "reasoning" in info["capabilities"] and info["served_context"] == 4096
