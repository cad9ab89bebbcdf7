"""Budgets every instance shares: each key's spend and what its requests in flight hold, in Redis,
so a budget is never overshot by more than one request's reservation, whichever instances serve
the key's requests. A hold is taken only if the budget still has room for it (a Lua script: one
atomic round trip), and settled with the request's real cost.

Each key is one hash, `{prefix:budget:KEY_ID}` (fields `spent`, `held`), its own Redis Cluster
slot. Spend counts from when the key's requests first reach Redis (the team's keys are made
there). When Redis fails and the state fails open, this instance's own figures answer instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aigw.access.budget import Budgets
from aigw.errors import ServiceUnavailable

if TYPE_CHECKING:
    from aigw.access.keys import ApiKey
    from aigw.state.redis.conn import SharedState

TAKE = """
local h = redis.call('HMGET', KEYS[1], 'spent', 'held')
local spent, held = tonumber(h[1]) or 0, tonumber(h[2]) or 0
if spent + held + tonumber(ARGV[1]) > tonumber(ARGV[2]) + 1e-9 then return 0 end
redis.call('HINCRBYFLOAT', KEYS[1], 'held', ARGV[1])
return 1
"""
SETTLE = """
local held = redis.call('HINCRBYFLOAT', KEYS[1], 'held', -tonumber(ARGV[1]))
if tonumber(held) < 1e-9 then redis.call('HSET', KEYS[1], 'held', '0') end
if tonumber(ARGV[2]) ~= 0 then redis.call('HINCRBYFLOAT', KEYS[1], 'spent', ARGV[2]) end
return 1
"""


class SharedBudgets(Budgets):
    __slots__ = ("_settle", "_state", "_take")

    def __init__(self, state: SharedState, spent: dict[str, float] | None = None) -> None:
        super().__init__(spent)
        self._state = state
        self._take = state.client.register_script(TAKE)
        self._settle = state.client.register_script(SETTLE)

    def _key(self, key_id: str) -> str:
        return self._state.name(f"budget:{key_id}")

    def standing(self, key_id: str) -> tuple[float, float]:
        got: Any = self._state.call(lambda r: r.hmget(self._key(key_id), ["spent", "held"]))
        if got is None:
            return super().standing(key_id)
        return float(got[0] or 0.0), float(got[1] or 0.0)

    def spent(self, key_id: str) -> float:
        return self.standing(key_id)[0]

    def held(self, key_id: str) -> float:
        return self.standing(key_id)[1]

    def take(self, key: ApiKey, amount: float) -> bool:
        budget = key.budget_usd if key.budget_usd is not None else float("inf")
        args = [repr(float(amount)), repr(float(budget))]
        got: Any = self._state.call(lambda _r: self._take(keys=[self._key(key.id)], args=args))
        if got is None:
            return super().take(key, amount)
        return bool(int(got))

    def settle(self, key_id: str, held: float, cost: float) -> None:
        args = [repr(float(held)), repr(float(cost))]
        try:
            done = self._state.call(lambda _r: self._settle(keys=[self._key(key_id)], args=args))
        except ServiceUnavailable:  # failing closed refuses new requests, never one that is answered
            done = None
        if done is None:
            super().settle(key_id, held, cost)
