"""Routing policy: verdict per error type, what counts against a target, backoff, first content."""

from __future__ import annotations

import random

import pytest

from aigw.config import RoutingConfig
from aigw.domain import ChatChunk, Usage
from aigw.errors import (
    AigwError,
    CapabilityError,
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from aigw.routing.policy import Verdict, counts_against_target, has_content, retry_delay, verdict


def status(code: int) -> UpstreamStatusError:
    return UpstreamStatusError(f"HTTP {code}", provider="p", upstream_status=code)


CASES: list[tuple[AigwError, Verdict, bool]] = [
    *[(status(c), Verdict.FINAL, False) for c in (400, 413, 422)],
    *[(status(c), Verdict.NEXT, True) for c in (401, 403, 404)],
    *[(status(c), Verdict.RETRY, True) for c in (408, 409, 429, 500, 502, 503, 504, 529)],
    (UpstreamConnectError("refused", provider="p"), Verdict.RETRY, True),
    (UpstreamTimeout("slow", provider="p"), Verdict.RETRY, True),
    (UpstreamProtocolError("garbage", provider="p"), Verdict.NEXT, True),
    (ServiceUnavailable("queue full"), Verdict.NEXT, False),
    (InvalidRequest("bad", param="x"), Verdict.FINAL, False),
    (CapabilityError("no tools", param="tools"), Verdict.NEXT, False),  # another target may honour it
    (ModelNotFound("nope"), Verdict.FINAL, False),
    (PayloadTooLarge("big"), Verdict.FINAL, False),
]


def _id(err: AigwError) -> str:
    if isinstance(err, UpstreamStatusError):
        return f"status{err.upstream_status}"
    return type(err).__name__


@pytest.mark.parametrize(("err", "expected", "counts"), CASES, ids=[_id(c[0]) for c in CASES])
def test_verdict_and_whether_it_counts_against_the_target(
    err: AigwError, expected: Verdict, counts: bool
) -> None:
    assert verdict(err) is expected
    assert counts_against_target(err) is counts


def test_a_timeout_moves_on_when_another_target_can_answer() -> None:
    timeout = UpstreamTimeout("slow", provider="p")
    assert verdict(timeout, has_next=True) is Verdict.NEXT
    assert verdict(timeout, has_next=False) is Verdict.RETRY
    refused = UpstreamConnectError("refused", provider="p")
    assert verdict(refused, has_next=True) is Verdict.RETRY


def test_every_upstream_status_of_the_table_is_covered() -> None:
    codes = sorted(e.upstream_status for e, _, _ in CASES if isinstance(e, UpstreamStatusError))
    assert codes == [400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504, 529]


# -- retry_delay -----------------------------------------------------------------------------


class FixedRng(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


CFG = RoutingConfig(backoff_base_s=0.2, backoff_max_s=5.0, retry_after_cap_s=10.0)


@pytest.mark.parametrize(
    ("retry", "ceiling"),
    [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.6), (5, 3.2), (6, 5.0), (7, 5.0), (10, 5.0)],
)
def test_backoff_grows_exponentially_up_to_the_max(retry: int, ceiling: float) -> None:
    assert retry_delay(CFG, retry, None, FixedRng(0.0)) == pytest.approx(ceiling / 2)
    assert retry_delay(CFG, retry, None, FixedRng(0.5)) == pytest.approx(ceiling * 0.75)


@pytest.mark.parametrize("retry", [1, 2, 3, 6, 9])
def test_jitter_stays_within_half_the_ceiling_and_the_ceiling(retry: int) -> None:
    ceiling = min(5.0, 0.2 * 2 ** (retry - 1))
    rng = random.Random(1234)
    draws = [retry_delay(CFG, retry, None, rng) for _ in range(2000)]
    assert all(d is not None and ceiling / 2 <= d <= ceiling for d in draws)
    values = [d for d in draws if d is not None]
    # the draws are spread over the band, not stuck at one end
    assert min(values) < ceiling * 0.52 and max(values) > ceiling * 0.98
    assert len(set(values)) > 1900


def test_same_seed_same_delays() -> None:
    a = [retry_delay(CFG, r, None, random.Random(7)) for r in (1, 2, 3)]
    b = [retry_delay(CFG, r, None, random.Random(7)) for r in (1, 2, 3)]
    assert a == b


@pytest.mark.parametrize(("retry", "retry_after"), [(1, 3.0), (1, 0.15), (3, 9.5), (6, 10.0)])
def test_retry_after_is_honoured_up_to_the_cap(retry: int, retry_after: float) -> None:
    for seed in range(200):
        d = retry_delay(CFG, retry, retry_after, random.Random(seed))
        assert d is not None and d >= retry_after
    # when it is longer than the whole backoff band it is the delay, exactly
    assert retry_delay(CFG, 1, 3.0, random.Random(0)) == 3.0


def test_retry_after_below_the_backoff_keeps_the_backoff() -> None:
    assert retry_delay(CFG, 4, 0.1, FixedRng(0.0)) == pytest.approx(0.8)


@pytest.mark.parametrize("retry_after", [10.001, 11.0, 3600.0])
def test_retry_after_beyond_the_cap_means_do_not_wait(retry_after: float) -> None:
    assert retry_delay(CFG, 1, retry_after, random.Random(0)) is None


def test_zero_cap_refuses_any_retry_after_but_not_plain_backoff() -> None:
    cfg = RoutingConfig(retry_after_cap_s=0.0, backoff_base_s=0.2)
    assert retry_delay(cfg, 1, 0.5, FixedRng(0.0)) is None
    assert retry_delay(cfg, 1, None, FixedRng(0.0)) == pytest.approx(0.1)


# -- has_content -----------------------------------------------------------------------------


def chunk(*choices: dict[str, object], usage: Usage | None = None) -> ChatChunk:
    return ChatChunk("id", 0, "m", [dict(c) for c in choices], usage=usage)


@pytest.mark.parametrize(
    ("c", "expected"),
    [
        (chunk({"index": 0, "delta": {"role": "assistant"}}), False),
        (chunk({"index": 0, "delta": {"role": "assistant", "content": ""}}), False),
        (chunk({"index": 0, "delta": {"content": None}}), False),
        (chunk({"index": 0, "delta": {}}), False),
        (chunk({"index": 0, "delta": {}, "finish_reason": None}), False),
        (chunk(), False),
        (chunk({"index": 0, "delta": {"role": "assistant", "content": "Hi"}}), True),
        (chunk({"index": 0, "delta": {"content": " "}}), True),
        (
            chunk({"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "type": "function"}]}}),
            True,
        ),
        (chunk({"index": 0, "delta": {"refusal": "no"}}), True),
        (chunk({"index": 0, "delta": {}, "finish_reason": "stop"}), True),
        (chunk(usage=Usage(3, 0, 3)), True),
        (chunk({"index": 0, "delta": {"role": "assistant"}}, {"index": 1, "delta": {"content": "x"}}), True),
    ],
    ids=[
        "role-only",
        "empty-content",
        "null-content",
        "empty-delta",
        "null-finish",
        "no-choices",
        "text",
        "whitespace-text",
        "tool-calls",
        "refusal",
        "finish-reason",
        "usage-only",
        "second-choice-text",
    ],
)
def test_has_content(c: ChatChunk, expected: bool) -> None:
    assert has_content(c) is expected
