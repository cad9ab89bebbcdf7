"""A local generation's text shaped into an OpenAI answer: reasoning split out of <think> tags,
tool calls parsed from the family's format (tool_choice auto) or read from a forced call, the rest
as content — as one message, or as stream deltas in the order the model wrote them."""

from __future__ import annotations

from typing import Any

from aigw.engine.backend import OutputFormat
from aigw.local.thinking import ThinkSplit, split_whole
from aigw.local.toolparse import Calls, parse_all
from aigw.local.tools import AutoCallStream, ForcedCallStream, forced_call, new_call_id

CHANNELS = "harmony"
"""The format in which reasoning, answer and calls all come in channels (gpt-oss)."""


class Shaper:
    """One answer's shaping. `forced`: the output is a forced call; `auto`: the model may write
    calls of its own (to `tools`, the request's function names); `constrained`: a grammar holds
    the output (no reasoning block can come before it). `begin` gives the loaded model's output
    format before any text."""

    def __init__(
        self, *, forced: bool, auto: bool, constrained: bool = False, tools: frozenset[str] = frozenset()
    ) -> None:
        self.forced = forced
        self.auto = auto
        self.constrained = constrained
        self._calls = Calls(new_call_id, tools)
        self.fmt = OutputFormat()
        self._think: ThinkSplit | None = None
        self._forced = ForcedCallStream(new_call_id()) if forced else None
        self._own: AutoCallStream | None = None
        self._text = ""

    def begin(self, fmt: OutputFormat) -> None:
        self.fmt = fmt
        if fmt.think and not self.constrained:
            self._think = ThinkSplit(fmt.opened)
        if not self.constrained and fmt.tools is not None and (self.auto or fmt.tools == CHANNELS):
            self._own = AutoCallStream(self._calls)  # gpt-oss writes channels, tools or not

    def message(self, text: str, finish: str) -> tuple[dict[str, Any], str]:
        """A whole answer's message and finish_reason."""
        if self.forced:
            call = forced_call(text, new_call_id())
            if call is not None:
                return {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
            return {"role": "assistant", "content": text}, finish
        thought, content = split_whole(text, self.fmt.opened) if self._think is not None else ("", text)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if self._own is not None and self.fmt.tools is not None:
            parsed = parse_all(self.fmt.tools, content, self._calls)
            thought += parsed.reasoning
            message["content"] = parsed.text
            if parsed.calls:
                message = {"role": "assistant", "content": parsed.text or None, "tool_calls": parsed.calls}
                finish = "tool_calls"
        if thought:
            message["reasoning_content"] = thought
        return message, finish

    def add(self, piece: str) -> list[dict[str, Any]]:
        """The deltas one piece of streamed text makes."""
        self._text += piece
        if self._forced is not None:
            return [{"tool_calls": [c]} for c in self._forced.add(piece)]
        thought, content = self._think.add(piece) if self._think is not None else ("", piece)
        return self._deltas(thought, content)

    def finish(self) -> list[dict[str, Any]]:
        if self._forced is not None:
            return [{"tool_calls": [c]} for c in self._forced.finish()]
        thought, content = self._think.finish() if self._think is not None else ("", "")
        out = self._deltas(thought, content)
        if self._own is not None:
            out += self._own.finish()
        return out

    def finish_reason(self, finish: str) -> str:
        if self._forced is not None:
            return "tool_calls" if forced_call(self._text, self._forced.call_id) is not None else finish
        return "tool_calls" if self._own is not None and self._own.called else finish

    def _deltas(self, thought: str, content: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"reasoning_content": thought}] if thought else []
        if not content:
            return out
        if self._own is not None and self.fmt.tools is not None:
            return out + self._own.add(self.fmt.tools, content)
        return [*out, {"content": content}]
