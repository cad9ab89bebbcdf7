"""Circuit breaker: closed -> open -> half-open -> closed/open, on an injected fake clock."""

from __future__ import annotations

from typing import Any

from aigw.config import BreakerConfig
from aigw.domain import Target
from aigw.routing.breaker import Breaker, BreakerBoard, BreakerState, Permit


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(**cfg: Any) -> tuple[Breaker, Clock]:
    clock = Clock()
    return Breaker(BreakerConfig(**cfg), clock), clock


# A request admitted while the breaker was closed (outcomes in the closed state count whatever
# the permit's age).
ADMITTED = Permit(probe=False, epoch=0)


def state(b: Breaker) -> BreakerState:
    return b.state  # read through a call, so that mypy does not narrow it between steps


def fail(b: Breaker, n: int) -> None:
    for _ in range(n):
        p = b.allow()
        assert p is not None
        b.failure(p)


def opened(cooldown_s: float = 30.0) -> tuple[Breaker, Clock]:
    """A breaker opened at t=1000 by 3 consecutive failures (ratio tripping off): a probe's
    single failure must re-open it by itself, not by the consecutive count."""
    b, clock = make(failures=3, min_requests=1000, cooldown_s=cooldown_s)
    fail(b, 3)
    assert state(b) is BreakerState.OPEN
    return b, clock


# -- opening ---------------------------------------------------------------------------------


def test_opens_after_n_consecutive_failures_and_not_before() -> None:
    b, _ = make(failures=3, min_requests=1000)
    fail(b, 2)
    assert state(b) is BreakerState.CLOSED and b.allow()
    assert b.snapshot()["consecutive_failures"] == 2
    b.failure(ADMITTED)
    assert state(b) is BreakerState.OPEN and b.opens == 1
    assert not b.allow()


def test_success_resets_the_consecutive_count() -> None:
    b, _ = make(failures=3, min_requests=1000)
    fail(b, 2)
    b.success(ADMITTED)
    assert b.snapshot()["consecutive_failures"] == 0
    fail(b, 2)
    assert state(b) is BreakerState.CLOSED
    fail(b, 1)
    assert state(b) is BreakerState.OPEN


def test_opens_on_failure_ratio_over_the_window_once_min_requests_seen() -> None:
    b, _ = make(failures=100, failure_ratio=0.5, window_s=10, min_requests=4)
    for outcome in ("ok", "fail", "ok"):
        p = b.allow()
        assert p is not None
        b.success(p) if outcome == "ok" else b.failure(p)
    assert state(b) is BreakerState.CLOSED
    b.failure(ADMITTED)  # 2 of 4 failed: 0.5 >= 0.5
    assert state(b) is BreakerState.OPEN and b.opens == 1


def test_ratio_below_threshold_stays_closed() -> None:
    b, _ = make(failures=100, failure_ratio=0.6, window_s=10, min_requests=4)
    b.success(ADMITTED)
    b.success(ADMITTED)
    b.failure(ADMITTED)
    b.failure(ADMITTED)  # 2 of 4 = 0.5 < 0.6
    assert state(b) is BreakerState.CLOSED
    snap = b.snapshot()
    assert (snap["window_requests"], snap["window_failures"]) == (4, 2)


def test_ratio_is_not_judged_before_min_requests() -> None:
    b, _ = make(failures=100, failure_ratio=0.5, window_s=10, min_requests=4)
    fail(b, 3)  # 100 % failures, but only 3 requests seen
    assert state(b) is BreakerState.CLOSED
    fail(b, 1)
    assert state(b) is BreakerState.OPEN


def test_outcomes_older_than_the_window_are_forgotten() -> None:
    b, clock = make(failures=100, failure_ratio=0.5, window_s=10, min_requests=4)
    b.success(ADMITTED)
    b.success(ADMITTED)
    b.failure(ADMITTED)
    clock.now += 10.5  # the three outcomes above fall out of the window
    b.failure(ADMITTED)  # counted alone they would make 2 of 4 failed
    assert state(b) is BreakerState.CLOSED
    snap = b.snapshot()
    assert (snap["window_requests"], snap["window_failures"]) == (1, 1)
    assert snap["consecutive_failures"] == 2  # the consecutive count knows no window


def test_outcome_exactly_window_old_still_counts() -> None:
    b, clock = make(failures=100, failure_ratio=0.5, window_s=10, min_requests=4)
    b.success(ADMITTED)
    b.success(ADMITTED)
    b.failure(ADMITTED)
    clock.now += 10.0
    b.failure(ADMITTED)
    assert state(b) is BreakerState.OPEN


# -- open, cooldown, half-open ---------------------------------------------------------------


def test_open_skips_until_cooldown_then_allows_exactly_one_probe() -> None:
    b, clock = opened(cooldown_s=30)
    clock.now += 29.999
    assert not b.allow() and state(b) is BreakerState.OPEN
    clock.now += 0.001
    assert b.allow()  # the probe
    assert state(b) is BreakerState.HALF_OPEN
    assert not b.allow()  # a concurrent request while the probe is out
    assert not b.allow()


