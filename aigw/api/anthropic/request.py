"""An Anthropic Messages request as the pipeline's chat request (OpenAI's chat body), for every
target that is not Anthropic itself.

Each field's fate:
  mapped    model, max_tokens, messages, system (a string or text blocks; a `system`-role entry in
            `messages`, as Claude Code sends, joins it), stop_sequences -> stop, temperature, top_p,
            top_k, stream, tools (custom tools -> function tools), tool_choice (auto, any ->
            required, tool -> the named function, none; disable_parallel_tool_use ->
            parallel_tool_calls false). Blocks: text; image (base64 -> a data: URL, url -> its URL);
            tool_use -> the assistant's tool_calls; tool_result -> a `tool` message (an error result
            starts "Error: "; its images follow in a user message, which OpenAI's tool messages
            cannot hold).
  hint      thinking (enabled with budget_tokens, adaptive at output_config's effort, disabled) ->
            the request's reasoning hint, applied by targets with reasoning controls (Gemini's
            thinking budget, local models whose template can think) and ignored by others.
  dropped   hints that cannot make an answer wrong, named in the `x-aigw-dropped` header: metadata,
            service_tier, context_management, output_config, cache_control on any block, earlier
            turns' thinking blocks, and server tools the target cannot run (web search and the
            like: `tools[NAME]`).
  refused   a 400 naming it: any other field or block type (documents, MCP servers, containers,
            ...), and `tool_choice` forcing a dropped server tool.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import orjson

from aigw.api.translation import Translated, bad, sorted_out
from aigw.domain import Reasoning
from aigw.errors import InvalidRequest

_MAPPED = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "stream",
        "tools",
        "tool_choice",
    }
)
_HINTS = frozenset({"metadata", "service_tier", "context_management", "output_config"})
_CLAUDE_EFFORTS = MappingProxyType({"low": "low", "medium": "medium", "high": "high", "max": "high"})


def _blocks(content: list[Any], param: str, out: Translated) -> Iterator[tuple[str, Any, Any]]:
    """Each content block with where it is and its type (cache_control on it noted as dropped)."""
    for i, b in enumerate(content):
        if isinstance(b, dict) and "cache_control" in b:
            out.drop("cache_control")
        yield f"{param}[{i}]", (b.get("type") if isinstance(b, dict) else None), b


def _text_of(blocks: Any, param: str, out: Translated) -> str:
    """A system prompt or tool result given as a string or text blocks, as one string."""
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise bad("expected a string or an array of text blocks", param)
    texts = []
    for i, b in enumerate(blocks):
        if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
            raise bad("expected a text block", f"{param}[{i}]")
        if "cache_control" in b:
            out.drop("cache_control")
        texts.append(b["text"])
    return "\n\n".join(texts)


def _image(b: dict[str, Any], param: str) -> dict[str, Any]:
    src = b.get("source")
    if not isinstance(src, dict):
        raise bad("an image needs a 'source'", param)
    if src.get("type") == "base64" and isinstance(src.get("data"), str):
        media = src.get("media_type") if isinstance(src.get("media_type"), str) else "image/png"
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{src['data']}"}}
    if src.get("type") == "url" and isinstance(src.get("url"), str):
        return {"type": "image_url", "image_url": {"url": src["url"]}}
    raise bad("an image source is base64 (with data) or url", f"{param}.source")


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text alone as a string (what every target takes); parts when there is an image."""
    if all(p["type"] == "text" for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


def _tool_result(
    b: dict[str, Any], param: str, out: Translated
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The tool message for a tool_result block, and the images it carried (for a user message)."""
    tool_id = b.get("tool_use_id")
    if not isinstance(tool_id, str) or not tool_id:
        raise bad("a tool_result needs its 'tool_use_id'", param)
    raw = b.get("content", "")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if isinstance(raw, str):
        texts.append(raw)
    elif isinstance(raw, list):
        for i, part in enumerate(raw):
            where = f"{param}.content[{i}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind == "image":
                images.append(_image(part, where))
            else:
                raise bad("a tool result holds text and image blocks", where)
            if isinstance(part, dict) and "cache_control" in part:
                out.drop("cache_control")
    else:
        raise bad("expected a string or an array of blocks", f"{param}.content")
    text = "\n\n".join(texts)
    if b.get("is_error"):
        text = "Error: " + text
    return {"role": "tool", "tool_call_id": tool_id, "content": text}, images


def _user(content: list[Any], param: str, out: Translated) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for where, kind, b in _blocks(content, param, out):
        if kind == "text" and isinstance(b.get("text"), str):
            parts.append({"type": "text", "text": b["text"]})
        elif kind == "image":
            parts.append(_image(b, where))
        elif kind == "tool_result":
            msg, images = _tool_result(b, where, out)
            tools.append(msg)
            parts.extend(images)
        else:
            raise bad(f"block type {kind!r} is not supported here", f"{where}.type")
    messages = tools  # tool results first: they answer the assistant turn just before
    if parts:
        messages.append({"role": "user", "content": _content(parts)})
    return messages


def _assistant(content: list[Any], param: str, out: Translated) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for where, kind, b in _blocks(content, param, out):
        if kind == "text" and isinstance(b.get("text"), str):
            texts.append(b["text"])
        elif kind == "tool_use":
            if not isinstance(b.get("id"), str) or not isinstance(b.get("name"), str):
                raise bad("a tool_use block needs 'id' and 'name'", where)
            args = orjson.dumps(b.get("input") or {}).decode()
            calls.append(
                {"id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": args}}
            )
        elif kind in ("thinking", "redacted_thinking"):
            out.drop("thinking")
        else:
            raise bad(f"block type {kind!r} is not supported here", f"{where}.type")
    msg: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    return msg


def _messages(raw: Any, out: Translated) -> tuple[list[dict[str, Any]], list[str]]:
    """The conversation, and the text of any `system`-role entries in it."""
    if not isinstance(raw, list) or not raw:
        raise bad("expected a non-empty array of messages", "messages")
    msgs: list[dict[str, Any]] = []
    system: list[str] = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise bad("expected an object", where)
        role, content = m.get("role"), m.get("content")
        if role == "system":
            system.append(_text_of(content, f"{where}.content", out))
            continue
        if role not in ("user", "assistant"):
            raise bad("role must be 'user' or 'assistant'", f"{where}.role")
        if isinstance(content, str):
            msgs.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise bad("expected a string or an array of content blocks", f"{where}.content")
        if role == "user":
            msgs.extend(_user(content, f"{where}.content", out))
        else:
            msgs.append(_assistant(content, f"{where}.content", out))
    return msgs, system


def _tools(raw: Any, out: Translated) -> tuple[list[dict[str, Any]], set[str]]:
    """Function tools, and the names of server tools left out."""
    if not isinstance(raw, list):
        raise bad("expected an array of tools", "tools")
    tools: list[dict[str, Any]] = []
    server: set[str] = set()
    for i, t in enumerate(raw):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]:
            raise bad("a tool needs a 'name'", f"tools[{i}]")
        if t.get("type") not in (None, "custom"):
            server.add(t["name"])
            out.drop(f"tools[{t['name']}]")
            continue
        schema = t.get("input_schema")
        if not isinstance(schema, dict):
            raise bad("a tool needs an 'input_schema' object", f"tools[{i}].input_schema")
        if "cache_control" in t:
            out.drop("cache_control")
        fn: dict[str, Any] = {"name": t["name"], "parameters": schema}
        if isinstance(t.get("description"), str):
            fn["description"] = t["description"]
        tools.append({"type": "function", "function": fn})
    return tools, server


def _tool_choice(raw: Any, server: set[str], body: dict[str, Any]) -> None:
    if not isinstance(raw, dict) or raw.get("type") not in ("auto", "any", "tool", "none"):
        raise bad("expected {'type': 'auto' | 'any' | 'tool' | 'none'}", "tool_choice")
    kind = raw["type"]
    if kind == "tool":
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise bad("a 'tool' choice needs the tool's 'name'", "tool_choice.name")
        if name in server:
            raise InvalidRequest(
                f"tool_choice forces the server tool {name!r}, which this target cannot run",
                param="tool_choice",
            )
        body["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        body["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if raw.get("disable_parallel_tool_use") and "tools" in body:
        body["parallel_tool_calls"] = False


def _thinking(raw: Any, config: Any) -> Reasoning | None:
    """The reasoning hint of `thinking`: enabled with a budget, adaptive (at `output_config`'s
    effort, else medium) or disabled."""
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "enabled":
        budget = raw.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise bad("expected a positive integer", "thinking.budget_tokens")
        return Reasoning.of_budget(budget)
    if kind == "adaptive":
        effort = config.get("effort") if isinstance(config, dict) else None
        return Reasoning(_CLAUDE_EFFORTS.get(effort, "medium") if isinstance(effort, str) else "medium")
    if kind == "disabled":
        return Reasoning("none")
    raise bad("type is enabled (with budget_tokens), adaptive or disabled", "thinking")


def to_chat(b: dict[str, Any]) -> Translated:
    """The OpenAI chat body for an Anthropic Messages request (see the module docstring)."""
    out = sorted_out(b, _MAPPED | {"thinking"}, _HINTS, "Unsupported field '{name}' for this target")
    model = b["model"]
    max_tokens = b.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequest("'max_tokens' is required: a positive integer", param="max_tokens")
    messages, system = _messages(b.get("messages"), out)
    if b.get("system") is not None:
        system.insert(0, _text_of(b["system"], "system", out))
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
    body["messages"] = ([{"role": "system", "content": "\n\n".join(system)}] if system else []) + messages
    if (stop := b.get("stop_sequences")) is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise bad("expected an array of strings", "stop_sequences")
        if stop:
            body["stop"] = stop
    for name in ("temperature", "top_p", "top_k"):
        value = b.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad("expected a number", name)
            body[name] = value
    if b.get("stream") is not None:
        if not isinstance(b["stream"], bool):
            raise bad("expected a boolean", "stream")
        body["stream"] = b["stream"]
    out.hint = _thinking(b.get("thinking"), b.get("output_config"))
    server: set[str] = set()
    if b.get("tools") is not None:
        tools, server = _tools(b["tools"], out)
        if tools:
            body["tools"] = tools
    if b.get("tool_choice") is not None:
        _tool_choice(b["tool_choice"], server, body)
        if "tools" not in body and body["tool_choice"] != "none":
            body.pop("tool_choice")
    out.body = body
    return out
