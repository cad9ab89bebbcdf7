"""Rate limiter: token buckets per subject on an injected fake clock."""

from __future__ import annotations

import random

import pytest

from aigw.access.ratelimit import Admission, Limits, RateLimiter, format_duration

T0 = 1000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(max_subjects: int = 10_000) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    return RateLimiter(clock, max_subjects=max_subjects), clock


def remaining(rl: RateLimiter, subject: str, limits: Limits) -> tuple[int | None, int | None]:
    snap = rl.snapshot(subject, limits)
    return snap["requests"]["remaining"], snap["tokens"]["remaining"]


def exact(x: float) -> object:
    return pytest.approx(x, abs=1e-9)


# -- burst, refusal, refill ------------------------------------------------------------------


@pytest.mark.parametrize(("rpm", "retry"), [(60, 1.0), (90, 60 / 90), (6000, 0.01)])
def test_burst_up_to_capacity_then_refused_with_exact_retry_after(rpm: int, retry: float) -> None:
    rl, clock = make()
    lim = Limits(rpm=rpm)
    for _ in range(rpm):
        assert rl.admit("k", lim, 0).allowed
    refused = rl.admit("k", lim, 0)
    assert (refused.allowed, refused.limited_by, refused.reserved_tokens) == (False, "requests", 0)
    assert refused.retry_after == exact(retry)
    clock.now += retry * 0.999
    assert not rl.admit("k", lim, 0).allowed
    clock.now = T0 + retry
    assert rl.admit("k", lim, 0).allowed
    assert not rl.admit("k", lim, 0).allowed


def test_refill_is_continuous_and_stops_at_capacity() -> None:
    rl, clock = make()
    lim = Limits(rpm=60, tpm=6000)  # 1 request/s, 100 tokens/s
    for _ in range(60):
        rl.admit("k", lim, 100)
    assert remaining(rl, "k", lim) == (0, 0)
    clock.now += 0.7
    assert remaining(rl, "k", lim) == (0, 70)  # whole requests only
    clock.now += 1.8
    assert remaining(rl, "k", lim) == (2, 250)
    assert rl.snapshot("k", lim)["requests"]["reset_s"] == 57.5
    clock.now += 57.5
    assert remaining(rl, "k", lim) == (60, 6000)
    clock.now += 3600
    assert remaining(rl, "k", lim) == (60, 6000)
    for _ in range(60):
        assert rl.admit("k", lim, 100).allowed
    assert not rl.admit("k", lim, 100).allowed


def test_tokens_refusal_and_retry_after() -> None:
    rl, clock = make()
    lim = Limits(tpm=600)  # 10 tokens/s
    assert rl.admit("k", lim, 550).allowed
    refused = rl.admit("k", lim, 80)
    assert (refused.allowed, refused.limited_by) == (False, "tokens")
    assert refused.retry_after == exact(3.0)  # 30 missing tokens at 10/s
    clock.now += 3.0
    ok = rl.admit("k", lim, 80)
    assert (ok.allowed, ok.retry_after, ok.limited_by, ok.reserved_tokens) == (True, 0.0, None, 80)


def test_retry_after_waits_for_both_buckets() -> None:
    rl, _ = make()
    lim = Limits(rpm=60, tpm=600)
    assert rl.admit("k", lim, 600).allowed
    for _ in range(59):
        assert rl.admit("k", lim, 0).allowed
    refused = rl.admit("k", lim, 100)  # requests: 1 s away; tokens: 10 s away
    assert (refused.limited_by, refused.retry_after) == ("tokens", exact(10.0))
    refused = rl.admit("k", lim, 5)  # tokens: 0.5 s away; requests: 1 s
    assert (refused.limited_by, refused.retry_after) == ("requests", exact(1.0))


def test_estimate_above_capacity_passes_only_on_a_full_bucket() -> None:
    rl, clock = make()
    lim = Limits(tpm=1000)
    assert rl.admit("k", lim, 1).allowed
    refused = rl.admit("k", lim, 5000)
    assert refused.retry_after == exact(0.06)  # until full: 1 token at 1000/60 per s
    clock.now += 0.06
    big = rl.admit("k", lim, 5000)
    # Taken down to the debt floor (-capacity), no further: that is what settle() reconciles.
    assert (big.allowed, big.reserved_tokens) == (True, 2000)
    assert rl.snapshot("k", lim)["tokens"] == {"limit": 1000, "remaining": 0, "reset_s": 120.0}


