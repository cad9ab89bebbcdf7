"""OpenTelemetry export in process: the pipeline with a fake provider behind it, the OpenTelemetry
SDK with in-memory exporters in place of OTLP. One span per request, named and attributed as the
GenAI semantic conventions say, whatever way the request ends; the GenAI client metrics; content
only when asked for; nothing of the SDK imported when telemetry is off."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from aigw.access.budget import Budgets
from aigw.access.keys import KeyStore
from aigw.access.meter import Meter
from aigw.access.ratelimit import RateLimiter
from aigw.cache.store import ResponseStore, open_store
from aigw.completion import CompletionRequest
from aigw.config import CacheConfig, Config, ProviderConfig, TelemetryConfig
from aigw.domain import EmbedRequest
from aigw.errors import ModelNotFound, UpstreamConnectError
from aigw.gateway.call import Caller
from aigw.gateway.gateway import Gateway
from aigw.state.db import open_db
from aigw.usage.genai import input_messages, output_messages
from aigw.usage.metrics import Metrics
from aigw.usage.otel import DURATION_BUCKETS, TOKEN_BUCKETS, OtelTelemetry
from aigw.usage.prices import PriceTable
from aigw.usage.recorder import UsageRecorder
from aigw.usage.telemetry import open_telemetry
from tests.fixtures.daemon import free_port
from tests.gateway.test_pipeline import Fake, chat

pytestmark = pytest.mark.anyio
SECRET = "the secret word is periwinkle"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Rig:
    def __init__(self, tmp: Path, *, log_content: bool = False, usage_content: bool = False) -> None:
        cfg = Config.model_validate(
            {
                "models": {
                    "smart": {
                        "targets": [{"provider": "a", "model": "down"}, {"provider": "b", "model": "ok"}]
                    }
                },
                "usage": {"log_content": usage_content},
            }
            | {"providers": {"a": ProviderConfig(type="openai"), "b": ProviderConfig(type="openai")}}
        )
        self.spans = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        tcfg = TelemetryConfig(otlp_endpoint="http://127.0.0.1:1", log_content=log_content)
        self.telemetry = OtelTelemetry(tcfg, "0.test", span_exporter=self.spans, metric_reader=self.reader)
        self.a, self.b = Fake("a"), Fake("b")
        db = tmp / "aigw.db"
        self.keys = KeyStore(open_db(db))
        self.recorder = UsageRecorder(db, flush_interval_s=0.05)
        self.meter = Meter(
            cfg,
            limiter=RateLimiter(),
            metrics=Metrics(),
            recorder=self.recorder,
            prices=PriceTable({}),
            budgets=Budgets(),
            telemetry=self.telemetry,
        )
        self.store: ResponseStore = open_store(tmp / "cache", CacheConfig())
        self.gw = Gateway(
            cfg, {"a": self.a, "b": self.b}, keys=self.keys, meter=self.meter, cache_store=self.store
        )

    def finished(self) -> list[ReadableSpan]:
        self.telemetry.flush()
        return list(self.spans.get_finished_spans())

    def points(self, metric: str) -> list[Any]:
        self.telemetry.flush()
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            p
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == metric
            for p in m.data.data_points
        ]

    def close(self) -> None:
        self.recorder.close()
        self.store.close()
        self.telemetry.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


def one(spans: list[ReadableSpan]) -> ReadableSpan:
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


ANON = Caller(None, "127.0.0.1", request_id="req-1", dialect="openai")


async def test_a_chat_is_one_client_span_in_the_genai_conventions(rig: Rig) -> None:
    before = time.time_ns()
    await rig.gw.chat(chat("b/ok", SECRET), ANON)
    span = one(rig.finished())
    assert span.name == "chat b/ok"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert attrs(span) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "b",
        "gen_ai.request.model": "b/ok",
        "gen_ai.response.model": "ok",
        "gen_ai.usage.input_tokens": 7,
        "gen_ai.usage.output_tokens": 3,
        "aigw.cache": "bypass",
        "aigw.fallbacks": 0,
        "aigw.retries": 0,
        "aigw.dialect": "openai",
        "aigw.request_id": "req-1",
        "http.response.status_code": 200,
    }
    assert span.start_time is not None and span.end_time is not None
    assert before <= span.start_time <= span.end_time <= time.time_ns()
    assert span.resource.attributes["service.name"] == "aigw"
    assert span.resource.attributes["service.version"] == "0.test"


async def test_fallbacks_and_retries_the_key_name_and_a_cache_hit(rig: Rig) -> None:
    key, plain = rig.keys.create("ci-bot")
    caller = Caller(key, "127.0.0.1")
    await rig.gw.chat(chat("smart", temperature=0), caller)
    await rig.gw.chat(chat("smart", temperature=0), caller)  # answered from the cache
    fresh, hit = rig.finished()
    assert fresh.name == hit.name == "chat smart"
    a = attrs(fresh)
    assert (a["gen_ai.provider.name"], a["aigw.fallbacks"], a["aigw.retries"]) == ("b", 1, 2)
    assert (a["aigw.cache"], a["aigw.key"]) == ("miss", "ci-bot")
    assert plain not in str(a) and key.id not in str(a)
    h = attrs(hit)
    assert h["aigw.cache"] == "hit" and h["gen_ai.response.model"] == "ok"
    assert "gen_ai.usage.input_tokens" not in h  # a hit used no tokens


async def test_streams_end_their_span_when_they_end(rig: Rig) -> None:
    reply = await rig.gw.stream(chat("b/ok"), ANON)
    assert rig.finished() == []  # not before the stream ends
    async for _ in reply.chunks:
        pass
    span = one(rig.finished())
    assert span.name == "chat b/ok"
    assert attrs(span)["gen_ai.usage.output_tokens"] == 3


async def test_each_operation_names_its_span(rig: Rig) -> None:
    await rig.gw.embed(EmbedRequest({"model": "b/ok", "input": "x"}, "b/ok"), ANON)
    await rig.gw.complete(CompletionRequest({"model": "b/ok", "prompt": "def f("}, "b/ok"), ANON)
    names = [s.name for s in rig.finished()]
    assert names == ["embeddings b/ok", "text_completion b/ok"]


async def test_refusals_and_failures_are_errors(rig: Rig) -> None:
    with pytest.raises(ModelNotFound):
        await rig.gw.chat(chat("no-such-model"), ANON)
    with pytest.raises(UpstreamConnectError):
        await rig.gw.chat(chat("a/down"), ANON)
    reply = await rig.gw.stream(chat("b/ok"), ANON)
    await reply.abandon()  # the client left before its first byte
    refused, failed, left = rig.finished()
    r = attrs(refused)
    assert refused.name == "chat no-such-model"
    assert refused.status.status_code is StatusCode.ERROR
    assert (r["error.type"], r["http.response.status_code"], r["gen_ai.provider.name"]) == (
        "ModelNotFound",
        404,
        "aigw",
    )
    f = attrs(failed)
    assert (f["error.type"], f["gen_ai.provider.name"]) == ("UpstreamConnectError", "a")
    assert failed.status.status_code is StatusCode.ERROR
    assert "aigw.fallbacks" not in f  # not known for a failure
    assert attrs(left)["error.type"] == "cancelled"
    # The metric's attributes never carry a model name nothing serves.
    durations = rig.points("gen_ai.client.operation.duration")
    refusal = [p for p in durations if p.attributes.get("error.type") == "ModelNotFound"]
    assert len(refusal) == 1 and "gen_ai.request.model" not in refusal[0].attributes


async def test_the_genai_client_metrics(rig: Rig) -> None:
    await rig.gw.chat(chat("b/ok"), ANON)
    await rig.gw.chat(chat("b/ok"), ANON)
    tokens = {p.attributes["gen_ai.token.type"]: p for p in rig.points("gen_ai.client.token.usage")}
    assert tokens["input"].sum == 14 and tokens["input"].count == 2
    assert tokens["output"].sum == 6
    assert dict(tokens["input"].attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "b",
        "gen_ai.request.model": "b/ok",
        "gen_ai.response.model": "ok",
        "gen_ai.token.type": "input",
    }
    assert tuple(tokens["input"].explicit_bounds) == TOKEN_BUCKETS
    (duration,) = rig.points("gen_ai.client.operation.duration")
    assert duration.count == 2 and tuple(duration.explicit_bounds) == DURATION_BUCKETS


async def test_no_content_on_spans_by_default(rig: Rig) -> None:
    await rig.gw.chat(chat("b/ok", SECRET), ANON)
    reply = await rig.gw.stream(chat("b/ok", SECRET), ANON)
    async for _ in reply.chunks:
        pass
    for span in rig.finished():
        assert "periwinkle" not in str(attrs(span)) and "periwinkle" not in str(span.events)


async def test_content_with_log_content_and_not_in_the_usage_log(tmp_path: Path) -> None:
    rig = Rig(tmp_path, log_content=True)
    try:
        await rig.gw.chat(chat("b/ok", SECRET), ANON)
        reply = await rig.gw.stream(chat("b/ok", SECRET), ANON)
        async for _ in reply.chunks:
            pass
        whole, streamed = rig.finished()
        assert attrs(whole)["gen_ai.input.messages"] == (
            '[{"role":"user","parts":[{"type":"text","content":"the secret word is periwinkle"}]}]'
        )
        assert '"content":"b says the secret word is periwinkle"' in attrs(whole)["gen_ai.output.messages"]
        assert '"finish_reason":"stop"' in attrs(whole)["gen_ai.output.messages"]
        assert "b says the secret word is periwinkle" in attrs(streamed)["gen_ai.output.messages"]
        rig.recorder.flush()
        rows = rig.keys._db.execute("SELECT content FROM usage").fetchall()
        assert rows == [(None,), (None,)]  # [usage] log_content is off
    finally:
        rig.close()


def test_message_shapes() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {}}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": '{"x":1}'}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    assert input_messages(messages) == [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {"role": "user", "parts": [{"type": "text", "content": "hi"}, {"type": "image_url"}]},
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "c1", "name": "f", "arguments": '{"x":1}'}],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "42"}]},
    ]
    assert output_messages([{"index": 0, "text": "go on", "finish_reason": "length"}]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "go on"}], "finish_reason": "length"}
    ]


def test_off_builds_nothing() -> None:
    assert open_telemetry(TelemetryConfig(), "0") is None


def test_a_collector_that_is_down_is_logged_once_and_never_fails_a_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = TelemetryConfig(otlp_endpoint=f"http://127.0.0.1:{free_port()}", timeout_s=1)
    telemetry = open_telemetry(cfg, "0")
    assert isinstance(telemetry, OtelTelemetry)
    from aigw.usage.genai import Finished

    with caplog.at_level(logging.INFO):
        for _ in range(3):
            telemetry.request(Finished("chat", "m", True, time.time(), time.time(), status=200))
            telemetry.flush()  # each export fails
        t0 = time.monotonic()
        telemetry.close()
    assert time.monotonic() - t0 < 5  # known down: what is pending is dropped, not retried
    said = [r.getMessage() for r in caplog.records if "OpenTelemetry export" in r.getMessage()]
    assert len(said) == 1 and "export of spans" in said[0] and "failed" in said[0], said
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]


def test_telemetry_off_imports_no_opentelemetry_sdk(tmp_path: Path) -> None:
    """The daemon's app and gateway built from a config without [telemetry]: no SDK, no exporter,
    no aigw.usage.otel. (OpenTelemetry's API itself is imported by FastAPI, whatever aigw does.)"""
    code = """
import sys
from aigw.config import Config
from aigw.gateway.gateway import Gateway
from aigw.paths import Paths
from aigw.providers.registry import ProviderRegistry
gw = Gateway.build(Config(), Paths.from_env(), ProviderRegistry.from_entry_points(), {})
from aigw.api.app import create_app
create_app(lambda: gw)
heavy = ("opentelemetry.sdk", "opentelemetry.exporter", "aigw.usage.otel")
print(sorted(m for m in sys.modules if m.startswith(heavy)))
"""
    root = Path(__file__).resolve().parents[2]
    env = {"AIGW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)}
    run = [sys.executable, "-c", code]
    out = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
