"""The OpenTelemetry SDK behind `aigw.usage.telemetry`: imported only when `[telemetry]` is on.

The event loop only appends each accounted request to a queue. A thread of this object's own
makes its span (with the times the request really started and ended) and records its GenAI client
metrics, in batches; a BatchSpanProcessor's thread batches and exports the spans, a
PeriodicExportingMetricReader's the metrics. Nothing on the event loop waits for a collector, or
for the SDK. The providers are this object's own, never
OpenTelemetry's process-wide globals: two gateways never share them.

A collector that is down or refuses an export costs the request nothing: the batch is dropped,
the failure is logged once (the SDK's own per-export log lines are held back) and again once
it answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from opentelemetry.metrics import Histogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from aigw.config.telemetry import TelemetryConfig
from aigw.usage.genai import Finished, input_messages, output_messages

log = logging.getLogger("aigw.telemetry")

TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
"""The explicit bucket boundaries the GenAI metric conventions give."""
SPAN_BATCH_DELAY_MS = 2000
HANDOFF_S = 0.05
"""How long the telemetry thread lets requests gather before it makes their spans."""
MAX_WAITING = 10_000
"""Requests waiting for their spans; beyond, the oldest are dropped (the SDK would drop them too)."""
NO_PROVIDER = "aigw"
"""gen_ai.provider.name of a request no provider was asked for (aigw itself refused it)."""
_SHARED = (
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
)
LOGGERS = {
    "spans": (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
        *_SHARED,
    ),
    "metrics": (
        "opentelemetry.exporter.otlp.proto.http.metric_exporter",
        "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
        *_SHARED,
    ),
}
"""The SDK exporters' loggers, by signal: each logs a line per failed attempt."""


class ExportWatch(logging.Filter):
    """Whether exports of one signal (spans, metrics) to the collector work, said once per change.
    As a filter on the SDK exporters' loggers it holds back their line per failed attempt, keeping
    the first one's text for the one line aigw logs."""

    def __init__(self, endpoint: str, what: str) -> None:
        super().__init__()
        self._endpoint = endpoint
        self.what = what
        self._lock = threading.Lock()
        self._first = ""
        """The SDK's first complaint since exports last worked (it names the cause)."""
        self.failing = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and not self._first:
            self._first = record.getMessage()[:300]
        return False

    def failed(self) -> None:
        with self._lock:
            if self.failing:
                return
            self.failing = True
        log.warning(
            "OpenTelemetry export of %s to %s failed (%s); telemetry is dropped until the collector "
            "takes it again (logged once)",
            self.what,
            self._endpoint,
            self._first or "no reason given",
        )

    def worked(self) -> None:
        self._first = ""
        if self.failing:
            with self._lock:
                self.failing = False
            log.info("OpenTelemetry export of %s to %s works again", self.what, self._endpoint)


class _Spans(SpanExporter):
    """An exporter that reports to the watch, and drops everything once abandoned."""

    def __init__(self, inner: SpanExporter, watch: ExportWatch) -> None:
        self._inner = inner
        self._watch = watch
        self._abandoned = False
        self._closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._abandoned:
            return SpanExportResult.FAILURE
        result = self._inner.export(spans)
        if result is SpanExportResult.SUCCESS:
            self._watch.worked()
        else:
            self._watch.failed()
        return result

    def abandon(self) -> None:
        self._abandoned = True
        self.shutdown()  # also ends a retry's wait in progress

    def shutdown(self) -> None:
        if not self._closed:
            self._closed = True
            self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _Metrics(MetricExporter):
    """As `_Spans`, for metrics."""

    def __init__(self, inner: MetricExporter, watch: ExportWatch) -> None:
        super().__init__(inner._preferred_temporality, inner._preferred_aggregation)
        self._inner = inner
        self._watch = watch
        self._abandoned = False
        self._closed = False

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self._abandoned:
            return MetricExportResult.FAILURE
        result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        if result is MetricExportResult.SUCCESS:
            self._watch.worked()
        else:
            self._watch.failed()
        return result

    def abandon(self) -> None:
        self._abandoned = True
        self.shutdown()

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if not self._closed:
            self._closed = True
            self._inner.shutdown(timeout_millis=timeout_millis)


