"""Per-provider health as observed from real traffic and model listing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class ProviderHealth:
    reachable: bool | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_ok_at: float | None = None


class HealthBoard:
    def __init__(self, providers: list[str], clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._state = {p: ProviderHealth() for p in providers}

    def record_ok(self, provider: str) -> None:
        st = self._state[provider]
        st.reachable = True
        st.last_ok_at = self._clock()

    def record_error(self, provider: str, message: str, *, unreachable: bool = False) -> None:
        st = self._state[provider]
        st.last_error = message
        st.last_error_at = self._clock()
        if unreachable:
            st.reachable = False

    def unreachable_within(self, provider: str, seconds: float) -> bool:
        """Whether the provider was last found unreachable (not since reached), less than
        `seconds` ago."""
        st = self._state.get(provider)
        if st is None or st.reachable is not False or st.last_error_at is None:
            return False
        return self._clock() - st.last_error_at < seconds

    def snapshot(self, provider: str) -> dict[str, Any]:
        st = self._state[provider]
        return {
            "reachable": st.reachable,
            "last_error": st.last_error,
            "last_error_at": st.last_error_at,
            "last_ok_at": st.last_ok_at,
        }
