"""Prompt-cache reuse across requests, through a real daemon: turn 2 of a conversation re-reads only
what follows the history the model already holds, on both engines — also when other conversations
come between its turns (llama.cpp's slots, and the saved states of one slot or of MLX's cache) —
says so in `usage.prompt_tokens_details.cached_tokens` (and `cache_read_input_tokens` on the
Anthropic dialect), and answers exactly as it would from a cold start."""

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

ENGINES = ["gguf/tiny", "gguf1/tiny", "mlx/tiny-mlx"]
"""llama.cpp with 4 slots, llama.cpp with one slot (saved states only), MLX."""
COLD = {"gguf/tiny": "cold/tiny", "gguf1/tiny": "cold1/tiny", "mlx/tiny-mlx": "coldmlx/tiny-mlx"}
"""The same weights under another provider: loaded apart, so its state is cold."""
HISTORY = [{"role": "user", "content": "The story so far: " + "once upon a time " * 12}]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    from tests.fixtures.tiny_gguf import write_tiny_llama
    from tests.fixtures.tiny_mlx import write_tiny_mlx

    home: Path = tmp_path_factory.mktemp("prompt-cache")
    write_tiny_llama(home / "tiny.gguf")
    write_tiny_mlx(home / "models" / "tiny-mlx")
    with serving(
        home,
        f"""
[cache]
mode = "off"

[providers.gguf]
type = "llama_cpp"
discover_models = false
parallel = 4
models = {{ tiny = "{home}/tiny.gguf" }}

[providers.gguf1]
type = "llama_cpp"
discover_models = false
models = {{ tiny = {{ path = "{home}/tiny.gguf", parallel = 1 }} }}

[providers.cold]
type = "llama_cpp"
discover_models = false
models = {{ tiny = "{home}/tiny.gguf" }}

[providers.cold1]
type = "llama_cpp"
discover_models = false
models = {{ tiny = "{home}/tiny.gguf" }}

[providers.mlx]
type = "mlx"

[providers.coldmlx]
type = "mlx"
""",
    ) as d:
        yield d


@pytest.fixture
def client(daemon: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0)


def turn(client: openai.OpenAI, model: str, messages: list[Any]) -> tuple[str, int, int]:
    resp = client.chat.completions.create(model=model, messages=messages, max_tokens=6, temperature=0)
    assert resp.usage is not None
    details = resp.usage.prompt_tokens_details
    cached = details.cached_tokens if details is not None and details.cached_tokens else 0
    return resp.choices[0].message.content or "", resp.usage.prompt_tokens, cached


@pytest.mark.parametrize("model", ENGINES)
def test_turn_two_rereads_only_what_is_new(client: openai.OpenAI, daemon: DaemonProcess, model: str) -> None:
    other = [{"role": "user", "content": "something else entirely"}]
    turn(client, model, other)  # the model holds another conversation first
    first, first_prompt, cached = turn(client, model, HISTORY)
    assert cached < first_prompt // 2
    follow = [*HISTORY, {"role": "assistant", "content": first}, {"role": "user", "content": "go on"}]
    answer, prompt, cached = turn(client, model, follow)
    assert cached >= 0.95 * first_prompt  # the shared prefix: the whole first prompt
    assert prompt > first_prompt
    # the same request on a model loaded apart (cold) answers the same
    cold, _, cold_cached = turn(client, COLD[model], follow)
    assert cold_cached < first_prompt // 2 and cold == answer


@pytest.mark.parametrize("model", ENGINES)
def test_interleaved_conversations_each_find_their_state(client: openai.OpenAI, model: str) -> None:
    convs = {
        name: [{"role": "user", "content": f"{name}: " + f"a story about {name} " * 10}]
        for name in ("alpha", "beta", "gamma")
    }
    last: dict[str, int] = {}  # each conversation's previous prompt: the prefix its next turn shares
    for rnd in range(3):
        for name, messages in convs.items():
            answer, prompt, cached = turn(client, model, messages)
            if name in last:  # every later turn reads again only its new message
                assert cached >= 0.95 * last[name], (name, rnd, cached, last[name])
            last[name] = prompt
            messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": f"more {rnd}"}]


def test_the_anthropic_dialect_reports_cache_reads(daemon: DaemonProcess, client: openai.OpenAI) -> None:
    c = anthropic.Anthropic(base_url=daemon.url, api_key="unused", max_retries=0)
    kw: Any = {"model": "gguf/tiny", "max_tokens": 4, "extra_body": {"temperature": 0}}
    c.messages.create(messages=HISTORY, **kw)
    again = c.messages.create(
        messages=[*HISTORY, {"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}], **kw
    )
    assert again.usage.cache_read_input_tokens and again.usage.cache_read_input_tokens > 20
