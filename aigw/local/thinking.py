"""Reasoning on local models: `<think>…</think>` text split out of the answer into
`reasoning_content` (whole, and as it streams), and a request's reasoning effort mapped onto
what the model's chat template takes (Qwen3's `enable_thinking`; gpt-oss's `reasoning_effort`).

A family that thinks in tags says so in its preset (`reasoning = "think"`). A template whose
generation prompt already opens the block (DeepSeek-R1 and QwQ write `<think>\\n` there) starts
the answer inside it.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from aigw.domain import Reasoning
from aigw.errors import CapabilityError, quoted
from aigw.local.textstream import partial_tag

OPEN, CLOSE = "<think>", "</think>"
_HARMONY_EFFORT = MappingProxyType(
    {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}
)


def opens_thinking(prompt: str) -> bool:
    """Does a rendered generation prompt end inside an open <think> block?"""
    tail = prompt.rstrip()
    return tail.endswith(OPEN)


def template_kwargs(template: str, want: Reasoning | None, hard: bool, model: str) -> dict[str, Any]:
    """What the chat template takes for the reasoning asked for: Qwen3's `enable_thinking`,
    gpt-oss's `reasoning_effort`. OpenAI's own `reasoning_effort` (`hard`) on a template with
    neither is refused naming it; another dialect's hint is then left out."""
    if want is None:
        return {}
    if "enable_thinking" in template:
        return {"enable_thinking": want.effort != "none"}
    if "reasoning_effort" in template and want.effort != "none":
        return {"reasoning_effort": _HARMONY_EFFORT.get(want.effort, "medium")}
    if hard:
        raise CapabilityError(
            f"Local model {quoted(model)} has no reasoning control in its chat template",
            param="reasoning_effort",
        )
    return {}


class ThinkSplit:
    """Streamed text into (reasoning, content) pieces, newlines around the tags trimmed as in the
    whole answer; text that may begin a tag (or end the reasoning) is held back."""

    def __init__(self, opened: bool) -> None:
        self._inside = opened
        self._done = False  # the think block closed, or never came: the rest is content
        self._buf = ""
        self._trim = True  # newlines at the start of the current part are dropped

    def _lead(self, text: str) -> str:
        if self._trim:
            text = text.lstrip("\n")
            self._trim = not text
        return text

    def add(self, piece: str) -> tuple[str, str]:
        self._buf += piece
        if self._done:
            out, self._buf = self._buf, ""
            return "", self._lead(out)
        if not self._inside:
            stripped = self._buf.lstrip()
            if stripped.startswith(OPEN):
                self._inside, self._buf = True, stripped[len(OPEN) :]
            elif OPEN.startswith(stripped):
                return "", ""  # may still become the opening tag
            else:
                self._done, self._trim = True, False  # no reasoning block: all of it is the answer
                out, self._buf = self._buf, ""
                return "", out
        end = self._buf.find(CLOSE)
        if end >= 0:
            thought, rest = self._buf[:end], self._buf[end + len(CLOSE) :]
            thought = self._lead(thought).rstrip("\n")
            self._done, self._inside, self._buf, self._trim = True, False, "", True
            return thought, self._lead(rest)
        held = partial_tag(self._buf, CLOSE)
        ready = self._buf[: len(self._buf) - held]
        ready = ready.rstrip("\n")  # newlines may be the ones before the closing tag
        self._buf = self._buf[len(ready) :]
        return self._lead(ready), ""

    def finish(self) -> tuple[str, str]:
        """What was held back: reasoning cut short stays reasoning."""
        rest, self._buf = self._buf, ""
        if self._inside:
            return self._lead(rest), ""
        return "", (self._lead(rest) if self._done else rest)


def split_whole(text: str, opened: bool) -> tuple[str, str]:
    """A whole answer's (reasoning, content)."""
    s = ThinkSplit(opened)
    a, b = s.add(text)
    c, d = s.finish()
    return a + c, b + d
