"""Tool calls a local model writes in its family's own format, parsed into OpenAI tool calls, whole
or as they stream (used with `tool_choice` auto; a forced call is held by a grammar instead).

Formats (a preset's `tool_format`):
  hermes   Hermes and Qwen (2.5, 3): `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`,
           any number, around or after the answer's text.
Text outside the calls is the message's content. A call whose JSON does not parse is kept as
text, so nothing the model wrote is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from aigw.local.textstream import partial_tag

FORMATS = frozenset({"hermes"})
_OPEN, _CLOSE = "<tool_call>", "</tool_call>"


@dataclass(slots=True)
class Parsed:
    """What one piece of output added: content text and completed tool calls."""

    text: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)


def _call(raw: str, call_id: str) -> dict[str, Any] | None:
    try:
        got = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(got, dict) or not isinstance(got.get("name"), str):
        return None
    args = got.get("arguments", got.get("parameters", {}))
    text = args if isinstance(args, str) else orjson.dumps(args).decode()
    return {"id": call_id, "type": "function", "function": {"name": got["name"], "arguments": text}}


class HermesStream:
    """`<tool_call>` blocks out of streamed text; text that may begin a tag is held back."""

    def __init__(self, new_id: Callable[[], str]) -> None:
        self._new_id = new_id
        self._buf = ""
        self._inside = False

    def add(self, piece: str) -> Parsed:
        self._buf += piece
        out = Parsed()
        while True:
            if self._inside:
                end = self._buf.find(_CLOSE)
                if end < 0:
                    return out
                raw, self._buf, self._inside = self._buf[:end], self._buf[end + len(_CLOSE) :], False
                call = _call(raw.strip(), self._new_id())
                if call is None:
                    out.text += _OPEN + raw + _CLOSE
                else:
                    out.calls.append(call)
                continue
            start = self._buf.find(_OPEN)
            if start >= 0:
                out.text += self._buf[:start]
                self._buf, self._inside = self._buf[start + len(_OPEN) :], True
                continue
            keep = partial_tag(self._buf, _OPEN)
            out.text += self._buf[: len(self._buf) - keep]
            self._buf = self._buf[len(self._buf) - keep :]
            return out

    def finish(self) -> Parsed:
        """What is left: held-back text, or an unclosed call (kept as text)."""
        rest = (_OPEN if self._inside else "") + self._buf
        self._buf, self._inside = "", False
        return Parsed(rest)


def parser(fmt: str, new_id: Callable[[], str]) -> HermesStream:
    """The streaming parser of a tool-call format (one of FORMATS)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown tool-call format {fmt!r}")
    return HermesStream(new_id)


def parse_all(fmt: str, text: str, new_id: Callable[[], str]) -> Parsed:
    """A whole output's content and tool calls."""
    p = parser(fmt, new_id)
    got = p.add(text)
    rest = p.finish()
    return Parsed(got.text + rest.text, got.calls)
