"""What a request's span and metrics say, in the OpenTelemetry GenAI semantic conventions' terms:
the record the meter hands to telemetry, the operation names, and the shapes prompts and answers
take on a span (gen_ai.input.messages, gen_ai.output.messages) when content is logged.
Nothing here imports OpenTelemetry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CHAT = "chat"
TEXT_COMPLETION = "text_completion"
EMBEDDINGS = "embeddings"
RERANK = "rerank"
"""gen_ai.operation.name: the conventions' own values, and `rerank` (aigw's, for /v1/rerank)."""


@dataclass(frozen=True, slots=True)
class Finished:
    """One request, as it was accounted: what its span and metrics say."""

    operation: str
    """gen_ai.operation.name: chat, text_completion, embeddings or rerank."""
    requested: str
    """The model the client asked for (gen_ai.request.model)."""
    resolved: bool
    """Whether `requested` named a model aigw serves (an unresolved name is no metric attribute)."""
    started: float
    """When the request was admitted (or refused), in seconds since the epoch."""
    ended: float
    """When it was accounted: for a stream, when the stream ended."""
    status: int | None = None
    """The HTTP status aigw answered with (None: the client left first)."""
    provider: str | None = None
    """The provider that answered (or failed); None when none was asked."""
    model: str | None = None
    """The provider's model that answered (gen_ai.response.model)."""
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache: str | None = None
    """hit, miss or bypass; None when the request got no answer."""
    fallbacks: int | None = None
    retries: int | None = None
    key: str | None = None
    """The API key's name (never its secret)."""
    dialect: str | None = None
    request_id: str | None = None
    error: str | None = None
    """error.type: the aigw error's class name (ModelNotFound, RateLimited, UpstreamError, ...),
    or `cancelled` when the client left (or aigw stopped) before an answer."""
    message: str | None = None
    """The error's message (on the span only with log_content: an upstream may quote the prompt)."""
    content: Mapping[str, Any] | None = None
    """{"messages": the request's messages, "completion": the answer's choices or streamed text},
    when content is captured; read only with log_content."""


# -- content, in the conventions' shapes (gen_ai.input.messages / gen_ai.output.messages) --------


def input_messages(messages: Any) -> list[dict[str, Any]]:
    """OpenAI-shaped chat messages as the conventions' input messages: each a role and its
    parts (text, tool calls, tool results)."""
    out: list[dict[str, Any]] = []
    if not isinstance(messages, list):
        return out
    for m in messages:
        if not isinstance(m, dict):
            continue
        role = str(m.get("role") or "user")
        parts = _parts(m.get("content"))
        if role == "tool":
            parts = [{"type": "tool_call_response", "id": m.get("tool_call_id"), "response": _text(m)}]
        parts.extend(_tool_calls(m.get("tool_calls")))
        out.append({"role": role, "parts": parts})
    return out


def output_messages(completion: Any) -> list[dict[str, Any]]:
    """An answer as the conventions' output messages: whole answers' choices (chat messages or
    legacy completion texts), or a stream's text."""
    if isinstance(completion, str):
        return [{"role": "assistant", "parts": [{"type": "text", "content": completion}]}]
    out: list[dict[str, Any]] = []
    for choice in completion if isinstance(completion, list) else ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            parts = _parts(message.get("content")) + _tool_calls(message.get("tool_calls"))
        else:
            parts = _parts(choice.get("text"))
        out.append({"role": "assistant", "parts": parts, "finish_reason": choice.get("finish_reason")})
    return out


def _text(m: dict[str, Any]) -> str:
    content = m.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for p in content if isinstance(content, list) else ():
        if isinstance(p, dict) and isinstance(p.get("text"), str):
            parts.append({"type": "text", "content": p["text"]})
        elif isinstance(p, dict):
            parts.append({"type": str(p.get("type") or "unknown")})  # an image's bytes stay out
    return parts


def _tool_calls(calls: Any) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for call in calls if isinstance(calls, list) else ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            name, arguments = fn.get("name"), fn.get("arguments")
            parts.append({"type": "tool_call", "id": call.get("id"), "name": name, "arguments": arguments})
    return parts