class Handoff:
    """Requests passed from the event loop to a thread of their own, which does `work` on each in
    order: the loop's part is an append to a deque (and, when it was idle, waking the thread)."""

    def __init__(self, work: Callable[[Finished], None]) -> None:
        self._work = work
        self._waiting: deque[Finished] = deque(maxlen=MAX_WAITING)
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="aigw-telemetry", daemon=True)
        self._thread.start()

    def put(self, done: Finished) -> None:
        self._waiting.append(done)
        if not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait()
            if not self._closing:
                time.sleep(HANDOFF_S)  # let a batch gather
            self._wake.clear()
            self.drain()

    def drain(self) -> None:
        """Do the work of every request waiting (in order; blocking)."""
        with self._lock:
            while self._waiting:
                self._work(self._waiting.popleft())

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        self._thread.join(5)
        self.drain()


def _exporters(cfg: TelemetryConfig) -> tuple[SpanExporter, MetricExporter]:
    """OTLP exporters of spans and metrics to the collector `cfg` names."""
    assert cfg.otlp_endpoint is not None
    headers = {k.lower(): v.get_secret_value() for k, v in cfg.headers.items()}
    if cfg.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        insecure = cfg.otlp_endpoint.startswith("http://")
        common: dict[str, Any] = {
            "endpoint": cfg.otlp_endpoint,
            "insecure": insecure,
            "headers": tuple(headers.items()),
            "timeout": cfg.timeout_s,
        }
        return GrpcSpanExporter(**common), GrpcMetricExporter(**common)
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base, gzip, timeout = cfg.otlp_endpoint, Compression.Gzip, cfg.timeout_s
    return (
        OTLPSpanExporter(endpoint=f"{base}/v1/traces", headers=headers, timeout=timeout, compression=gzip),
        OTLPMetricExporter(endpoint=f"{base}/v1/metrics", headers=headers, timeout=timeout, compression=gzip),
    )


