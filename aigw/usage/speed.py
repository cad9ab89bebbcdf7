"""What explains a slow answer, as the usage log and the dashboard keep it: how much of the prompt
the upstream read from its prompt cache, and, for a local model, how long reading the rest took
(prefill) and how fast it then generated (decode tokens per second)."""

from __future__ import annotations

from dataclasses import dataclass

from aigw.domain import Usage


@dataclass(frozen=True, slots=True)
class Speed:
    """One answer's figures; None where its upstream does not tell (a cloud model's timing, an
    answer without usage, a cache hit)."""

    cached_tokens: int | None = None
    """Prompt tokens not read again (the upstream's own prompt cache)."""
    prefill_ms: float | None = None
    """A local model's time to its first generated token."""
    decode_tps: float | None = None
    """A local model's generated tokens per second after the first (None below two tokens)."""

    @classmethod
    def of(cls, usage: Usage | None) -> Speed:
        if usage is None:
            return cls()
        cached, timing = usage.cached_tokens, usage.timing
        if timing is None:
            return cls(cached)
        tps = timing.decode_tps(usage.completion_tokens)
        # A local model reports cached tokens only when there are some: none is a known 0.
        return cls(cached or 0, round(timing.prefill_s * 1000, 3), None if tps is None else round(tps, 2))
