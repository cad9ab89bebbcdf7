"""aigw.usage.metrics: the exposition read back with prometheus_client's own parser."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from aigw.usage.metrics import LATENCY_BUCKETS, OVERHEAD_BUCKETS, Metrics

Labels = dict[str, str]


def samples(
    m: Metrics, local_models_loaded: int = 0, extra: dict[str, float] | None = None
) -> dict[str, float]:
    """Every sample of the exposition as {'name{k="v",...}': value}, labels sorted."""
    text = m.exposition(local_models_loaded, extra).decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def done(m: Metrics, **over: object) -> None:
    args: dict[str, object] = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "status": 200,
        "latency_s": 0.2,
        "overhead_s": 0.0003,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "fallbacks": 0,
        "cache": "bypass",
    }
    args.update(over)
    m.request_done(**args)  # type: ignore[arg-type]


def test_counters_after_a_sequence_of_calls() -> None:
    m = Metrics()
    done(m)
    done(m)
    done(m, provider="local", model="tiny", fallbacks=2)
    m.request_failed(provider="openai", model="gpt-4o-mini", status=502, latency_s=1.5)
    m.request_failed(provider="", model="", status=404, latency_s=0.001)
    s = samples(m)
    assert s['ai_provider_requests_total{model="gpt-4o-mini",provider="openai",status="200"}'] == 2
    assert s['ai_provider_requests_total{model="tiny",provider="local",status="200"}'] == 1
    assert s['ai_provider_requests_total{model="gpt-4o-mini",provider="openai",status="502"}'] == 1
    assert s['ai_provider_requests_total{model="unresolved",provider="none",status="404"}'] == 1
    assert s["ai_routing_fallback_total"] == 2
    assert s['ai_provider_latency_seconds_count{model="gpt-4o-mini",provider="openai"}'] == 3
    assert s['ai_provider_latency_seconds_count{model="unresolved",provider="none"}'] == 1
    # failures are not part of the gateway overhead
    assert s["ai_gateway_overhead_seconds_count"] == 3


def test_latency_histogram_buckets_count_and_sum() -> None:
    m = Metrics()
    for latency in (0.004, 0.03, 0.03, 7.0, 500.0):
        m.request_failed(provider="p", model="m", status=500, latency_s=latency)
    s = samples(m)

    def bucket(le: str) -> float:
        return s[f'ai_provider_latency_seconds_bucket{{le="{le}",model="m",provider="p"}}']

    assert bucket("0.005") == 1
    assert bucket("0.025") == 1
    assert bucket("0.05") == 3
    assert bucket("5.0") == 3
    assert bucket("10.0") == 4
    assert bucket("120.0") == 4
    assert bucket("+Inf") == 5
    assert s['ai_provider_latency_seconds_count{model="m",provider="p"}'] == 5
    assert math.isclose(s['ai_provider_latency_seconds_sum{model="m",provider="p"}'], 507.064)
    assert LATENCY_BUCKETS[0] == 0.005 and LATENCY_BUCKETS[-1] == 120.0


def test_overhead_histogram() -> None:
    m = Metrics()
    for overhead in (0.00004, 0.0002, 0.0009, 0.06):
        done(m, overhead_s=overhead)
    s = samples(m)
    assert s['ai_gateway_overhead_seconds_bucket{le="5e-05"}'] == 1
    assert s['ai_gateway_overhead_seconds_bucket{le="0.00025"}'] == 2
    assert s['ai_gateway_overhead_seconds_bucket{le="0.001"}'] == 3
    assert s['ai_gateway_overhead_seconds_bucket{le="0.05"}'] == 3
    assert s['ai_gateway_overhead_seconds_bucket{le="+Inf"}'] == 4
    assert s["ai_gateway_overhead_seconds_count"] == 4
    assert math.isclose(s["ai_gateway_overhead_seconds_sum"], 0.06114)
    assert OVERHEAD_BUCKETS[0] == 0.00005 and OVERHEAD_BUCKETS[-1] == 0.05


def test_tokens_by_direction() -> None:
    m = Metrics()
    done(m, prompt_tokens=100, completion_tokens=7)
    done(m, prompt_tokens=20, completion_tokens=0)
    s = samples(m)
    assert s['ai_tokens_total{direction="prompt"}'] == 120
    assert s['ai_tokens_total{direction="completion"}'] == 7


def test_cache_hit_miss_and_bypass() -> None:
    m = Metrics()
    done(m, cache="hit")
    done(m, cache="hit")
    done(m, cache="miss")
    done(m, cache="bypass")
    s = samples(m)
    assert s["ai_cache_hits_total"] == 2
    assert s["ai_cache_misses_total"] == 1


def test_ratelimited_by_kind() -> None:
    m = Metrics()
    for kind in ("requests", "requests", "tokens", "budget", "bogus"):
        m.ratelimited(kind)
    s = samples(m)
    assert s['ai_ratelimit_exceeded_total{kind="requests"}'] == 2
    assert s['ai_ratelimit_exceeded_total{kind="tokens"}'] == 1
    assert s['ai_ratelimit_exceeded_total{kind="budget"}'] == 1
    assert s['ai_ratelimit_exceeded_total{kind="other"}'] == 1
    assert not any("bogus" in k for k in s)


def test_inflight_inc_and_dec_even_when_the_body_raises() -> None:
    m = Metrics()
    assert samples(m)["ai_inflight_requests"] == 0
    with m.inflight():
        assert samples(m)["ai_inflight_requests"] == 1
        with m.inflight():
            assert samples(m)["ai_inflight_requests"] == 2
        assert samples(m)["ai_inflight_requests"] == 1
    with pytest.raises(RuntimeError), m.inflight():
        assert samples(m)["ai_inflight_requests"] == 1
        raise RuntimeError("boom")
    assert samples(m)["ai_inflight_requests"] == 0


def test_local_models_gauge_and_extra_gauges() -> None:
    m = Metrics()
    assert samples(m, 3)["ai_local_models_loaded"] == 3
    s = samples(m, 1, {"broken_streams": 2, "ai_retries": 5})
    assert s["ai_local_models_loaded"] == 1
    assert s["ai_broken_streams"] == 2
    assert s["ai_retries"] == 5
    assert samples(m, 0, {"broken_streams": 4})["ai_broken_streams"] == 4


def test_label_cardinality_is_capped() -> None:
    m = Metrics(max_label_pairs=3)
    for i in range(3):
        done(m, provider="openai", model=f"m{i}")
    for i in range(3, 50):
        done(m, provider="openai", model=f"m{i}")
        m.request_failed(provider=f"p{i}", model=f"x{i}", status=404, latency_s=0.01)
    done(m, provider="openai", model="m0")  # admitted pairs keep their own series
    s = samples(m)
    requests = {k: v for k, v in s.items() if k.startswith("ai_provider_requests_total")}
    assert requests == {
        'ai_provider_requests_total{model="m0",provider="openai",status="200"}': 2,
        'ai_provider_requests_total{model="m1",provider="openai",status="200"}': 1,
        'ai_provider_requests_total{model="m2",provider="openai",status="200"}': 1,
        'ai_provider_requests_total{model="other",provider="openai",status="200"}': 47,
        'ai_provider_requests_total{model="other",provider="other",status="404"}': 47,
    }
    assert s['ai_provider_latency_seconds_count{model="other",provider="openai"}'] == 47
    assert len(m._children) <= 3 + 2  # the cache is bounded too, not keyed by every name sent


def test_two_instances_are_independent() -> None:
    a, b = Metrics(), Metrics()
    done(a, cache="hit", fallbacks=1)
    a.ratelimited("tokens")
    with a.inflight():
        sb = samples(b)
    assert a.registry is not b.registry
    assert not any(k.startswith("ai_provider_requests_total{") for k in sb)
    assert sb["ai_cache_hits_total"] == 0
    assert sb["ai_routing_fallback_total"] == 0
    assert sb['ai_ratelimit_exceeded_total{kind="tokens"}'] == 0
    assert sb["ai_inflight_requests"] == 0
    assert samples(a)["ai_cache_hits_total"] == 1


def test_content_type() -> None:
    assert Metrics.CONTENT_TYPE == CONTENT_TYPE_LATEST
    assert Metrics().CONTENT_TYPE.startswith("text/plain")
