"""OpenAI chat format <-> Anthropic Messages API (version 2023-06-01). Pure functions, no I/O.

Request fields (OpenAI -> Anthropic):
  mapped     messages (system/developer -> top-level `system`, joined by blank lines; tool -> a user
             message of `tool_result` blocks; consecutive same-role messages merged; text, image_url
             parts -> text, image blocks: data: URLs as base64, http(s) URLs as url sources);
             tools -> tools (parameters -> input_schema); assistant tool_calls -> tool_use blocks;
             tool_choice auto|none|required|{function} -> auto|none|any|tool; parallel_tool_calls=false
             -> disable_parallel_tool_use; response_format json_schema|json_object -> a forced tool whose
             input is the answer (returned as the message content, finish_reason "stop"); stop ->
             stop_sequences; max_completion_tokens|max_tokens -> max_tokens (default 4096);
             temperature (0..1 only), top_p, top_k; user -> metadata.user_id; reasoning_effort (or
             a dialect's reasoning hint) -> thinking with a budget below max_tokens, and assistant
             `thinking_blocks` -> signed thinking blocks (see thinking.py).
  dropped    pure hints that do not change the answer: seed, stream_options (usage always comes),
             service_tier, store, metadata, prediction, image `detail`, message `name`, tool
             `strict`; n=1, zero penalties, empty logit_bias, logprobs=false, modalities ["text"].
  refused    (CapabilityError naming the field) anything that would change the answer and has no
             equivalent: n>1, logit_bias, non-zero presence/frequency_penalty, logprobs, top_logprobs,
             temperature above 1, audio, input_audio and file parts, the legacy functions API,
             reasoning_effort with temperature or top_k, and every other field this module does
             not know.
Responses: text blocks -> content, tool_use -> tool_calls, thinking blocks -> reasoning_content
and thinking_blocks (signatures kept); usage
input + cache read + cache creation tokens -> prompt_tokens; stop_reason end_turn|stop_sequence|
pause_turn -> stop, max_tokens -> length, tool_use -> tool_calls, refusal -> content_filter.
Upstream bodies are untrusted: anything malformed becomes UpstreamProtocolError.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

import orjson

from aigw.domain import ChatRequest, ChatResponse, ModelInfo, Usage
from aigw.errors import CapabilityError, InvalidRequest, UpstreamProtocolError, UpstreamStatusError
from aigw.providers.anthropic.thinking import (
    assistant_thinking,
    reasoning_fields,
    settle_with_tools,
    thinking_config,
)

DEFAULT_MAX_TOKENS = 4096
JSON_TOOL = "json_response"

_MAPPED = frozenset(
    {
        "model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "top_p",
        "top_k", "stop", "tools", "tool_choice", "parallel_tool_calls", "response_format", "user",
        "reasoning_effort",
    }
)  # fmt: skip
_HINTS = frozenset(
    {"seed", "stream_options", "service_tier", "store", "metadata", "prediction", "prompt_cache_key"}
)
# Values of otherwise refused fields that ask for nothing.
_NEUTRAL = MappingProxyType({
    "n": (1,), "presence_penalty": (0,), "frequency_penalty": (0,), "logprobs": (False,),
    "top_logprobs": (0,), "logit_bias": ({},), "modalities": (["text"],),
})  # fmt: skip
_CHOICES = MappingProxyType({"auto": "auto", "none": "none", "required": "any"})
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_FINISH = MappingProxyType({
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter",
})  # fmt: skip
# Error types and the HTTP status each has outside a stream.
ERROR_STATUS = MappingProxyType({
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
    "permission_error": 403, "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429,
    "api_error": 500, "timeout_error": 504, "overloaded_error": 529,
})  # fmt: skip


@dataclass(frozen=True, slots=True)
class WireRequest:
    body: dict[str, Any]
    json_tool: str | None = None
    """The forced tool emulating response_format; its input is the answer."""


# --- requests -------------------------------------------------------------------------------


def request_to_wire(req: ChatRequest) -> WireRequest:
    """The Anthropic request body for an OpenAI chat request; CapabilityError for what it cannot honour."""
    body = req.body
    _refuse_unsupported(body)
    system, messages = _messages(req.messages)
    out: dict[str, Any] = {"model": req.model, "messages": messages, "max_tokens": req.max_tokens}
    if out["max_tokens"] is None:
        out["max_tokens"] = DEFAULT_MAX_TOKENS
    if system:
        out["system"] = system
    if (thinking := thinking_config(req, out["max_tokens"])) is not None:
        out["thinking"] = thinking
    if (t := req.temperature) is not None:
        if t > 1:
            raise CapabilityError(f"Anthropic takes temperature 0 to 1, not {t:g}", param="temperature")
        out["temperature"] = t
    if req.top_p is not None:
        out["top_p"] = req.top_p
    if body.get("top_k") is not None:
        out["top_k"] = body["top_k"]
    if stops := req.stop:
        out["stop_sequences"] = stops
    if isinstance(body.get("user"), str) and body["user"]:
        out["metadata"] = {"user_id": body["user"]}
    tools = [_tool(t, i) for i, t in enumerate(body.get("tools") or [])]
    json_tool = _json_tool(body.get("response_format"), {t["name"] for t in tools})
    if json_tool is not None:
        tools.append(json_tool)
    if tools:
        out["tools"] = tools
        name = None if json_tool is None else json_tool["name"]
        out["tool_choice"] = _tool_choice(body, len(tools) > (name is not None), name)
    settle_with_tools(out, req)
    return WireRequest(out, None if json_tool is None else json_tool["name"])


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for key, value in body.items():
        if key in _MAPPED or key in _HINTS or value is None or value in _NEUTRAL.get(key, ()):
            continue
        if key in ("functions", "function_call"):
            raise CapabilityError(f"Use 'tools' instead of the legacy '{key}' with Anthropic", param=key)
        raise CapabilityError(f"Anthropic has no equivalent of '{key}'; remove it for this model", param=key)


def _text_of(content: Any, where: str) -> str:
    """The text of a system/developer message or tool result: a string or text parts."""
    if isinstance(content, str):
        return content
    parts = []
    for p in content or []:
        if not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text"), str):
            raise InvalidRequest(f"{where}: only text parts are allowed here", param="messages")
        parts.append(p["text"])
    return "".join(parts)


def _image_source(url: Any, where: str) -> dict[str, Any]:
    if isinstance(url, dict):
        url = url.get("url")
    if not isinstance(url, str):
        raise InvalidRequest(f"{where}: image_url needs a 'url'", param="messages")
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media, *params = header.split(";")
        if not sep or "base64" not in params:
            raise InvalidRequest(f"{where}: a data URL must be 'data:<type>;base64,...'", param="messages")
        if media not in _IMAGE_TYPES:
            raise CapabilityError(
                f"{where}: Anthropic accepts {', '.join(sorted(_IMAGE_TYPES))} images, not {media!r}",
                param="messages",
            )
        return {"type": "base64", "media_type": media, "data": data}
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    raise InvalidRequest(f"{where}: image URL must be a data: or http(s) URL", param="messages")


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for j, p in enumerate(content or []):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind == "text" and isinstance(p.get("text"), str):
            if p["text"]:
                blocks.append({"type": "text", "text": p["text"]})
        elif kind == "image_url":
            blocks.append({"type": "image", "source": _image_source(p.get("image_url"), where)})
        else:
            raise CapabilityError(
                f"{where}.content[{j}]: part type {kind!r} is not supported with Anthropic", param="messages"
            )
    return blocks


def _assistant_blocks(m: dict[str, Any], where: str) -> list[dict[str, Any]]:
    content = m.get("content")
    if isinstance(content, list):  # text and refusal parts
        content = "".join(
            str(p.get("text") or p.get("refusal") or "") for p in content if isinstance(p, dict)
        )
    blocks = assistant_thinking(m, where)
    if content:
        blocks.append({"type": "text", "text": content})
    for j, tc in enumerate(m.get("tool_calls") or []):
        fn = tc.get("function") if isinstance(tc, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not tc.get("id"):
            raise InvalidRequest(f"{where}.tool_calls[{j}] needs an id and a function name", param="messages")
        try:
            args = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            args = None
        if not isinstance(args, dict):
            raise InvalidRequest(
                f"{where}.tool_calls[{j}]: arguments must be a JSON object", param="messages"
            )
        blocks.append({"type": "tool_use", "id": str(tc["id"]), "name": fn["name"], "input": args})
    return blocks


def _messages(msgs: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for i, m in enumerate(msgs):
        role, where = m.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):
            if text := _text_of(m.get("content"), where):
                system.append(text)
            continue
        if role == "user":
            blocks = _user_blocks(m.get("content"), where)
        elif role == "assistant":
            blocks = _assistant_blocks(m, where)
        elif role == "tool":
            role, result = "user", {"type": "tool_result", "tool_use_id": str(m.get("tool_call_id"))}
            if text := _text_of(m.get("content"), where):
                result["content"] = text
            blocks = [result]
        else:
            raise CapabilityError(f"{where}: role {role!r} is not supported with Anthropic", param="messages")
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    if not out:
        raise InvalidRequest("Anthropic needs at least one non-empty user message", param="messages")
    return "\n\n".join(system), out


def _tool(t: dict[str, Any], i: int) -> dict[str, Any]:
    fn = t.get("function")
    if t.get("type") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise InvalidRequest(f"tools[{i}] must be a function with a name", param="tools")
    out: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    out["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
    return out


def _json_tool(fmt: Any, taken: set[str]) -> dict[str, Any] | None:
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return None
    assert isinstance(fmt, dict)
    if kind == "json_object":
        schema: Any = {"type": "object", "additionalProperties": True}
        name: str = JSON_TOOL
        desc = "Respond with a JSON object."
    elif kind == "json_schema" and isinstance(spec := fmt.get("json_schema"), dict):
        schema = spec.get("schema") or {"type": "object", "additionalProperties": True}
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise CapabilityError("Anthropic needs an object at the schema root", param="response_format")
        name = spec["name"] if isinstance(spec.get("name"), str) else JSON_TOOL
        if not _TOOL_NAME.match(name) or name in taken:
            name = JSON_TOOL
        desc = str(spec.get("description") or "Respond with a JSON object matching this schema.")
    else:
        raise CapabilityError(f"response_format type {kind!r} is not supported", param="response_format")
    if name in taken:
        raise CapabilityError(f"tool name {name!r} is reserved for response_format", param="tools")
    return {"name": name, "description": desc, "input_schema": schema}


def _tool_choice(body: dict[str, Any], user_tools: bool, json_tool: str | None) -> dict[str, Any]:
    tc = body.get("tool_choice") or "auto"
    fn = tc.get("function") if isinstance(tc, dict) else None
    if isinstance(tc, str) and tc in _CHOICES:
        choice: dict[str, Any] = {"type": _CHOICES[tc]}
    elif isinstance(fn, dict) and isinstance(fn.get("name"), str):
        choice = {"type": "tool", "name": fn["name"]}
    else:
        raise InvalidRequest(f"tool_choice {tc!r:.60} is not valid", param="tool_choice")
    if json_tool is not None:
        if not user_tools or choice["type"] == "none":
            choice = {"type": "tool", "name": json_tool}
        elif choice["type"] == "auto":
            choice = {"type": "any"}  # call a tool, or answer through the JSON tool
        elif choice["type"] == "any":
            msg = "tool_choice 'required' and response_format cannot be combined for Anthropic"
            raise CapabilityError(msg, param="tool_choice")
    if body.get("parallel_tool_calls") is False and choice["type"] != "none":
        choice["disable_parallel_tool_use"] = True
    return choice


# --- responses ------------------------------------------------------------------------------


def _int(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected an integer, got {value!r:.40}")
    return int(value)


def usage_from_wire(u: Any) -> Usage:
    if not isinstance(u, dict):
        raise ValueError("usage is not an object")
    read, created = _int(u.get("cache_read_input_tokens")), _int(u.get("cache_creation_input_tokens"))
    prompt = _int(u.get("input_tokens")) + read + created
    completion = _int(u.get("output_tokens"))
    extra = {"prompt_tokens_details": {"cached_tokens": read}} if read else {}
    return Usage(prompt, completion, prompt + completion, extra)


def finish_reason(stop_reason: Any, tool_calls: bool) -> str | None:
    if stop_reason is None:
        return None
    if stop_reason == "tool_use" and not tool_calls:
        return "stop"  # only the response_format tool was called
    return _FINISH.get(str(stop_reason), "stop")


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _blocks(d: dict[str, Any]) -> list[dict[str, Any]]:
    content = d.get("content")
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise ValueError("content is not a list of blocks")
    return content


def response_from_wire(provider: str, d: dict[str, Any], json_tool: str | None, created: int) -> ChatResponse:
    """An OpenAI chat response for an Anthropic Message."""
    try:
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        answer: str | None = None
        for b in _blocks(d):
            if b.get("type") == "text" and json_tool is None:
                texts.append(text_field(b.get("text"), "text"))
            elif b.get("type") == "tool_use":
                name, args = text_field(b.get("name"), "tool name"), b.get("input")
                if not isinstance(args, dict):
                    raise ValueError("tool_use input is not an object")
                if name == json_tool:
                    answer = dumps(args)
                    continue
                fn = {"name": name, "arguments": dumps(args)}
                calls.append({"id": text_field(b.get("id"), "tool id"), "type": "function", "function": fn})
        message: dict[str, Any] = {"role": "assistant", "content": answer}
        if json_tool is None:
            message["content"] = "".join(texts) if texts or not calls else None
        message.update(reasoning_fields(_blocks(d)))
        if calls:
            message["tool_calls"] = calls
        finish = finish_reason(d.get("stop_reason"), bool(calls)) or "stop"
        choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        usage = None if d.get("usage") is None else usage_from_wire(d["usage"])
        return ChatResponse(str(d.get("id") or ""), created, str(d.get("model") or ""), [choice], usage)
    except ValueError as e:
        raise UpstreamProtocolError(f"{provider}: malformed response: {e}", provider=provider) from None


def text_field(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a string")
    return value


def _epoch(value: Any) -> int:
    try:
        return int(datetime.fromisoformat(value).timestamp()) if isinstance(value, str) else 0
    except ValueError:
        return 0


def models_from_wire(provider: str, d: dict[str, Any]) -> tuple[list[ModelInfo], str | None]:
    """The models of one page, and the cursor of the next page (None on the last)."""
    items = d.get("data")
    if not isinstance(items, list):
        raise UpstreamProtocolError(f"{provider}: model list has no data", provider=provider)
    out = []
    for m in items:
        if isinstance(m, dict) and isinstance(m.get("id"), str):
            out.append(ModelInfo(m["id"], provider, _epoch(m.get("created_at"))))
    last = d.get("last_id")
    more = d.get("has_more") is True and isinstance(last, str) and bool(last)
    return out, (last if more else None)


# --- errors ---------------------------------------------------------------------------------


def _error(
    provider: str, status: int, err: Any, fallback: str, retry_after: float | None
) -> UpstreamStatusError:
    etype = err.get("type") if isinstance(err, dict) and isinstance(err.get("type"), str) else None
    message = str(err.get("message") or "") if isinstance(err, dict) else ""
    message = message or fallback or f"HTTP {status}"
    if status in (401, 403):
        message += f" (check the API key of providers.{provider})"
    return UpstreamStatusError(
        f"{provider} returned HTTP {status}: {message}",
        provider=provider,
        upstream_status=status,
        retry_after=retry_after,
        upstream_type="invalid_request_error" if etype == "invalid_request_error" else None,
        upstream_code=etype,
    )


def error_from_body(
    provider: str, status: int, body: bytes, retry_after: float | None
) -> UpstreamStatusError:
    """An error response `{"type": "error", "error": {"type", "message"}}` (or anything else)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    fallback = body[:200].decode("utf-8", errors="replace").strip() if err is None else ""
    return _error(provider, status, err, fallback, retry_after)


def error_from_event(provider: str, d: dict[str, Any]) -> UpstreamStatusError:
    """A stream's `error` event, mapped to the HTTP status the same error has outside a stream."""
    err = d.get("error")
    etype = err.get("type") if isinstance(err, dict) else None
    status = ERROR_STATUS.get(etype, 500) if isinstance(etype, str) else 500
    return _error(provider, status, err, "error event in stream", None)
