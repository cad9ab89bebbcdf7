"""Prometheus metrics of the gateway, kept in a registry owned by one `Metrics` instance.

Never the process-wide default REGISTRY: two gateways (or two tests) never share a counter.
`request_done` is on the hot path, so the labelled children are looked up once and cached.
Label cardinality is bounded: clients name arbitrary `provider/model` strings, so after
`max_label_pairs` distinct (provider, model) pairs the rest are counted under model="other"
(and provider="other" too when the provider itself was never seen).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from types import TracebackType

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
OVERHEAD_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05)
RATELIMIT_KINDS = ("requests", "tokens", "budget")
MAX_LABEL_PAIRS = 200
OTHER = "other"
NONE = "none"  # a request no provider was asked for
UNRESOLVED = "unresolved"  # a request whose model names nothing served

_Children = tuple[Counter, Histogram]  # (requests{provider,model,status}, latency{provider,model})


class _Inflight:
    """Reusable, re-entrant context manager: the gauge counts how many are inside."""

    __slots__ = ("_gauge",)

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge

    def __enter__(self) -> None:
        self._gauge.inc()

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._gauge.dec()


class Metrics:
    CONTENT_TYPE: str = CONTENT_TYPE_LATEST

    def __init__(self, *, max_label_pairs: int = MAX_LABEL_PAIRS) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._requests = Counter(
            "ai_provider_requests_total",
            "Requests answered or failed, by the provider and model that served them and HTTP status.",
            ("provider", "model", "status"),
            registry=r,
        )
        self._latency = Histogram(
            "ai_provider_latency_seconds",
            "Time from request to response (to the first content when streaming).",
            ("provider", "model"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._overhead = Histogram(
            "ai_gateway_overhead_seconds",
            "Time the gateway itself added to a request, upstream time excluded.",
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        tokens = Counter("ai_tokens_total", "Tokens, by direction.", ("direction",), registry=r)
        self._prompt_tokens = tokens.labels("prompt")
        self._completion_tokens = tokens.labels("completion")
        self._fallbacks = Counter(
            "ai_routing_fallback_total", "Targets given up on before the one that answered.", registry=r
        )
        self._cache_hits = Counter("ai_cache_hits_total", "Responses served from the cache.", registry=r)
        self._cache_misses = Counter(
            "ai_cache_misses_total", "Cacheable requests not in the cache.", registry=r
        )
        ratelimit = Counter(
            "ai_ratelimit_exceeded_total", "Requests refused by a rate limit, by kind.", ("kind",), registry=r
        )
        self._ratelimit = {kind: ratelimit.labels(kind) for kind in (*RATELIMIT_KINDS, OTHER)}
        self._inflight = _Inflight(Gauge("ai_inflight_requests", "Requests in progress.", registry=r))
        self._local_loaded = Gauge("ai_local_models_loaded", "Local models loaded in memory.", registry=r)
        self._extra: dict[str, Gauge] = {}
        self._max_pairs = max_label_pairs
        self._pairs: set[tuple[str, str]] = set()
        self._providers: set[str] = set()
        self._children: dict[tuple[str, str, int], _Children] = {}

    def request_done(
        self,
        *,
        provider: str,
        model: str,
        status: int,
        latency_s: float,
        overhead_s: float,
        prompt_tokens: int,
        completion_tokens: int,
        fallbacks: int,
        cache: str,
    ) -> None:
        children = self._children.get((provider, model, status)) or self._admit(provider, model, status)
        children[0].inc()
        children[1].observe(latency_s)
        self._overhead.observe(overhead_s)
        if prompt_tokens:
            self._prompt_tokens.inc(prompt_tokens)
        if completion_tokens:
            self._completion_tokens.inc(completion_tokens)
        if fallbacks:
            self._fallbacks.inc(fallbacks)
        if cache == "hit":
            self._cache_hits.inc()
        elif cache == "miss":
            self._cache_misses.inc()

    def cache_hit(self, latency_s: float) -> None:
        """A request answered from the cache: no provider call, no tokens processed."""
        self._cache_hits.inc()
        self._overhead.observe(latency_s)

    def request_failed(self, *, provider: str, model: str, status: int, latency_s: float) -> None:
        children = self._children.get((provider, model, status)) or self._admit(provider, model, status)
        children[0].inc()
        children[1].observe(latency_s)

    def ratelimited(self, kind: str) -> None:
        (self._ratelimit.get(kind) or self._ratelimit[OTHER]).inc()

    def inflight(self) -> AbstractContextManager[None]:
        return self._inflight

    def exposition(self, local_models_loaded: int, extra: Mapping[str, float] | None = None) -> bytes:
        """The text exposition. `extra` adds gauges by name (prefixed "ai_" unless it already is),
        e.g. a RouterStats snapshot; each name is registered on first sight."""
        self._local_loaded.set(local_models_loaded)
        for name, value in (extra or {}).items():
            self._extra_gauge(name).set(value)
        return generate_latest(self.registry)

    def _admit(self, provider: str, model: str, status: int) -> _Children:
        """The children for a key not cached yet. Only admitted pairs are cached under the caller's
        key, so the cache stays bounded however many distinct names clients send."""
        key = (provider, model, status)
        provider, model = provider or NONE, model or UNRESOLVED
        if (provider, model) not in self._pairs:
            if len(self._pairs) >= self._max_pairs:
                if provider not in self._providers:
                    provider = OTHER
                key, model = (provider, OTHER, status), OTHER
                children = self._children.get(key)
                if children is not None:
                    return children
            else:
                self._pairs.add((provider, model))
                self._providers.add(provider)
        children = (
            self._requests.labels(provider, model, str(status)),
            self._latency.labels(provider, model),
        )
        self._children[key] = children
        return children

    def _extra_gauge(self, name: str) -> Gauge:
        gauge = self._extra.get(name)
        if gauge is None:
            full = name if name.startswith("ai_") else f"ai_{name}"
            gauge = Gauge(full, f"Gateway statistic {name}.", registry=self.registry)
            self._extra[name] = gauge
        return gauge
