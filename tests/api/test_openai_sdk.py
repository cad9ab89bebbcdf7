"""The official openai SDK against a real aigw process in front of a fake OpenAI-compatible upstream."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.process

MSG = [{"role": "user", "content": "hello gateway"}]


@pytest.fixture
def client(daemon: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture
def aclient(daemon: DaemonProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0)


def last_upstream(upstream: FakeOpenAIServer) -> dict[str, object]:
    return dict(httpx.get(f"http://127.0.0.1:{upstream.port}/_last").json())


def test_chat_non_streaming(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=MSG)
    resp = raw.parse()
    assert resp.choices[0].message.content == "echo: hello gateway"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.total_tokens == 5
    assert raw.headers["x-aigw-provider"] == "fake"
    assert raw.headers["x-aigw-model"] == "gpt-test"
    assert float(raw.headers["x-aigw-overhead-ms"]) >= 0


def test_chat_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-test", messages=MSG, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello gateway"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


def test_stream_without_include_usage_has_no_usage_chunk(
    client: openai.OpenAI, upstream: FakeOpenAIServer
) -> None:
    chunks = list(client.chat.completions.create(model="gpt-test", messages=MSG, stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    # aigw still asked the upstream for usage (for its own accounting).
    body = last_upstream(upstream)["body"]
    assert isinstance(body, dict) and body["stream_options"] == {"include_usage": True}


def test_async_client_chat_and_stream(aclient: openai.AsyncOpenAI) -> None:
    async def run() -> tuple[str | None, str]:
        resp = await aclient.chat.completions.create(model="smart", messages=MSG)
        stream = await aclient.chat.completions.create(model="smart", messages=MSG, stream=True)
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        await aclient.close()
        return resp.choices[0].message.content, "".join(parts)

    content, streamed = asyncio.run(run())
    assert content == streamed == "echo: hello gateway"


def test_embeddings(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(model="text-embed", input=["a", "bb"])
    assert [d.index for d in resp.data] == [0, 1]
    assert len(resp.data[0].embedding) == 8
    assert resp.usage.prompt_tokens == 2


def test_models_list_has_aliases_and_provider_models(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"smart", "fake/gpt-test", "fake/text-embed", "other/shared-model"} <= ids


def test_model_resolution_forms(client: openai.OpenAI, upstream: FakeOpenAIServer) -> None:
    raw = client.chat.completions.with_raw_response.create(model="other/shared-model", messages=MSG)
    assert raw.headers["x-aigw-provider"] == "other"
    raw = client.chat.completions.with_raw_response.create(
        model="shared-model", messages=MSG, extra_body={"provider": "fake"}
    )
    assert raw.headers["x-aigw-provider"] == "fake"
    body = last_upstream(upstream)["body"]
    assert isinstance(body, dict) and "provider" not in body and body["model"] == "shared-model"
    raw = client.chat.completions.with_raw_response.create(model="smart", messages=MSG)
    assert (raw.headers["x-aigw-provider"], raw.headers["x-aigw-model"]) == ("fake", "gpt-test")


def test_bare_model_served_by_two_providers_is_ambiguous(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="shared-model", messages=MSG)
    assert "fake/shared-model" in e.value.message and "other/shared-model" in e.value.message


def test_unknown_fields_pass_through(client: openai.OpenAI, upstream: FakeOpenAIServer) -> None:
    client.chat.completions.create(
        model="gpt-test", messages=MSG, temperature=0.3, extra_body={"top_k": 7, "repetition_penalty": 1.1}
    )
    body = last_upstream(upstream)["body"]
    assert isinstance(body, dict)
    assert (body["top_k"], body["repetition_penalty"], body["temperature"]) == (7, 1.1, 0.3)


def test_unknown_model_is_not_found_listing_known(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=MSG)
    assert e.value.code == "model_not_found"
    assert "smart" in e.value.message and "fake/gpt-test" in e.value.message


def test_invalid_field_is_bad_request_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-test", messages=MSG, temperature=5)
    assert e.value.param == "temperature"


@pytest.mark.parametrize(
    ("model", "exc", "status"),
    [
        ("fail-500", openai.InternalServerError, 502),
        ("fail-503", openai.InternalServerError, 502),
        ("fail-429", openai.RateLimitError, 429),
        ("fail-401", openai.InternalServerError, 502),
        ("fail-400", openai.BadRequestError, 400),
        ("garbage", openai.InternalServerError, 502),
    ],
)
def test_upstream_failures_become_typed_sdk_errors(
    client: openai.OpenAI, model: str, exc: type[openai.APIStatusError], status: int
) -> None:
    with pytest.raises(exc) as e:
        client.chat.completions.create(model=f"fake/{model}", messages=MSG)
    assert e.value.status_code == status
    assert e.value.response.headers["x-aigw-provider"] == "fake"
    assert "sk-test-secret" not in e.value.response.text


def test_upstream_timeout_is_504(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeOpenAIServer
) -> None:
    from tests.fixtures.daemon import free_port, write_config

    home = tmp_path_factory.mktemp("timeout-home")
    port = free_port()
    write_config(
        home,
        f"""
