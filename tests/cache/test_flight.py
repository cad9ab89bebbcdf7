"""aigw.cache.flight (single-flight) and aigw.cache.service (AnswerCache over a real ResponseStore)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from aigw.cache.flight import Flight, SingleFlight
from aigw.cache.keys import request_digest, target_key
from aigw.cache.policy import BYPASS, Decision
from aigw.cache.service import AnswerCache, Plan
from aigw.cache.store import CachedAnswer, ResponseStore
from aigw.domain import Route, Target, Usage

LONG_WAIT = 30.0  # an upper bound no passing test comes near: followers are woken by publish()

# -- SingleFlight -----------------------------------------------------------------------------------


def test_lead_then_a_second_lead_for_the_same_key_is_refused() -> None:
    async def run() -> None:
        sf: SingleFlight[str] = SingleFlight(LONG_WAIT)
        first = sf.lead("k")
        assert isinstance(first, Flight)
        assert first.key == "k"
        assert sf.lead("k") is None
        other = sf.lead("other")
        assert other is not None
        assert len(sf) == 2
        first.publish("a")
        other.publish("b")
        assert len(sf) == 0

    asyncio.run(run())


def test_followers_get_the_published_answer() -> None:
    async def run() -> None:
        sf: SingleFlight[str] = SingleFlight(LONG_WAIT)
        flight = sf.lead("k")
        assert flight is not None
        followers = [asyncio.create_task(sf.follow("k")) for _ in range(3)]
        await asyncio.sleep(0)
        assert not any(f.done() for f in followers)  # they wait for the leader
        flight.publish("the answer")
        assert await asyncio.gather(*followers) == ["the answer"] * 3
        assert len(sf) == 0

    asyncio.run(run())


def test_publish_none_gives_followers_none() -> None:
    async def run() -> None:
        sf: SingleFlight[str] = SingleFlight(LONG_WAIT)
        flight = sf.lead("k")
        assert flight is not None
        follower = asyncio.create_task(sf.follow("k"))
        await asyncio.sleep(0)
        assert not follower.done()
        flight.publish(None)
        assert await follower is None
        assert len(sf) == 0
        assert sf.lead("k") is not None  # the key is free again

    asyncio.run(run())


def test_follow_without_a_leader_returns_none_at_once() -> None:
    async def run() -> None:
        sf: SingleFlight[str] = SingleFlight(LONG_WAIT)
        task = asyncio.create_task(sf.follow("nobody"))
        await asyncio.sleep(0)
        assert task.done()  # no waiting for a leader that does not exist
        assert task.result() is None

    asyncio.run(run())


def test_follower_of_a_leader_that_never_publishes_gives_up_after_wait_s() -> None:
    async def run() -> None:
        sf: SingleFlight[str] = SingleFlight(0.05)
        flight = sf.lead("k")
        assert flight is not None
        assert await sf.follow("k") is None
        # the leader may still publish later, for followers that come after
        late = asyncio.create_task(sf.follow("k"))
        await asyncio.sleep(0)
        flight.publish("late")
        assert await late == "late"

    asyncio.run(run())


def test_a_stale_leader_is_replaced() -> None:
    async def run() -> None:
        sf: SingleFlight[str] = SingleFlight(0.05)
        stale = sf.lead("k")
        assert stale is not None
        assert sf.lead("k") is None  # still fresh
        await asyncio.sleep(0.2)  # well past wait_s
        fresh = sf.lead("k")
        assert fresh is not None
        assert fresh is not stale
        assert len(sf) == 1
        # the stale leader publishing at last must not retire the new one
        stale.publish("old")
        assert len(sf) == 1
        follower = asyncio.create_task(sf.follow("k"))
        await asyncio.sleep(0)
        assert not follower.done()
        fresh.publish("new")
        assert await follower == "new"
        assert len(sf) == 0

    asyncio.run(run())


def test_publish_is_idempotent_and_retires_the_key() -> None:
    async def run() -> None:
        sf: SingleFlight[str] = SingleFlight(LONG_WAIT)
        flight = sf.lead("k")
        assert flight is not None
        follower = asyncio.create_task(sf.follow("k"))
        await asyncio.sleep(0)
        flight.publish("first")
        flight.publish("second")
        flight.publish(None)
        assert len(sf) == 0
        assert await follower == "first"
        assert await flight.wait(LONG_WAIT) == "first"

    asyncio.run(run())


# -- AnswerCache ------------------------------------------------------------------------------------

A = Target("openai", "gpt-4o-mini")
B = Target("azure", "gpt-4o-mini")
ROUTE = Route("fast", (A, B), alias="fast")
ONLY_B = Route("azure/gpt-4o-mini", (B,))
DET = {"model": "fast", "messages": [{"role": "user", "content": "2+2?"}], "temperature": 0}
RANDOM = {"model": "fast", "messages": [{"role": "user", "content": "2+2?"}], "temperature": 0.8}
BODY = orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion", "choices": []})
USAGE = Usage(prompt_tokens=9, completion_tokens=4, total_tokens=13)


def identity(t: Target) -> str:
    return f"{t.provider}/{t.model}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResponseStore]:
    s = ResponseStore(
        tmp_path / "cache", ttl_s=3600, max_size_bytes=10 * 1024 * 1024, memory_bytes=0, clock=FakeClock()
    )
    yield s
    s.close()


def make_cache(store: ResponseStore, mode: Any = "deterministic", wait_s: float = LONG_WAIT) -> AnswerCache:
    return AnswerCache(store, mode, identity, wait_s)


def test_plan_bypasses_a_non_deterministic_chat_in_deterministic_mode(store: ResponseStore) -> None:
    cache = make_cache(store)
    plan = cache.plan("chat", ROUTE, RANDOM, None)
    assert plan.decision == BYPASS
    assert plan.keys == {}
    assert plan.status == "bypass"
    assert asyncio.run(cache.lookup(plan)) is None
    assert plan.status == "bypass"
    assert plan.flight is None
    assert cache.save(plan, A, BODY, USAGE) is None
    store.flush()
    assert store.stats().entries == 0


def test_plan_keys_follow_the_route(store: ResponseStore) -> None:
    cache = make_cache(store)
    plan = cache.plan("chat", ROUTE, DET, None)
    digest = request_digest("chat", DET)
    assert plan.decision == Decision(lookup=True, store=True)
    assert list(plan.keys) == [A, B]
    assert plan.keys == {
        A: target_key(digest, "openai/gpt-4o-mini"),
        B: target_key(digest, "azure/gpt-4o-mini"),
    }
    assert plan.flight_key not in plan.keys.values()
    assert cache.plan("embed", ROUTE, DET, None).keys[A] != plan.keys[A]
    assert cache.plan("chat", ROUTE, RANDOM, None).keys == {}


def test_all_mode_caches_a_non_deterministic_chat(store: ResponseStore) -> None:
    cache = make_cache(store, "all")
    assert cache.plan("chat", ROUTE, RANDOM, None).decision == Decision(True, True)


def test_miss_then_save_then_hit(store: ResponseStore) -> None:
    async def run() -> None:
        cache = make_cache(store)
        plan = cache.plan("chat", ROUTE, DET, None)
        assert await cache.lookup(plan) is None
        assert plan.status == "miss"
        assert plan.flight is not None  # this request leads identical ones
        assert cache.in_flight() == 1

        saved = cache.save(plan, A, BODY, USAGE)
        assert saved is not None
        assert (saved.kind, saved.provider, saved.model, saved.body) == (
            "chat",
            "openai",
            "gpt-4o-mini",
            BODY,
        )
        assert (saved.prompt_tokens, saved.completion_tokens) == (9, 4)
        assert plan.flight is None
        assert cache.in_flight() == 0
        store.flush()

        again = cache.plan("chat", ROUTE, {**DET, "stream": True, "user": "someone-else"}, None)
        found = await cache.lookup(again)
        assert again.status == "hit"
        assert found == saved
        assert found is not None
        assert found.body == BODY
        assert again.flight is None

    asyncio.run(run())


def test_save_without_usage_counts_no_tokens(store: ResponseStore) -> None:
    async def run() -> None:
        cache = make_cache(store)
        plan = cache.plan("embed", ROUTE, {"model": "e", "input": "x"}, None)
        assert await cache.lookup(plan) is None
        saved = cache.save(plan, A, b'{"data":[]}', None)
        assert saved is not None
        assert (saved.kind, saved.prompt_tokens, saved.completion_tokens) == ("embed", 0, 0)

    asyncio.run(run())


def test_a_concurrent_identical_request_waits_for_the_first_and_hits(store: ResponseStore) -> None:
    async def run() -> None:
        cache = make_cache(store)
        first = cache.plan("chat", ROUTE, DET, None)
        second = cache.plan("chat", ROUTE, DET, None)
        assert await cache.lookup(first) is None
        assert first.flight is not None

        waiting = asyncio.create_task(cache.lookup(second))
        await asyncio.sleep(0)
        assert not waiting.done()
        assert second.status == "miss"

        saved = cache.save(first, A, BODY, USAGE)
        got = await waiting
        assert got is not None
        assert got is saved
        assert got.body == BODY
        assert second.status == "hit"
        assert second.flight is None  # a follower does not lead
        assert cache.in_flight() == 0

    asyncio.run(run())


def test_a_follower_whose_leader_failed_misses_and_can_store_its_own(store: ResponseStore) -> None:
    async def run() -> None:
        cache = make_cache(store)
        first = cache.plan("chat", ROUTE, DET, None)
        second = cache.plan("chat", ROUTE, DET, None)
        assert await cache.lookup(first) is None
        waiting = asyncio.create_task(cache.lookup(second))
        await asyncio.sleep(0)
        first.publish(None)  # the leader's upstream call failed
        assert await waiting is None
        assert second.status == "miss"
        assert cache.in_flight() == 0
        assert cache.save(second, B, BODY, USAGE) is not None
        store.flush()
        third = cache.plan("chat", ROUTE, DET, None)
        found = await cache.lookup(third)
        assert found is not None
        assert found.provider == "azure"

    asyncio.run(run())


def test_an_answer_from_the_routes_second_target_is_found(store: ResponseStore) -> None:
    async def run() -> None:
        cache = make_cache(store)
        plan = cache.plan("chat", ROUTE, DET, None)
        assert await cache.lookup(plan) is None
        cache.save(plan, B, BODY, USAGE)  # the first target failed; the second answered
        store.flush()

        again = cache.plan("chat", ROUTE, DET, None)
        found = await cache.lookup(again)
        assert again.status == "hit"
        assert found is not None
        assert (found.provider, found.model) == ("azure", "gpt-4o-mini")

        # a route to B alone shares the entry; a route to A alone does not
        only_b = cache.plan("chat", ONLY_B, DET, None)
        assert await cache.lookup(only_b) is not None
        only_a = cache.plan("chat", Route("openai/gpt-4o-mini", (A,)), DET, None)
        assert await cache.lookup(only_a) is None
        assert only_a.status == "miss"
        only_a.publish(None)

    asyncio.run(run())


def test_targets_are_tried_in_route_order(store: ResponseStore) -> None:
    async def run() -> None:
        cache = make_cache(store)
        plan = cache.plan("chat", ROUTE, DET, None)
        await cache.lookup(plan)
        cache.save(plan, B, b'{"from":"B"}', USAGE)
        plan_a = cache.plan("chat", Route("openai/gpt-4o-mini", (A,)), DET, None)
        await cache.lookup(plan_a)
        cache.save(plan_a, A, b'{"from":"A"}', USAGE)
        store.flush()
        found = await cache.lookup(cache.plan("chat", ROUTE, DET, None))
        assert found is not None
        assert found.body == b'{"from":"A"}'
        reversed_route = Route("fast", (B, A))
        found = await cache.lookup(cache.plan("chat", reversed_route, DET, None))
        assert found is not None
        assert found.body == b'{"from":"B"}'

    asyncio.run(run())


def test_saving_for_a_target_outside_the_route_stores_nothing_and_releases_followers(
    store: ResponseStore,
) -> None:
    async def run() -> None:
        cache = make_cache(store)
        plan = cache.plan("chat", ONLY_B, DET, None)
        await cache.lookup(plan)
        follower_plan = cache.plan("chat", ONLY_B, DET, None)
        follower = asyncio.create_task(cache.lookup(follower_plan))
        await asyncio.sleep(0)
        assert cache.save(plan, A, BODY, USAGE) is None
        assert await follower is None
        assert cache.in_flight() == 0
        store.flush()
        assert store.stats().entries == 0

    asyncio.run(run())


def test_no_cache_skips_the_lookup_but_still_stores(store: ResponseStore) -> None:
    async def run() -> None:
        cache = make_cache(store)
        seed = cache.plan("chat", ROUTE, DET, None)
        await cache.lookup(seed)
        cache.save(seed, A, b'{"old":1}', USAGE)
        store.flush()

        plan = cache.plan("chat", ROUTE, DET, "No-Cache")
        assert plan.decision == Decision(lookup=False, store=True)
        assert await cache.lookup(plan) is None  # an entry exists, but the client asked to skip it
        assert plan.status == "bypass"
        assert plan.flight is None
        saved = cache.save(plan, A, b'{"new":2}', USAGE)
        assert saved is not None
        store.flush()

        found = await cache.lookup(cache.plan("chat", ROUTE, DET, None))
        assert found is not None
        assert found.body == b'{"new":2}'

    asyncio.run(run())


def test_no_store_stores_nothing(store: ResponseStore) -> None:
    async def run() -> None:
        cache = make_cache(store)
        plan = cache.plan("chat", ROUTE, DET, "max-age=0, no-store")
        assert plan.decision == Decision(lookup=True, store=False)
        assert await cache.lookup(plan) is None
        assert plan.status == "miss"
        assert plan.flight is None  # it will not store, so it does not lead
        assert cache.in_flight() == 0
        assert cache.save(plan, A, BODY, USAGE) is None
        store.flush()
        assert store.stats().entries == 0
        later = cache.plan("chat", ROUTE, DET, None)
        assert await cache.lookup(later) is None
        assert later.status == "miss"
        later.publish(None)

    asyncio.run(run())


def test_no_store_may_still_be_answered_from_the_cache(store: ResponseStore) -> None:
    async def run() -> None:
        cache = make_cache(store)
        seed = cache.plan("chat", ROUTE, DET, None)
        await cache.lookup(seed)
        cache.save(seed, A, BODY, USAGE)
        store.flush()
        plan = cache.plan("chat", ROUTE, DET, "no-store")
        found = await cache.lookup(plan)
        assert found is not None
        assert found.body == BODY
        assert plan.status == "hit"

    asyncio.run(run())


def test_off_mode_and_an_unavailable_store_bypass_everything(tmp_path: Path, store: ResponseStore) -> None:
    off = make_cache(store, "off")
    assert off.plan("chat", ROUTE, DET, None).decision == BYPASS

    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"x")
    broken = ResponseStore(not_a_dir, ttl_s=60, max_size_bytes=1 << 20, memory_bytes=1 << 20)
    try:
        assert not broken.available
        cache = AnswerCache(broken, "all", identity, LONG_WAIT)
        assert cache.store is None
        assert cache.mode == "off"
        plan = cache.plan("chat", ROUTE, DET, None)
        assert plan.decision == BYPASS
        assert asyncio.run(cache.lookup(plan)) is None
        assert cache.save(plan, A, BODY, USAGE) is None
    finally:
        broken.close()

    none = AnswerCache(None, "all", identity, LONG_WAIT)
    assert none.mode == "off"
    assert none.plan("embed", ROUTE, {"input": "x"}, None).decision == BYPASS


def test_plan_publish_is_safe_without_a_flight() -> None:
    plan = Plan("chat", Decision(True, True))
    plan.publish(None)  # nothing to do, must not raise
    assert plan.flight is None


def test_a_follower_of_a_stuck_leader_misses_after_wait_s(store: ResponseStore) -> None:
    async def run() -> None:
        cache = make_cache(store, wait_s=0.05)
        first = cache.plan("chat", ROUTE, DET, None)
        await cache.lookup(first)
        second = cache.plan("chat", ROUTE, DET, None)
        assert await cache.lookup(second) is None  # gave up waiting; calls the upstream itself
        assert second.status == "miss"
        assert second.flight is None
        answer: CachedAnswer | None = cache.save(first, A, BODY, USAGE)
        assert answer is not None

    asyncio.run(run())
