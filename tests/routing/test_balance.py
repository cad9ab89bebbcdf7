"""Load balancing: the order each request of a balanced alias tries its targets in, through the
real Router with scripted providers (tests/routing/router_rig.py), a fake clock and fake sleep."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import pytest

from aigw.config import AliasConfig, RoutingConfig
from aigw.domain import Route, Target
from aigw.errors import ServiceUnavailable, UpstreamStatusError
from aigw.routing.balance import REFUSED, UNREACHABLE, Balancer, InFlight, RoundRobin, whole_weights
from aigw.routing.health import HealthBoard
from aigw.routing.router import Router
from tests.routing.router_rig import REQ, Clock, Scripted, Sleeper, Stall, status


class FakeBusy:
    """A `Busy` whose counts the test sets; records what the router started and ended."""

    def __init__(self, **counts: int) -> None:
        self.n = {Target(p, f"m{p}"): c for p, c in counts.items()}
        self.log: list[str] = []

    def start(self, target: Target) -> None:
        self.log.append(f"+{target.provider}")

    def end(self, target: Target) -> None:
        self.log.append(f"-{target.provider}")

    def counts(self, targets: Sequence[Target]) -> list[int]:
        return [self.n.get(t, 0) for t in targets]


class Pool:
    """An alias `pool` over providers a, b, ... (model m<name>) with the given strategy."""

    def __init__(
        self,
        strategy: str,
        names: str = "ab",
        weights: Sequence[float] | None = None,
        busy: Any = None,
        **cfg: Any,
    ) -> None:
        self.clock = Clock()
        self.providers = {n: Scripted(n, clock=self.clock) for n in names}
        targets: list[dict[str, Any]] = [{"provider": n, "model": f"m{n}"} for n in names]
        for t, w in zip(targets, weights or (), strict=False):
            t["weight"] = w
        self.alias = AliasConfig(strategy=strategy, targets=targets)  # type: ignore[arg-type]
        self.health = HealthBoard(list(names), clock=self.clock)
        self.router = Router(
            self.providers,
            self.health,
            RoutingConfig(**cfg),
            clock=self.clock,
            sleep=Sleeper(self.clock),
            rng=random.Random(7),
            aliases={"pool": self.alias},
            busy=busy,
        )
        self.route = Route("pool", tuple(Target(n, f"m{n}") for n in names), alias="pool")

    def script(self, name: str, *steps: Any) -> None:
        self.providers[name].script.extend(steps)

    def winners(self, n: int) -> list[str]:
        async def run() -> list[str]:
            return [(await self.router.chat(self.route, REQ)).target.provider for _ in range(n)]

        return asyncio.run(run())


def test_round_robin_alternates_exactly() -> None:
    pool = Pool("round_robin")
    got = pool.winners(200)
    assert got[:4] == ["a", "b", "a", "b"]
    assert Counter(got) == {"a": 100, "b": 100}


def test_round_robin_over_three() -> None:
    got = Pool("round_robin", "abc").winners(300)
    assert got[:6] == list("abcabc") and Counter(got) == {"a": 100, "b": 100, "c": 100}


def test_weighted_three_to_one_is_exact_and_smooth() -> None:
    got = Pool("weighted", weights=[3, 1]).winners(400)
    assert got[:4] == ["a", "a", "b", "a"]
    assert Counter(got) == {"a": 300, "b": 100}


def test_weighted_follows_nginx() -> None:
    """nginx's own example: weights 5, 1, 1 give a a b a c a a."""
    got = Pool("weighted", "abc", weights=[5, 1, 1]).winners(70)
    assert "".join(got[:7]) == "aabacaa" and Counter(got) == {"a": 50, "b": 10, "c": 10}


@pytest.mark.parametrize(
    ("weights", "split"),
    [([1.5, 0.5], (300, 100)), ([0.1, 0.3], (100, 300)), ([2], (267, 133)), ([1, 1], (200, 200))],
)
def test_weights_are_proportions(weights: list[float], split: tuple[int, int]) -> None:
    """Fractions are exact ([2] weighs a 2 and b the default 1: 400 is not a multiple of 3)."""
    assert Counter(Pool("weighted", weights=weights).winners(400)) == dict(zip("ab", split, strict=True))


def test_whole_weights() -> None:
    assert whole_weights([3.0, 1.0]) == [3, 1]
    assert whole_weights([0.5, 1.5]) == [1, 3]
    assert whole_weights([4, 2, 6]) == [2, 1, 3]
    a, b = whole_weights([0.1, 0.3])  # the floats' exact ratio, not a rounded one
    assert Fraction(b, a) == Fraction(0.3) / Fraction(0.1)


def test_least_busy_picks_the_fewest_in_flight() -> None:
    busy = FakeBusy(a=3, b=1, c=2)
    pool = Pool("least_busy", "abc", busy=busy)
    assert pool.winners(3) == ["b", "b", "b"]
    assert busy.log == ["+b", "-b"] * 3  # each request counted while it ran
    busy.n[Target("b", "mb")] = 9  # now c, then a is the fallback order
    pool.script("c", status(401))
    assert pool.winners(1) == ["a"]
    assert busy.log[-4:] == ["+c", "-c", "+a", "-a"]


def test_least_busy_breaks_ties_in_turn() -> None:
    assert "".join(Pool("least_busy", "abc", busy=FakeBusy()).winners(6)) == "abcabc"
    # Tied among two of three: those two alternate.
    assert "".join(Pool("least_busy", "abc", busy=FakeBusy(b=5)).winners(6)) == "acacac"


