"""Router chain: retries, fallback, breakers, deadline, streams. Scripted in-memory providers,
a fake clock, a fake sleep that advances it, a seeded rng (tests/routing/router_rig.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from aigw.config import BreakerConfig
from aigw.domain import ChatChunk, EmbedRequest, Route, Target
from aigw.errors import (
    AigwError,
    InvalidRequest,
    ServiceUnavailable,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from aigw.routing.breaker import Permit
from tests.routing.router_rig import (
    ONLY_A,
    REQ,
    RETRYABLE,
    ROUTE,
    Broken,
    Rig,
    Slow,
    Stall,
    status,
)

# A timeout falls back at once when another target remains (the next test).
RETRIED = [e for e in RETRYABLE if not isinstance(e, UpstreamTimeout)]


@pytest.mark.parametrize("err", RETRIED, ids=lambda e: getattr(e, "upstream_status", type(e).__name__))
def test_retryable_failure_is_retried_then_falls_back(err: UpstreamError) -> None:
    rig = Rig([err, err, err], retries=2)
    routed = rig.chat()
    assert routed.target == Target("b", "mb") and routed.value.id == "b"
    assert rig.calls == (3, 1)
    assert (routed.trace.fallbacks, routed.trace.retries) == (1, 2)
    assert rig.router.stats.snapshot() == {"fallbacks": 1, "retries": 2, "broken_streams": 0}
    assert len(rig.sleep.delays) == 2
    assert 0.1 <= rig.sleep.delays[0] <= 0.2 and 0.2 <= rig.sleep.delays[1] <= 0.4
    assert rig.breaker("a")["consecutive_failures"] == 3 and rig.breaker("a")["state"] == "closed"
    assert rig.health.snapshot("a")["last_error"] == err.message


def test_a_timeout_falls_back_at_once_but_is_retried_on_the_last_target() -> None:
    slow = UpstreamTimeout("a: slow", provider="a")
    rig = Rig([slow, slow, slow], retries=2)
    routed = rig.chat()
    assert routed.target == Target("b", "mb") and rig.calls == (1, 1) and routed.trace.retries == 0
    rig = Rig([slow, slow], retries=2)
    routed = asyncio.run(rig.router.chat(ONLY_A, REQ))
    assert routed.target == Target("a", "ma") and rig.calls == (3, 0) and routed.trace.retries == 2


def test_retry_that_succeeds_stays_on_the_target() -> None:
    rig = Rig([status(503)], retries=2)
    routed = rig.chat()
    assert routed.target == Target("a", "ma") and rig.calls == (2, 0)
    assert (routed.trace.fallbacks, routed.trace.retries) == (0, 1)
    assert rig.breaker("a")["consecutive_failures"] == 0


@pytest.mark.parametrize(
    "err",
    [status(401), status(403), status(404), UpstreamProtocolError("a: garbage", provider="a")],
    ids=["401", "403", "404", "protocol"],
)
def test_non_retryable_failure_goes_to_the_next_target_at_once(err: UpstreamError) -> None:
    rig = Rig([err], retries=3)
    routed = rig.chat()
    assert routed.target == Target("b", "mb") and rig.calls == (1, 1)
    assert (routed.trace.fallbacks, routed.trace.retries) == (1, 0) and rig.sleep.delays == []
    assert rig.breaker("a")["consecutive_failures"] == 1


def test_local_queue_full_goes_next_without_hurting_the_breaker() -> None:
    rig = Rig([ServiceUnavailable("queue full")], retries=3)
    assert rig.chat().target == Target("b", "mb") and rig.calls == (1, 1)
    assert rig.breaker("a")["consecutive_failures"] == 0 and rig.breaker("a")["window_requests"] == 0
    assert rig.health.snapshot("a")["last_error"] is None


@pytest.mark.parametrize(
    "err", [status(400), status(413), status(422), InvalidRequest("bad", param="x")], ids=str
)
def test_request_fault_is_raised_at_once(err: AigwError) -> None:
    rig = Rig([err], retries=3)
    with pytest.raises(AigwError) as e:
        rig.chat()
    assert e.value is err and rig.calls == (1, 0) and rig.sleep.delays == []
    assert rig.breaker("a") == {
        "state": "closed",
        "consecutive_failures": 0,
        "window_requests": 0,
        "window_failures": 0,
        "retry_in_s": 0.0,
        "opens": 0,
    }
    assert rig.health.snapshot("a") == {
        "reachable": None,
        "last_error": None,
        "last_error_at": None,
        "last_ok_at": None,
    }
    assert rig.router.stats.snapshot() == {"fallbacks": 0, "retries": 0, "broken_streams": 0}


def test_retry_after_above_the_cap_moves_on_without_sleeping() -> None:
    rig = Rig([status(429, retry_after=60)], retries=3, retry_after_cap_s=10)
    routed = rig.chat()
    assert routed.target == Target("b", "mb") and rig.calls == (1, 1)
    assert rig.sleep.delays == [] and routed.trace.retries == 0


def test_retry_after_within_the_cap_is_slept() -> None:
    rig = Rig([status(429, retry_after=3), status(503, retry_after=7.5)], retries=3)
    routed = rig.chat()
    assert routed.target == Target("a", "ma") and rig.calls == (3, 0)
    assert rig.sleep.delays == [3.0, 7.5] and routed.trace.retries == 2
    assert rig.clock.now == 1010.5


def test_deadline_spent_by_a_slow_attempt_raises_504_naming_it() -> None:
    rig = Rig([Slow(6, UpstreamConnectError("a: refused", provider="a"))], retries=2, deadline_s=5)
    with pytest.raises(UpstreamTimeout) as e:
        rig.chat()
    assert e.value.status_code == 504 and e.value.provider == "a"
    assert "within the 5 s deadline" in e.value.message and "last failure: a: refused" in e.value.message
    assert rig.calls == (1, 0) and rig.sleep.delays == []


def test_backoff_that_would_cross_the_deadline_is_not_slept() -> None:
    rig = Rig([status(429, retry_after=4)], retries=2, deadline_s=3)
    assert rig.chat().target == Target("b", "mb")
    assert rig.calls == (1, 1) and rig.sleep.delays == []


def test_deadline_cuts_a_hanging_attempt_in_real_time() -> None:
    rig = Rig([Stall(30)], deadline_s=0.05)
    t0 = time.monotonic()
    with pytest.raises(UpstreamTimeout) as e:
        rig.chat()
    assert time.monotonic() - t0 < 2
    assert "within the 0.05 s deadline" in e.value.message and e.value.status_code == 504
    assert rig.calls == (1, 0)
    assert rig.breaker("a")["consecutive_failures"] == 0  # the deadline says nothing about "a"


def test_all_targets_failing_raises_the_last_error() -> None:
    last = UpstreamStatusError("b: HTTP 401", provider="b", upstream_status=401)
    rig = Rig([status(500)] * 3, [last], retries=2)
    with pytest.raises(UpstreamStatusError) as e:
        rig.chat()
    assert e.value is last and rig.calls == (3, 1)
    assert rig.router.stats.retries == 2


def test_all_breakers_open_gives_503_with_retry_after() -> None:
    rig = Rig([status(500)], [status(502)], retries=0, breaker=BreakerConfig(failures=1, cooldown_s=30))
    with pytest.raises(UpstreamStatusError):
        rig.chat()
    rig.clock.now += 10
    with pytest.raises(ServiceUnavailable) as e:
        rig.chat()
    assert e.value.status_code == 503 and e.value.retry_after == 20.0
    assert "retry in 20 s" in e.value.message
    assert rig.calls == (1, 1)


def test_open_breaker_skips_the_target_until_one_probe_closes_it() -> None:
    rig = Rig([status(503)] * 3, retries=2, breaker=BreakerConfig(failures=3, cooldown_s=30))
    assert rig.chat().target == Target("b", "mb") and rig.calls == (3, 1)
    assert rig.breaker("a")["state"] == "open"
    for _ in range(3):
        routed = rig.chat()
        assert routed.target == Target("b", "mb")
        assert (routed.trace.fallbacks, routed.trace.retries) == (0, 0)  # a skip is not a try
    assert rig.calls == (3, 4)
    rig.clock.now += 30

    async def two_at_once() -> list[Any]:
        rig.a.script = [Stall(0.05)]
        return list(await asyncio.gather(rig.router.chat(ROUTE, REQ), rig.router.chat(ROUTE, REQ)))

    first, second = asyncio.run(two_at_once())
    assert first.target == Target("a", "ma")  # the probe
    assert second.target == Target("b", "mb")  # while the probe was out
    assert rig.calls == (4, 5)
    assert rig.breaker("a")["state"] == "closed" and rig.breaker("a")["opens"] == 1
    assert rig.chat().target == Target("a", "ma") and rig.calls == (5, 5)
    assert rig.router.stats.snapshot() == {"fallbacks": 1, "retries": 2, "broken_streams": 0}


def test_breaker_opening_during_retries_abandons_the_target() -> None:
    rig = Rig([status(503)] * 2, retries=3, breaker=BreakerConfig(failures=2, cooldown_s=30))
    routed = rig.chat()
    assert routed.target == Target("b", "mb") and rig.calls == (2, 1)
    assert rig.breaker("a")["state"] == "open"


def test_no_backoff_nor_retry_counted_once_the_breaker_opened() -> None:
    rig = Rig([status(503)] * 2, retries=3, breaker=BreakerConfig(failures=2, cooldown_s=30))
    routed = rig.chat()
    assert len(rig.sleep.delays) == 1  # only before the one retry actually made
    assert routed.trace.retries == 1 and rig.router.stats.retries == 1


def test_failed_probe_reopens_the_breaker() -> None:
    rig = Rig([status(500), status(500)], retries=0, breaker=BreakerConfig(failures=1, cooldown_s=30))
    rig.chat()
    rig.clock.now += 30
    assert rig.chat().target == Target("b", "mb") and rig.calls == (2, 2)
    assert rig.breaker("a")["state"] == "open" and rig.breaker("a")["opens"] == 2
    rig.clock.now += 29
    assert rig.chat().target == Target("b", "mb") and rig.calls == (2, 3)


def test_cancelled_probe_is_released() -> None:
    rig = Rig([status(500), Stall(30)], retries=0, breaker=BreakerConfig(failures=1, cooldown_s=30))
    rig.chat()
    rig.clock.now += 31

    async def cancel_the_probe() -> None:
        rig.a.stalled = asyncio.Event()
        task = asyncio.create_task(rig.router.chat(ROUTE, REQ))
        await asyncio.wait_for(rig.a.stalled.wait(), 5)
        assert rig.a.calls == 2
        assert rig.breaker("a")["state"] == "half_open"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_the_probe())
    assert rig.router.breakers.get(Target("a", "ma")).allow()  # the next request may probe


def test_stray_exception_becomes_protocol_error_and_falls_back() -> None:
    rig = Rig([KeyError("oops")], retries=3)
    routed = rig.chat()
    assert routed.target == Target("b", "mb") and rig.calls == (1, 1) and routed.trace.retries == 0
    assert rig.health.snapshot("a")["last_error"] == "a: unexpected failure (KeyError)"


def test_stray_timeout_error_is_mapped_and_falls_back() -> None:
    rig = Rig([TimeoutError("socket timed out")], retries=0)
    assert rig.chat().target == Target("b", "mb")


def test_embed_uses_the_same_chain() -> None:
    rig = Rig([UpstreamConnectError("a: refused", provider="a")] * 2, retries=1)
    routed = asyncio.run(rig.router.embed(ROUTE, EmbedRequest(body={"input": "x"}, model="smart")))
    assert routed.target == Target("b", "mb") and routed.value.model == "b" and rig.calls == (2, 1)
    assert (routed.trace.fallbacks, routed.trace.retries) == (1, 1)


# -- streams ---------------------------------------------------------------------------------


def texts(chunks: list[ChatChunk]) -> list[tuple[str, Any]]:
    return [(c.id, c.choices[0]["delta"].get("content")) for c in chunks]


async def open_and_drain(rig: Rig, route: Route = ROUTE) -> tuple[Any, list[ChatChunk]]:
    s = await rig.router.open_stream(route, REQ)
    return s, [c async for c in s.rest]


@pytest.mark.parametrize("after", ["none", "role"])
def test_stream_failure_before_content_falls_back_invisibly(after: str) -> None:
    rig = Rig([Broken(UpstreamConnectError("a: reset", provider="a"), after)], retries=0)
    s, rest = asyncio.run(open_and_drain(rig))
    assert s.target == Target("b", "mb") and rig.calls == (1, 1)
    assert texts(s.head) == [("b", None), ("b", "from b")]
    assert [c.id for c in rest] == ["b"] and rest[0].choices[0]["finish_reason"] == "stop"
    assert s.trace.fallbacks == 1 and rig.router.stats.fallbacks == 1


def test_stream_failure_before_content_is_retried_first() -> None:
    err = UpstreamConnectError("a: reset", provider="a")
    rig = Rig([Broken(err, "role"), Broken(err, "none")], retries=2)
    s, _ = asyncio.run(open_and_drain(rig))
    assert s.target == Target("a", "ma") and rig.calls == (3, 0) and s.trace.retries == 2
    assert texts(s.head) == [("a", None), ("a", "from a")]


@pytest.mark.parametrize(
    ("err", "raised"),
    [(UpstreamConnectError("a: reset", provider="a"), UpstreamConnectError), (ValueError("x"), None)],
    ids=["aigw", "stray"],
)
def test_stream_failure_after_content_breaks_the_stream(err: Exception, raised: type | None) -> None:
    rig = Rig([Broken(err, "content")], retries=3)

    async def run() -> tuple[Any, list[ChatChunk]]:
        s = await rig.router.open_stream(ROUTE, REQ)
        got = []
        with pytest.raises(AigwError) as e:
            async for c in s.rest:
                got.append(c)
        assert e.value is err if raised else isinstance(e.value, UpstreamProtocolError)
        return s, got

    s, got = asyncio.run(run())
    assert s.target == Target("a", "ma") and texts(s.head) == [("a", None), ("a", "from a")] and got == []
    assert rig.calls == (1, 0)
    assert rig.router.stats.snapshot() == {"fallbacks": 0, "retries": 0, "broken_streams": 1}
    assert rig.breaker("a")["consecutive_failures"] == 1


def test_first_token_timeout_falls_back_when_another_target_remains() -> None:
    rig = Rig([Stall(30)], retries=0, first_token_timeout_s=0.05)
    t0 = time.monotonic()
    s, _ = asyncio.run(open_and_drain(rig))
    assert time.monotonic() - t0 < 2
    assert s.target == Target("b", "mb") and rig.calls == (1, 1)
    assert texts(s.head) == [("b", None), ("b", "from b")]
    assert rig.health.snapshot("a")["last_error"] == "a: no first token within 0.05 s"
    assert rig.breaker("a")["consecutive_failures"] == 1


def test_first_token_timeout_does_not_apply_to_the_last_target() -> None:
    rig = Rig([Stall(0.3)], retries=0, first_token_timeout_s=0.05)
    s, _ = asyncio.run(open_and_drain(rig, ONLY_A))
    assert s.target == Target("a", "ma") and texts(s.head) == [("a", None), ("a", "from a")]
    rig2 = Rig([status(401)], [Stall(0.3)], retries=0, first_token_timeout_s=0.05)
    s2, _ = asyncio.run(open_and_drain(rig2))
    assert s2.target == Target("b", "mb") and rig2.calls == (1, 1)


def test_first_token_timeout_does_not_apply_when_later_targets_are_all_open() -> None:
    rig = Rig([Stall(0.3)], [status(500)], retries=0, first_token_timeout_s=0.05)
    for _ in range(5):  # BreakerConfig.failures
        rig.router.breakers.get(Target("b", "mb")).failure(Permit(probe=False, epoch=0))
    assert rig.breaker("b")["state"] == "open"
    s, _ = asyncio.run(open_and_drain(rig))
    assert s.target == Target("a", "ma")