def test_probe_success_closes() -> None:
    b, clock = opened()
    clock.now += 30
    probe = b.allow()
    assert probe is not None and probe.probe
    b.success(probe)
    assert state(b) is BreakerState.CLOSED
    assert b.allow() and b.allow()
    snap = b.snapshot()
    assert snap == {
        "state": "closed",
        "consecutive_failures": 0,
        "window_requests": 1,
        "window_failures": 0,
        "retry_in_s": 0.0,
        "opens": 1,
    }


def test_probe_failure_reopens_and_restarts_the_cooldown() -> None:
    b, clock = opened(cooldown_s=30)
    clock.now += 45  # t=1045
    probe = b.allow()
    assert probe is not None
    b.failure(probe)
    assert state(b) is BreakerState.OPEN and b.opens == 2
    assert b.retry_in() == 30.0
    clock.now += 29.5
    assert not b.allow()
    assert b.snapshot()["retry_in_s"] == 0.5
    clock.now += 0.5
    assert b.allow() and state(b) is BreakerState.HALF_OPEN


def test_release_of_a_probe_lets_the_next_request_probe() -> None:
    b, clock = opened()
    clock.now += 30
    probe = b.allow()
    assert probe is not None
    b.release(probe)  # e.g. the client left, or the request itself was bad
    assert state(b) is BreakerState.HALF_OPEN
    second = b.allow()  # the next request is the probe now
    assert second is not None and second.probe
    assert not b.allow()
    b.success(second)
    assert state(b) is BreakerState.CLOSED


def test_failure_of_a_request_admitted_before_opening_keeps_the_cooldown() -> None:
    b, clock = opened(cooldown_s=30)
    clock.now += 10
    b.failure(ADMITTED)  # a straggler
    assert state(b) is BreakerState.OPEN and b.opens == 1
    assert b.retry_in() == 20.0


# -- snapshot, board -------------------------------------------------------------------------


def test_snapshot_of_an_open_breaker() -> None:
    b, clock = make(failures=2, min_requests=1000, cooldown_s=30)
    b.success(ADMITTED)
    fail(b, 2)
    clock.now += 17.5
    assert b.snapshot() == {
        "state": "open",
        "consecutive_failures": 0,
        "window_requests": 0,
        "window_failures": 0,
        "retry_in_s": 12.5,
        "opens": 1,
    }
    clock.now += 20
    assert b.snapshot()["retry_in_s"] == 0.0
    assert b.allow()
    assert b.snapshot()["state"] == "half_open"


def test_board_keeps_one_breaker_per_provider_and_model() -> None:
    clock = Clock()
    board = BreakerBoard(BreakerConfig(failures=1, min_requests=1000, cooldown_s=30), clock)
    a1, a2, b1 = Target("a", "m1"), Target("a", "m2"), Target("b", "m1")
    assert board.get(a1) is board.get(Target("a", "m1"))
    assert len({id(board.get(t)) for t in (a1, a2, b1)}) == 3
    board.get(a1).failure(ADMITTED)
    assert not board.get(a1).allow()
    assert board.get(a2).allow() and board.get(b1).allow()
    snap = board.snapshot()
    assert set(snap) == {"a/m1", "a/m2", "b/m1"}
    assert snap["a/m1"]["state"] == "open" and snap["a/m1"]["retry_in_s"] == 30.0
    assert snap["a/m2"]["state"] == snap["b/m1"]["state"] == "closed"


# -- the probe belongs to its permit ---------------------------------------------------------


def test_a_straggler_cannot_free_close_or_reopen_the_probe_slot() -> None:
    b, clock = make(failures=2, min_requests=1000, cooldown_s=30)
    straggler = b.allow()  # admitted while closed, e.g. a long stream
    assert straggler is not None
    fail(b, 2)
    clock.now += 30
    probe = b.allow()
    assert probe is not None and probe.probe
    b.release(straggler)
    assert not b.allow(), "the straggler freed the probe slot: two probes at once"
    b.failure(straggler)
    assert state(b) is BreakerState.HALF_OPEN and b.opens == 1, "a straggler re-opened the breaker"
    b.success(straggler)
    assert state(b) is BreakerState.HALF_OPEN, "only the probe's outcome closes the breaker"
    b.success(probe)
    assert state(b) is BreakerState.CLOSED


def test_an_old_probe_permit_has_no_say_after_the_breaker_reopened() -> None:
    b, clock = opened(cooldown_s=30)
    clock.now += 30
    first = b.allow()
    assert first is not None
    b.failure(first)  # re-opened: epoch 2
    clock.now += 30
    second = b.allow()
    assert second is not None and second.epoch != first.epoch
    b.release(first)
    assert not b.allow()
    b.success(second)
    assert state(b) is BreakerState.CLOSED


def test_the_board_forgets_healthy_breakers_past_its_capacity() -> None:
    board = BreakerBoard(BreakerConfig(failures=1, min_requests=1000, cooldown_s=30), Clock(), capacity=3)
    sick = Target("p", "sick")
    board.get(sick).failure(ADMITTED)
    for i in range(100):
        board.get(Target("p", f"m{i}"))
    assert len(board) == 3
    assert board.get(sick).state is BreakerState.OPEN, "an open breaker is never forgotten"
