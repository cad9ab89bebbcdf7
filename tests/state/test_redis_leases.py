"""Leases of the shared rate limiter, against a real redis-server: far from its limit a key is
admitted from what its instance took ahead (no round trip per request), close to it every
admission is a round trip again and the limit holds exactly across instances; what a lease did not
use goes back to Redis when it expires or the instance stops, and one that cannot cover a request
goes back in the call that admits it."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable

import pytest

from aigw.access.ratelimit import Limits
from aigw.config.model import StateConfig
from tests.fixtures.redis_server import RedisServer

pytest.importorskip("redis", reason="the 'team' extra is not installed")

from aigw.state.redis.conn import SharedState
from aigw.state.redis.limits import LEASE_REQUESTS, LEASE_S, SharedLimiter


def state(server: RedisServer, clock: Callable[[], float] = time.monotonic) -> SharedState:
    return SharedState(StateConfig.model_validate({"backend": "redis", "url": server.url}), clock=clock)


def scripts_run(st: SharedState) -> int:
    """Scripts Redis has run: each reads its hash once (EVALSHA's count would include the first
    call's NOSCRIPT)."""
    return int(st.client.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0))


def used(server: RedisServer, subject: str, limits: Limits) -> tuple[int, int]:
    """(requests, tokens) the subject's buckets have used, read by an instance holding no lease."""
    snap = SharedLimiter(state(server), leases=False).snapshot(subject, limits)
    req, tok = snap["requests"], snap["tokens"]
    return (req["limit"] - req["remaining"] if req["limit"] else 0), (
        tok["limit"] - tok["remaining"] if tok["limit"] else 0
    )


def test_far_from_its_limit_a_key_is_admitted_without_a_round_trip_each(server: RedisServer) -> None:
    st = state(server)
    lim = SharedLimiter(st)
    limits = Limits(rpm=10_000, tpm=10**9)
    before = scripts_run(st)
    t0 = time.monotonic()
    answers = [lim.admit("k", limits, 100) for _ in range(3 * LEASE_REQUESTS)]
    refill = (time.monotonic() - t0) * 10_000 / 60 + 1  # what the bucket may regain meanwhile
    calls = scripts_run(st) - before
    assert all(a.allowed and a.reserved_tokens == 100 for a in answers)
    assert calls <= 3  # one round trip per lease of LEASE_REQUESTS, not one per request
    remaining = [int(a.headers["x-ratelimit-remaining-requests"]) for a in answers]
    assert remaining[0] == 9_999  # this instance's lease counts as room
    assert 10_000 - len(answers) <= remaining[-1] <= 10_000 - len(answers) + refill
    assert all(y <= x + refill for x, y in itertools.pairwise(remaining))  # counts down, one a request


def test_close_to_the_limit_two_instances_admit_exactly_the_limit(server: RedisServer) -> None:
    a, b = SharedLimiter(state(server)), SharedLimiter(state(server))
    limits = Limits(rpm=100)
    rng = random.Random(7)
    t0 = time.monotonic()
    ok = sum(rng.choice((a, b)).admit("key_1", limits, 1).allowed for _ in range(200))
    refill = (time.monotonic() - t0) * 100 / 60
    assert 100 <= ok <= 100 + refill + 1e-9
    assert not a.admit("key_1", limits, 1).allowed and not b.admit("key_1", limits, 1).allowed


def test_a_tokens_lease_that_cannot_cover_a_request_goes_back_with_it(server: RedisServer) -> None:
    a, b = SharedLimiter(state(server)), SharedLimiter(state(server))
    limits = Limits(tpm=1000)
    assert a.admit("s", limits, 100).reserved_tokens == 100  # and a lease of (1000 - 100) / 8 = 112
    assert used(server, "s", limits)[1] == 212
    assert a.room("s", limits) == 900  # its own lease counts as room
    big = a.admit("s", limits, 800)  # more than the lease: it goes back in the same call
    assert big.allowed and big.reserved_tokens == 800
    assert used(server, "s", limits)[1] == 900 + 12  # and a new lease of (1000 - 900) / 8
    assert not b.admit("s", limits, 100).allowed  # 88 left in Redis (and 12 in A's lease)
    assert a.admit("s", limits, 100).allowed  # A's lease goes back with it: exactly 100 fit
    assert not a.admit("s", limits, 1).allowed and not b.admit("s", limits, 1).allowed


def test_what_a_lease_did_not_use_goes_back(server: RedisServer) -> None:
    now = [1000.0]  # this instance's clock, moved by hand (Redis refills on its own: ~0 here)
    st = state(server, lambda: now[0])
    lim = SharedLimiter(st)
    limits = Limits(rpm=1000)
    assert lim.admit("k", limits, 1).allowed
    assert used(server, "k", limits)[0] == 1 + LEASE_REQUESTS  # (1000 - 1) / 8 would be more
    now[0] += LEASE_S / 2
    st.outbox.flush()
    assert used(server, "k", limits)[0] == 1 + LEASE_REQUESTS  # not expired yet
    now[0] += LEASE_S / 2
    st.outbox.flush()
    assert used(server, "k", limits)[0] == 1  # expired: back to Redis, for every instance
    assert lim.admit("k", limits, 1).allowed and used(server, "k", limits)[0] == 2 + LEASE_REQUESTS
    st.close()  # stopping gives the rest back too
    assert used(server, "k", limits)[0] == 2


