"""Legacy completions (`POST /v1/completions`) through the official `openai` SDK against a real
daemon: fill-in-the-middle on a tiny GGUF that has FIM tokens (the prompt checked against its
tokenizer and the answer against llama.cpp run directly), raw completions with echo, n and
several prompts, streaming, pass-through to an OpenAI-type upstream, and the refusals: a model
without FIM tokens, a chat-only provider, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.daemon import DaemonProcess, serving
from tests.fixtures.fake_anthropic import API_KEY, FakeAnthropicServer
from tests.fixtures.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.process

openai = pytest.importorskip("openai")
llama_cpp = pytest.importorskip("llama_cpp", reason="the 'local' extra is not installed")

PREFIX = "def add(a, b):\n    return "
SUFFIX = "\n\nprint(add(1, 2))\n"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures.tiny_gguf import write_tiny_llama

    home: Path = tmp_path_factory.mktemp("completions")
    write_tiny_llama(home / "coder.gguf", fim=True, seed=3)
    write_tiny_llama(home / "plain.gguf")
    return home


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAIServer]:
    up = FakeOpenAIServer().start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def daemon(home: Path, upstream: FakeOpenAIServer) -> Iterator[DaemonProcess]:
    claude = FakeAnthropicServer().start()
    config = f"""
[cache]
mode = "off"

[providers.gguf]
type = "llama_cpp"
discover_models = false
parallel = 4
models = {{ coder = "{home}/coder.gguf", plain = "{home}/plain.gguf" }}

[providers.up]
type = "openai"
base_url = "{upstream.base_url}"
api_key = "sk-test"
discover_models = false
models = ["gpt-test"]