def test_refused_requests_take_nothing() -> None:
    rl, clock = make()
    lim = Limits(rpm=10, tpm=1000)
    for _ in range(10):
        rl.admit("k", lim, 10)
    before = rl.snapshot("k", lim)
    for _ in range(100):
        assert not rl.admit("k", lim, 10).allowed
    assert rl.snapshot("k", lim) == before
    # Refused by tokens while requests have room: no request is taken either.
    clock.now += 60
    assert rl.admit("k", lim, 1000).allowed
    for _ in range(20):
        assert rl.admit("k", lim, 1).limited_by == "tokens"
    assert remaining(rl, "k", lim) == (9, 0)


# -- long-run accuracy -----------------------------------------------------------------------


@pytest.mark.parametrize("rpm", [60, 600, 6000])
def test_sustained_over_demand_admits_the_rate(rpm: int) -> None:
    rl, clock = make()
    lim = Limits(rpm=rpm)
    for _ in range(rpm):
        rl.admit("k", lim, 0)
    assert not rl.admit("k", lim, 0).allowed
    dt = 60 / (rpm * 2.7)  # 2.7x the allowed rate, never aligned with the refill
    admitted = 0
    for i in range(1, int(600 / dt) + 1):
        clock.now = T0 + i * dt
        admitted += rl.admit("k", lim, 0).allowed
    assert abs(admitted - 10 * rpm) <= 0.01 * 10 * rpm


@pytest.mark.parametrize("tpm", [6_000, 60_000, 600_000])
@pytest.mark.parametrize("settled", [False, True])
def test_sustained_token_over_demand_admits_the_rate(tpm: int, settled: bool) -> None:
    """Requests of varied sizes at ~3x the tpm; settled: actual counts off the estimate by +-50%."""
    rng = random.Random(tpm)
    rl, clock = make()
    lim = Limits(tpm=tpm)
    assert rl.admit("k", lim, tpm).reserved_tokens == tpm
    consumed = 0
    for i in range(1, 3001):  # every 0.2 s for 10 minutes; mean size tpm/100
        clock.now = T0 + i * 0.2
        est = rng.randint(1, tpm // 50)
        adm = rl.admit("k", lim, est)
        if adm.allowed:
            actual = round(est * rng.uniform(0.5, 1.5)) if settled else est
            rl.settle("k", lim, adm, actual)
            consumed += actual
    assert abs(consumed - 10 * tpm) <= 0.01 * 10 * tpm


# -- settle: reconciliation and debt ---------------------------------------------------------


def test_settle_refunds_and_charges_exactly() -> None:
    rl, _ = make()
    lim = Limits(rpm=100, tpm=1000)
    adm = rl.admit("k", lim, 100)
    assert (adm.reserved_tokens, adm.headers["x-ratelimit-remaining-tokens"]) == (100, "900")
    rl.settle("k", lim, adm, 40)
    assert remaining(rl, "k", lim) == (99, 960)
    adm = rl.admit("k", lim, 100)
    rl.settle("k", lim, adm, 250)
    assert remaining(rl, "k", lim) == (98, 710)


def test_refund_never_exceeds_capacity() -> None:
    rl, clock = make()
    lim = Limits(tpm=1000)
    adm = rl.admit("k", lim, 300)
    clock.now += 60
    rl.settle("k", lim, adm, 0)
    assert rl.snapshot("k", lim)["tokens"] == {"limit": 1000, "remaining": 1000, "reset_s": 0.0}


def test_settle_ignores_refusals_and_unlimited_tokens() -> None:
    rl, _ = make()
    lim = Limits(tpm=1000)
    rl.admit("k", lim, 1000)
    refused = rl.admit("k", lim, 10)
    rl.settle("k", lim, refused, 500)
    assert rl.snapshot("k", lim)["tokens"]["reset_s"] == 60.0
    free = rl.admit("u", Limits(rpm=5), 10)
    rl.settle("u", Limits(rpm=5), free, 10**6)
    assert remaining(rl, "u", Limits(rpm=5, tpm=1000)) == (4, 1000)


def test_heavy_debt_unlocks_after_one_window() -> None:
    rl, clock = make()
    lim = Limits(tpm=1000)
    adm = rl.admit("k", lim, 10)
    rl.settle("k", lim, adm, 10**9)  # actual far beyond the estimate: debt floored at -capacity
    assert rl.snapshot("k", lim)["tokens"] == {"limit": 1000, "remaining": 0, "reset_s": 120.0}
    refused = rl.admit("k", lim, 10)
    assert refused.retry_after == exact(60.6)  # one window back to zero, then 10 tokens
    clock.now += 60.0
    assert rl.admit("k", lim, 0).allowed
    assert not rl.admit("k", lim, 10).allowed
    clock.now = T0 + 60.6
    assert rl.admit("k", lim, 10).allowed
    clock.now = T0 + 120.0
    assert remaining(rl, "k", lim) == (None, 990)


def test_a_subject_in_heavy_debt_is_forgettable_after_two_windows() -> None:
    rl, clock = make(max_subjects=1)
    lim = Limits(tpm=1000)
    rl.settle("a", lim, rl.admit("a", lim, 10), 10**9)
    clock.now += 119.9
    rl.admit("b", lim, 0)
    assert "a" in rl
    clock.now = T0 + 120
    rl.admit("c", lim, 0)
    assert "a" not in rl


def test_debt_from_repeated_settles_is_still_floored() -> None:
    rl, clock = make()
    lim = Limits(rpm=1000, tpm=500)
    for _ in range(50):
        rl.settle("k", lim, rl.admit("k", lim, 0), 10**6)
        clock.now += 1
    clock.now = T0 + 49 + 60  # one window after the last charge: unlocked
    assert rl.admit("k", lim, 0).allowed


# -- unlimited, headers ----------------------------------------------------------------------


def test_zero_limits_are_unlimited_without_headers_or_state() -> None:
    rl, _ = make()
    for _ in range(10_000):
        adm = rl.admit("k", Limits(), 10**6)
        assert adm == Admission(True, 0.0, None, 0, {})
    assert len(rl) == 0
    assert rl.snapshot("k", Limits()) == {
        "requests": {"limit": 0, "remaining": None, "reset_s": 0.0},
        "tokens": {"limit": 0, "remaining": None, "reset_s": 0.0},
    }


def test_headers_for_both_limits() -> None:
    rl, _ = make()
    adm = rl.admit("k", Limits(rpm=60, tpm=1000), 100)
    assert adm.headers == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "900",
        "x-ratelimit-reset-tokens": "6s",
    }


