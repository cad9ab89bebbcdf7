"""What the agent dialects' translators share: the translated chat body with the hints left out,
and the error naming a bad field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aigw.domain import Reasoning
from aigw.errors import InvalidRequest


@dataclass(slots=True)
class Translated:
    body: dict[str, Any]
    """The OpenAI chat body."""
    dropped: list[str] = field(default_factory=list)
    """The hints left out, for the x-aigw-dropped header."""
    hint: Reasoning | None = None
    """The reasoning the request asked for, for targets with reasoning controls."""

    def drop(self, name: str) -> None:
        if name not in self.dropped:
            self.dropped.append(name)


def bad(message: str, param: str) -> InvalidRequest:
    """A 400 naming the field `param`."""
    return InvalidRequest(f"Invalid value for '{param}': {message}", param=param)
