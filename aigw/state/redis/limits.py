"""Rate limits every instance shares: the token buckets of `aigw.access.ratelimit`, kept in Redis
and changed by Lua scripts, so that whichever instance takes a request, the key's limit holds for
all of them together (with rpm = 100, two instances admit 100 between them, not 200).

Same semantics as the in-process limiter (continuous refill over a minute, a tokens bucket that
may go into debt down to -capacity, a refusal that takes nothing), timed by the Redis server's
clock so that instances' clocks need not agree. Each subject is one hash, `{prefix:rl:SUBJECT}`
(its own Redis Cluster slot), expiring once both its buckets are full again.

Leases keep Redis off the hot path while a key is far from its limit. The script that admits a
request may also take a little more ahead for this instance (at most 1/`LEASE_SHARE` of what the
buckets have left, up to `LEASE_REQUESTS` requests): the next requests are admitted from that
lease in memory. Close to the limit the leases shrink to nothing and every admission is a round
trip again, so the limit stays exact across instances; a lease not used up within `LEASE_S`
goes back, and so does one that cannot cover a request (in the same script call that admits
it). Settles (tokens used beyond or below the reservation) are pending in memory until the
subject's next admission carries them, or the outbox (`aigw.state.redis.outbox`) sends them
within a tick. Headers count this instance's lease as room; other instances' leases show as used.

When Redis fails and the state fails open, this instance's own limiter answers instead (each
instance then applies the limits by itself until Redis is back); failing closed, a 503.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aigw.access.ratelimit import (
    EPS,
    WINDOW_S,
    Admission,
    Limits,
    RateLimiter,
    bucket_view,
    headers,
)
from aigw.errors import ServiceUnavailable
from aigw.state.redis.outbox import Write

if TYPE_CHECKING:
    from collections.abc import Sequence

    import redis

    from aigw.state.redis.conn import SharedState

LEASE_SHARE = 8
"""A lease takes at most this fraction (1/8) of what a bucket has left."""
LEASE_REQUESTS = 64
"""The most requests one lease admits ahead (its tokens: as many requests like the one that took it)."""
LEASE_S = 1.0
"""What is left of a lease after this long goes back to Redis."""

# KEYS[1]: the subject's hash. ARGV: rpm, tpm, then per script below.
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
# ARGV[3..]: the estimate, EPS; requests and tokens given back (a lease's rest; a pending settle
# as negative tokens); the lease wanted (requests, tokens) and LEASE_SHARE.
ADMIT = _REFILL + """
local est, eps = tonumber(ARGV[3]), tonumber(ARGV[4])
local back_req, back_tok = tonumber(ARGV[5]), tonumber(ARGV[6])
if back_req ~= 0 or back_tok ~= 0 then
  req = math.max(0, req - back_req)
  tok = math.min(math.max(0, tok - back_tok), 2 * tpm)
end
local wait_req, wait_tok = 0, 0
if rpm > 0 and req + 1 - rpm > eps then wait_req = (req + 1 - rpm) * 60 / rpm end
local short = tok + math.min(est, tpm) - tpm
if tpm > 0 and short > eps then wait_tok = short * 60 / tpm end
if wait_req > 0 or wait_tok > 0 then
  if back_req ~= 0 or back_tok ~= 0 then save() end
  local by = 'tokens'
  if wait_req >= wait_tok then by = 'requests' end
  return {0, tostring(math.max(wait_req, wait_tok)), by, 0, tostring(req), tostring(tok), 0, 0}
end
local reserved = 0
if rpm > 0 then req = math.min(req + 1, rpm) end
if tpm > 0 then
  if est <= tpm then reserved = est else reserved = math.min(est, math.floor(2 * tpm - tok + eps)) end
  tok = math.min(tok + reserved, 2 * tpm)