[providers.claude]
type = "anthropic"
base_url = "{claude.base_url}"
api_key = "{API_KEY}"
discover_models = false
"""
    try:
        with serving(home, config) as d:
            yield d
    finally:
        claude.stop()


@pytest.fixture
def client(daemon: DaemonProcess) -> Any:
    return openai.OpenAI(base_url=f"{daemon.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def direct(home: Path) -> Iterator[Any]:
    """The FIM model loaded by llama.cpp itself, apart from aigw."""
    llm = llama_cpp.Llama(model_path=str(home / "coder.gguf"), n_ctx=512, verbose=False)
    yield llm
    llm.close()


def fim_prompt(llm: Any) -> list[int]:
    """The infill prompt as llama.cpp's server builds it, from the tokenizer and the GGUF's FIM ids."""
    vocab = llm._model.vocab
    pre, suf, mid = (f(vocab) for f in (llama_cpp.llama_vocab_fim_pre, llama_cpp.llama_vocab_fim_suf,
                                         llama_cpp.llama_vocab_fim_mid))  # fmt: skip
    assert min(pre, suf, mid) >= 0

    def plain(s: str) -> list[int]:
        return list(llm.tokenize(s.encode(), add_bos=False, special=False))

    return [llm.token_bos(), pre, *plain(PREFIX), suf, *plain(SUFFIX), mid]


def greedy(llm: Any, tokens: list[int], n: int) -> str:
    llm.reset()
    out = llm.create_completion(prompt=tokens, max_tokens=n, temperature=0.0, top_k=1)
    text: str = out["choices"][0]["text"]
    return text


def test_fill_in_the_middle_uses_the_models_fim_tokens(client: Any, direct: Any) -> None:
    tokens = fim_prompt(direct)
    got = client.completions.create(
        model="gguf/coder", prompt=PREFIX, suffix=SUFFIX, max_tokens=10, temperature=0
    )
    assert got.object == "text_completion" and got.id.startswith("cmpl-")
    assert got.usage.prompt_tokens == len(tokens)  # exactly the FIM prompt: no template, no extras
    assert got.usage.completion_tokens == 10 and got.choices[0].finish_reason == "length"
    assert got.choices[0].text == greedy(direct, tokens, 10)  # the model read that prompt


def test_fill_in_the_middle_streams(client: Any) -> None:
    whole = client.completions.create(
        model="gguf/coder", prompt=PREFIX, suffix=SUFFIX, max_tokens=10, temperature=0
    )
    chunks = list(client.completions.create(
        model="gguf/coder", prompt=PREFIX, suffix=SUFFIX, max_tokens=10, temperature=0, stream=True,
        stream_options={"include_usage": True},
    ))  # fmt: skip
    assert all(c.object == "text_completion" for c in chunks)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text and len([c for c in chunks if c.choices]) > 2
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 10


def test_a_model_without_fim_tokens_refuses_a_suffix(client: Any, direct: Any) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="gguf/plain", prompt=PREFIX, suffix=SUFFIX, max_tokens=4)
    body = err.value.body
    assert body["param"] == "suffix" and "fill-in-the-middle" in body["message"]
    with pytest.raises(openai.BadRequestError):  # streamed too, before any byte
        list(client.completions.create(model="gguf/plain", prompt="x", suffix="y", max_tokens=4, stream=True))
    ok = client.completions.create(model="gguf/plain", prompt=PREFIX, max_tokens=4)  # without: fine
    assert ok.usage.completion_tokens == 4


def test_raw_completion_reads_the_prompt_as_it_is(client: Any, direct: Any) -> None:
    prompt = "Once upon a time"
    got = client.completions.create(model="gguf/coder", prompt=prompt, max_tokens=8, temperature=0)
    tokens = list(direct.tokenize(prompt.encode(), add_bos=True, special=True))
    assert got.usage.prompt_tokens == len(tokens)
    assert got.choices[0].text == greedy(direct, tokens, 8)
    echoed = client.completions.create(
        model="gguf/coder", prompt=prompt, max_tokens=8, temperature=0, echo=True
    )
    assert echoed.choices[0].text == prompt + got.choices[0].text
    by_ids = client.completions.create(model="gguf/coder", prompt=tokens, max_tokens=8, temperature=0)
    assert by_ids.choices[0].text == got.choices[0].text


def test_several_prompts_and_n_make_every_choice(client: Any) -> None:
    prompts = ["The cat", "A dog and"]
    alone = [
        client.completions.create(model="gguf/coder", prompt=p, max_tokens=6, temperature=0).choices[0].text
        for p in prompts
    ]
    got = client.completions.create(model="gguf/coder", prompt=prompts, n=2, max_tokens=6, temperature=0)
    assert [c.index for c in got.choices] == [0, 1, 2, 3]
    assert [c.text for c in got.choices] == [alone[0], alone[0], alone[1], alone[1]]
    assert got.usage.completion_tokens == 24
    streamed: dict[int, str] = {}
    finished: set[int] = set()
    for chunk in client.completions.create(
        model="gguf/coder", prompt=prompts, n=2, max_tokens=6, temperature=0, stream=True
    ):
        for c in chunk.choices:
            streamed[c.index] = streamed.get(c.index, "") + c.text
            if c.finish_reason:
                finished.add(c.index)
    assert streamed == {c.index: c.text for c in got.choices} and finished == {0, 1, 2, 3}


def test_pass_through_to_an_openai_compatible_upstream(client: Any, upstream: FakeOpenAIServer) -> None:
    got = client.completions.create(model="up/gpt-test", prompt="hi", suffix="there", max_tokens=5)
    assert got.choices[0].text == "echo: hi|there" and got.object == "text_completion"
    sent = httpx.get(f"http://127.0.0.1:{upstream.port}/_last").json()["body"]
    assert sent["prompt"] == "hi" and sent["suffix"] == "there" and sent["model"] == "gpt-test"
    streamed = client.completions.create(model="up/gpt-test", prompt="hi", max_tokens=5, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "echo: hi"


def test_a_chat_only_provider_is_refused_naming_the_endpoint(client: Any) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="claude/claude-test", prompt="hi", max_tokens=5)
    assert "/v1/completions" in err.value.body["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gguf/coder", "prompt": []}, "prompt"),
        ({"model": "gguf/coder", "prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"model": "gguf/coder", "prompt": "x", "n": 0}, "n"),
        ({"model": "gguf/coder", "prompt": 5}, "prompt"),
        ({"model": "gguf/coder", "prompt": "x", "logprobs": 2}, "logprobs"),
        (
            {"model": "gguf/coder", "prompt": "x", "response_format": {"type": "json_object"}},
            "response_format",
        ),
        ({"model": "gguf/coder", "prompt": [[1, 99999]]}, "prompt"),
        ({"model": "gguf/coder", "prompt": [1, 2], "echo": True}, "echo"),
        ({"model": "gguf/coder", "prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(daemon: DaemonProcess, body: dict[str, Any], param: str) -> None:
    r = httpx.post(f"{daemon.url}/v1/completions", json=body, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    ok = httpx.post(
        f"{daemon.url}/v1/completions", json={"model": "gguf/coder", "prompt": "x", "max_tokens": 2}
    )
    assert ok.status_code == 200  # and the daemon keeps serving
