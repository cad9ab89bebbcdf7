"""What a request asks of a local generation beyond its prompt, read and checked: the sampling
knobs past OpenAI's own, `keep_alive`, `prompt_cache_key`; and the usage its result makes."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

from aigw.domain import Timing, Usage
from aigw.engine.backend import GenResult
from aigw.engine.engine import FOREVER
from aigw.errors import CapabilityError, InvalidRequest, quoted

_SAMPLING_EXTRA = ("presence_penalty", "frequency_penalty", "top_k", "min_p", "repeat_penalty")
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = MappingProxyType({"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0})


def refuse_unhonoured(body: dict[str, Any], honoured: frozenset[str], model: str) -> None:
    """A 400 naming the first field a local model would not honour (never silently ignored)."""
    for key in body:
        if key not in honoured:
            why = f"Local model {quoted(model)} does not support {quoted(key)}"
            raise CapabilityError(why, param=key[:100])


def parse_keep_alive(value: Any) -> float | None:
    """Ollama's keep_alive: seconds, or "30s"/"5m"/"1h"; negative keeps the model loaded."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidRequest('keep_alive must be a duration such as 300, "5m" or -1', param="keep_alive")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        raise InvalidRequest('keep_alive must be a duration such as 300, "5m" or -1', param="keep_alive")
    return FOREVER if seconds < 0 else seconds


_EXTRA_RANGES = MappingProxyType({
    "presence_penalty": (-2.0, 2.0), "frequency_penalty": (-2.0, 2.0), "top_k": (0, 1_000_000),
    "min_p": (0.0, 1.0), "repeat_penalty": (0.0, 10.0),
})  # fmt: skip


def sampling_extra(body: dict[str, Any]) -> dict[str, Any]:
    """The sampling knobs beyond OpenAI's own, checked: a number in its range (top_k a whole one)."""
    out: dict[str, Any] = {}
    for name in _SAMPLING_EXTRA:
        value = body.get(name)
        if value is None:
            continue
        low, high = _EXTRA_RANGES[name]
        whole = name == "top_k"
        kinds = (int,) if whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
            kind = "an integer" if whole else "a number"
            raise InvalidRequest(f"{name} must be {kind} from {low} to {high}", param=name)
        out[name] = value
    return out


def cache_key(body: dict[str, Any]) -> str | None:
    key = body.get("prompt_cache_key")
    if key is not None and not isinstance(key, str):
        raise InvalidRequest("prompt_cache_key must be a string", param="prompt_cache_key")
    return key


def usage_of(result: GenResult, load_s: float = 0.0) -> Usage:
    extra = {"prompt_tokens_details": {"cached_tokens": result.cached_tokens}} if result.cached_tokens else {}
    total = result.prompt_tokens + result.completion_tokens
    timing = Timing(result.prefill_s, result.decode_s, load_s)
    return Usage(result.prompt_tokens, result.completion_tokens, total, extra, timing)
