"""The gemini provider against a fake Gemini server: directly, and end to end behind a real aigw
process driven by the official openai SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import pytest

from aigw.domain import ChatChunk, ChatRequest, EmbedRequest
from aigw.errors import CapabilityError, UpstreamConnectError, UpstreamProtocolError, UpstreamStatusError
from aigw.providers.gemini import TYPE as TYPE_GEMINI
from aigw.providers.gemini.provider import GeminiProvider
from aigw.providers.remote import HttpProviderConfig as ProviderConfig
from tests.fixtures.daemon import DaemonProcess, free_port, write_config
from tests.fixtures.fake_gemini import KEY, MODELS, FakeGeminiServer

T = TypeVar("T")
MSG = [{"role": "user", "content": "hello gemini"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGeminiServer]:
    server = FakeGeminiServer().start()
    yield server
    server.stop()


def last(fake: FakeGeminiServer) -> dict[str, Any]:
    return dict(httpx.get(f"http://127.0.0.1:{fake.port}/_last").json())


def with_provider(
    fake: FakeGeminiServer,
    fn: Callable[[GeminiProvider], Awaitable[T]],
    environ: dict[str, str] | None = None,
    **cfg: Any,
) -> T:
    if "api_key_env" not in cfg:
        cfg.setdefault("api_key", KEY)
    config = ProviderConfig(type="gemini", base_url=fake.base_url, **cfg)

    async def run() -> T:
        provider = GeminiProvider("gem", config, TYPE_GEMINI.connection(config, environ or {}))
        try:
            return await fn(provider)
        finally:
            await provider.aclose()

    return asyncio.run(run())


def chat(fake: FakeGeminiServer, model: str, **body: Any) -> Any:
    req = ChatRequest({"model": model, "messages": MSG, **body}, model)
    return with_provider(fake, lambda p: p.chat(req))


def stream(fake: FakeGeminiServer, model: str, **body: Any) -> list[ChatChunk]:
    req = ChatRequest({"model": model, "messages": MSG, "stream": True, **body}, model)

    async def run(p: GeminiProvider) -> list[ChatChunk]:
        return [c async for c in p.stream_chat(req)]

    return with_provider(fake, run)


# -- the provider against the fake --------------------------------------------------------------


def test_chat(fake: FakeGeminiServer) -> None:
    resp = chat(fake, "gemini-test", temperature=0.1, max_tokens=50, stop=["zz"])
    assert resp.choices[0]["message"] == {"role": "assistant", "content": "echo: hello gemini"}
    assert resp.choices[0]["finish_reason"] == "stop"
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (2, 3)
    seen = last(fake)
    assert seen["path"] == "/v1beta/models/gemini-test:generateContent"
    assert seen["headers"]["x-goog-api-key"] == KEY
    assert seen["body"]["generationConfig"] == {
        "temperature": 0.1,
        "maxOutputTokens": 50,
        "stopSequences": ["zz"],
    }


def test_max_tokens_and_candidates(fake: FakeGeminiServer) -> None:
    resp = chat(fake, "gemini-test", max_tokens=1, n=2)
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in resp.choices] == [
        (0, "echo:", "length"),
        (1, "echo:", "length"),
    ]


def test_stream(fake: FakeGeminiServer) -> None:
    chunks = stream(fake, "gemini-test")
    assert last(fake)["path"] == "/v1beta/models/gemini-test:streamGenerateContent"
    assert last(fake)["query"] == {"alt": "sse"}
    assert chunks[0].choices[0]["delta"]["role"] == "assistant"
    text = "".join(c.choices[0]["delta"].get("content") or "" for c in chunks if c.choices)
    assert text == "echo: hello gemini"
    assert [c.choices[0]["finish_reason"] for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].is_usage_only and chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 5


def test_tool_call_round_trip(fake: FakeGeminiServer) -> None:
    resp = chat(fake, "tool-call", tools=[WEATHER], tool_choice="required")
    sent = last(fake)["body"]
    assert sent["tools"][0]["functionDeclarations"][0]["parameters"] == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    msg = resp.choices[0]["message"]
    assert resp.choices[0]["finish_reason"] == "tool_calls"
    call = msg["tool_calls"][0]
    assert call["id"].startswith("call_") and json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    history = [*MSG, msg, {"role": "tool", "tool_call_id": call["id"], "content": '{"temp": 21}'}]
    req = ChatRequest({"model": "tool-call", "messages": history, "tools": [WEATHER]}, "tool-call")
    final = with_provider(fake, lambda p: p.chat(req))
    assert final.choices[0]["message"]["content"] == 'tool said: {"temp":21}'
    parts = last(fake)["body"]["contents"][-1]["parts"]
    assert parts == [{"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}]


def test_stream_tool_call(fake: FakeGeminiServer) -> None:
    chunks = stream(fake, "tool-call", tools=[WEATHER])
    calls = [tc for c in chunks if c.choices for tc in c.choices[0]["delta"].get("tool_calls", [])]
    assert [(tc["index"], tc["function"]["name"]) for tc in calls] == [(0, "get_weather")]
    assert [c.choices[0]["finish_reason"] for c in chunks if c.choices][-1] == "tool_calls"


def test_blocked_and_safety(fake: FakeGeminiServer) -> None:
    blocked = chat(fake, "blocked")
    assert blocked.choices[0]["finish_reason"] == "content_filter"
    assert blocked.choices[0]["message"]["content"] == ""
    assert chat(fake, "safety").choices[0]["finish_reason"] == "content_filter"
    reasons = [c.choices[0]["finish_reason"] for c in stream(fake, "blocked") if c.choices]
    assert reasons[-1] == "content_filter"


def test_thinking_tokens_count_as_completion(fake: FakeGeminiServer) -> None:
    resp = chat(fake, "thinker")
    assert resp.choices[0]["message"]["content"] == "echo: hello gemini"
    assert resp.usage is not None and resp.usage.completion_tokens == 8
    assert resp.usage.extra == {"completion_tokens_details": {"reasoning_tokens": 5}}


def test_embeddings(fake: FakeGeminiServer) -> None:
    req = EmbedRequest({"model": "embedding-001", "input": ["a", "bb"], "dimensions": 3}, "embedding-001")
    resp = with_provider(fake, lambda p: p.embed(req))
    assert [d["index"] for d in resp.data] == [0, 1] and len(resp.data[0]["embedding"]) == 3
    seen = last(fake)
    assert seen["path"] == "/v1beta/models/embedding-001:batchEmbedContents"
    assert seen["body"]["requests"][1] == {
        "model": "models/embedding-001",
        "content": {"parts": [{"text": "bb"}]},
        "outputDimensionality": 3,
    }


def test_list_models_follows_pages(fake: FakeGeminiServer) -> None:
    models = with_provider(fake, lambda p: p.list_models(), models=["configured-only"])
    assert [m.id for m in models] == ["configured-only", *MODELS]
    assert with_provider(fake, lambda p: p.list_models(), models=["x"], discover_models=False)[0].id == "x"


ERRORS = [
    ("exhausted", 429, True, 7.0),
    ("quota", 429, True, 12.0),
    ("unavailable", 503, True, None),
    ("invalid", 400, False, None),
]


@pytest.mark.parametrize(("model", "status", "retryable", "retry_after"), ERRORS)
def test_errors(
    fake: FakeGeminiServer, model: str, status: int, retryable: bool, retry_after: float | None
) -> None:
    with pytest.raises(UpstreamStatusError) as e:
        chat(fake, model)
    assert (e.value.upstream_status, e.value.retryable, e.value.retry_after) == (
        status,
        retryable,
        retry_after,
    )
    with pytest.raises(UpstreamStatusError) as e:
        stream(fake, model)
    assert e.value.upstream_status == status


def test_key_problems_hint_at_the_config(fake: FakeGeminiServer) -> None:
    with pytest.raises(UpstreamStatusError) as e:
        with_provider(fake, lambda p: p.list_models(), api_key="wrong")
    assert e.value.upstream_status in (401, 403) and not e.value.retryable and e.value.status_code == 502
    assert "check the API key of providers.gem" in e.value.message
    with pytest.raises(UpstreamStatusError) as e:
        with_provider(fake, lambda p: p.list_models(), api_key_env="NOT_SET")
    assert e.value.upstream_status == 403 and "providers.gem" in e.value.message


def test_key_falls_back_to_gemini_api_key(fake: FakeGeminiServer) -> None:
    config = ProviderConfig(type="gemini", base_url=fake.base_url)

    async def run() -> None:
        p = GeminiProvider("gem", config, TYPE_GEMINI.connection(config, {"GEMINI_API_KEY": KEY}))
        try:
            await p.list_models()
        finally:
            await p.aclose()

    asyncio.run(run())
    assert last(fake)["headers"]["x-goog-api-key"] == KEY


def test_garbage_cut_stream_and_error_event(fake: FakeGeminiServer) -> None:
    with pytest.raises(UpstreamProtocolError):
        chat(fake, "garbage")
    with pytest.raises(UpstreamProtocolError, match="ended early"):
        stream(fake, "cut")
    with pytest.raises(UpstreamStatusError) as e:
        stream(fake, "error-event")
    assert e.value.upstream_status == 503 and e.value.retryable and "overloaded" in e.value.message


def test_refused_field_never_reaches_the_upstream(fake: FakeGeminiServer) -> None:
    before = last(fake)
    with pytest.raises(CapabilityError) as e:
        chat(fake, "gemini-test", logit_bias={"1": 5})
    assert e.value.param == "logit_bias" and last(fake) == before


@pytest.mark.parametrize(
    ("model", "raw"),
    [("a/b", "a%2Fb"), ("../../etc", "..%2F..%2Fetc"), ("x?alt=json", "x%3Falt=json"), ("a#b", "a%23b")],
)
def test_model_names_cannot_change_the_path(fake: FakeGeminiServer, model: str, raw: str) -> None:
    chat(fake, model)
    seen = last(fake)
    assert seen["path"] == f"/v1beta/models/{raw}:generateContent" and seen["query"] == {}


def test_unreachable_upstream() -> None:
    config = ProviderConfig(type="gemini", base_url=f"http://127.0.0.1:{free_port()}/v1beta", api_key=KEY)

    async def run() -> None:
        p = GeminiProvider("gem", config, TYPE_GEMINI.connection(config, {}))
        try:
            await p.chat(ChatRequest({"model": "m", "messages": MSG}, "m"))
        finally:
            await p.aclose()

    with pytest.raises(UpstreamConnectError):
        asyncio.run(run())


# -- end to end: a real aigw process and the openai SDK -----------------------------------------


@pytest.fixture(scope="module")
def daemon(fake: FakeGeminiServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    home: Path = tmp_path_factory.mktemp("gemini-home")
    port = free_port()
    write_config(
        home,
        f"""
