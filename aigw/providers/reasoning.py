"""The reasoning a chat request asks of a target's reasoning controls, checked once for every
provider that has them."""

from __future__ import annotations

from typing import Any

from aigw.domain import EFFORTS, Reasoning
from aigw.errors import InvalidRequest


def requested(body: dict[str, Any], hint: Reasoning | None) -> Reasoning | None:
    """OpenAI's `reasoning_effort` (InvalidRequest when it is not one of EFFORTS), else another
    dialect's hint (None when its effort is not one aigw knows)."""
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in EFFORTS:
            raise InvalidRequest(
                f"reasoning_effort must be one of {', '.join(EFFORTS)}", param="reasoning_effort"
            )
        return Reasoning(str(effort))
    return hint if hint is not None and hint.effort in EFFORTS else None
