"""The pipeline's chat answers as Ollama's: a whole /api/chat or /api/generate answer, or its NDJSON
stream (a line per piece, then a last line with `done: true` and the timing fields).

Timing fields are measured: `total_duration` from the request's arrival to its last line; for a
local model `load_duration` (waiting for the model to load and for a slot), `prompt_eval_duration`
(reading the uncached prompt) and `eval_duration` (generating), as the engine timed them; for any
other target, the time to the first piece and from it to the end as aigw saw them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aigw.api.ollama.errors import error_body
from aigw.api.ollama.ndjson import line
from aigw.api.translation import call_arguments
from aigw.domain import ChatChunk, ChatResponse, Usage
from aigw.errors import AigwError

NS = 1_000_000_000


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for call in calls:
        fn = call.get("function") or {}
        args = call_arguments(fn.get("arguments"))
        out.append({"function": {"name": fn.get("name", ""), "arguments": args}})
    return out


@dataclass(slots=True)
class Clock:
    """A request's times, for the timing fields."""

    start: float = field(default_factory=time.perf_counter)
    first: float = 0.0

    def stats(self, usage: Usage | None) -> dict[str, int]:
        end = time.perf_counter()
        total = end - self.start
        out = {"total_duration": int(total * NS), "load_duration": 0}
        timing = usage.timing if usage is not None else None
        if timing is not None:
            out["load_duration"] = int(timing.load_s * NS)
            out["prompt_eval_duration"] = int(timing.prefill_s * NS)
            out["eval_duration"] = int(timing.decode_s * NS)
        elif self.first:  # a stream: until its first piece, and from it to the end
            out["prompt_eval_duration"] = int((self.first - self.start) * NS)
            out["eval_duration"] = int((end - self.first) * NS)
        if usage is not None:
            out["prompt_eval_count"] = usage.prompt_tokens
            out["eval_count"] = usage.completion_tokens
        return out


def _done_reason(finish: Any) -> str:
    return "length" if finish == "length" else "stop"


def _body(
    model: str, content: str, thinking: str, tools: list[dict[str, Any]] | None, *, generate: bool
) -> dict[str, Any]:
    """One answer's (or one piece's) fields: /api/generate's `response`, or /api/chat's `message`."""
    out: dict[str, Any] = {"model": model, "created_at": now_iso()}
    if generate:
        out["response"] = content
        if thinking:
            out["thinking"] = thinking
        return out
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if tools:
        message["tool_calls"] = tools
    out["message"] = message
    return out


def chat_answer(resp: ChatResponse, model: str, clock: Clock, *, generate: bool) -> dict[str, Any]:
    """A whole answer: /api/chat's message, or /api/generate's response text."""
    choice = resp.choices[0] if resp.choices else {}
    msg = choice.get("message") or {"content": choice.get("text")}  # a chat answer, or a completion
    text = msg["content"] if isinstance(msg.get("content"), str) else ""
    tools = _calls(msg["tool_calls"]) if msg.get("tool_calls") else None
    out = _body(model, text, msg.get("reasoning_content") or "", tools, generate=generate)
    out |= {"done": True, "done_reason": _done_reason(choice.get("finish_reason"))}
    return out | clock.stats(resp.usage)


async def stream_lines(
    first: ChatChunk | None, rest: AsyncIterator[ChatChunk], model: str, clock: Clock, *, generate: bool
) -> AsyncGenerator[bytes, None]:
    """The NDJSON stream: text and thinking as they come, tool calls whole once complete, then the
    last line with the timing fields; a failure after the start is an `{"error"}` line."""
    calls: dict[int, dict[str, Any]] = {}
    usage: Usage | None = None
    finish: Any = None

    def piece(content: str = "", thinking: str = "", tools: list[dict[str, Any]] | None = None) -> bytes:
        return line(_body(model, content, thinking, tools, generate=generate) | {"done": False})

    async def chunks() -> AsyncIterator[ChatChunk]:
        if first is not None:
            yield first
        async for chunk in rest:
            yield chunk

    try:
        async for chunk in chunks():
            usage = chunk.usage or usage
            for choice in chunk.choices:
                delta = choice.get("delta") or {"content": choice.get("text")}  # chat, or a completion
                finish = choice.get("finish_reason") or finish
                for call in delta.get("tool_calls") or []:
                    empty = {"function": {"name": "", "arguments": ""}}
                    slot = calls.setdefault(int(call.get("index") or 0), empty)
                    fn = call.get("function") or {}
                    slot["function"]["name"] += fn.get("name") or ""
                    slot["function"]["arguments"] += fn.get("arguments") or ""
                text, thinking = delta.get("content") or "", delta.get("reasoning_content") or ""
                if text or thinking:
                    clock.first = clock.first or time.perf_counter()
                    yield piece(text, thinking)
        if calls and not generate:
            yield piece(tools=_calls([calls[i] for i in sorted(calls)]))
    except AigwError as e:
        yield error_body(e) + b"\n"
        return
    last: dict[str, Any] = {"model": model, "created_at": now_iso()}
    last |= {"response": ""} if generate else {"message": {"role": "assistant", "content": ""}}
    yield line(last | {"done": True, "done_reason": _done_reason(finish)} | clock.stats(usage))
