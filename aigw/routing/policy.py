"""What the router does after a failure, and how long it waits before a retry. Pure functions.

Decisions come from the error's type and its `retryable` flag, never from its message:

    the request is at fault (aigw's own 4xx, upstream 400/413/422)   FINAL  answer the client now
    a retryable upstream failure (connect, timeout, 408/409/429/5xx)   RETRY  same target, then next
    anything else (401/403/404, bad response, local queue full, a      NEXT   next target
      field this target's translator cannot honour)

A timeout is retried on the same target only when no other target could answer: a target that
has just hung is likely to hang again, and retrying it would spend the request's deadline.
"""

from __future__ import annotations

import random
from enum import Enum

from aigw.config import RoutingConfig
from aigw.domain import ChatChunk
from aigw.errors import (
    AigwError,
    CapabilityError,
    ServiceUnavailable,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)


class Verdict(Enum):
    RETRY = "retry"
    NEXT = "next"
    FINAL = "final"


def verdict(err: AigwError, *, has_next: bool = False) -> Verdict:
    if isinstance(err, UpstreamStatusError) and err.is_client_fault:
        return Verdict.FINAL
    if isinstance(err, UpstreamTimeout) and has_next:
        return Verdict.NEXT
    if isinstance(err, UpstreamError):
        return Verdict.RETRY if err.retryable else Verdict.NEXT
    if isinstance(err, ServiceUnavailable | CapabilityError):
        return Verdict.NEXT
    return Verdict.FINAL


def counts_against_target(err: AigwError) -> bool:
    """Whether the failure says something about the target's health (for its circuit breaker).
    A full local queue is load, not ill health; a bad request says nothing about the target."""
    return isinstance(err, UpstreamError) and verdict(err) is not Verdict.FINAL


def retry_delay(
    cfg: RoutingConfig, retry: int, retry_after: float | None, rng: random.Random
) -> float | None:
    """Seconds to wait before retry number `retry` (1-based): exponential backoff with jitter,
    at least the upstream's Retry-After. None when Retry-After asks for longer than the cap
    (the caller moves on to the next target rather than wait)."""
    if retry_after is not None and retry_after > cfg.retry_after_cap_s:
        return None
    ceiling = min(cfg.backoff_max_s, cfg.backoff_base_s * 2.0 ** (retry - 1))
    delay = ceiling * (0.5 + rng.random() / 2)  # "equal jitter": never zero, never above the ceiling
    return max(delay, retry_after) if retry_after is not None else delay


def has_content(chunk: ChatChunk) -> bool:
    """Whether a stream chunk carries anything beyond the opening role: text, a tool call, a
    refusal, a finish reason, usage. Until such a chunk reached the client a stream may still
    fall back to another target."""
    if chunk.usage is not None:
        return True
    for choice in chunk.choices:
        if choice.get("finish_reason"):
            return True
        if choice.get("text"):  # a legacy completion's chunk
            return True
        delta = choice.get("delta")
        if isinstance(delta, dict) and any(v for k, v in delta.items() if k != "role"):
            return True
    return False
