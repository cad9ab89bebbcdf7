"""Rate limits every instance shares: the token buckets of `aigw.access.ratelimit`, kept in Redis
and changed by Lua scripts, so that an admission is one atomic round trip whichever instance takes
it (with rpm = 100, two instances admit 100 between them, not 200).

Same semantics as the in-process limiter (continuous refill over a minute, a tokens bucket that
may go into debt down to -capacity, a refusal that takes nothing), timed by the Redis server's
clock so that instances' clocks need not agree. Each subject is one hash, `{prefix:rl:SUBJECT}`
(its own Redis Cluster slot), expiring once both its buckets are full again.

When Redis fails and the state fails open, this instance's own limiter answers instead (each
instance then applies the limits by itself until Redis is back); failing closed, a 503.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from aigw.access.ratelimit import EPS, Admission, Limits, RateLimiter, bucket_view, headers
from aigw.errors import ServiceUnavailable

if TYPE_CHECKING:
    import redis

    from aigw.state.redis.conn import SharedState

# KEYS[1]: the subject's hash. ARGV: rpm, tpm, then the estimate (admit) or the delta (settle).
_REFILL = """
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local h = redis.call('HMGET', KEYS[1], 'req', 'tok', 'at')
local req, tok, at = tonumber(h[1]) or 0, tonumber(h[2]) or 0, tonumber(h[3]) or now
local dt = math.max(0, now - at) / 60
req = math.min(math.max(0, req - rpm * dt), rpm)
tok = math.min(math.max(0, tok - tpm * dt), 2 * tpm)
local function save()
  redis.call('HSET', KEYS[1], 'req', tostring(req), 'tok', tostring(tok), 'at', tostring(now))
  local full = 0
  if rpm > 0 then full = req * 60 / rpm end
  if tpm > 0 then full = math.max(full, tok * 60 / tpm) end
  redis.call('PEXPIRE', KEYS[1], math.ceil(full * 1000) + 1000)
end
"""
ADMIT = _REFILL + """
local est, eps = tonumber(ARGV[3]), tonumber(ARGV[4])
local wait_req, wait_tok = 0, 0
if rpm > 0 and req + 1 - rpm > eps then wait_req = (req + 1 - rpm) * 60 / rpm end
local short = tok + math.min(est, tpm) - tpm
if tpm > 0 and short > eps then wait_tok = short * 60 / tpm end
if wait_req > 0 or wait_tok > 0 then
  local by = 'tokens'
  if wait_req >= wait_tok then by = 'requests' end
  return {0, tostring(math.max(wait_req, wait_tok)), by, 0, tostring(req), tostring(tok)}
end
local reserved = 0
if rpm > 0 then req = math.min(req + 1, rpm) end
if tpm > 0 then
  if est <= tpm then reserved = est else reserved = math.min(est, math.floor(2 * tpm - tok + eps)) end
  tok = math.min(tok + reserved, 2 * tpm)
end
save()
return {1, '0', '', reserved, tostring(req), tostring(tok)}
"""
SETTLE = _REFILL + """
local delta = tonumber(ARGV[3])
if delta <= 0 and h[3] == false then return 0 end
tok = math.min(math.max(0, tok + delta), 2 * tpm)
save()
return 1
"""
READ = _REFILL + """
return {tostring(req), tostring(tok)}
"""


class SharedLimiter(RateLimiter):
    """The limiter the meter uses with the Redis backend (the in-process one underneath answers
    while Redis does not)."""

    __slots__ = ("_admit", "_read", "_settle", "_state")

    def __init__(self, state: SharedState) -> None:
        super().__init__()
        self._state = state
        client = state.client
        self._admit = client.register_script(ADMIT)
        self._settle = client.register_script(SETTLE)
        self._read = client.register_script(READ)

    def _key(self, subject: str) -> str:
        return self._state.name(f"rl:{subject}")

    def admit(self, subject: str, limits: Limits, est_tokens: int) -> Admission:
        rpm, tpm = limits.rpm, limits.tpm
        if not rpm and not tpm:
            return Admission(True, 0.0, None, 0, {})
        args = [rpm, tpm, max(0, est_tokens), EPS]
        got: Any = self._state.call(lambda _r: self._admit(keys=[self._key(subject)], args=args))
        if got is None:
            return super().admit(subject, limits, est_tokens)
        allowed, wait, by, reserved, req, tok = got
        hdrs = headers(float(req), float(tok), rpm, tpm)
        if not int(allowed):
            return Admission(False, float(wait), str(by), 0, hdrs)
        return Admission(True, 0.0, None, int(reserved), hdrs)

    def settle(self, subject: str, limits: Limits, admission: Admission, actual_tokens: int) -> None:
        tpm = limits.tpm
        if not admission.allowed or not tpm:
            return
        delta = max(0, actual_tokens) - admission.reserved_tokens
        if not delta:
            return
        args = [limits.rpm, tpm, delta]
        try:
            done = self._state.call(lambda _r: self._settle(keys=[self._key(subject)], args=args))
        except ServiceUnavailable:  # failing closed refuses new requests, never one that is answered
            done = None
        if done is None:
            super().settle(subject, limits, admission, actual_tokens)

    def _used(self, subject: str, limits: Limits) -> tuple[float, float] | None:
        args = [limits.rpm, limits.tpm]
        got: Any = self._state.call(lambda _r: self._read(keys=[self._key(subject)], args=args))
        return None if got is None else (float(got[0]), float(got[1]))

    def room(self, subject: str, limits: Limits) -> int:
        if not limits.tpm:
            return 0
        used = self._used(subject, limits)
        if used is None:
            return super().room(subject, limits)
        return max(0, math.floor(limits.tpm - used[1] + EPS))

    def snapshot(self, subject: str, limits: Limits) -> dict[str, Any]:
        used = self._used(subject, limits)
        if used is None:
            return super().snapshot(subject, limits)
        return {"requests": bucket_view(limits.rpm, used[0]), "tokens": bucket_view(limits.tpm, used[1])}

    def reset(self, subject: str) -> None:
        key = self._key(subject)

        def forget(r: redis.Redis) -> Any:
            return r.delete(key)

        self._state.call(forget)
        super().reset(subject)

