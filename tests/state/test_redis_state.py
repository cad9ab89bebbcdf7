"""The Redis state backend in process against a real redis-server: the shared rate limiter keeps
the in-process limiter's semantics across instances, keys live in Redis, and a Redis that fails is
handled as `on_state_error` says (open: this instance's own limits; closed: 503) and used again,
without a restart, once it answers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aigw.access.ratelimit import Limits, RateLimiter
from aigw.config.model import StateConfig
from aigw.errors import InvalidRequest, ServiceUnavailable
from tests.fixtures.redis_server import RedisServer

pytest.importorskip("redis", reason="the 'team' extra is not installed")

from aigw.state.redis.conn import SharedState
from aigw.state.redis.keys import RedisKeyStore
from aigw.state.redis.limits import SharedLimiter


def state(server: RedisServer, **kw: object) -> SharedState:
    return SharedState(
        StateConfig.model_validate({"backend": "redis", "url": server.url, "retry_s": 0.2, **kw})
    )


def test_two_instances_share_one_request_bucket(server: RedisServer) -> None:
    a, b = SharedLimiter(state(server)), SharedLimiter(state(server))
    limits = Limits(rpm=10)
    admitted = [(a if i % 2 else b).admit("key_1", limits, 5).allowed for i in range(20)]
    assert admitted.count(True) == 10 and admitted[:10] == [True] * 10  # not 10 each
    refused = a.admit("key_1", limits, 5)
    assert not refused.allowed and refused.limited_by == "requests" and 5 < refused.retry_after <= 6.1
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert a.admit("key_2", limits, 5).allowed  # another subject, its own bucket
    b.reset("key_1")
    assert a.admit("key_1", limits, 5).allowed


def test_tokens_reserve_settle_and_debt_as_in_process(server: RedisServer) -> None:
    shared, local = SharedLimiter(state(server)), RateLimiter()
    limits = Limits(tpm=1000)
    for lim in (shared, local):
        first = lim.admit("s", limits, 300)
        assert first.allowed and first.reserved_tokens == 300
        lim.settle("s", limits, first, 900)  # used more than it reserved: charged the difference
        assert 99 <= lim.room("s", limits) <= 100
        assert not lim.admit("s", limits, 200).allowed  # refused: takes nothing
        assert lim.snapshot("s", limits)["tokens"]["remaining"] in (99, 100)
    big = shared.admit("t", limits, 5000)  # above the capacity: a full bucket lets it through into debt
    assert big.allowed and big.reserved_tokens == 2000 and shared.room("t", limits) == 0


def test_keys_live_in_redis_and_a_revocation_is_seen_everywhere(server: RedisServer) -> None:
    one, two = RedisKeyStore(state(server)), RedisKeyStore(state(server))
    key, plain = one.create("alice", rpm=5, models=["fast"])
    from aigw.access.keys import hash_key

    seen = two.by_hash(hash_key(plain))
    assert seen is not None and seen.id == key.id and seen.rpm == 5 and seen.models == ("fast",)
    assert [k.name for k in two.list()] == ["alice"] and two.count_active() == 1
    with pytest.raises(InvalidRequest, match="already exists"):
        two.create("alice")
    two.revoke("alice")
    assert one.by_hash(hash_key(plain)) is None and one.count_active() == 0
    assert one.get(key.id) is not None and one.get("alice").revoked_at is not None  # type: ignore[union-attr]
    with pytest.raises(InvalidRequest, match="revoked; names are not reused"):
        one.create("alice")


def test_a_failing_redis_fails_open_to_local_limits_and_recovers(server: RedisServer) -> None:
    st = state(server)
    lim = SharedLimiter(st)
    limits = Limits(rpm=3)
    assert all(lim.admit("k", limits, 1).allowed for _ in range(3))
    server.stop()
    local = [lim.admit("k", limits, 1).allowed for _ in range(4)]  # this instance's own bucket
    assert local == [True, True, True, False] and st.health()["degraded"]
    server.start()  # the same port (its data kept): nothing to restart on our side
    time.sleep(0.25)  # the hold-off after a failure
    assert lim.admit("k2", limits, 1).allowed and st.health()["reachable"]
    assert st.client.exists(st.name("rl:k2"))  # the shared bucket again


def test_a_failing_redis_fails_closed_with_a_503(server: RedisServer) -> None:
    st = state(server, on_state_error="closed")
    lim = SharedLimiter(st)
    server.stop()
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        lim.admit("k", Limits(rpm=3), 1)
    with pytest.raises(ServiceUnavailable):
        RedisKeyStore(st).by_hash("00")
    from aigw.access.ratelimit import Admission
    from aigw.state.redis.budgets import SharedBudgets

    taken = Admission(True, 0.0, None, 10, {})
    lim.settle("k", Limits(tpm=100), taken, 50)  # a request already answered is never failed by it
    SharedBudgets(st).settle("key_x", 0.5, 0.1)


def test_a_budget_is_held_once_across_instances(server: RedisServer) -> None:
    from aigw.access.keys import ApiKey
    from aigw.state.redis.budgets import SharedBudgets

    key = ApiKey("key_b", "bo", "aigw-x", 0, 0, 1.0, None, 0.0, None)
    a, b = SharedBudgets(state(server), leases=False), SharedBudgets(state(server), leases=False)
    assert a.take(key, 0.6) and not b.take(key, 0.6)  # A's hold is B's too
    assert b.standing(key.id) == (0.0, 0.6)
    a.settle(key.id, 0.6, 0.25)  # the request cost less than it held
    assert a.standing(key.id) == (0.25, 0.0)  # at once on the instance that settled
    assert b.standing(key.id) == (0.0, 0.6)  # pending elsewhere: the hold still counts (stricter)
    assert a.take(key, 0.05)  # A's next hold carries the settle in the same script call
    assert b.standing(key.id) == pytest.approx((0.25, 0.05))
    assert b.take(key, 0.7) and not a.take(key, 0.01)


def test_a_settle_reaches_redis_within_a_tick_without_another_request(server: RedisServer) -> None:
    from aigw.access.keys import ApiKey
    from aigw.state.redis.budgets import SharedBudgets

    key = ApiKey("key_c", "cy", "aigw-x", 0, 0, 1.0, None, 0.0, None)
    sa = state(server)
    a, b = SharedBudgets(sa, leases=False), SharedBudgets(state(server), leases=False)
    assert a.take(key, 0.5)
    a.settle(key.id, 0.5, 0.125)
    deadline = time.monotonic() + 2
    while b.standing(key.id) != (0.125, 0.0) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert b.standing(key.id) == (0.125, 0.0)  # the outbox sent it by itself
    assert a.take(key, 0.25)
    a.settle(key.id, 0.25, 0.25)
    sa.close()  # stopping sends what is pending
    assert b.standing(key.id) == (0.375, 0.0)


def test_cache_answers_and_leases_are_shared(server: RedisServer, tmp_path: Path) -> None:
    import asyncio

    from aigw.cache.store import CachedAnswer
    from aigw.state.redis.cache import SharedResponseStore

    def store(name: str) -> SharedResponseStore:
        return SharedResponseStore(
            state(server), tmp_path / name, ttl_s=60, max_size_bytes=1 << 20, memory_bytes=1 << 20
        )

    a, b = store("a"), store("b")
    assert a.lease("k", 5.0) and not b.lease("k", 5.0)  # one leader across instances
    now = time.time()
    a.put("k1", CachedAnswer("chat", "up", "m", b"{}", 1, 2, now, now + 60), "up/m")
    found = asyncio.run(b.follow(["k1"], "k", 5.0))  # B's follower reads what A's leader stored
    assert found is not None and found.body == b"{}"
    assert b.lease("gone", 5.0)
    a.release("gone")  # as a leader that got no answer: its followers lead themselves at once
    t0 = time.monotonic()
    assert asyncio.run(a.follow(["nothing"], "gone", 5.0)) is None and time.monotonic() - t0 < 1
    assert b.lease("crashed", 0.2)  # a leader that crashed: its lease expires
    assert asyncio.run(a.follow(["nothing"], "crashed", 5.0)) is None
    a.close()
    b.close()


def test_least_busy_counts_every_instances_requests(server: RedisServer) -> None:
    from aigw.domain import Target
    from aigw.state.redis.busy import SharedBusy

    t, u = Target("up", "a"), Target("up", "b")
    a, b = SharedBusy(state(server)), SharedBusy(state(server))
    a.start(t)
    a.start(t)
    b.start(u)
    for x in (a, b, a):  # each exchange: its own counts out, the others' in
        x.sync()
    assert b.counts([t, u]) == [2, 1] and a.counts([t, u]) == [2, 1]
    a.end(t)
    a.sync()
    b.sync()
    assert b.counts([t, u]) == [1, 1]
    server.stop()  # Redis gone: each counts its own from the next exchange on
    b.sync()
    assert b.counts([t, u]) == [0, 1]


def test_a_user_and_password_in_the_url(tmp_path: Path) -> None:
    server = RedisServer(
        tmp_path / "auth", "--user", "default", "off", "--user", "aigw", "on", ">s3cret", "~*", "&*", "+@all"
    )
    server.start()
    try:
        url = f"redis://aigw:s3cret@127.0.0.1:{server.port}/0"
        good = SharedState(StateConfig.model_validate({"backend": "redis", "url": url}))
        assert SharedLimiter(good).admit("k", Limits(rpm=1), 1).allowed
        assert good.client.exists(good.name("rl:k")) and good.health()["reachable"]
        bad_url = f"redis://aigw:wrong@127.0.0.1:{server.port}/0"
        bad = SharedState(
            StateConfig.model_validate({"backend": "redis", "url": bad_url, "on_state_error": "closed"})
        )
        with pytest.raises(ServiceUnavailable, match="unreachable"):
            SharedLimiter(bad).admit("k", Limits(rpm=1), 1)
        assert "AuthenticationError" in str(bad.health()["last_error"]) and "wrong" not in str(bad.health())
    finally:
        server.stop()


def test_redis_without_its_package_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from aigw.errors import ConfigError
    from aigw.state.backend import shared_state

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "redis" else real(name, *a)
    )
    cfg = StateConfig.model_validate({"backend": "redis", "url": "redis://127.0.0.1:1/0"})
    with pytest.raises(ConfigError, match=r"needs the redis package: pip install .*\[team\]"):
        shared_state(cfg)


def test_an_instance_that_starts_opens_the_breakers_open_elsewhere(server: RedisServer) -> None:
    import asyncio

    from aigw.config.model import BreakerConfig
    from aigw.domain import Target
    from aigw.routing.breaker import BreakerBoard, BreakerState
    from aigw.state.redis.breakers import SharedBreakers

    t = Target("up", "m")

    def trip(board: BreakerBoard, target: Target) -> None:
        permit = board.get(target).allow()
        assert permit is not None
        board.get(target).failure(permit)

    async def joined(cfg: BreakerConfig) -> tuple[BreakerBoard, Callable[[], None]]:
        board = BreakerBoard(cfg)
        stop = SharedBreakers(state(server), board).start(asyncio.get_running_loop())
        for _ in range(50):  # its subscription starts on a thread, then reads what is open
            await asyncio.sleep(0.02)
            if board.get(t).state is BreakerState.OPEN:
                break
        return board, stop

    async def scenario() -> None:
        cfg = BreakerConfig(failures=1, cooldown_s=30)
        a = BreakerBoard(cfg)
        stops = [SharedBreakers(state(server), a).start(asyncio.get_running_loop())]
        trip(a, t)
        assert a.get(t).state is BreakerState.OPEN
        b, stop = await joined(cfg)  # started after A's breaker opened
        stops.append(stop)
        assert b.get(t).state is BreakerState.OPEN and 29 < b.get(t).retry_in() <= 30
        short = BreakerConfig(failures=1, cooldown_s=0.2)
        other = Target("up", "n")
        a2 = BreakerBoard(short)
        stops.append(SharedBreakers(state(server), a2).start(asyncio.get_running_loop()))
        trip(a2, other)
        await asyncio.sleep(0.3)  # its cooldown ended: an instance starting now finds it gone
        c, stop = await joined(short)
        stops.append(stop)
        assert c.get(other).state is BreakerState.CLOSED and c.get(t).state is BreakerState.OPEN
        for s in stops:
            await asyncio.to_thread(s)

    asyncio.run(scenario())
