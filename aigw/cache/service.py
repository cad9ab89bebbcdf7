"""The response cache as the API endpoints use it: plan, look up, lead or follow, save.

A request's `Plan` says whether the cache may answer it and store its answer (policy), and holds
its key for each target of its route (keys.py). Lookups try the route's targets in order; an
answer stored for any of them is one the route could have given. Identical requests in flight at
once share one upstream call (flight.py); a follower answered by its leader counts as a hit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from aigw.cache.flight import Flight, SingleFlight
from aigw.cache.keys import request_digest, target_key
from aigw.cache.policy import Decision, Mode, decide
from aigw.cache.store import CachedAnswer, ResponseStore
from aigw.domain import Route, Target, Usage

Identity = Callable[[Target], str]


@dataclass(slots=True)
class Plan:
    kind: str
    decision: Decision
    keys: dict[Target, str] = field(default_factory=dict)
    flight_key: str = ""
    status: str = "bypass"
    """What the x-aigw-cache header says: hit, miss or bypass."""
    flight: Flight[CachedAnswer] | None = None
    """Set while this request leads identical ones; published when its answer is known."""
    lost: Callable[[], None] | None = None
    """Told when a leader across instances gets no answer (its followers then lead themselves)."""

    def publish(self, answer: CachedAnswer | None) -> None:
        if self.flight is not None:
            self.flight.publish(answer)
            self.flight = None
        if answer is None and self.lost is not None:
            self.lost()
        self.lost = None


@runtime_checkable
class SharedFlights(Protocol):
    """A store shared by several instances that also leads identical requests across them
    (`aigw.state.redis.cache`)."""

    def lease(self, key: str, wait_s: float) -> bool: ...

    def release(self, key: str) -> None: ...

    async def follow(self, keys: Sequence[str], lease_key: str, wait_s: float) -> CachedAnswer | None: ...


class AnswerCache:
    def __init__(
        self,
        store: ResponseStore | None,
        mode: Mode,
        identity: Identity,
        wait_s: float,
        *,
        shared: bool = True,
    ) -> None:
        self.store = store if store is not None and store.available else None
        self.shared = shared
        self.mode: Mode = mode if self.store is not None else "off"
        self._identity = identity
        self._flights: SingleFlight[CachedAnswer] = SingleFlight(wait_s)
        self._wait_s = wait_s
        self._shared = self.store if isinstance(self.store, SharedFlights) else None

    def plan(
        self,
        kind: str,
        route: Route,
        body: dict[str, Any],
        cache_control: str | None,
        key_id: str | None = None,
    ) -> Plan:
        """`key_id`: the API key's id, which partitions the cache unless it is shared."""
        decision = decide(self.mode, kind, body, cache_control)
        if not decision.uses_cache:
            return Plan(kind, decision)
        scope = kind if self.shared or key_id is None else f"{kind}\0{key_id}"
        digest = request_digest(scope, body)
        identities = [self._identity(t) for t in route.targets]
        keys = {t: target_key(digest, ident) for t, ident in zip(route.targets, identities, strict=True)}
        return Plan(kind, decision, keys, target_key(digest, "\0".join(identities)))

    async def lookup(self, plan: Plan) -> CachedAnswer | None:
        """A stored answer, or one an identical request in flight is about to get; else None (a
        miss) with this request leading identical ones when its answer will be stored."""
        if not plan.decision.lookup or self.store is None:
            return None
        plan.status = "miss"
        for key in plan.keys.values():
            found = self.store.get(key)
            if found is not None:
                plan.status = "hit"
                return found
        if not plan.decision.store:
            return None
        plan.flight = self._flights.lead(plan.flight_key)
        if plan.flight is not None:
            return await self._lead_across(plan) if self._shared is not None else None
        shared = await self._flights.follow(plan.flight_key)
        if shared is not None:
            plan.status = "hit"
        return shared

    async def _lead_across(self, plan: Plan) -> CachedAnswer | None:
        """This instance's leader: also the team's, or a follower of another instance's leader."""
        shared, key = self._shared, plan.flight_key
        assert shared is not None
        if not shared.lease(key, self._wait_s):
            found = await shared.follow(list(plan.keys.values()), key, self._wait_s)
            if found is not None:
                plan.status = "hit"
                plan.publish(found)  # and to the followers on this instance
                return found
            shared.lease(key, self._wait_s)  # the other leader got nothing: lead (best effort)
        plan.lost = lambda: shared.release(key)
        return None

    def save(self, plan: Plan, target: Target, body: bytes, usage: Usage | None) -> CachedAnswer | None:
        """Store a successful answer (when the plan allows) and hand it to any followers."""
        answer = None
        if plan.decision.store and self.store is not None:
            key = plan.keys.get(target)
            if key is not None:
                prompt = usage.prompt_tokens if usage is not None else 0
                completion = usage.completion_tokens if usage is not None else 0
                answer = self.store.answer(
                    plan.kind, (target.provider, target.model), body, (prompt, completion)
                )
                self.store.put(key, answer, f"{target.provider}/{target.model}")
        plan.publish(answer)
        return answer

    def in_flight(self) -> int:
        return len(self._flights)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
