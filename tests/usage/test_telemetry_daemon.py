"""OpenTelemetry export from a real daemon: the official `openai` (and `anthropic`) SDKs against
`aigw serve` in front of the fake OpenAI upstream, exporting over OTLP to a stand-in collector
(tests/fixtures/otlp_collector.py, decoding with opentelemetry-proto). A chat, a streamed chat, an
embedding, an Anthropic Messages call and a refusal each arrive as one span with the GenAI
attributes; the GenAI client metrics arrive periodically; content only with log_content; gRPC
too; and a collector that is down fails no request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import DaemonProcess, free_port, serving
from tests.fixtures.fake_openai import FakeOpenAIServer
from tests.fixtures.otlp_collector import (
    SPAN_KIND_CLIENT,
    STATUS_ERROR,
    OtlpGrpcCollector,
    OtlpHttpCollector,
    Received,
    Span,
)

pytestmark = pytest.mark.process

openai = pytest.importorskip("openai")
pytest.importorskip("opentelemetry.sdk", reason="the 'telemetry' extra is not installed")

SECRET = "the secret word is periwinkle"
TOKEN = "collector-token-123"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAIServer]:
    up = FakeOpenAIServer().start()
    yield up
    up.stop()


def config(upstream: FakeOpenAIServer, endpoint: str, extra: str = "") -> str:
    return f"""
[cache]
mode = "off"

[providers.fake]
type = "openai"
base_url = "{upstream.base_url}"
api_key = "sk-test"
discover_models = false
models = ["gpt-test", "text-embed"]

