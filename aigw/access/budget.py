"""Budgets: each key's spend so far, and what its requests in flight hold of its budget.

Decided in memory, with no I/O on the request path: the spend is loaded from the usage log at
start and kept up to date as requests are charged. A request in flight holds its worst case's
cost until it is settled (`take`: only when the budget still has room for it), so concurrent
requests cannot all pass on the same remaining budget. The Redis backend keeps the same figures
for every instance (`aigw.state.redis.budgets`).
"""

from __future__ import annotations

from aigw.access.keys import ApiKey
from aigw.errors import RateLimited


class Budgets:
    __slots__ = ("_held", "_spent")

    def __init__(self, spent: dict[str, float] | None = None) -> None:
        self._spent = dict(spent or {})
        self._held: dict[str, float] = {}

    def spent(self, key_id: str) -> float:
        return self._spent.get(key_id, 0.0)

    def held(self, key_id: str) -> float:
        """What the key's requests in flight hold of its budget."""
        return self._held.get(key_id, 0.0)

    def standing(self, key_id: str) -> tuple[float, float]:
        """(spent, held) of the key now."""
        return self.spent(key_id), self.held(key_id)

    def committed(self, key_id: str, *, fresh: bool = True) -> tuple[float, bool]:
        """The key's spend and holds together, and whether that figure is exact (a shared store
        may answer what it saw last when not asked for `fresh` figures)."""
        return sum(self.standing(key_id)), True

    def check(self, key: ApiKey, committed: float) -> None:
        """RateLimited (budget_exhausted) when the key's spend and holds (`committed`) have
        reached its budget."""
        if key.budget_usd is None:
            return
        if committed >= key.budget_usd:
            raise RateLimited(
                f"API key {key.name!r} has exhausted its budget: ${committed:.4f} spent of "
                f"${key.budget_usd:.2f} (see `aigw usage --by key`)",
                retry_after=None,
                code="budget_exhausted",
            )

    def take(self, key: ApiKey, amount: float) -> bool:
        """Hold `amount` of the key's budget if its spend and holds leave room for it."""
        if key.budget_usd is not None and sum(self.standing(key.id)) + amount > key.budget_usd + 1e-9:
            return False
        self.hold(key.id, amount)
        return True

    def hold(self, key_id: str, amount: float) -> None:
        if amount:
            self._held[key_id] = self._held.get(key_id, 0.0) + amount

    def settle(self, key_id: str, held: float, cost: float) -> None:
        """A request ended: give back what it held, and charge what it cost."""
        self.hold(key_id, -held)
        if cost:
            self._spent[key_id] = self._spent.get(key_id, 0.0) + cost
