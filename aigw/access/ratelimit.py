"""Token-bucket rate limits per subject (an API key id, or a client address). Clock injected; no I/O.

Each subject has two buckets, each refilled continuously over a one-minute window:

    requests: capacity rpm, refilled at rpm/60 per second; 1 per admitted request
    tokens:   capacity tpm, refilled at tpm/60 per second; the estimate at admission, then
              reconciled by `settle()` with the actual count (refund or extra charge)

A bucket is kept as the amount *used* (capacity - level), so a limit of 0 (unlimited) or an unseen
subject is simply "nothing used", and an edited limit keeps what was used (clamped to the new
capacity). The tokens bucket may go into debt after a large `settle()`, but never below -capacity:
after one window of refill it is back at zero and admits again as it refills.

Memory: beyond `max_subjects`, the least recently used subjects whose buckets are full are
forgotten (a full bucket holds no information). Subjects still refilling are kept, so the bound can
be exceeded briefly; they are full within two windows of their last use.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

WINDOW_S = 60.0
EPS = 1e-6  # in requests / tokens: absorbs float rounding, so retrying after retry_after succeeds
_SCAN = 16  # subjects still refilling that one eviction pass may step over


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int = 0
    """Requests per minute, 0 = unlimited."""
    tpm: int = 0
    """Tokens per minute, 0 = unlimited."""


@dataclass(slots=True)
class Admission:
    allowed: bool
    retry_after: float
    """Seconds until the request would be admitted (0 when allowed)."""
    limited_by: str | None
    """"requests" | "tokens" (the longer wait when both are short) | None."""
    reserved_tokens: int
    """Tokens taken from the tokens bucket: the estimate (less when the debt floor clipped it, 0
    when refused or when tpm is 0). `settle()` charges the difference from the actual count."""
    headers: dict[str, str]
    """OpenAI's x-ratelimit-* headers for the non-zero limits; empty when both are 0."""


def format_duration(seconds: float) -> str:
    """OpenAI's (Go's) duration format, rounded up to the millisecond: 20ms, 1s, 1m30.5s, 6m0s, 1h0m0s."""
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, frac = divmod(rest, 1000)
    out = f"{s}.{frac:03d}".rstrip("0") + "s" if frac else f"{s}s"
    if h or m:
        out = f"{m}m{out}"
    return f"{h}h{out}" if h else out


class _State:
    __slots__ = ("at", "full_at", "req", "tok")

    def __init__(self, now: float) -> None:
        self.req = 0.0  # requests used (0..rpm)
        self.tok = 0.0  # tokens used (0..2*tpm; above tpm is debt)
        self.at = now  # when req/tok were last brought up to date
        self.full_at = now  # when both buckets will be full again (for eviction)


def _used(st: _State, now: float, rpm: int, tpm: int) -> tuple[float, float]:
    """The state's usage at `now` under these limits: refilled since `st.at`, clamped to the capacity."""
    dt = max(0.0, now - st.at) / WINDOW_S
    req = min(max(0.0, st.req - rpm * dt), float(rpm))
    tok = min(max(0.0, st.tok - tpm * dt), 2.0 * tpm)
    return req, tok