class OtelTelemetry:
    """Spans and GenAI client metrics of every request, exported over OTLP (see the module doc).
    Tests inject in-memory exporters or readers in place of the OTLP ones."""

    def __init__(
        self,
        cfg: TelemetryConfig,
        version: str,
        *,
        span_exporter: SpanExporter | None = None,
        metric_reader: MetricReader | None = None,
    ) -> None:
        self._log_content = cfg.log_content
        self._timeout_ms = cfg.timeout_s * 1000
        endpoint = cfg.otlp_endpoint or ""
        self.watches = {what: ExportWatch(endpoint, what) for what in LOGGERS}
        self._guarded: list[_Spans | _Metrics] = []
        if span_exporter is None or metric_reader is None:
            spans, metrics = _exporters(cfg)
            if span_exporter is None:
                span_exporter = _Spans(spans, self.watches["spans"])
                self._guarded.append(span_exporter)
            if metric_reader is None:
                guarded = _Metrics(metrics, self.watches["metrics"])
                self._guarded.append(guarded)
                metric_reader = PeriodicExportingMetricReader(
                    guarded,
                    export_interval_millis=cfg.export_interval_s * 1000,
                    export_timeout_millis=self._timeout_ms,
                )
        for what, names in LOGGERS.items():
            for name in names:
                logging.getLogger(name).addFilter(self.watches[what])
        resource = Resource.create({"service.name": cfg.service_name, "service.version": version})
        self._traces = TracerProvider(resource=resource)
        self._traces.add_span_processor(
            BatchSpanProcessor(span_exporter, schedule_delay_millis=SPAN_BATCH_DELAY_MS)
        )
        self._tracer = self._traces.get_tracer("aigw", version)
        self._metrics = MeterProvider(resource=resource, metric_readers=[metric_reader])
        meter = self._metrics.get_meter("aigw", version)
        self._tokens: Histogram = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._duration: Histogram = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._broken = False
        self._handoff = Handoff(self._record)

    @property
    def log_content(self) -> bool:
        return self._log_content

    def request(self, done: Finished) -> None:
        self._handoff.put(done)

    def _record(self, done: Finished) -> None:
        try:
            self._span(done)
            self._measure(done)
        except Exception:  # telemetry must never fail a request
            if not self._broken:
                self._broken = True
                log.exception("recording a request's telemetry failed (logged once)")

    def _span(self, done: Finished) -> None:
        attrs: dict[str, AttributeValue] = {
            "gen_ai.operation.name": done.operation,
            "gen_ai.provider.name": done.provider or NO_PROVIDER,
        }
        if done.requested:
            attrs["gen_ai.request.model"] = done.requested
        if done.model:
            attrs["gen_ai.response.model"] = done.model
        if done.input_tokens is not None:
            attrs["gen_ai.usage.input_tokens"] = done.input_tokens
        if done.output_tokens is not None:
            attrs["gen_ai.usage.output_tokens"] = done.output_tokens
        for name, value in (
            ("aigw.cache", done.cache),
            ("aigw.fallbacks", done.fallbacks),
            ("aigw.retries", done.retries),
            ("aigw.key", done.key),
            ("aigw.dialect", done.dialect),
            ("aigw.request_id", done.request_id),
            ("http.response.status_code", done.status),
            ("error.type", done.error),
        ):
            if value is not None:
                attrs[name] = value
        if self._log_content and done.content is not None:
            attrs["gen_ai.input.messages"] = _json(input_messages(done.content.get("messages")))
            completion = done.content.get("completion")
            if completion is not None:
                attrs["gen_ai.output.messages"] = _json(output_messages(completion))
        name = f"{done.operation} {done.requested}" if done.requested else done.operation
        start = _ns(done.started)
        span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attrs, start_time=start)
        if done.error is not None:
            said = done.message if self._log_content and done.message else done.error
            span.set_status(Status(StatusCode.ERROR, said[:500]))
        span.end(end_time=_ns(max(done.ended, done.started)))

    def _measure(self, done: Finished) -> None:
        attrs: dict[str, AttributeValue] = {
            "gen_ai.operation.name": done.operation,
            "gen_ai.provider.name": done.provider or NO_PROVIDER,
        }
        if done.resolved and done.requested:
            attrs["gen_ai.request.model"] = done.requested
        if done.model:
            attrs["gen_ai.response.model"] = done.model
        if done.input_tokens is not None:
            self._tokens.record(done.input_tokens, {**attrs, "gen_ai.token.type": "input"})
        if done.output_tokens is not None:
            self._tokens.record(done.output_tokens, {**attrs, "gen_ai.token.type": "output"})
        if done.error is not None:
            attrs["error.type"] = done.error
        self._duration.record(max(0.0, done.ended - done.started), attrs)

    def flush(self) -> None:
        """Make the spans and metrics of every request so far, and export the spans now (blocking)."""
        self._handoff.drain()
        self._traces.force_flush(int(self._timeout_ms))

    def close(self) -> None:
        """Export what is pending and stop. When the collector is known to be down, what is pending
        is dropped at once instead of waiting out its retries."""
        self._handoff.close()
        if any(w.failing for w in self.watches.values()):  # one collector takes both signals
            for exporter in self._guarded:
                exporter.abandon()
        try:
            self._traces.shutdown()
            self._metrics.shutdown(timeout_millis=self._timeout_ms)
        finally:
            for what, names in LOGGERS.items():
                for name in names:
                    logging.getLogger(name).removeFilter(self.watches[what])


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()