end
local want_req, want_tok, share = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local xr, xt = 0, 0
if rpm > 0 then xr = math.max(0, math.min(want_req, math.floor((rpm - req) / share))) end
if tpm > 0 then xt = math.max(0, math.min(want_tok, math.floor((tpm - tok) / share))) end
if (rpm > 0 and xr == 0) or (tpm > 0 and xt == 0) then xr, xt = 0, 0 end
req, tok = req + xr, tok + xt
save()
return {1, '0', '', reserved, tostring(req), tostring(tok), xr, xt}
"""
# ARGV[3..]: requests given back (a lease's rest), tokens charged (negative: given back).
SETTLE = _REFILL + """
local back_req, delta = tonumber(ARGV[3]), tonumber(ARGV[4])
if delta <= 0 and h[3] == false then return 0 end
req = math.max(0, req - back_req)
tok = math.min(math.max(0, tok + delta), 2 * tpm)
save()
return 1
"""
READ = _REFILL + """
return {tostring(req), tostring(tok)}
"""


def _refilled(used: float, capacity: int, dt: float) -> float:
    return max(0.0, used - capacity * dt / WINDOW_S)


@dataclass(slots=True)
class _Lease:
    """What this instance took ahead for one subject, and the buckets as Redis last told."""

    limits: Limits
    req: int
    """Requests admitted ahead, not used yet."""
    tok: int
    """Tokens taken ahead, not used yet."""
    used_req: float
    """The buckets' usage in Redis at `seen` (this lease included), and this instance's settles since."""
    used_tok: float
    seen: float
    until: float
    """When the rest goes back."""

    def covers(self, est: int) -> bool:
        return (not self.limits.rpm or self.req >= 1) and (not self.limits.tpm or est <= self.tok)

    def take(self, est: int, now: float) -> Admission:
        rpm, tpm = self.limits.rpm, self.limits.tpm
        if rpm:
            self.req -= 1
        if tpm:
            self.tok -= est
        return Admission(True, 0.0, None, est if tpm else 0, headers(*self.used(now), rpm, tpm))

    def used(self, now: float) -> tuple[float, float]:
        """The buckets' usage now as this instance sees it (its lease's rest counts as room)."""
        dt = max(0.0, now - self.seen)
        req = _refilled(self.used_req, self.limits.rpm, dt) - self.req
        tok = _refilled(self.used_tok, self.limits.tpm, dt) - self.tok
        return max(0.0, req), max(0.0, tok)


@dataclass(slots=True)
class _Owed:
    """Tokens settled on this instance, not sent to Redis yet."""

    limits: Limits
    tokens: int


class SharedLimiter(RateLimiter):
    """The limiter the meter uses with the Redis backend (the in-process one underneath answers
    while Redis does not). The event loop admits and settles; the outbox's thread takes what is
    pending and leases that expired: `_lock` guards both, and the in-process limiter."""

    __slots__ = (
        "_admit", "_leases", "_leasing", "_lock", "_outbox", "_owed", "_read", "_settle", "_state", "_ticks",
    )  # fmt: skip

    def __init__(self, state: SharedState, *, leases: bool = True) -> None:
        super().__init__()
        self._state = state
        self._ticks = state.clock
        client = state.client
        self._admit = client.register_script(ADMIT)
        self._settle = client.register_script(SETTLE)
        self._read = client.register_script(READ)
        self._lock = threading.Lock()
        self._leasing = leases
        self._leases: dict[str, _Lease] = {}
        self._owed: dict[str, _Owed] = {}
        self._outbox = state.outbox
        self._outbox.register(self._sweep)

    def _key(self, subject: str) -> str:
        return self._state.name(f"rl:{subject}")

    def admit(self, subject: str, limits: Limits, est_tokens: int) -> Admission:
        rpm, tpm = limits.rpm, limits.tpm
        if not rpm and not tpm:
            return Admission(True, 0.0, None, 0, {})
        est = max(0, est_tokens)
        now = self._ticks()
        with self._lock:
            lease = self._leases.pop(subject, None)
            if lease is not None and lease.limits == limits and lease.covers(est):
                self._leases[subject] = lease
                return lease.take(est, now)
            owed = self._owed.pop(subject, None)
        back_req = lease.req if lease is not None else 0
        back_tok = (lease.tok if lease is not None else 0) - (owed.tokens if owed is not None else 0)
        wanted = (LEASE_REQUESTS, est * LEASE_REQUESTS if est <= tpm else 0) if self._leasing else (0, 0)
        args = [rpm, tpm, est, EPS, back_req, back_tok, *wanted, LEASE_SHARE]
        try:
            got: Any = self._state.call(lambda _r: self._admit(keys=[self._key(subject)], args=args))
        except ServiceUnavailable:
            self._settled_here(subject, owed)
            raise
        if got is None:
            self._settled_here(subject, owed)
            with self._lock:
                return super().admit(subject, limits, est_tokens)
        allowed, wait, by, reserved, req, tok, xr, xt = got
        used_req, used_tok = float(req), float(tok)
        if int(xr) or int(xt):
            with self._lock:
                self._leases[subject] = _Lease(
                    limits, int(xr), int(xt), used_req, used_tok, now, now + LEASE_S
                )
            self._outbox.poke()
        hdrs = headers(used_req - int(xr), used_tok - int(xt), rpm, tpm)
        if not int(allowed):
            return Admission(False, float(wait), str(by), 0, hdrs)
        return Admission(True, 0.0, None, int(reserved), hdrs)

    def settle(self, subject: str, limits: Limits, admission: Admission, actual_tokens: int) -> None:
        """Pending until the subject's next admission or the outbox's next tick (never raises)."""
        tpm = limits.tpm
        if not admission.allowed or not tpm:
            return
        delta = max(0, actual_tokens) - admission.reserved_tokens
        if not delta:
            return
        with self._lock:
            lease = self._leases.get(subject)
            if lease is not None and lease.limits == limits and delta > 0:
                covered = min(delta, lease.tok)  # tokens beyond the reservation come from the lease first:
                lease.tok -= covered  # a bucket that went into debt admits nothing more from it
                delta -= covered
            if not delta:
                return
            owed = self._owed.get(subject)
            self._owed[subject] = _Owed(limits, delta + (owed.tokens if owed is not None else 0))
            if lease is not None:
                lease.used_tok = min(max(0.0, lease.used_tok + delta), 2.0 * tpm)
        self._outbox.poke()

    def _settled_here(self, subject: str, owed: _Owed | None) -> None:
        """Redis did not take a pending settle: this instance's own limiter does."""
        if owed is None:
            return
        d = owed.tokens
        with self._lock:
            super().settle(subject, owed.limits, Admission(True, 0.0, None, max(0, -d), {}), max(0, d))

    def _sweep(self, final: bool) -> tuple[Sequence[Write], bool]:
        """The outbox's pass: every pending settle, and the rest of each lease that expired."""
        now = self._ticks()
        writes: list[Write] = []
        with self._lock:
            owed, self._owed = self._owed, {}
            for subject, o in owed.items():
                writes.append(self._write(subject, o.limits, 0, o.tokens, o))
            leases = self._leases
            for subject in [s for s, lease in leases.items() if final or now >= lease.until]:
                lease = leases.pop(subject)
                if lease.req or lease.tok:
                    writes.append(self._write(subject, lease.limits, lease.req, -lease.tok, None))
            return writes, bool(leases)

    def _write(self, subject: str, limits: Limits, back_req: int, delta: int, owed: _Owed | None) -> Write:
        args = [limits.rpm, limits.tpm, back_req, delta]
        key = self._key(subject)
        return Write(
            lambda pipe: self._settle(keys=[key], args=args, client=pipe),
            lambda: self._settled_here(subject, owed),
        )

    def _used(self, subject: str, limits: Limits) -> tuple[float, float] | None:
        """The buckets' usage now: this instance's lease and pending settles, or Redis's figures."""
        with self._lock:
            lease = self._leases.get(subject)
            if lease is not None and lease.limits == limits:
                return lease.used(self._ticks())
            owed = self._owed.get(subject)
        args = [limits.rpm, limits.tpm]
        got: Any = self._state.call(lambda _r: self._read(keys=[self._key(subject)], args=args))
        if got is None:
            return None
        tok = float(got[1]) + (owed.tokens if owed is not None else 0)
        return float(got[0]), min(max(0.0, tok), 2.0 * limits.tpm)

    def room(self, subject: str, limits: Limits) -> int:
        if not limits.tpm:
            return 0
        used = self._used(subject, limits)
        if used is None:
            with self._lock:
                return super().room(subject, limits)
        return max(0, math.floor(limits.tpm - used[1] + EPS))

    def snapshot(self, subject: str, limits: Limits) -> dict[str, Any]:
        used = self._used(subject, limits)
        if used is None:
            with self._lock:
                return super().snapshot(subject, limits)
        return {"requests": bucket_view(limits.rpm, used[0]), "tokens": bucket_view(limits.tpm, used[1])}

    def reset(self, subject: str) -> None:
        key = self._key(subject)

        def forget(r: redis.Redis) -> Any:
            return r.delete(key)

        with self._lock:
            self._leases.pop(subject, None)
            self._owed.pop(subject, None)
        self._state.call(forget)
        with self._lock:
            super().reset(subject)