def test_least_busy_spreads_concurrent_requests() -> None:
    busy = InFlight()
    pool = Pool("least_busy", "ab", busy=busy)
    seen: list[list[int]] = []

    async def one() -> str:
        routed = await pool.router.chat(pool.route, REQ)
        return routed.target.provider

    async def run() -> list[str]:
        for name in "ab":
            pool.script(name, *[Stall(0.05)] * 10)
        tasks = [asyncio.create_task(one()) for _ in range(6)]
        await asyncio.sleep(0.01)
        seen.append(busy.counts(pool.route.targets))
        return list(await asyncio.gather(*tasks))

    got = asyncio.run(run())
    assert seen == [[3, 3]] and Counter(got) == {"a": 3, "b": 3}
    assert busy.counts(pool.route.targets) == [0, 0]


def test_least_busy_counts_a_stream_until_it_ends() -> None:
    busy = InFlight()
    pool = Pool("least_busy", "ab", busy=busy)

    async def run() -> None:
        first = await pool.router.open_stream(pool.route, REQ)
        assert first.target.provider == "a" and busy.counts(pool.route.targets) == [1, 0]
        second = await pool.router.open_stream(pool.route, REQ)  # a is busy: b
        assert second.target.provider == "b" and busy.counts(pool.route.targets) == [1, 1]
        chunks = [c async for c in first.rest]
        await first.aclose()
        assert chunks and busy.counts(pool.route.targets) == [0, 1]
        await second.aclose()  # never relayed (the client left before the first byte)
        assert busy.counts(pool.route.targets) == [0, 0]
        pool.script("a", status(401))
        third = await pool.router.open_stream(pool.route, REQ)  # a fails before content: b
        assert third.target.provider == "b" and busy.counts(pool.route.targets) == [0, 1]
        await third.aclose()
        assert busy.counts(pool.route.targets) == [0, 0]

    asyncio.run(run())


def test_fallback_within_a_request_keeps_the_turns() -> None:
    pool = Pool("round_robin", "abc")
    pool.script("b", status(401))  # b's turn: it refuses, c answers; the next request is c's turn
    routed = []

    async def run() -> None:
        for _ in range(4):
            routed.append(await pool.router.chat(pool.route, REQ))

    asyncio.run(run())
    assert [r.target.provider for r in routed] == ["a", "c", "c", "a"]
    assert [r.trace.fallbacks for r in routed] == [0, 1, 0, 0]


def test_an_open_breaker_takes_its_target_out_until_it_may_probe() -> None:
    pool = Pool("round_robin", retries=0, breaker={"failures": 1, "cooldown_s": 30})
    pool.script("a", status(503))
    got = pool.winners(1)  # a fails (its breaker opens), b answers
    assert got == ["b"] and pool.router.breakers.snapshot()["a/ma"]["state"] == "open"
    assert pool.winners(10) == ["b"] * 10 and pool.providers["a"].calls == 1  # a not even tried
    pool.clock.now += 30  # the cooldown is over: a probe may try a
    assert pool.winners(4) == ["a", "b", "a", "b"]


def test_a_provider_unreachable_of_late_goes_to_the_back() -> None:
    pool = Pool("weighted", weights=[3, 1], breaker={"cooldown_s": 30})
    pool.health.record_error("a", "a: refused", unreachable=True)
    assert pool.winners(5) == ["b"] * 5 and pool.providers["a"].calls == 0
    pool.clock.now += 31  # no longer recent
    assert Counter(pool.winners(8)) == {"a": 6, "b": 2}


def test_when_every_target_is_unreachable_of_late_the_strategy_orders_them_all() -> None:
    targets = [Target("a", "ma"), Target("b", "mb")]
    pairs = [(t, None) for t in targets]
    balancer = Balancer("round_robin", RoundRobin(targets), lambda t: UNREACHABLE)
    orders = ["".join(t.provider for t, _ in balancer.order(pairs)) for _ in range(3)]
    assert orders == ["ab", "ba", "ab"]
    # One refused by its breaker: at the back, after the unreachable one.
    standing = {targets[0]: REFUSED, targets[1]: UNREACHABLE}
    balancer = Balancer("round_robin", RoundRobin(targets), standing.__getitem__)
    assert [t.provider for t, _ in balancer.order(pairs)] == ["b", "a"]


def test_an_unreachable_target_is_still_the_fallback() -> None:
    pool = Pool("round_robin", retries=0)
    pool.health.record_error("b", "b: refused", unreachable=True)
    pool.script("a", status(503))
    assert pool.winners(1) == ["b"]  # a failed; b, at the back, answered
    assert pool.health.snapshot("b")["reachable"] is True
    assert pool.winners(2) == ["b", "a"]  # b reached again: back in rotation, its turn next


def test_every_breaker_open_is_a_503() -> None:
    pool = Pool("least_busy", retries=0, breaker={"failures": 1})
    pool.script("a", status(503))
    pool.script("b", status(503))
    with pytest.raises(UpstreamStatusError):  # the last failure
        pool.winners(1)
    with pytest.raises(ServiceUnavailable):
        pool.winners(1)


def test_a_pinned_provider_balances_what_is_left() -> None:
    pool = Pool("round_robin", "abc")
    route = Route("pool", (Target("a", "ma"), Target("c", "mc")), alias="pool")

    async def run() -> list[str]:
        return [(await pool.router.chat(route, REQ)).target.provider for _ in range(4)]

    assert asyncio.run(run()) == ["a", "c", "a", "c"]


def test_ordered_aliases_and_provider_model_names_keep_their_order() -> None:
    pool = Pool("ordered")
    assert pool.winners(5) == ["a"] * 5
    direct = Route("b/mb", (Target("b", "mb"),))
    assert asyncio.run(pool.router.chat(direct, REQ)).target.provider == "b"
