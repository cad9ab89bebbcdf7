"""Load balancing across an alias's targets: for each request, the order in which they are tried.

An alias's `strategy` (`[models.NAME] strategy`, see `aigw.config.model.AliasConfig`):

    ordered      the configured order every time (such aliases get no balancer: nothing extra runs)
    round_robin  each request starts at the target after the one the previous request started at
    weighted     smooth weighted round robin (nginx's): weights 3 and 1 give a, a, b, a, ... so
                 exactly 3:1 over every 4 requests, and never a burst on one target
    least_busy   the target with the fewest requests in flight (`Busy`), ties taken in turn

Health comes first. A target whose circuit breaker would refuse it now, or whose provider was found
unreachable within the last breaker cooldown, goes to the back (in configured order, the least
unfit first); the strategy orders the others, and keeps its turn among them alone. The order is
also the request's fallback chain: when its first target fails, the router tries the next.

State (the turn, the weights' running values) is per alias and per process. Orderings run on the
event loop one at a time, so nothing needs a lock; none waits for anything.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from fractions import Fraction
from types import MappingProxyType
from typing import Protocol, TypeVar

from aigw.config.model import AliasConfig
from aigw.domain import Target
from aigw.routing.breaker import BreakerBoard
from aigw.routing.health import HealthBoard

X = TypeVar("X")
T = TypeVar("T")
C = TypeVar("C")
Pairs = list[tuple[Target, X]]

FIT, UNREACHABLE, REFUSED = 0, 1, 2
"""A target's standing: fit; its provider unreachable of late; its breaker refusing it."""


class Busy(Protocol):
    """Requests in flight per target. `InFlight` counts this process's own. A shared
    implementation (a state backend counting every instance's) must answer without waiting on the
    network: `counts` is read on the path of every least_busy request."""

    def start(self, target: Target) -> None: ...

    def end(self, target: Target) -> None: ...

    def counts(self, targets: Sequence[Target]) -> list[int]: ...


class InFlight:
    """The default `Busy`: this process's requests in flight, per target."""

    __slots__ = ("_n",)

    def __init__(self) -> None:
        self._n: dict[Target, int] = {}

    def start(self, target: Target) -> None:
        self._n[target] = self._n.get(target, 0) + 1

    def end(self, target: Target) -> None:
        n = self._n.get(target, 0) - 1
        if n > 0:
            self._n[target] = n
        else:
            self._n.pop(target, None)

    def counts(self, targets: Sequence[Target]) -> list[int]:
        return [self._n.get(t, 0) for t in targets]


class Standing:
    """How fit a target is to lead a request's order, from its breaker and its provider's health."""

    __slots__ = ("_breakers", "_health", "_recent_s")

    def __init__(self, breakers: BreakerBoard, health: HealthBoard, recent_s: float) -> None:
        self._breakers = breakers
        self._health = health
        self._recent_s = recent_s

    def __call__(self, target: Target) -> int:
        if not self._breakers.get(target).available():
            return REFUSED
        if self._health.unreachable_within(target.provider, self._recent_s):
            return UNREACHABLE
        return FIT


class Arrangement(Protocol):
    """A strategy: the order of the fit targets (given in configured order), its state advanced."""

    def arrange(self, live: Pairs[X]) -> Pairs[X]: ...


class RoundRobin:
    """Turns round the configured order: a request starts after the target the last one started at
    (skipping targets out of rotation), so two targets split any even run of requests exactly."""

    __slots__ = ("_next", "_place", "_size")

    def __init__(self, targets: Sequence[Target]) -> None:
        self._place = MappingProxyType({t: i for i, t in enumerate(targets)})
        self._size = len(targets)
        self._next = 0

    def rotation(self, live: Pairs[X]) -> Pairs[X]:
        """`live` from the next turn on, round the configured order."""
        place, nxt, size = self._place, self._next, self._size
        return sorted(live, key=lambda p: (place.get(p[0], 0) - nxt) % size)

    def advance(self, first: Target) -> None:
        self._next = (self._place.get(first, 0) + 1) % self._size

    def arrange(self, live: Pairs[X]) -> Pairs[X]:
        out = self.rotation(live)
        self.advance(out[0][0])
        return out


class Weighted:
    """Smooth weighted round robin (nginx's): each request every fit target's running value grows
    by its weight; the highest leads (the first listed on a tie) and drops by the fit targets' total
    weight. The others follow, the most due first."""

    __slots__ = ("_current", "_weight")

    def __init__(self, targets: Sequence[Target], weights: Sequence[float]) -> None:
        self._weight = MappingProxyType(dict(zip(targets, whole_weights(weights), strict=True)))
        self._current = dict.fromkeys(targets, 0)

    def arrange(self, live: Pairs[X]) -> Pairs[X]:
        current, weight = self._current, self._weight
        total = 0
        for t, _ in live:
            current[t] = current.get(t, 0) + weight.get(t, 1)
            total += weight.get(t, 1)
        lead = max(range(len(live)), key=lambda i: current[live[i][0]])  # the first of the highest
        current[live[lead][0]] -= total
        rest = sorted(live[:lead] + live[lead + 1 :], key=lambda p: -current[p[0]])
        return [live[lead], *rest]


