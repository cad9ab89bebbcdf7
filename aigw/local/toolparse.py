"""Tool calls a local model writes in its family's own format, parsed into OpenAI tool calls, whole
or as they stream (used with `tool_choice` auto; a forced call is held by a grammar instead).

Formats (a preset's `tool_format`), as each family documents them:
  hermes       Hermes, Qwen2.5, Qwen3: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`.
  qwen3_coder  Qwen3-Coder: `<tool_call><function=NAME><parameter=P>value</parameter>...
               </function></tool_call>`; a value is JSON when it parses as JSON, else text.
  llama3       Llama 3.1-3.3: an answer that is a JSON call `{"name": ..., "parameters": {...}}`
               (after `<|python_tag|>` or not; several separated by `;`).
  mistral      Mistral: `[TOOL_CALLS]` then a JSON array of calls, or `NAME[ARGS]{...}` calls.
  harmony      gpt-oss: channels. `analysis` is reasoning, `final` the answer, `commentary` to
               `functions.NAME` a call (its message the arguments), other commentary the answer.
Text outside the calls is the content. What does not parse as a call stays text, so nothing the
model wrote is lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from aigw.local.textstream import partial_tag

FORMATS = frozenset({"hermes", "qwen3_coder", "llama3", "mistral", "harmony"})
NewId = Callable[[], str]


@dataclass(frozen=True, slots=True)
class Calls:
    """Makes the calls of one answer: ids from `new_id`, and only to the request's tools (a
    call to anything else is not a call: it stays text)."""

    new_id: NewId
    names: frozenset[str] = frozenset()

    def make(self, name: Any, args: Any) -> dict[str, Any] | None:
        if not isinstance(name, str) or name not in self.names:
            return None
        if isinstance(args, str):
            try:
                args = orjson.loads(args or "{}")
            except orjson.JSONDecodeError:
                return None
        if not isinstance(args, dict):
            return None
        fn = {"name": name, "arguments": orjson.dumps(args).decode()}
        return {"id": self.new_id(), "type": "function", "function": fn}


@dataclass(slots=True)
class Parsed:
    """What one piece of output added: content text, reasoning text and completed tool calls."""

    text: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    reasoning: str = ""

    def extend(self, other: Parsed) -> Parsed:
        self.text += other.text
        self.calls += other.calls
        self.reasoning += other.reasoning
        return self


class CallParser(Protocol):
    def add(self, piece: str) -> Parsed: ...

    def finish(self) -> Parsed: ...


def _in_json_string(raw: str) -> bool:
    """Whether JSON text `raw` stops inside a string (where a closing tag is only text)."""
    in_str = esc = False
    for ch in raw:
        if esc:
            esc = False
        elif in_str and ch == "\\":
            esc = True
        elif ch == '"':
            in_str = not in_str
    return in_str


def _in_parameter(raw: str) -> bool:
    """Whether a Qwen3-Coder call `raw` stops inside a parameter's value."""
    return raw.rfind("<parameter=") > raw.rfind("</parameter>")


def _json_call(raw: str, calls: Calls) -> dict[str, Any] | None:
    try:
        got = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(got, dict) or ("arguments" not in got and "parameters" not in got):
        return None
    return calls.make(got.get("name"), got.get("arguments", got.get("parameters")))


_FUNCTION = re.compile(r"^\s*<function=([^>\s]+)>(.*?)</function>\s*$", re.S)
_PARAMETER = re.compile(r"<parameter=([^>\s]+)>\n?(.*?)\n?</parameter>", re.S)


def _xml_call(raw: str, calls: Calls) -> dict[str, Any] | None:
    m = _FUNCTION.match(raw)
    if m is None:
        return None
    args: dict[str, Any] = {}
    for name, value in _PARAMETER.findall(m.group(2)):
        try:
            parsed = orjson.loads(value)
            args[name] = value if isinstance(parsed, str) else parsed
        except orjson.JSONDecodeError:
            args[name] = value
    return calls.make(m.group(1), args)


