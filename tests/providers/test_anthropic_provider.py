"""The anthropic provider against a fake Anthropic server: directly, and end to end behind a real
aigw process driven by the official openai SDK."""

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
from aigw.providers.anthropic import TYPE as TYPE_ANTHROPIC
from aigw.providers.anthropic.provider import AnthropicProvider
from aigw.providers.remote import HttpProviderConfig as ProviderConfig
from tests.fixtures.daemon import DaemonProcess, free_port, write_config
from tests.fixtures.fake_anthropic import API_KEY, MODELS, FakeAnthropicServer

T = TypeVar("T")
MSG = [{"role": "user", "content": "hello claude"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropicServer]:
    server = FakeAnthropicServer().start()
    yield server
    server.stop()


def last(fake: FakeAnthropicServer) -> dict[str, Any]:
    return dict(httpx.get(f"http://127.0.0.1:{fake.port}/_last").json())


def with_provider(
    fake: FakeAnthropicServer,
    fn: Callable[[AnthropicProvider], Awaitable[T]],
    environ: dict[str, str] | None = None,
    **cfg: Any,
) -> T:
    cfg.setdefault("api_key", API_KEY)
    config = ProviderConfig(type="anthropic", base_url=fake.base_url, **cfg)

    async def run() -> T:
        provider = AnthropicProvider("claude", config, TYPE_ANTHROPIC.connection(config, environ or {}))
        try:
            return await fn(provider)
        finally:
            await provider.aclose()

    return asyncio.run(run())


def request(model: str, **body: Any) -> ChatRequest:
    return ChatRequest(body={"model": "alias", "messages": MSG, **body}, model=model)


async def collect(provider: AnthropicProvider, req: ChatRequest) -> list[ChatChunk]:
    return [c async for c in provider.stream_chat(req)]


# --- the provider against the fake ----------------------------------------------------------


def test_chat(fake: FakeAnthropicServer) -> None:
    req = request("claude-test", messages=[{"role": "system", "content": "Be brief."}, *MSG], user="u1")
    resp = with_provider(fake, lambda p: p.chat(req))
    assert resp.choices[0]["message"] == {"role": "assistant", "content": "echo: hello claude"}
    assert resp.choices[0]["finish_reason"] == "stop"
    assert resp.model == "claude-test" and resp.id == "msg_fake"
    assert resp.usage is not None and resp.usage.completion_tokens == 3
    seen = last(fake)
    assert seen["headers"]["x-api-key"] == API_KEY
    assert seen["headers"]["anthropic-version"] == "2023-06-01"
    assert seen["body"]["system"] == "Be brief."
    assert seen["body"]["max_tokens"] == 4096 and seen["body"]["metadata"] == {"user_id": "u1"}
    assert "stream" not in seen["body"]


def test_stream(fake: FakeAnthropicServer) -> None:
    chunks = with_provider(fake, lambda p: collect(p, request("cached")))
    assert chunks[0].choices[0]["delta"]["role"] == "assistant"
    text = "".join(c.choices[0]["delta"].get("content") or "" for c in chunks if c.choices)
    assert text == "echo: hello claude"
    assert [c.choices[0]["finish_reason"] for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].is_usage_only and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert chunks[-1].usage.extra == {"prompt_tokens_details": {"cached_tokens": 5}}
    assert last(fake)["body"]["stream"] is True


def test_tool_call(fake: FakeAnthropicServer) -> None:
    resp = with_provider(fake, lambda p: p.chat(request("tool-call", tools=[WEATHER])))
    choice = resp.choices[0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    call = choice["message"]["tool_calls"][0]
    assert call["id"] == "toolu_01" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert last(fake)["body"]["tools"][0]["input_schema"]["required"] == ["city"]


def test_tool_call_stream_deltas(fake: FakeAnthropicServer) -> None:
    chunks = with_provider(fake, lambda p: collect(p, request("tool-call", tools=[WEATHER])))
    calls = [tc for c in chunks if c.choices for tc in c.choices[0]["delta"].get("tool_calls", [])]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_01",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(tc["index"] == 0 for tc in calls)
    assert json.loads("".join(tc["function"]["arguments"] for tc in calls)) == {"city": "Paris"}
    assert [c.choices[0]["finish_reason"] for c in chunks if c.choices][-1] == "tool_calls"


def test_json_mode(fake: FakeAnthropicServer) -> None:
    fmt = {"type": "json_object"}
    resp = with_provider(fake, lambda p: p.chat(request("claude-test", response_format=fmt)))
    assert json.loads(resp.choices[0]["message"]["content"]) == {"echo": "hello claude"}
    assert resp.choices[0]["finish_reason"] == "stop"
    chunks = with_provider(fake, lambda p: collect(p, request("claude-test", response_format=fmt)))
    text = "".join(c.choices[0]["delta"].get("content") or "" for c in chunks if c.choices)
    assert json.loads(text) == {"echo": "hello claude"}


def test_thinking_blocks_are_dropped(fake: FakeAnthropicServer) -> None:
    resp = with_provider(fake, lambda p: p.chat(request("thinking")))
    assert resp.choices[0]["message"]["content"] == "echo: hello claude"
    chunks = with_provider(fake, lambda p: collect(p, request("thinking")))
    assert (
        "".join(c.choices[0]["delta"].get("content") or "" for c in chunks if c.choices)
        == "echo: hello claude"
    )


@pytest.mark.parametrize(
    "case",
    [
        ("overloaded", 529, True, None, "overloaded_error"),
        ("rate-limited", 429, True, 7.0, "rate_limit_error"),
    ],
    ids=["overloaded", "rate-limited"],
)
@pytest.mark.parametrize("stream", [False, True])
def test_error_bodies(
    fake: FakeAnthropicServer, case: tuple[str, int, bool, float | None, str], stream: bool
) -> None:
    model, status, retryable, retry_after, code = case
    call = (lambda p: collect(p, request(model))) if stream else (lambda p: p.chat(request(model)))
    with pytest.raises(UpstreamStatusError) as e:
        with_provider(fake, call)
    assert (e.value.upstream_status, e.value.retryable, e.value.retry_after) == (
        status,
        retryable,
        retry_after,
    )
    assert e.value.code == code


def test_wrong_key_is_an_auth_failure(fake: FakeAnthropicServer) -> None:
    with pytest.raises(UpstreamStatusError) as e:
        with_provider(fake, lambda p: p.chat(request("claude-test")), api_key="sk-wrong")
    assert e.value.upstream_status == 401 and not e.value.retryable and e.value.status_code == 502
    assert "check the API key of providers.claude" in e.value.message
    assert "sk-wrong" not in e.value.message


def test_key_from_environment(fake: FakeAnthropicServer) -> None:
    env = {"CLAUDE_API_KEY": API_KEY}
    resp = with_provider(fake, lambda p: p.chat(request("claude-test")), env, api_key=None)
    assert resp.choices[0]["message"]["content"] == "echo: hello claude"
    env = {"ANTHROPIC_API_KEY": API_KEY, "CLAUDE_API_KEY": "sk-other"}
    with_provider(fake, lambda p: p.chat(request("claude-test")), env, api_key=None)
    assert last(fake)["headers"]["x-api-key"] == API_KEY
    with pytest.raises(UpstreamStatusError):  # an explicit api_key_env wins over the fallbacks
        with_provider(fake, lambda p: p.chat(request("claude-test")), env, api_key=None, api_key_env="MY_KEY")


def test_error_event_mid_stream(fake: FakeAnthropicServer) -> None:
    got: list[ChatChunk] = []

    async def run(p: AnthropicProvider) -> None:
        async for c in p.stream_chat(request("stream-error")):
            got.append(c)

    with pytest.raises(UpstreamStatusError) as e:
        with_provider(fake, run)
    assert e.value.upstream_status == 529 and e.value.retryable
    assert any(c.choices and c.choices[0]["delta"].get("content") == "echo:" for c in got)


def test_cut_stream(fake: FakeAnthropicServer) -> None:
    with pytest.raises(UpstreamProtocolError, match="stream ended early"):
        with_provider(fake, lambda p: collect(p, request("cut")))


def test_list_models_follows_pages(fake: FakeAnthropicServer) -> None:
    models = with_provider(fake, lambda p: p.list_models(), models=["claude-pinned"])
    assert [m.id for m in models] == ["claude-pinned", *MODELS]
    assert all(m.owned_by == "claude" for m in models)
    assert models[1].created == 1739923200
    models = with_provider(fake, lambda p: p.list_models(), models=["a"], discover_models=False)
    assert [m.id for m in models] == ["a"]


def test_refused_field_never_reaches_upstream(fake: FakeAnthropicServer) -> None:
    before = last(fake)["body"]
    with pytest.raises(CapabilityError) as e:
        with_provider(fake, lambda p: p.chat(request("claude-test", n=3)))
    assert e.value.param == "n"
    with pytest.raises(CapabilityError):
        with_provider(fake, lambda p: collect(p, request("claude-test", logit_bias={"1": 5})))
    assert last(fake)["body"] == before


def test_embed_is_refused(fake: FakeAnthropicServer) -> None:
    with pytest.raises(CapabilityError):
        with_provider(fake, lambda p: p.embed(EmbedRequest(body={"input": "x"}, model="m")))


def test_unreachable_upstream() -> None:
    config = ProviderConfig(type="anthropic", base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="k")

    async def run() -> None:
        p = AnthropicProvider("claude", config, TYPE_ANTHROPIC.connection(config, {}))
        try:
            await p.chat(request("claude-test"))
        finally:
            await p.aclose()

    with pytest.raises(UpstreamConnectError):
        asyncio.run(run())


# --- end to end: a real aigw process and the openai SDK --------------------------------------


@pytest.fixture(scope="module")
def claude_daemon(
    fake: FakeAnthropicServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    home: Path = tmp_path_factory.mktemp("aigw-claude")
    port = free_port()
    write_config(
        home,
        f"""
[server]
port = {port}
shutdown_grace_s = 5

[routing]
retries = 0

[providers.claude]
type = "anthropic"
base_url = "{fake.base_url}"
api_key = "{API_KEY}"
""",
    )
    d = DaemonProcess(home, port).start()
    yield d
    code = d.terminate()
    log = d.log()
    assert code == 0, log
    assert "Traceback" not in log, log


@pytest.fixture
def client(claude_daemon: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=claude_daemon.url + "/v1", api_key="unused", max_retries=0)


@pytest.mark.process
def test_sdk_chat(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="claude/claude-test", messages=MSG)
    resp = raw.parse()
    assert resp.choices[0].message.content == "echo: hello claude"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.completion_tokens == 3
    assert raw.headers["x-aigw-provider"] == "claude"
    assert raw.headers["x-aigw-model"] == "claude-test"


@pytest.mark.process
def test_sdk_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="claude/claude-test",
        messages=MSG,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello claude"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


@pytest.mark.process
def test_sdk_models(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {f"claude/{m}" for m in MODELS} <= ids


@pytest.mark.process
def test_sdk_tools(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="claude/tool-call", messages=MSG, tools=[WEATHER])
    assert resp.choices[0].finish_reason == "tool_calls"
    call = resp.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    stream = client.chat.completions.create(
        model="claude/tool-call",
        messages=MSG,
        tools=[WEATHER],
        stream=True,
    )
    args, names = "", []
    finish = None
    for c in stream:
        for tc in c.choices[0].delta.tool_calls or [] if c.choices else []:
            if tc.function and tc.function.name:
                names.append(tc.function.name)
            args += (tc.function.arguments or "") if tc.function else ""
        if c.choices and c.choices[0].finish_reason:
            finish = c.choices[0].finish_reason
    assert names == ["get_weather"] and json.loads(args) == {"city": "Paris"} and finish == "tool_calls"


@pytest.mark.process
def test_sdk_json_schema(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
    resp = client.chat.completions.create(
        model="claude/claude-test",
        messages=MSG,
        response_format={"type": "json_schema", "json_schema": {"name": "echo", "schema": schema}},
    )
    assert json.loads(resp.choices[0].message.content or "") == {"echo": "hello claude"}
    assert resp.choices[0].finish_reason == "stop"


@pytest.mark.process
def test_sdk_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="claude/rate-limited", messages=MSG)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="claude/overloaded", messages=MSG)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="claude/claude-test", messages=MSG, n=2)
    assert e.value.param == "n"


@pytest.mark.process
def test_sdk_stream_error_event(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="claude/stream-error", messages=MSG, stream=True)
    with pytest.raises(openai.APIError):
        list(stream)