def test_headers_only_for_non_zero_limits_and_on_refusal() -> None:
    rl, clock = make()
    adm = rl.admit("a", Limits(rpm=6000), 10**6)
    assert adm.headers == {
        "x-ratelimit-limit-requests": "6000",
        "x-ratelimit-remaining-requests": "5999",
        "x-ratelimit-reset-requests": "10ms",
    }
    lim = Limits(tpm=90_000)
    rl.admit("b", lim, 90_000)
    clock.now += 0.5
    refused = rl.admit("b", lim, 1000)
    assert refused.headers == {
        "x-ratelimit-limit-tokens": "90000",
        "x-ratelimit-remaining-tokens": "750",
        "x-ratelimit-reset-tokens": "59.5s",
    }
    for _ in range(60):
        rl.admit("c", Limits(rpm=60), 0)
    clock.now += 0.6
    assert rl.admit("c", Limits(rpm=60), 0).headers == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "0",  # 0.6 of a request: floor
        "x-ratelimit-reset-requests": "59.4s",
    }


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (-1.0, "0s"),
        (0.0004, "1ms"),
        (0.02, "20ms"),
        (0.12, "120ms"),
        (0.9999, "1s"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (17.25, "17.25s"),
        (59.999, "59.999s"),
        (60.0, "1m0s"),
        (90.5, "1m30.5s"),
        (120.0, "2m0s"),
        (360.0, "6m0s"),
        (3600.0, "1h0m0s"),
        (3723.25, "1h2m3.25s"),
    ],
)
def test_duration_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# -- admin: snapshot / reset -----------------------------------------------------------------


