"""MLX through aigw's HTTP API with the openai SDK: real mlx-lm (on the CPU here) on a generated model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fixtures.daemon import DaemonProcess, free_port, write_config

pytestmark = pytest.mark.process

pytest.importorskip("mlx_lm", reason="the 'mlx' extra is not installed")

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def mlx_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    from tests.fixtures.tiny_mlx import write_tiny_mlx

    home = tmp_path_factory.mktemp("mlx-home")
    write_tiny_mlx(home / "models" / "tiny-mlx")  # found in the models dir, as a pulled model would be
    write_tiny_mlx(home / "models" / "tiny-coder", fim=True, seed=5)
    port = free_port()
    write_config(home, f'[server]\nport = {port}\n[providers.mlx]\ntype = "mlx"\n')
    d = DaemonProcess(home, port).start()
    yield d
    assert d.terminate() == 0
    assert "Traceback" not in d.log(), d.log()


@pytest.fixture
def client(mlx_daemon: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=mlx_daemon.url + "/v1", api_key="unused", max_retries=0)


def test_model_in_the_models_dir_is_served(client: openai.OpenAI) -> None:
    assert "mlx/tiny-mlx" in {m.id for m in client.models.list()}


def test_chat_stream_and_usage(client: openai.OpenAI) -> None:
    a = client.chat.completions.create(model="tiny-mlx", messages=MSG, max_tokens=12, temperature=0)
    assert a.choices[0].finish_reason == "length"
    assert a.usage is not None and a.usage.completion_tokens == 12
    assert a.usage.prompt_tokens == len(b"<s>user: hi\nassistant:") - 2  # <s> is one token
    chunks = list(
        client.chat.completions.create(
            model="tiny-mlx",
            messages=MSG,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == a.choices[0].message.content
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12


def test_stop_and_seed(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model="tiny-mlx", messages=MSG, max_tokens=30, temperature=0)
    text = full.choices[0].message.content or ""
    stop = text[8:10]
    cut = client.chat.completions.create(
        model="tiny-mlx", messages=MSG, max_tokens=30, temperature=0, stop=[stop]
    )
    assert (
        cut.choices[0].finish_reason == "stop" and cut.choices[0].message.content == text[: text.index(stop)]
    )
    runs = [
        client.chat.completions.create(model="tiny-mlx", messages=MSG, max_tokens=16, temperature=1.0, seed=7)
        for _ in range(2)
    ]
    assert runs[0].choices[0].message.content == runs[1].choices[0].message.content


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"response_format": {"type": "grammar"}}, "response_format"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tool_choice"),
        ({"extra_body": {"mirostat": 2}}, "mirostat"),
    ],
)
def test_what_mlx_cannot_honour_is_refused(client: openai.OpenAI, kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-mlx", messages=MSG, max_tokens=2, **kwargs)
    assert e.value.param == param


def test_disconnect_stops_mlx_generation(mlx_daemon: DaemonProcess) -> None:
    def state() -> dict[str, Any]:
        loaded = mlx_daemon.aget("/admin/local").json()["loaded"]
        return next((m for m in loaded if m["model"] == "mlx/tiny-mlx"), {})

    before = state().get("tokens_generated", 0)
    body = {"model": "tiny-mlx", "messages": MSG, "max_tokens": 1900, "temperature": 0, "stream": True}
    with httpx.stream("POST", mlx_daemon.url + "/v1/chat/completions", json=body, timeout=60) as resp:
        for line in resp.iter_lines():
            if '"content":"' in line:
                break
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and state().get("state") != "idle":
        time.sleep(0.05)
    assert state()["tokens_generated"] - before < 500


def test_anthropic_count_tokens_is_the_mlx_tokenizers(mlx_daemon: DaemonProcess) -> None:
    body: dict[str, Any] = {"model": "tiny-mlx", "messages": MSG}
    counted = httpx.post(mlx_daemon.url + "/v1/messages/count_tokens", json=body, timeout=60).json()
    answer = httpx.post(mlx_daemon.url + "/v1/messages", json={**body, "max_tokens": 1}, timeout=60).json()
    assert counted["input_tokens"] == answer["usage"]["input_tokens"] > 0


def test_fill_in_the_middle_with_the_tokenizers_fim_tokens(
    mlx_daemon: DaemonProcess, client: openai.OpenAI
) -> None:
    import mlx_lm
    from tokenizers import Tokenizer

    path = mlx_daemon.home / "models" / "tiny-coder"
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    pre, suf, mid = (tok.token_to_id(t) for t in ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"))
    prefix, suffix = "def f(x):\n    return ", "\n\nf(2)\n"
    tokens = [pre, *tok.encode(prefix).ids, suf, *tok.encode(suffix).ids, mid]
    got = client.completions.create(
        model="tiny-coder", prompt=prefix, suffix=suffix, max_tokens=8, temperature=0
    )
    assert got.usage is not None and got.usage.prompt_tokens == len(tokens)
    model, tokenizer = mlx_lm.load(str(path))[:2]
    assert got.choices[0].text == mlx_lm.generate(model, tokenizer, prompt=tokens, max_tokens=8)
    streamed = client.completions.create(
        model="tiny-coder", prompt=prefix, suffix=suffix, max_tokens=8, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == got.choices[0].text
    raw = client.completions.create(model="tiny-mlx", prompt="Once", max_tokens=4, temperature=0, echo=True)
    assert raw.choices[0].text.startswith("Once")
    assert raw.usage is not None and raw.usage.completion_tokens == 4
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="tiny-mlx", prompt=prefix, suffix=suffix, max_tokens=4)
    assert err.value.body["param"] == "suffix"  # type: ignore[index]