[telemetry]
otlp_endpoint = "{endpoint}"
export_interval_s = 0.5
timeout_s = 2
{extra}
"""


def client(d: DaemonProcess) -> Any:
    return openai.OpenAI(base_url=f"{d.url}/v1", api_key="unused", max_retries=0)


def ask(d: DaemonProcess) -> None:
    """The requests every test sends: a chat, a streamed chat, an embedding, a refusal."""
    c = client(d)
    said = c.chat.completions.create(model="fake/gpt-test", messages=[{"role": "user", "content": SECRET}])
    assert said.choices[0].message.content == f"echo: {SECRET}"
    stream = c.chat.completions.create(
        model="fake/gpt-test",
        messages=[{"role": "user", "content": SECRET}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert "periwinkle" in "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    assert c.embeddings.create(model="fake/text-embed", input=SECRET).data
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": SECRET}])


def by_name(received: Received) -> dict[str, list[Span]]:
    out: dict[str, list[Span]] = {}
    for s in received.spans:
        out.setdefault(s.name, []).append(s)
    return out


@pytest.fixture(scope="module")
def http_run(
    upstream: FakeOpenAIServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Received, str]]:
    """A daemon exporting to the HTTP collector: every request of `ask` and an Anthropic call,
    the metrics awaited while it runs, then stopped (which flushes the spans)."""
    anthropic = pytest.importorskip("anthropic")
    collector = OtlpHttpCollector().start()
    home = tmp_path_factory.mktemp("otel-http")
    extra = f'headers = {{ authorization = "Bearer {TOKEN}" }}'
    try:
        with serving(home, config(upstream, collector.endpoint, extra)) as d:
            ask(d)
            a = anthropic.Anthropic(base_url=d.url, api_key="unused", max_retries=0)
            a.messages.create(
                model="fake/gpt-test", max_tokens=50, messages=[{"role": "user", "content": SECRET}]
            )
            collector.received.wait_for(
                lambda r: (
                    {p.metric for p in r.points}
                    >= {"gen_ai.client.token.usage", "gen_ai.client.operation.duration"}
                )
            )
            log = d.log_path
        yield collector.received, log.read_text()
    finally:
        collector.stop()


def test_each_request_is_one_span_with_the_genai_attributes(http_run: tuple[Received, str]) -> None:
    received, _ = http_run
    spans = by_name(received)
    assert sorted((n, len(s)) for n, s in spans.items()) == [
        ("chat fake/gpt-test", 3),
        ("chat no-such-model", 1),
        ("embeddings fake/text-embed", 1),
    ]
    whole, streamed, messages = spans["chat fake/gpt-test"]
    for s in (whole, streamed, messages):
        assert s.kind == SPAN_KIND_CLIENT and s.status_code == 0
        assert s.start_ns <= s.end_ns
        a = s.attributes
        assert a["gen_ai.operation.name"] == "chat"
        assert (a["gen_ai.provider.name"], a["gen_ai.request.model"], a["gen_ai.response.model"]) == (
            "fake",
            "fake/gpt-test",
            "gpt-test",
        )
        assert a["gen_ai.usage.input_tokens"] == 5 and a["gen_ai.usage.output_tokens"] == 6
        assert (a["aigw.cache"], a["aigw.fallbacks"], a["aigw.retries"]) == ("bypass", 0, 0)
        assert s.resource["service.name"] == "aigw" and s.scope == "aigw"
    assert [s.attributes["aigw.dialect"] for s in (whole, streamed, messages)] == [
        "openai",
        "openai",
        "anthropic",
    ]
    assert len({s.trace_id for s in received.spans}) == len(received.spans)  # a trace each
    (embedding,) = spans["embeddings fake/text-embed"]
    assert embedding.attributes["gen_ai.operation.name"] == "embeddings"
    (refused,) = spans["chat no-such-model"]
    assert refused.status_code == STATUS_ERROR
    assert refused.attributes["error.type"] == "ModelNotFound"
    assert refused.attributes["http.response.status_code"] == 404


def test_no_content_by_default_and_the_collectors_headers(http_run: tuple[Received, str]) -> None:
    received, log = http_run
    for s in received.spans:
        assert "periwinkle" not in repr(s), s
        assert "gen_ai.input.messages" not in s.attributes
    assert received.headers and all(h["Authorization"] == f"Bearer {TOKEN}" for h in received.headers)
    assert "gzip" in received.encodings
    assert TOKEN not in log and "OpenTelemetry export" not in log


def test_the_genai_client_metrics_arrive(http_run: tuple[Received, str]) -> None:
    received, _ = http_run
    tokens = {
        (p.attributes["gen_ai.operation.name"], p.attributes["gen_ai.token.type"]): p
        for p in received.latest("gen_ai.client.token.usage")
    }
    chat_in = tokens["chat", "input"]
    assert chat_in.unit == "{token}" and chat_in.count == 3 and chat_in.sum == 15
    assert chat_in.attributes["gen_ai.provider.name"] == "fake"
    assert chat_in.attributes["gen_ai.request.model"] == "fake/gpt-test"
    durations = received.latest("gen_ai.client.operation.duration")
    assert {p.unit for p in durations} == {"s"}
    (refusal,) = [p for p in durations if p.attributes.get("error.type") == "ModelNotFound"]
    assert "gen_ai.request.model" not in refusal.attributes  # no metric series per unknown name


def test_content_with_log_content(upstream: FakeOpenAIServer, tmp_path: Path) -> None:
    collector = OtlpHttpCollector().start()
    try:
        with serving(tmp_path, config(upstream, collector.endpoint, "log_content = true")) as d:
            client(d).chat.completions.create(
                model="fake/gpt-test", messages=[{"role": "user", "content": SECRET}]
            )
        (span,) = collector.received.spans
        assert SECRET in span.attributes["gen_ai.input.messages"]
        assert f"echo: {SECRET}" in span.attributes["gen_ai.output.messages"]
    finally:
        collector.stop()


def test_grpc(upstream: FakeOpenAIServer, tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc")
    collector = OtlpGrpcCollector().start()
    try:
        with serving(tmp_path, config(upstream, collector.endpoint, 'protocol = "grpc"')) as d:
            hi = [{"role": "user", "content": "hi"}]
            client(d).chat.completions.create(model="fake/gpt-test", messages=hi)
            collector.received.wait_for(lambda r: bool(r.points))
        (span,) = collector.received.spans
        assert span.name == "chat fake/gpt-test" and span.attributes["gen_ai.usage.input_tokens"] == 1
    finally:
        collector.stop()


def test_a_collector_that_is_down_fails_no_request(upstream: FakeOpenAIServer, tmp_path: Path) -> None:
    with serving(tmp_path, config(upstream, f"http://127.0.0.1:{free_port()}")) as d:
        for _ in range(3):
            ask(d)
    log = d.log()
    assert 1 <= log.count("OpenTelemetry export") <= 2, log  # once per signal, never per export