def test_settles_wait_for_the_next_admission_or_a_tick(server: RedisServer) -> None:
    st = state(server)
    lim = SharedLimiter(st, leases=False)
    limits = Limits(tpm=1000)
    first = lim.admit("s", limits, 300)
    lim.settle("s", limits, first, 100)  # a refund of 200
    assert lim.room("s", limits) == 900  # this instance sees it at once
    assert lim.admit("s", limits, 100).allowed  # carried by this admission's script call
    assert used(server, "s", limits)[1] == 200
    second = lim.admit("s", limits, 100)
    lim.settle("s", limits, second, 400)
    st.outbox.flush()
    assert used(server, "s", limits)[1] == 600  # sent by the outbox with no request to carry it


def test_budget_holds_come_from_a_lease_and_the_budget_holds_exactly(server: RedisServer) -> None:
    from aigw.access.keys import ApiKey
    from aigw.state.redis.budgets import SharedBudgets

    key = ApiKey("key_b", "bo", "aigw-x", 0, 0, 10.0, None, 0.0, None)
    sa = state(server)
    a, b = SharedBudgets(sa), SharedBudgets(state(server))
    before = scripts_run(sa)
    assert a.take(key, 0.01)  # and a lease of min(64 holds like it, (10 - 0.01) / 8)
    assert a.standing(key.id) == pytest.approx((0.0, 0.01))  # its own lease is room, not held
    assert b.standing(key.id) == pytest.approx((0.0, 0.65))  # another's lease is held
    before += 2  # standing() reads the hash too
    assert all(a.take(key, 0.01) for _ in range(LEASE_REQUESTS))
    assert scripts_run(sa) - before == 1  # one round trip for 65 holds
    assert a.standing(key.id) == pytest.approx((0.0, 0.65)) == b.standing(key.id)
    for _ in range(65):
        a.settle(key.id, 0.01, 0.005)
    sa.outbox.flush()
    assert b.standing(key.id) == pytest.approx((0.325, 0.0))
    # Close to the budget, the leases shrink to nothing: the instances together never overshoot it.
    taken = 0.0
    for i in range(3000):
        if (a if i % 3 else b).take(key, 0.01):
            taken += 0.01
    a_view, b_view = a.standing(key.id), b.standing(key.id)
    assert sum(a_view) <= 10.0 + 1e-6 and sum(b_view) <= 10.0 + 1e-6
    assert 10.0 - 0.325 - 0.02 < taken <= 10.0 - 0.325 + 1e-6  # all of it but leases' crumbs
    sa.close()  # A's lease goes back
    assert b.standing(key.id)[1] == pytest.approx(taken, abs=0.02)


def test_a_settle_that_puts_the_bucket_in_debt_ends_the_lease(server: RedisServer) -> None:
    lim = SharedLimiter(state(server))
    limits = Limits(tpm=1000)
    first = lim.admit("s", limits, 100)  # and a lease of (1000 - 100) / 8 = 112 tokens
    lim.settle("s", limits, first, 1600)  # it used 1,500 more than it reserved: in debt
    assert not lim.admit("s", limits, 50).allowed  # not from the lease: refused, as in process
    assert lim.admit("t", limits, 50).allowed


def test_a_settle_made_while_redis_is_down_reaches_it_when_it_is_back(server: RedisServer) -> None:
    from aigw.access.keys import ApiKey
    from aigw.state.redis.budgets import SharedBudgets

    key = ApiKey("key_d", "di", "aigw-x", 0, 0, 1.0, None, 0.0, None)
    cfg = {"backend": "redis", "url": server.url, "retry_s": 0.2}
    st = SharedState(StateConfig.model_validate(cfg))
    a = SharedBudgets(st, leases=False)
    assert a.take(key, 0.5)
    server.stop()
    a.settle(key.id, 0.5, 0.25)  # Redis cannot take it now: it waits (a budget never refills)
    st.outbox.flush()
    server.start()  # the same data
    deadline = time.monotonic() + 5
    b = SharedBudgets(state(server), leases=False)
    while b.standing(key.id) != (0.25, 0.0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b.standing(key.id) == (0.25, 0.0)  # not held for good, not lost
    st.close()


def test_what_settles_after_the_outbox_closed_still_reaches_redis(server: RedisServer) -> None:
    st = state(server)
    lim = SharedLimiter(st, leases=False)
    limits = Limits(tpm=1000)
    taken = lim.admit("s", limits, 100)
    st.close()  # the daemon stops while a request is still answering
    lim.settle("s", limits, taken, 400)
    assert used(server, "s", limits)[1] == 400
