"""Tool calls on local models: the call a forced `tool_choice` makes, held to its tool's schema
by constrained decoding, and the messages a chat template sees for earlier calls and results.

A forced call (`tool_choice` "required" or a named function) is generated as one JSON object,
`{"name": NAME, "arguments": {...}}`, whose grammar allows only the offered tools' names and
each tool's own parameter schema; it works on any model, whatever its family. It becomes one
OpenAI tool call, streamed as a first delta with its id and name, then argument fragments.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

import orjson

from aigw.errors import InvalidRequest
from aigw.local.toolparse import CallParser, Calls, Parsed, parser

_HEAD = re.compile(r'^\{"name":"((?:[^"\\]|\\.)*)","arguments":')


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def _function(tool: Any, i: int) -> dict[str, Any]:
    fn = tool.get("function") if isinstance(tool, dict) else None
    if tool.get("type") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise InvalidRequest(f"tools[{i}] must be a function with a name", param="tools")
    return fn


def tool_names(tools: Any) -> frozenset[str]:
    """The function names a request offers (what a model's own calls may name)."""
    if not isinstance(tools, list):
        return frozenset()
    return frozenset(_function(t, i)["name"] for i, t in enumerate(tools))


def _named(choice: Any) -> str | None:
    if not isinstance(choice, dict):
        return None
    fn = choice.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise InvalidRequest(
            'tool_choice must be a string or {"type": "function", "function": {"name": ...}}',
            param="tool_choice",
        )
    return str(fn["name"])


def forced_call_schema(tools: list[Any], choice: Any) -> dict[str, Any]:
    """The JSON schema of the call `choice` forces: one of `tools` ("required") or the named one.
    Each tool's `$defs` (or `definitions`) move to the top, renamed per tool, with its `$ref`s."""
    fns = [(i, _function(t, i)) for i, t in enumerate(tools)]
    named = _named(choice)
    if named is not None:
        fns = [(i, f) for i, f in fns if f["name"] == named]
        if not fns:
            raise InvalidRequest(f"tool_choice names {named!r}, which is not in tools", param="tool_choice")
    defs: dict[str, Any] = {}
    options = []
    for i, f in fns:
        params = f.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, dict):
            raise InvalidRequest(f"tools[{i}].function.parameters must be an object", param="tools")
        params = _hoisted(params, f"t{i}_", defs)
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": f["name"]}, "arguments": params},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return {**schema, "$defs": defs} if defs else schema


def _hoisted(schema: dict[str, Any], prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    """`schema` without its own definitions, which join `defs` under `prefix`ed names; every
    `$ref` to them rewritten."""
    own = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    for name, sub in own.items():
        defs[prefix + name] = _refs(sub, prefix)
    rest = {k: v for k, v in schema.items() if k not in ("$defs", "definitions")}
    out: dict[str, Any] = _refs(rest, prefix)
    return out


def _refs(value: Any, prefix: str) -> Any:
    if isinstance(value, dict):
        out = {k: _refs(v, prefix) for k, v in value.items()}
        ref = value.get("$ref")
        if isinstance(ref, str):
            for root in ("#/$defs/", "#/definitions/"):
                if ref.startswith(root):
                    out["$ref"] = "#/$defs/" + prefix + ref[len(root) :]
        return out
    if isinstance(value, list):
        return [_refs(v, prefix) for v in value]
    return value


def forced_call(text: str, call_id: str) -> dict[str, Any] | None:
    """The tool call a forced generation wrote (None when it was cut short before completing)."""
    try:
        got = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(got, dict) or not isinstance(got.get("name"), str):
        return None
    fn = {"name": got["name"], "arguments": orjson.dumps(got.get("arguments", {})).decode()}
    return {"id": call_id, "type": "function", "function": fn}


class ForcedCallStream:
    """A forced call's text, as it streams, turned into OpenAI tool-call deltas."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self._text = ""
        self._sent = -1  # -1: the call's head (its name) is not complete yet
        self._start = 0

    def add(self, piece: str) -> list[dict[str, Any]]:
        self._text += piece
        out: list[dict[str, Any]] = []
        if self._sent < 0:
            head = _HEAD.match(self._text)
            if head is None:
                return out
            name = orjson.loads(f'"{head.group(1)}"')
            fn = {"name": name, "arguments": ""}
            out.append({"index": 0, "id": self.call_id, "type": "function", "function": fn})
            self._start = self._sent = head.end()
        end = len(self._text) - 1  # hold the last character back: it may close the wrapper
        if end > self._sent:
            out.append({"index": 0, "function": {"arguments": self._text[self._sent : end]}})
            self._sent = end
        return out

    def finish(self) -> list[dict[str, Any]]:
        """The last fragment (without the wrapper's closing brace when the call completed)."""
        if self._sent < 0:
            return []
        rest = self._text[self._sent :]
        if rest.endswith("}") and forced_call(self._text, self.call_id) is not None:
            rest = rest[:-1]
        return [{"index": 0, "function": {"arguments": rest}}] if rest else []


class AutoCallStream:
    """The deltas of an answer in which the model may write tool calls in its family's format:
    its text as content, each call as a delta with its id and name, then one with its arguments."""

    def __init__(self, calls: Calls) -> None:
        self._calls = calls
        self._parser: CallParser | None = None
        self.called = 0

    def add(self, fmt: str, piece: str) -> list[dict[str, Any]]:
        if self._parser is None:
            self._parser = parser(fmt, self._calls)
        return self._deltas(self._parser.add(piece))

    def finish(self) -> list[dict[str, Any]]:
        return [] if self._parser is None else self._deltas(self._parser.finish())

    def _deltas(self, got: Parsed) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"reasoning_content": got.reasoning}] if got.reasoning else []
        if got.text:
            out.append({"content": got.text})
        for call in got.calls:
            fn = call["function"]
            head = {"index": self.called, "id": call["id"], "type": "function"}
            out.append({"tool_calls": [{**head, "function": {"name": fn["name"], "arguments": ""}}]})
            out.append({"tool_calls": [{"index": self.called, "function": {"arguments": fn["arguments"]}}]})
            self.called += 1
        return out