class TaggedCalls:
    """Calls between an opening and a closing tag, anywhere in the text; text that may begin the
    opening tag is held back. A closing tag inside a call's value (`within(raw)`: a JSON string,
    a parameter) is part of the value, not the end of the call."""

    def __init__(
        self,
        decode: Callable[[str, Calls], dict[str, Any] | None],
        calls: Calls,
        within: Callable[[str], bool],
    ) -> None:
        self._decode = decode
        self._calls = calls
        self._within = within
        self._buf = ""
        self._inside = False
        self._from = 0  # inside a call: where a closing tag may still begin in `_buf`

    OPEN, CLOSE = "<tool_call>", "</tool_call>"

    def add(self, piece: str) -> Parsed:
        self._buf += piece
        out = Parsed()
        while True:
            if self._inside:
                end = self._buf.find(self.CLOSE, self._from)
                if end < 0:
                    self._from = max(self._from, len(self._buf) - len(self.CLOSE) + 1)
                    return out
                if self._within(self._buf[:end]):
                    self._from = end + len(self.CLOSE)
                    continue
                raw, self._buf, self._inside = self._buf[:end], self._buf[end + len(self.CLOSE) :], False
                self._from = 0
                call = self._decode(raw.strip(), self._calls)
                if call is None:
                    out.text += self.OPEN + raw + self.CLOSE
                else:
                    out.calls.append(call)
                continue
            start = self._buf.find(self.OPEN)
            if start >= 0:
                out.text += self._buf[:start]
                self._buf, self._inside = self._buf[start + len(self.OPEN) :], True
                continue
            keep = partial_tag(self._buf, self.OPEN)
            out.text += self._buf[: len(self._buf) - keep]
            self._buf = self._buf[len(self._buf) - keep :]
            return out

    def finish(self) -> Parsed:
        """What is left: held-back text, or an unclosed call (kept as text)."""
        rest = (self.OPEN if self._inside else "") + self._buf
        self._buf, self._inside, self._from = "", False, 0
        return Parsed(rest)


class TrailingCalls:
    """Calls that take the rest of the answer after a trigger (`[TOOL_CALLS]`), or that are the
    whole answer (Llama's bare JSON): text streams until the trigger, the calls are read at the end."""

    def __init__(
        self,
        triggers: tuple[str, ...],
        leading: str,
        decode: Callable[[str, Calls], list[Any]],
        calls: Calls,
    ) -> None:
        self._triggers = triggers
        self._leading = leading  # a first character that starts calls without a trigger ("" for none)
        self._decode = decode
        self._make = calls
        self._buf = ""
        self._calls: str | None = None  # the text after the trigger, once it came
        self._trigger = ""
        self._started = False  # some text went out as content

    def add(self, piece: str) -> Parsed:
        if self._calls is not None:
            self._calls += piece
            return Parsed()
        self._buf += piece
        if not self._started:
            head = self._buf.lstrip()
            if self._leading and head.startswith(self._leading):
                self._calls, self._buf = self._buf, ""  # kept whole: it may be text after all
                return Parsed()
            if not head:
                return Parsed()
        for t in self._triggers:
            at = self._buf.find(t)
            if at >= 0:
                text, self._calls, self._buf = self._buf[:at], self._buf[at + len(t) :], ""
                self._trigger = t
                self._started = self._started or bool(text)
                return Parsed(text)
        keep = max(partial_tag(self._buf, t) for t in self._triggers)
        text, self._buf = self._buf[: len(self._buf) - keep], self._buf[len(self._buf) - keep :]
        self._started = self._started or bool(text.strip())
        return Parsed(text)

    def finish(self) -> Parsed:
        if self._calls is None:
            rest, self._buf = self._buf, ""
            return Parsed(rest)
        raw, self._calls = self._calls, None
        made = self._decode(raw, self._make)
        calls = [c for c in made if c is not None]
        if not calls or len(calls) < len(made):
            return Parsed(self._buf + self._trigger + raw)  # not calls after all: the text as written
        return Parsed(self._buf, calls)


def _json_values(raw: str) -> list[Any]:
    """The JSON values in `raw`, one after another (separated by whitespace, `;` or `,`)."""
    dec, i = _Scanner(raw), 0
    out: list[Any] = []
    while True:
        i = dec.skip(i)
        if i >= len(raw):
            return out
        value, i = dec.value(i)
        if value is _BAD:
            return []
        out.append(value)


_BAD = object()


class _Scanner:
    def __init__(self, raw: str) -> None:
        self.raw = raw

    def skip(self, i: int) -> int:
        while i < len(self.raw) and self.raw[i] in " \t\r\n;,":
            i += 1
        return i

    def value(self, i: int) -> tuple[Any, int]:
        """The JSON value starting at i (an object or array), by bracket depth outside strings."""
        depth, in_str, esc = 0, False, False
        for j in range(i, len(self.raw)):
            ch = self.raw[j]
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == '"':
                    in_str = False
                continue
            if ch == '"':
                in_str = True
            elif ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:
                    try:
                        return orjson.loads(self.raw[i : j + 1]), j + 1
                    except orjson.JSONDecodeError:
                        return _BAD, len(self.raw)
        return _BAD, len(self.raw)