[server]
port = {port}
[providers.fake]
base_url = "{upstream.base_url}"
type = "openai"
first_byte_timeout_s = 0.3
""",
    )
    d = DaemonProcess(home, port).start()
    try:
        c = openai.OpenAI(base_url=d.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as e:
            c.chat.completions.create(model="fake/slow-2000", messages=MSG)
        assert e.value.status_code == 504
        assert c.chat.completions.create(model="fake/gpt-test", messages=MSG).choices
    finally:
        assert d.terminate() == 0


def test_stream_broken_midway_surfaces_as_sdk_error(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="fake/break-stream", messages=MSG, stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_stream_error_before_first_chunk_is_an_http_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fake/fail-500", messages=MSG, stream=True)


def test_daemon_still_serves_after_failures(client: openai.OpenAI) -> None:
    assert client.chat.completions.create(model="gpt-test", messages=MSG).choices[0].message.content


def test_base_url_without_v1_works_too(daemon: DaemonProcess) -> None:
    c = openai.OpenAI(base_url=daemon.url, api_key="unused", max_retries=0)
    assert c.chat.completions.create(model="gpt-test", messages=MSG).choices[0].message.content
    assert c.embeddings.create(model="text-embed", input="x").data
    assert "smart" in {m.id for m in c.models.list()}


def test_valid_openai_shapes_and_upstream_extensions_pass(
    client: openai.OpenAI, upstream: FakeOpenAIServer
) -> None:
    legacy = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "function", "name": "f", "content": "42"},
        {"role": "user", "content": "and?"},
    ]
    resp = client.chat.completions.create(
        model="gpt-test",
        messages=legacy,
        stop=["a", "b", "c", "d", "e"],  # type: ignore[arg-type]
        extra_body={"response_format": {"type": "structural_tag", "structures": []}},
    )
    assert resp.choices[0].message.content == "echo: and?"
    body = last_upstream(upstream)["body"]
    assert isinstance(body, dict) and body["response_format"]["type"] == "structural_tag"


def test_malformed_upstream_answer_is_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="fake/bad-usage", messages=MSG)
    assert e.value.status_code == 502 and "malformed" in e.value.message


def test_upstream_error_event_mid_stream_reaches_the_sdk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="fake/error-event", messages=MSG, stream=True)
    with pytest.raises(openai.APIError) as e:
        for _ in stream:
            pass
    assert "model overloaded" in str(e.value)


def test_empty_events_and_comments_are_skipped(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="fake/empty-events", messages=MSG, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello gateway"


def test_stream_usage_off_sends_the_client_request_unchanged(
    client: openai.OpenAI, upstream: FakeOpenAIServer
) -> None:
    list(client.chat.completions.create(model="nousage/gpt-test", messages=MSG, stream=True))
    body = last_upstream(upstream)["body"]
    assert isinstance(body, dict) and "stream_options" not in body