def template_messages(
    messages: list[dict[str, Any]], knows_tools: bool, image_marker: str | None = None
) -> list[dict[str, Any]]:
    """Chat messages as a chat template takes them: assistant tool calls with their arguments as
    objects (what Hugging Face templates expect), tool results with their call's id (as nine
    letters and digits, which Mistral's templates require), earlier reasoning as both
    `reasoning_content` (Qwen3) and `thinking` (gpt-oss). A template
    that knows nothing of tool calls sees each call written into its message's text instead, so
    the model still reads what it called. Each image part becomes `image_marker` in its message's
    text (a vision model's engine puts the image there)."""
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        msg: dict[str, Any] = {"role": m["role"], "content": _text(m.get("content"), image_marker)}
        calls = [_checked_call(c, i, j) for j, c in enumerate(m.get("tool_calls") or [])]
        if calls and knows_tools:
            msg["tool_calls"] = [_call_for_template(c) for c in calls]
        elif calls:
            written = [
                orjson.dumps({"name": c["function"].get("name"), "arguments": _arguments(c)}).decode()
                for c in calls
            ]
            msg["content"] = "\n".join(filter(None, [msg["content"], *written]))
        if m["role"] == "tool" and isinstance(m.get("tool_call_id"), str):
            msg["tool_call_id"] = _short_id(m["tool_call_id"])
        if isinstance(m.get("reasoning_content"), str) and m["reasoning_content"]:
            msg["reasoning_content"] = msg["thinking"] = m["reasoning_content"]
        if isinstance(m.get("name"), str):
            msg["name"] = m["name"]
        out.append(msg)
    return out


def _text(content: Any, image_marker: str | None = None) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    out = []
    for p in content:
        kind = p.get("type") if isinstance(p, dict) else None
        if kind in ("text", "input_text"):
            out.append(str(p.get("text", "")))
        elif kind in ("image_url", "input_image") and image_marker is not None:
            out.append(image_marker)
    return "".join(out)


def _checked_call(call: Any, i: int, j: int) -> dict[str, Any]:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise InvalidRequest(
            f"messages[{i}].tool_calls[{j}] needs a function with a name", param="messages"
        )
    assert isinstance(call, dict)
    return call


def _arguments(call: dict[str, Any]) -> Any:
    raw = (call.get("function") or {}).get("arguments")
    try:
        return orjson.loads(raw) if isinstance(raw, str) else (raw or {})
    except orjson.JSONDecodeError:
        return raw


def _call_for_template(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {
        "id": _short_id(str(call.get("id") or "")),
        "type": "function",
        "function": {"name": fn.get("name"), "arguments": _arguments(call)},
    }


def template_refused(model: str, error: Exception) -> Exception:
    """A 400 for messages the model's chat template refuses (its raise_exception, as Mistral's
    alternation rule, or an error of the template itself); any other error as it was."""
    from jinja2 import TemplateError  # installed with every engine that renders templates

    if not isinstance(error, ValueError | TypeError | TemplateError):
        return error
    return InvalidRequest(
        f"{model}'s chat template refused these messages: {str(error)[:300]}", param="messages"
    )


def _short_id(call_id: str) -> str:
    """A call id as nine letters and digits, the same for the same id."""
    return hashlib.sha256(call_id.encode()).hexdigest()[:9]
