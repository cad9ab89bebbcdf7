"""An OpenAI Responses request as the pipeline's chat request, for every target.

Each field's fate:
  mapped    model, input (a string, or items: messages with developer/system/user/assistant roles
            and input_text/input_image/output_text parts, function_call, function_call_output),
            instructions (with developer and system messages: one system message first),
            max_output_tokens -> max_tokens, temperature, top_p, tools (function tools; a
            namespace's functions flattened as NAMESPACE__NAME), tool_choice, parallel_tool_calls,
            text.format (json_object, json_schema) -> response_format, user, stream.
            store and previous_response_id are aigw's own (see `aigw.state.responses`).
  hint      reasoning.effort -> the request's reasoning hint, applied by targets with reasoning
            controls (Anthropic and Gemini thinking budgets, local models whose template can
            think) and ignored by others.
  kept      prompt_cache_key (a local model keys its saved prompt state by it; OpenAI-compatible
            upstreams get it; Anthropic and Gemini drop it).
  dropped   hints named in the `x-aigw-dropped` header: reasoning.summary, include, metadata,
            client_metadata, service_tier, truncation, safety_identifier,
            reasoning items of earlier turns, and built-in tools a target cannot run (web_search,
            file_search, ...: `tools[TYPE]`).
  refused   a 400 naming it: any other field or item type, and a tool_choice forcing a dropped tool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aigw.api import translation
from aigw.api.translation import bad, sorted_out
from aigw.domain import EFFORTS, Reasoning
from aigw.errors import InvalidRequest

_OWN = frozenset({"model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "tools"})
_OWN |= {"tool_choice", "parallel_tool_calls", "text", "user", "stream", "store", "previous_response_id"}
_OWN |= {"reasoning", "prompt_cache_key"}
_HINTS = frozenset(
    {
        "include",
        "metadata",
        "client_metadata",
        "service_tier",
        "truncation",
        "safety_identifier",
    }
)
NAMESPACE_SEP = "__"


@dataclass(slots=True)
class Translated(translation.Translated):
    """The chat body (without the earlier turns of `previous_response_id`), and the system text."""

    system: list[str] = field(default_factory=list)
    """The instructions and developer/system messages, for one system message first."""


def _parts(content: Any, param: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad("expected a string or an array of content parts", param)
    parts: list[dict[str, Any]] = []
    for i, p in enumerate(content):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind in ("input_text", "output_text") and isinstance(p.get("text"), str):
            parts.append({"type": "text", "text": p["text"]})
        elif kind == "input_image" and isinstance(p.get("image_url"), str):
            parts.append({"type": "image_url", "image_url": {"url": p["image_url"]}})
        else:
            raise bad(f"content part type {kind!r} is not supported", f"{param}[{i}].type")
    if all(p["type"] == "text" for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


def _text(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "\n\n".join(p["text"] for p in content if p["type"] == "text")


def _items(raw: Any, out: Translated) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise bad("expected a string or a non-empty array of items", "input")
    msgs: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise bad("expected an object", where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            content = _parts(item.get("content"), f"{where}.content")
            if role in ("developer", "system"):
                out.system.append(_text(content))
            elif role in ("user", "assistant"):
                msgs.append({"role": role, "content": content})
            else:
                raise bad("role must be developer, system, user or assistant", f"{where}.role")
        elif kind == "function_call":
            if not all(isinstance(item.get(k), str) for k in ("call_id", "name", "arguments")):
                raise bad("a function_call needs call_id, name and arguments", where)
            call = {"id": item["call_id"], "type": "function"}
            call["function"] = {"name": item["name"], "arguments": item["arguments"]}
            if msgs and msgs[-1]["role"] == "assistant" and msgs[-1].get("tool_calls") is not None:
                msgs[-1]["tool_calls"].append(call)  # parallel calls: one assistant turn
            else:
                msgs.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise bad("a function_call_output needs its call_id", f"{where}.call_id")
            output = item.get("output")
            text = output if isinstance(output, str) else _text(_parts(output, f"{where}.output"))
            msgs.append({"role": "tool", "tool_call_id": item["call_id"], "content": text})
        elif kind == "reasoning":
            out.drop("reasoning")
        else:
            raise bad(f"item type {kind!r} is not supported", f"{where}.type")
    return msgs


def _function(t: dict[str, Any], name: str, param: str) -> dict[str, Any]:
    fn: dict[str, Any] = {
        "name": name,
        "parameters": t.get("parameters") or {"type": "object", "properties": {}},
    }
    if not isinstance(fn["parameters"], dict):
        raise bad("expected a JSON schema object", f"{param}.parameters")
    if isinstance(t.get("description"), str):
        fn["description"] = t["description"]
    if isinstance(t.get("strict"), bool):
        fn["strict"] = t["strict"]
    return {"type": "function", "function": fn}


def _tools(raw: Any, out: Translated) -> tuple[list[dict[str, Any]], set[str]]:
    if not isinstance(raw, list):
        raise bad("expected an array of tools", "tools")
    tools: list[dict[str, Any]] = []
    dropped: set[str] = set()
    for i, t in enumerate(raw):
        kind = t.get("type") if isinstance(t, dict) else None
        if not isinstance(t, dict) or not isinstance(kind, str):
            raise bad("a tool needs a 'type'", f"tools[{i}]")
        if kind == "function":
            if not isinstance(t.get("name"), str) or not t["name"]:
                raise bad("a function tool needs a 'name'", f"tools[{i}].name")
            tools.append(_function(t, t["name"], f"tools[{i}]"))
        elif kind == "namespace":
            ns = t.get("name")
            if not isinstance(ns, str) or not isinstance(t.get("tools"), list):
                raise bad("a namespace needs a 'name' and 'tools'", f"tools[{i}]")
            for j, inner in enumerate(t["tools"]):
                if not isinstance(inner, dict) or not isinstance(inner.get("name"), str):
                    raise bad("a function tool needs a 'name'", f"tools[{i}].tools[{j}]")
                tools.append(_function(inner, ns + NAMESPACE_SEP + inner["name"], f"tools[{i}].tools[{j}]"))
        else:
            dropped.add(kind)
            out.drop(f"tools[{kind}]")
    return tools, dropped


def _tool_choice(raw: Any, dropped: set[str], body: dict[str, Any]) -> None:
    if raw in ("auto", "none", "required"):
        body["tool_choice"] = raw
        return
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "function" and isinstance(raw.get("name"), str):
        body["tool_choice"] = {"type": "function", "function": {"name": raw["name"]}}
    elif kind in dropped:
        raise InvalidRequest(
            f"tool_choice forces the built-in tool {kind!r}, which this target cannot run",
            param="tool_choice",
        )
    else:
        raise bad("expected auto, none, required or {'type': 'function', 'name': ...}", "tool_choice")


def _format(text: Any, body: dict[str, Any]) -> None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif kind == "json_schema" and isinstance(fmt.get("schema"), dict):
        spec = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
        if isinstance(fmt.get("strict"), bool):
            spec["strict"] = fmt["strict"]
        body["response_format"] = {"type": "json_schema", "json_schema": spec}
    elif kind != "text":
        raise bad("format type is text, json_object or json_schema (with a schema)", "text.format")


def to_chat(b: dict[str, Any]) -> Translated:
    """The chat body for a Responses request (see the module docstring)."""
    base = sorted_out(b, _OWN, _HINTS, "Unsupported field '{name}'")
    out = Translated({}, base.dropped)
    model = b["model"]
    if isinstance(b.get("instructions"), str) and b["instructions"]:
        out.system.append(b["instructions"])
    body: dict[str, Any] = {"model": model, "messages": _items(b.get("input"), out)}
    if (n := b.get("max_output_tokens")) is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise bad("expected a positive integer", "max_output_tokens")
        body["max_tokens"] = n
    for name in ("temperature", "top_p"):
        if (v := b.get(name)) is not None:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise bad("expected a number", name)
            body[name] = v
    for name in ("user", "prompt_cache_key"):
        if (v := b.get(name)) is not None:
            if not isinstance(v, str):
                raise bad("expected a string", name)
            body[name] = v
    if b.get("stream") is not None:
        body["stream"] = bool(b["stream"])
    dropped: set[str] = set()
    if b.get("tools") is not None:
        tools, dropped = _tools(b["tools"], out)
        if tools:
            body["tools"] = tools
    if b.get("tool_choice") is not None:
        _tool_choice(b["tool_choice"], dropped, body)
        if "tools" not in body:
            body.pop("tool_choice")
    if isinstance(b.get("parallel_tool_calls"), bool) and "tools" in body:
        body["parallel_tool_calls"] = b["parallel_tool_calls"]
    _format(b.get("text"), body)
    _reasoning(b.get("reasoning"), out)
    out.body = body
    return out


def _reasoning(raw: Any, out: Translated) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise bad("expected an object", "reasoning")
    effort = raw.get("effort")
    if effort is not None:
        if effort not in EFFORTS:
            raise bad(f"effort is one of {', '.join(EFFORTS)}", "reasoning.effort")
        out.hint = Reasoning(effort)
    if raw.get("summary") is not None:
        out.drop("reasoning.summary")


def items_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages (a stored conversation) as Responses input items: what an upstream serving
    the Responses API gets in place of a `previous_response_id` it never saw."""
    items: list[dict[str, Any]] = []
    for m in messages:
        role, content = m.get("role"), m.get("content")
        if role == "tool":
            items.append(
                {"type": "function_call_output", "call_id": m.get("tool_call_id"), "output": content or ""}
            )
            continue
        if role not in ("user", "assistant"):
            continue
        if content:
            kind = "output_text" if role == "assistant" else "input_text"
            parts: list[dict[str, Any]] = (
                [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
            )
            out = [
                {"type": kind, "text": p["text"]}
                if p.get("type") == "text"
                else {"type": "input_image", "image_url": p["image_url"]["url"]}
                for p in parts
            ]
            items.append({"type": "message", "role": role, "content": out})
        for call in m.get("tool_calls") or []:
            fn = call.get("function") or {}
            items.append(
                {
                    "type": "function_call",
                    "call_id": call.get("id"),
                    "name": fn.get("name"),
                    "arguments": fn.get("arguments"),
                }
            )
    return items


def native_body(raw: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """The client's request as an upstream serving the Responses API gets it: unchanged, except
    that aigw keeps the conversation (its earlier turns are sent as input items, and nothing is
    stored upstream)."""
    body = {k: v for k, v in raw.items() if k != "previous_response_id"}
    new: Any = raw.get("input")
    body["input"] = items_of(history) + (
        [{"role": "user", "content": new}] if isinstance(new, str) else list(new)
    )
    body["store"] = False
    return body