def _llama_calls(raw: str, calls: Calls) -> list[Any]:
    values = _json_values(raw.removeprefix("<|python_tag|>"))
    return [_json_call(orjson.dumps(v).decode(), calls) if isinstance(v, dict) else None for v in values]


_MISTRAL_ARGS = re.compile(r"\s*([A-Za-z0-9_.\-]+)\[ARGS\]")


def _mistral_calls(raw: str, calls: Calls) -> list[Any]:
    raw = raw.replace("[TOOL_CALLS]", " ")
    if raw.lstrip().startswith("["):
        values = _json_values(raw)
        items = values[0] if len(values) == 1 and isinstance(values[0], list) else []
        return [_json_call(orjson.dumps(v).decode(), calls) if isinstance(v, dict) else None for v in items]
    out: list[Any] = []
    i = 0
    while (m := _MISTRAL_ARGS.match(raw, i)) is not None:
        scanner = _Scanner(raw)
        value, i = scanner.value(scanner.skip(m.end()))
        if value is _BAD:
            return []
        out.append(calls.make(m.group(1), value))
    return out if raw[i:].strip() == "" else []


class Harmony:
    """gpt-oss's channels: `<|channel|>NAME [to=functions.X] [<|constrain|>json]<|message|>BODY`,
    each ended by `<|end|>` (or the answer's end, where `<|call|>` or `<|return|>` stopped it), the
    next begun by `<|start|>assistant`. Bodies stream as they come."""

    _MESSAGE, _END, _START = "<|message|>", "<|end|>", "<|start|>"

    def __init__(self, calls: Calls) -> None:
        self._calls = calls
        self._buf = ""
        self._head: str | None = None  # the header of the message being read, once complete
        self._body = ""  # a call's arguments so far

    def _target(self) -> tuple[str, str | None]:
        """The channel of the current message, and the function it calls (None for none)."""
        head = self._head or ""
        channel = re.search(r"<\|channel\|>\s*(\w+)", head)
        recipient = re.search(r"to=functions\.([^\s<]+)", head)
        return (channel.group(1) if channel else "final"), (recipient.group(1) if recipient else None)

    def _emit(self, text: str, out: Parsed) -> None:
        channel, fn = self._target()
        if fn is not None:
            self._body += text
        elif channel == "analysis":
            out.reasoning += text
        else:
            out.text += text

    def _close(self, out: Parsed) -> None:
        fn = self._target()[1]
        if fn is not None:
            call = self._calls.make(fn, self._body.strip() or "{}")
            if call is None:
                out.text += self._body
            else:
                out.calls.append(call)
        self._head, self._body = None, ""

    def add(self, piece: str) -> Parsed:
        self._buf += piece
        out = Parsed()
        while True:
            if self._head is None:
                at = self._buf.find(self._MESSAGE)
                if at < 0:
                    return out
                self._head, self._buf = self._buf[:at], self._buf[at + len(self._MESSAGE) :]
                continue
            end = self._buf.find(self._END)
            if end >= 0:
                self._emit(self._buf[:end], out)
                self._close(out)
                self._buf = self._buf[end + len(self._END) :]
                continue
            keep = partial_tag(self._buf, self._END)
            self._emit(self._buf[: len(self._buf) - keep], out)
            self._buf = self._buf[len(self._buf) - keep :]
            return out

    def finish(self) -> Parsed:
        out = Parsed()
        if self._head is None:
            out.text, self._buf = self._buf, ""  # no channel at all: plain text
            return out
        self._emit(self._buf, out)
        self._buf = ""
        self._close(out)
        return out


def parser(fmt: str, calls: Calls) -> CallParser:
    """The streaming parser of a tool-call format (one of FORMATS)."""
    if fmt == "hermes":
        return TaggedCalls(_json_call, calls, _in_json_string)
    if fmt == "qwen3_coder":
        return TaggedCalls(_xml_call, calls, _in_parameter)
    if fmt == "llama3":
        return TrailingCalls(("<|python_tag|>",), "{", _llama_calls, calls)
    if fmt == "mistral":
        return TrailingCalls(("[TOOL_CALLS]",), "", _mistral_calls, calls)
    if fmt == "harmony":
        return Harmony(calls)
    raise ValueError(f"unknown tool-call format {fmt!r}")


def parse_all(fmt: str, text: str, calls: Calls) -> Parsed:
    """A whole output's content, reasoning and tool calls."""
    p = parser(fmt, calls)
    return p.add(text).extend(p.finish())
