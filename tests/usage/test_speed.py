"""What explains a slow answer: one answer's figures from its usage (aigw.usage.speed), and a local
model's last minute summed up for /admin/stats."""

from __future__ import annotations

import pytest

from aigw.access.meter import Recent
from aigw.api.admin.stats import WINDOW_S, local_requests
from aigw.domain import Timing, Usage
from aigw.usage.speed import Speed


def test_a_local_answers_figures() -> None:
    usage = Usage(100, 11, 111, {"prompt_tokens_details": {"cached_tokens": 60}}, Timing(0.25, 0.5))
    assert Speed.of(usage) == Speed(cached_tokens=60, prefill_ms=250.0, decode_tps=20.0)  # 10 tokens / 0.5 s
    no_cache = Usage(100, 11, 111, {}, Timing(0.25, 0.5))
    assert Speed.of(no_cache).cached_tokens == 0  # a local model names cached tokens only when some


@pytest.mark.parametrize("completion", [0, 1])
def test_no_decode_rate_below_two_tokens(completion: int) -> None:
    speed = Speed.of(Usage(10, completion, 10 + completion, {}, Timing(0.1, 0.0)))
    assert speed.prefill_ms == 100.0 and speed.decode_tps is None


def test_a_cloud_answer_has_its_cached_tokens_and_no_timing() -> None:
    cached = Usage(100, 5, 105, {"prompt_tokens_details": {"cached_tokens": 64}})
    assert Speed.of(cached) == Speed(cached_tokens=64)
    assert Speed.of(Usage(100, 5, 105)) == Speed()  # it did not say: unknown, not 0
    assert Speed.of(None) == Speed()
    odd = Usage(1, 1, 2, {"prompt_tokens_details": {"cached_tokens": "12"}})
    assert Speed.of(odd).cached_tokens is None


def _answer(ts: float, target: str, prompt: int, completion: int, speed: Speed) -> Recent:
    provider, model = target.split("/")
    return Recent(ts, None, model, provider, 200, 1.0, prompt + completion, None, 0, prompt, target, speed)


def test_local_requests_per_model_over_the_window() -> None:
    now = 10_000.0
    recent = [
        _answer(now - WINDOW_S - 1, "local/a", 999, 9, Speed(999, 999.0, 1.0)),  # before the window
        _answer(now - 5, "local/a", 100, 11, Speed(0, 40.0, 10.0)),  # 10 tokens in 1 s
        _answer(now - 4, "local/a", 120, 31, Speed(100, 10.0, 30.0)),  # 30 tokens in 1 s
        _answer(now - 3, "local/a", 130, 1, Speed(120, 20.0, None)),  # one token: no rate
        _answer(now - 2, "cloud/x", 50, 5, Speed(40)),  # no timing: not a local answer
        _answer(now - 1, "local/b", 10, 3, Speed(0, 5.0, 100.0)),
    ]
    assert local_requests(recent, now) == [
        {
            "model": "local/a",
            "requests": 3,
            "prompt_tokens": 350,
            "cached_tokens": 220,
            "prefill_p50_ms": 20.0,
            "prefill_p95_ms": 40.0,
            "decode_tps": 20.0,  # 40 tokens in 2 s, not the mean of 10 and 30 per second
        },
        {
            "model": "local/b",
            "requests": 1,
            "prompt_tokens": 10,
            "cached_tokens": 0,
            "prefill_p50_ms": 5.0,
            "prefill_p95_ms": 5.0,
            "decode_tps": 100.0,
        },
    ]
    assert local_requests(recent[:1], now) == []