[server]
port = {port}

[providers.gem]
type = "gemini"
base_url = "{fake.base_url}"
api_key = "{KEY}"

[providers.badkey]
type = "gemini"
base_url = "{fake.base_url}"
api_key = "not-the-key"
discover_models = false
models = ["gemini-test"]
""",
    )
    d = DaemonProcess(home, port).start()
    yield d
    assert d.terminate() == 0, d.log()
    assert "Traceback" not in d.log(), d.log()


@pytest.fixture
def client(daemon: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0)


@pytest.mark.process
def test_sdk_chat(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gem/gemini-test", messages=MSG)  # type: ignore[arg-type]
    resp = raw.parse()
    assert resp.choices[0].message.content == "echo: hello gemini"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.total_tokens == 5
    assert raw.headers["x-aigw-provider"] == "gem"


@pytest.mark.process
def test_sdk_stream(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gem/gemini-test",
            messages=MSG,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello gemini"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


@pytest.mark.process
def test_sdk_tools(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="gem/tool-call", messages=MSG, tools=[WEATHER])  # type: ignore[arg-type,list-item]
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    follow = client.chat.completions.create(
        model="gem/tool-call",
        messages=[
            *MSG,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],  # type: ignore[list-item]
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert follow.choices[0].message.content == 'tool said: {"content":"sunny"}'


@pytest.mark.process
def test_sdk_stream_tools(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model="gem/tool-call", messages=MSG, tools=[WEATHER], stream=True)  # type: ignore[arg-type,list-item]
    )
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].function is not None and calls[0].function.name == "get_weather"


@pytest.mark.process
def test_sdk_embeddings(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(model="gem/embedding-001", input=["a", "bb"])  # SDK asks for base64
    assert [d.index for d in resp.data] == [0, 1]
    assert len(resp.data[0].embedding) == 8 and resp.data[1].embedding[0] == 0.25
    floats = client.embeddings.create(
        model="gem/embedding-001", input="abc", dimensions=4, encoding_format="float"
    )
    assert len(floats.data[0].embedding) == 4


@pytest.mark.process
def test_sdk_models_list(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {f"gem/{m}" for m in MODELS} | {"badkey/gemini-test"} <= ids


@pytest.mark.parametrize(
    ("model", "exc", "status"),
    [
        ("gem/exhausted", openai.RateLimitError, 429),
        ("gem/unavailable", openai.InternalServerError, 502),
        ("gem/invalid", openai.BadRequestError, 400),
        ("gem/garbage", openai.InternalServerError, 502),
        ("badkey/gemini-test", openai.InternalServerError, 502),
    ],
)
@pytest.mark.process
def test_sdk_errors(client: openai.OpenAI, model: str, exc: type[openai.APIStatusError], status: int) -> None:
    with pytest.raises(exc) as e:
        client.chat.completions.create(model=model, messages=MSG)  # type: ignore[arg-type]
    assert e.value.status_code == status
    assert KEY not in e.value.response.text


@pytest.mark.process
def test_sdk_refusal_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gem/gemini-test", messages=MSG, logprobs=True)  # type: ignore[arg-type]
    assert e.value.param == "logprobs"


@pytest.mark.process
def test_sdk_stream_broken_midway(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="gem/cut", messages=MSG, stream=True):  # type: ignore[arg-type]
            pass