def whole_weights(weights: Sequence[float]) -> list[int]:
    """Integers in exactly the weights' proportion (3.0, 1.0 -> 3, 1; 0.5, 1.5 -> 1, 3), so that
    the running values never drift the way float sums would."""
    exact = [Fraction(w) for w in weights]
    scale = math.lcm(*(f.denominator for f in exact))
    whole = [int(f * scale) for f in exact]
    common = math.gcd(*whole)
    return [w // common for w in whole]


class LeastBusy:
    """The fewest requests in flight first; among equals, the one whose turn it is (round robin)."""

    __slots__ = ("_busy", "_turn")

    def __init__(self, targets: Sequence[Target], busy: Busy) -> None:
        self._turn = RoundRobin(targets)
        self._busy = busy

    def arrange(self, live: Pairs[X]) -> Pairs[X]:
        turn = self._turn.rotation(live)
        counts = self._busy.counts([t for t, _ in turn])
        out = [turn[i] for i in sorted(range(len(turn)), key=counts.__getitem__)]  # stable: turn order
        self._turn.advance(out[0][0])
        return out


class Lasting:
    """The base of an attempt's value that keeps its target busy after the attempt returns (an
    opened stream, until it ends). A class, not a Protocol: isinstance stays cheap."""

    __slots__ = ()

    def hold(self, release: Callable[[], None]) -> None:
        """Call `release` once, when the value's work ends."""
        raise NotImplementedError


class Released(AsyncIterator[C]):
    """Relays `it` and calls `release` once, when it ends: exhausted, failed, or closed."""

    __slots__ = ("_it", "_release")

    def __init__(self, it: AsyncIterator[C], release: Callable[[], None]) -> None:
        self._it = it
        self._release: Callable[[], None] | None = release

    async def __anext__(self) -> C:
        try:
            return await anext(self._it)
        except BaseException:
            self._done()
            raise

    async def aclose(self) -> None:
        try:
            aclose = getattr(self._it, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            self._done()

    def _done(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


Attempt = Callable[[X, Target, bool], Awaitable[T]]


class Balancer:
    """One alias's strategy: orders the targets of each of its requests."""

    __slots__ = ("_arrangement", "_busy", "_standing", "strategy")

    def __init__(
        self,
        strategy: str,
        arrangement: Arrangement,
        standing: Callable[[Target], int],
        busy: Busy | None = None,
    ) -> None:
        self.strategy = strategy
        self._arrangement = arrangement
        self._standing = standing
        self._busy = busy

    def order(self, pairs: Pairs[X]) -> Pairs[X]:
        """`pairs` (the targets able to serve the request, in configured order) in the order to
        try them: the fittest as the strategy arranges them, then the rest, the least unfit first.
        When every breaker refuses, as given (the router answers 503 or lets a probe through)."""
        standing = [self._standing(t) for t, _ in pairs]
        best = min(standing)
        if best == REFUSED:
            return pairs
        live = [p for p, s in zip(pairs, standing, strict=True) if s == best]
        rest = sorted((i for i, s in enumerate(standing) if s != best), key=standing.__getitem__)
        return [*self._arrangement.arrange(live), *(pairs[i] for i in rest)]

    def track(self, attempt: Attempt[X, T]) -> Attempt[X, T]:
        """`attempt`, counting its target busy while it runs (an opened stream: until it ends);
        `attempt` itself for strategies that do not count."""
        busy = self._busy
        if busy is None:
            return attempt

        async def counted(provider: X, target: Target, has_next: bool) -> T:
            busy.start(target)
            try:
                value = await attempt(provider, target, has_next)
            except BaseException:
                busy.end(target)
                raise
            if isinstance(value, Lasting):
                value.hold(lambda: busy.end(target))
            else:
                busy.end(target)
            return value

        return counted


def balancers(aliases: Mapping[str, AliasConfig], standing: Standing, busy: Busy) -> Mapping[str, Balancer]:
    """A balancer for each alias that balances (an `ordered` alias needs none)."""
    out: dict[str, Balancer] = {}
    for name, spec in aliases.items():
        targets = [Target(t.provider, t.model) for t in spec.targets]
        arrangement: Arrangement
        if spec.strategy == "round_robin":
            arrangement = RoundRobin(targets)
        elif spec.strategy == "weighted":
            arrangement = Weighted(targets, [1.0 if t.weight is None else t.weight for t in spec.targets])
        elif spec.strategy == "least_busy":
            arrangement = LeastBusy(targets, busy)
        else:
            continue
        counted = busy if isinstance(arrangement, LeastBusy) else None
        out[name] = Balancer(spec.strategy, arrangement, standing, counted)
    return MappingProxyType(out)