class RateLimiter:
    """Token buckets per subject. Single-threaded by design (one event loop): no locks."""

    __slots__ = ("_clock", "_max", "_states")

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_subjects: int = 10_000) -> None:
        if max_subjects < 1:
            raise ValueError("max_subjects must be at least 1")
        self._clock = clock
        self._max = max_subjects
        self._states: OrderedDict[str, _State] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, subject: object) -> bool:
        return subject in self._states

    def admit(self, subject: str, limits: Limits, est_tokens: int) -> Admission:
        """Take 1 request and `est_tokens` tokens when both buckets have room; take nothing otherwise.
        An estimate above the whole tpm needs a full bucket (else it could never pass)."""
        rpm, tpm = limits.rpm, limits.tpm
        if not rpm and not tpm:
            return Admission(True, 0.0, None, 0, {})
        now = self._clock()
        st = self._touch(subject, now, rpm, tpm)
        est = max(0, est_tokens)
        wait_req = wait_tok = 0.0
        if rpm and (short := st.req + 1 - rpm) > EPS:
            wait_req = short * WINDOW_S / rpm
        if tpm and (short := st.tok + min(est, tpm) - tpm) > EPS:
            wait_tok = short * WINDOW_S / tpm
        if wait_req or wait_tok:
            by = "requests" if wait_req >= wait_tok else "tokens"
            return Admission(False, max(wait_req, wait_tok), by, 0, headers(st.req, st.tok, rpm, tpm))
        reserved = 0
        if rpm:
            st.req = min(st.req + 1, float(rpm))
        if tpm:
            # Only an estimate above the capacity can reach the debt floor; it takes what fits.
            reserved = est if est <= tpm else min(est, math.floor(2 * tpm - st.tok + EPS))
            st.tok = min(st.tok + reserved, 2.0 * tpm)
        _update_full_at(st, rpm, tpm)
        return Admission(True, 0.0, None, reserved, headers(st.req, st.tok, rpm, tpm))

    def settle(self, subject: str, limits: Limits, admission: Admission, actual_tokens: int) -> None:
        """Charge `actual_tokens - admission.reserved_tokens` to the tokens bucket (a refund when
        negative), within [-capacity, capacity]. Nothing for a refused admission or tpm 0."""
        tpm = limits.tpm
        if not admission.allowed or not tpm:
            return
        delta = max(0, actual_tokens) - admission.reserved_tokens
        if delta <= 0 and subject not in self._states:
            return  # forgotten because full: a refund changes nothing
        now = self._clock()
        st = self._touch(subject, now, limits.rpm, tpm)
        st.tok = min(max(0.0, st.tok + delta), 2.0 * tpm)
        _update_full_at(st, limits.rpm, tpm)

    def room(self, subject: str, limits: Limits) -> int:
        """The tokens the subject's bucket holds now (read-only; 0 when tpm is 0)."""
        if not limits.tpm:
            return 0
        st = self._states.get(subject)
        used = _used(st, self._clock(), limits.rpm, limits.tpm)[1] if st is not None else 0.0
        return max(0, math.floor(limits.tpm - used + EPS))

    def snapshot(self, subject: str, limits: Limits) -> dict[str, Any]:
        """The subject's buckets now (read-only): limit, remaining (None when unlimited), reset_s."""
        rpm, tpm = limits.rpm, limits.tpm
        st = self._states.get(subject)
        req, tok = _used(st, self._clock(), rpm, tpm) if st is not None else (0.0, 0.0)
        return {"requests": bucket_view(rpm, req), "tokens": bucket_view(tpm, tok)}

    def reset(self, subject: str) -> None:
        """Full buckets again (the subject is forgotten)."""
        self._states.pop(subject, None)

    def _touch(self, subject: str, now: float, rpm: int, tpm: int) -> _State:
        """The subject's state brought up to `now` and marked most recently used (created if new)."""
        st = self._states.get(subject)
        if st is None:
            if len(self._states) >= self._max:
                self._evict(now, len(self._states) - self._max + 1)
            st = self._states[subject] = _State(now)
            return st
        self._states.move_to_end(subject)
        st.req, st.tok = _used(st, now, rpm, tpm)
        st.at = now
        return st

    def _evict(self, now: float, want: int) -> None:
        """Forget up to `want` least recently used subjects whose buckets are full."""
        victims: list[str] = []
        skipped = 0
        for subject, st in self._states.items():
            if st.full_at <= now:
                victims.append(subject)
                if len(victims) >= want:
                    break
            else:
                skipped += 1
                if skipped >= _SCAN:
                    break
        for subject in victims:
            del self._states[subject]


def _update_full_at(st: _State, rpm: int, tpm: int) -> None:
    req_s = st.req * WINDOW_S / rpm if rpm else 0.0
    tok_s = st.tok * WINDOW_S / tpm if tpm else 0.0
    st.full_at = st.at + max(req_s, tok_s)


def bucket_view(limit: int, used: float) -> dict[str, Any]:
    if not limit:
        return {"limit": 0, "remaining": None, "reset_s": 0.0}
    return {
        "limit": limit,
        "remaining": max(0, math.floor(limit - used + EPS)),
        "reset_s": round(used * WINDOW_S / limit, 3),
    }


def headers(req: float, tok: float, rpm: int, tpm: int) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for buckets with `req` requests and `tok` tokens used."""
    h: dict[str, str] = {}
    if rpm:
        h["x-ratelimit-limit-requests"] = str(rpm)
        h["x-ratelimit-remaining-requests"] = str(max(0, math.floor(rpm - req + EPS)))
        h["x-ratelimit-reset-requests"] = format_duration(req * WINDOW_S / rpm)
    if tpm:
        h["x-ratelimit-limit-tokens"] = str(tpm)
        h["x-ratelimit-remaining-tokens"] = str(max(0, math.floor(tpm - tok + EPS)))
        h["x-ratelimit-reset-tokens"] = format_duration(tok * WINDOW_S / tpm)
    return h
