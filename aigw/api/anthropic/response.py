"""The pipeline's chat answers as Anthropic Messages: a whole message, or its SSE events.

A stream is `message_start`, `ping`, then per content block `content_block_start`, its deltas
(`thinking_delta` and `signature_delta`, `text_delta`, `input_json_delta`) and
`content_block_stop`, then `message_delta` (stop_reason and
usage) and `message_stop`; a failure after the start is an `error` event.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from aigw.api.anthropic.errors import error_payload
from aigw.api.sse import chain
from aigw.api.translation import call_arguments
from aigw.domain import ChatChunk, ChatResponse, Usage
from aigw.errors import AigwError

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def stop_reason(finish: Any) -> str:
    return _STOP.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"


def usage_of(usage: Usage | None, estimate: int = 0) -> dict[str, int]:
    if usage is None:
        return {"input_tokens": estimate, "output_tokens": 0}
    out = {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}
    details = usage.extra.get("prompt_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
        out["cache_read_input_tokens"] = details["cached_tokens"]
    return out


def message(resp: ChatResponse, model: str) -> dict[str, Any]:
    """A whole answer as an Anthropic message (`model` is the name the client asked for); an
    Anthropic target's own message as it came."""
    if resp.native is not None:
        return {**resp.native, "model": model}
    choice = resp.choices[0] if resp.choices else {}
    msg = choice.get("message") or {}
    content = _thinking_blocks(msg)
    if isinstance(msg.get("content"), str) and msg["content"]:
        content.append({"type": "text", "text": msg["content"]})
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "toolu_" + secrets.token_hex(12),
                "name": fn.get("name", ""),
                "input": call_arguments(fn.get("arguments")),
            }
        )
    return {
        "id": message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": usage_of(resp.usage),
    }


def _thinking_blocks(msg: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer's reasoning as thinking blocks: a target's own signed blocks when it sent them
    (`thinking_blocks`), else its `reasoning_content` unsigned."""
    blocks = msg.get("thinking_blocks")
    if isinstance(blocks, list) and blocks:
        return [b for b in blocks if isinstance(b, dict)]
    text = msg.get("reasoning_content")
    if isinstance(text, str) and text:
        return [{"type": "thinking", "thinking": text, "signature": ""}]
    return []


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class _Blocks:
    """The open content block of a stream: text, or one tool call (by its OpenAI index)."""

    def __init__(self) -> None:
        self.index = -1
        self.kind: str | None = None
        self.call: int | None = None

    def close(self) -> bytes:
        if self.kind is None:
            return b""
        self.kind = None
        return event("content_block_stop", {"type": "content_block_stop", "index": self.index})

    def open(self, kind: str, block: dict[str, Any], call: int | None = None) -> bytes:
        out = self.close()
        self.index += 1
        self.kind, self.call = kind, call
        start = {"type": "content_block_start", "index": self.index, "content_block": block}
        return out + event("content_block_start", start)

    def delta(self, delta: dict[str, Any]) -> bytes:
        return event(
            "content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta}
        )


def _chunk_events(chunk: ChatChunk, blocks: _Blocks) -> tuple[bytes, Any]:
    """The events of one chunk, and its finish_reason (None while the answer goes on)."""
    out = b""
    finish = None
    for choice in chunk.choices:
        if choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta") or {}
        out += _thinking_events(delta, blocks)
        text = delta.get("content")
        if isinstance(text, str) and text:
            if blocks.kind != "text":
                out += blocks.open("text", {"type": "text", "text": ""})
            out += blocks.delta({"type": "text_delta", "text": text})
        for call in delta.get("tool_calls") or []:
            fn = call.get("function") or {}
            i = call.get("index", 0)
            if blocks.kind != "tool" or blocks.call != i:
                block: dict[str, Any] = {
                    "type": "tool_use",
                    "id": call.get("id") or "toolu_" + secrets.token_hex(12),
                    "name": fn.get("name") or "",
                    "input": {},
                }
                out += blocks.open("tool", block, i)
            if fn.get("arguments"):
                out += blocks.delta({"type": "input_json_delta", "partial_json": fn["arguments"]})
        finish = choice.get("finish_reason") or finish
    return out, finish


def _thinking_events(delta: dict[str, Any], blocks: _Blocks) -> bytes:
    """A delta's reasoning as a thinking block's `thinking_delta`s, its signature (a target's
    `thinking_blocks` delta) as `signature_delta`, a redacted block as its own block."""
    out = b""
    thought = delta.get("reasoning_content")
    if isinstance(thought, str) and thought:
        if blocks.kind != "thinking":
            out += blocks.open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        out += blocks.delta({"type": "thinking_delta", "thinking": thought})
    for b in delta.get("thinking_blocks") or []:
        if not isinstance(b, dict):
            continue
        if b.get("type") == "redacted_thinking":
            out += blocks.open("redacted", {"type": "redacted_thinking", "data": str(b.get("data") or "")})
        elif isinstance(b.get("signature"), str) and b["signature"]:
            if blocks.kind != "thinking":
                out += blocks.open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out += blocks.delta({"type": "signature_delta", "signature": b["signature"]})
    return out


async def relay_native(first: ChatChunk, rest: AsyncIterator[ChatChunk]) -> AsyncGenerator[bytes, None]:
    """An Anthropic target's own events, as they came (a request passed through)."""
    yield first.native
    try:
        async for chunk in rest:
            if chunk.native:
                yield chunk.native
    except AigwError as e:
        yield event("error", {"type": "error", "error": error_payload(e)})


async def stream_events(
    first: ChatChunk | None, rest: AsyncIterator[ChatChunk], model: str, estimate: int
) -> AsyncGenerator[bytes, None]:
    """A streamed answer (its first chunk, then the rest) as Anthropic's SSE events (see the
    module docstring); an Anthropic target's own events are relayed as they came."""
    if first is not None and first.native:
        async for data in relay_native(first, rest):
            yield data
        return
    chunks = chain(first, rest)
    start = {
        "type": "message_start",
        "message": {
            "id": message_id(),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": estimate, "output_tokens": 0},
        },
    }
    yield event("message_start", start) + event("ping", {"type": "ping"})
    blocks = _Blocks()
    finish: Any = None
    usage: Usage | None = None
    try:
        async for chunk in chunks:
            data, ended = _chunk_events(chunk, blocks)
            finish = ended or finish
            usage = chunk.usage or usage
            if data:
                yield data
    except AigwError as e:
        yield blocks.close() + event("error", {"type": "error", "error": error_payload(e)})
        return
    counted = usage_of(usage, estimate)
    end = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason(finish), "stop_sequence": None},
        "usage": {"output_tokens": counted["output_tokens"], "input_tokens": counted["input_tokens"]},
    }
    yield blocks.close() + event("message_delta", end) + event("message_stop", {"type": "message_stop"})
