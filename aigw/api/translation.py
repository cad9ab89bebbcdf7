"""What the agent dialects' translators share: the translated chat body with the hints left out,
and the error naming a bad field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

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


def sorted_out(b: dict[str, Any], known: frozenset[str], hints: frozenset[str], refusal: str) -> Translated:
    """A translation begun: the request's hints named as dropped, any field neither known nor a
    hint refused (`refusal` formats the message with the field's name), the model present."""
    out = Translated({})
    for name in b:
        if name in hints:
            out.drop(name)
        elif name not in known:
            raise InvalidRequest(refusal.format(name=name), param=name)
    model = b.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model")
    return out


def bad(message: str, param: str) -> InvalidRequest:
    """A 400 naming the field `param`."""
    return InvalidRequest(f"Invalid value for '{param}': {message}", param=param)


def call_arguments(raw: Any) -> Any:
    """A tool call's arguments as an object (the agent dialects send objects, OpenAI a JSON
    string); what the model wrote when it is not an object is kept rather than lost."""
    if isinstance(raw, dict):
        return raw
    try:
        parsed = orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        return {"arguments": raw}
    return parsed if isinstance(parsed, dict) else {"value": parsed}