def test_snapshot_and_reset() -> None:
    rl, clock = make()
    lim = Limits(rpm=60, tpm=600)
    for _ in range(30):
        rl.admit("k", lim, 10)
    clock.now += 1
    assert rl.snapshot("k", lim) == {
        "requests": {"limit": 60, "remaining": 31, "reset_s": 29.0},
        "tokens": {"limit": 600, "remaining": 310, "reset_s": 29.0},
    }
    assert rl.snapshot("unknown", lim)["requests"] == {"limit": 60, "remaining": 60, "reset_s": 0.0}
    assert "unknown" not in rl  # reading does not create state
    rl.reset("k")
    assert remaining(rl, "k", lim) == (60, 600)
    rl.reset("never-seen")  # no error
    for _ in range(60):
        assert rl.admit("k", lim, 10).allowed


# -- memory bound ----------------------------------------------------------------------------


def test_lru_forgets_full_subjects_beyond_the_bound() -> None:
    rl, clock = make(max_subjects=3)
    lim = Limits(rpm=60)
    for s in "abc":
        rl.admit(s, lim, 0)
    clock.now += 2
    rl.admit("a", lim, 0)  # a: most recently used
    clock.now += 2  # all full again
    rl.admit("d", lim, 0)
    assert (len(rl), "b" in rl) == (3, False)  # b: the least recently used (full) subject
    rl.admit("e", lim, 0)
    assert sorted(rl._states) == ["a", "d", "e"]


def test_subjects_still_refilling_are_kept_beyond_the_bound() -> None:
    rl, clock = make(max_subjects=2)
    lim = Limits(rpm=60)
    for s in "abc":
        rl.admit(s, lim, 0)
    for _ in range(59):
        rl.admit("a", lim, 0)  # a: empty bucket
    assert len(rl) == 3  # nothing full to forget: forgetting would hand out a fresh burst
    assert not rl.admit("a", lim, 0).allowed
    clock.now += 1.5  # b and c full, a still refilling
    rl.admit("d", lim, 0)
    assert sorted(rl._states) == ["a", "d"]
    assert remaining(rl, "a", lim) == (1, None)


def test_settle_after_being_forgotten_still_charges() -> None:
    rl, clock = make(max_subjects=1)
    lim = Limits(tpm=600)
    adm = rl.admit("a", lim, 100)
    clock.now += 60
    rl.admit("b", lim, 0)  # a is full again: forgotten
    assert "a" not in rl
    rl.settle("a", lim, adm, 400)  # a long stream ends: its extra 300 tokens still count
    assert remaining(rl, "a", lim) == (None, 300)


# -- limits edited between calls -------------------------------------------------------------


def test_limits_changed_midway() -> None:
    rl, clock = make()
    for _ in range(30):
        rl.admit("k", Limits(rpm=60), 0)
    lowered = rl.admit("k", Limits(rpm=20), 0)  # 30 used > 20: clamped to an empty bucket
    assert (lowered.allowed, lowered.retry_after) == (False, exact(3.0))
    assert lowered.headers["x-ratelimit-limit-requests"] == "20"
    raised = rl.admit("k", Limits(rpm=120), 0)  # 20 used of 120
    assert raised.headers["x-ratelimit-remaining-requests"] == "99"
    # Tokens appear (0 -> limited): an untracked bucket starts full.
    adm = rl.admit("k", Limits(rpm=120, tpm=1000), 400)
    assert adm.headers["x-ratelimit-remaining-tokens"] == "600"
    # Lowered below the debt: floored at -new capacity; refill at the new rate.
    rl.settle("k", Limits(tpm=1000), adm, 2400)  # 2000 used: remaining -1000
    refused = rl.admit("k", Limits(tpm=100), 10)
    assert refused.retry_after == exact(66.0)  # from -100 to 10 at 100/60 per s
    assert rl.snapshot("k", Limits(tpm=100))["tokens"]["reset_s"] == 120.0
    # Requests limit removed (-> 0), then set again: an untracked bucket starts full.
    rl.admit("k", Limits(tpm=100), 0)
    assert remaining(rl, "k", Limits(rpm=7, tpm=100)) == (7, 0)
    clock.now += 120
    assert remaining(rl, "k", Limits(rpm=7, tpm=100)) == (7, 100)
