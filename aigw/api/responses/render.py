"""The pipeline's chat answers as OpenAI Responses: a whole response object, or its stream of
events (each with its `sequence_number`): response.created, response.in_progress, then per output
item response.output_item.added, for reasoning response.reasoning_text.delta ... .done, for text
response.content_part.added, response.output_text.delta ... .done and
response.content_part.done, for a call response.function_call_arguments.delta ...
.done, then response.output_item.done; last response.completed (or response.failed)."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from aigw.api.responses.request import NAMESPACE_SEP
from aigw.api.sse import chain
from aigw.domain import ChatChunk, ChatResponse, Usage
from aigw.errors import AigwError


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def usage_of(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    details = usage.extra.get("prompt_tokens_details")
    cached = details.get("cached_tokens", 0) if isinstance(details, dict) else 0
    out_details = usage.extra.get("completion_tokens_details")
    thought = out_details.get("reasoning_tokens", 0) if isinstance(out_details, dict) else 0
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": cached or 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": thought or 0},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def text_item(text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": []}
    return {"type": "message", "id": new_id("msg"), "status": status, "role": "assistant", "content": [part]}


def call_item(call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    item = {"type": "function_call", "id": new_id("fc"), "call_id": call_id, "arguments": arguments}
    ns, sep, bare = name.partition(NAMESPACE_SEP)
    item.update({"name": bare, "namespace": ns} if sep and bare else {"name": name})
    item["status"] = status
    return item


@dataclass(slots=True)
class Shell:
    """What every response object of one request carries besides its output."""

    rid: str
    model: str
    request: dict[str, Any]
    created_at: int = field(default_factory=lambda: int(time.time()))

    def response(
        self,
        status: str,
        output: list[dict[str, Any]],
        usage: Usage | None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        b = self.request
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {
            "id": self.rid,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": error,
            "incomplete_details": incomplete,
            "instructions": b.get("instructions"),
            "max_output_tokens": b.get("max_output_tokens"),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": b.get("parallel_tool_calls", True),
            "previous_response_id": b.get("previous_response_id"),
            "store": b.get("store", True),
            "temperature": b.get("temperature"),
            "text": b.get("text") or {"format": {"type": "text"}},
            "tool_choice": b.get("tool_choice", "auto"),
            "tools": b.get("tools") or [],
            "top_p": b.get("top_p"),
            "truncation": "disabled",
            "usage": usage_of(usage),
            "metadata": b.get("metadata") or {},
        }


def output_of(resp: ChatResponse) -> tuple[list[dict[str, Any]], str]:
    """The output items of a whole answer, and the response's status."""
    choice = resp.choices[0] if resp.choices else {}
    msg = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    if isinstance(msg.get("reasoning_content"), str) and msg["reasoning_content"]:
        output.append(reasoning_item(msg["reasoning_content"]))
    if isinstance(msg.get("content"), str) and msg["content"]:
        output.append(text_item(msg["content"]))
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        output.append(
            call_item(call.get("id") or new_id("call"), fn.get("name", ""), fn.get("arguments") or "{}")
        )
    return output, "incomplete" if choice.get("finish_reason") == "length" else "completed"


def as_messages(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The output as the chat turn it was (what a later `previous_response_id` continues from)."""
    text = "".join(
        p.get("text", "")
        for item in output
        if item.get("type") == "message"
        for p in item.get("content") or []
        if p.get("type") == "output_text"
    )
    calls = []
    for i in output:
        if i.get("type") != "function_call":
            continue
        name = (i["namespace"] + NAMESPACE_SEP + i["name"]) if i.get("namespace") else i.get("name", "")
        calls.append(
            {
                "id": i.get("call_id"),
                "type": "function",
                "function": {"name": name, "arguments": i.get("arguments")},
            }
        )
    msg: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        msg["tool_calls"] = calls
    return [msg]


async def relay_native(
    first: ChatChunk, rest: AsyncIterator[ChatChunk], done: Callable[[dict[str, Any]], None]
) -> AsyncGenerator[bytes, None]:
    """An upstream's own Responses events as they came (a request passed through); `done` is
    told of the completed response they end with."""
    async for chunk in chain(first, rest):
        if not chunk.native:
            continue
        yield chunk.native
        if b"response.completed" in chunk.native:
            for block in chunk.native.split(b"\n\n"):
                if block.startswith(b"event: response.completed\n"):
                    data = orjson.loads(block.split(b"\ndata: ", 1)[1])
                    done(data.get("response") or {})


class Events:
    """Numbers and encodes one stream's events."""

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, name: str, **data: Any) -> bytes:
        payload = {"type": name, "sequence_number": self.seq, **data}
        self.seq += 1
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def reasoning_item(text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "reasoning_text", "text": text}
    return {"type": "reasoning", "id": new_id("rs"), "summary": [], "content": [part], "status": status}


class _Output:
    """The output items of a stream as its deltas build them, and the events that say so."""

    def __init__(self, ev: Events) -> None:
        self.ev = ev
        self.items: list[dict[str, Any]] = []
        self._text: dict[str, Any] | None = None
        self._reasoning: dict[str, Any] | None = None
        self._calls: dict[int, dict[str, Any]] = {}

    def reasoning(self, piece: str) -> bytes:
        out = b""
        if self._reasoning is None:
            self._reasoning = reasoning_item("", "in_progress")
            self.items.append(self._reasoning)
            added = {**self._reasoning, "content": []}
            out += self.ev("response.output_item.added", output_index=len(self.items) - 1, item=added)
        self._reasoning["content"][0]["text"] += piece
        where = {"item_id": self._reasoning["id"], "output_index": self.items.index(self._reasoning)}
        return out + self.ev("response.reasoning_text.delta", **where, content_index=0, delta=piece)

    def text(self, piece: str) -> bytes:
        out = b""
        if self._text is None:
            self._text = text_item("", "in_progress")
            self.items.append(self._text)
            n = len(self.items) - 1
            out += self.ev("response.output_item.added", output_index=n, item={**self._text, "content": []})
            part = {"type": "output_text", "text": "", "annotations": []}
            where = {"item_id": self._text["id"], "output_index": n, "content_index": 0}
            out += self.ev("response.content_part.added", **where, part=part)
        self._text["content"][0]["text"] += piece
        where = {"item_id": self._text["id"], "output_index": self.items.index(self._text)}
        return out + self.ev("response.output_text.delta", **where, content_index=0, delta=piece)

    def call(self, tc: dict[str, Any]) -> bytes:
        out = b""
        fn = tc.get("function") or {}
        i = tc.get("index", 0)
        if i not in self._calls:
            item = call_item(tc.get("id") or new_id("call"), fn.get("name") or "", "", "in_progress")
            self._calls[i] = item
            self.items.append(item)
            out += self.ev("response.output_item.added", output_index=len(self.items) - 1, item=dict(item))
        if fn.get("arguments"):
            item = self._calls[i]
            item["arguments"] += fn["arguments"]
            out += self.ev(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=self.items.index(item),
                delta=fn["arguments"],
            )
        return out

    def close(self) -> bytes:
        """Each item's closing events, in output order."""
        out = b""
        for n, item in enumerate(self.items):
            item["status"] = "completed"
            where = {"item_id": item["id"], "output_index": n}
            if item["type"] == "message":
                full = item["content"][0]
                out += self.ev("response.output_text.done", **where, content_index=0, text=full["text"])
                out += self.ev("response.content_part.done", **where, content_index=0, part=full)
            elif item["type"] == "reasoning":
                text = item["content"][0]["text"]
                out += self.ev("response.reasoning_text.done", **where, content_index=0, text=text)
            else:
                out += self.ev("response.function_call_arguments.done", **where, arguments=item["arguments"])
            out += self.ev("response.output_item.done", output_index=n, item=item)
        return out


async def stream_events(
    chunks: AsyncIterator[ChatChunk],
    shell: Shell,
    done: Callable[[list[dict[str, Any]], dict[str, Any]], None],
) -> AsyncGenerator[bytes, None]:
    """A streamed answer as Responses events; `done(output, response)` is told of a completed one."""
    ev = Events()
    yield ev("response.created", response=shell.response("in_progress", [], None))
    yield ev("response.in_progress", response=shell.response("in_progress", [], None))
    out = _Output(ev)
    finish: Any = None
    usage: Usage | None = None
    try:
        async for chunk in chunks:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                if choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or {}
                finish = choice.get("finish_reason") or finish
                data = b""
                thought = delta.get("reasoning_content")
                if isinstance(thought, str) and thought:
                    data += out.reasoning(thought)
                piece = delta.get("content")
                if isinstance(piece, str) and piece:
                    data += out.text(piece)
                for tc in delta.get("tool_calls") or []:
                    data += out.call(tc)
                if data:
                    yield data
    except AigwError as e:
        err = {"code": "server_error" if e.status_code >= 500 else "invalid_request", "message": e.message}
        yield ev("response.failed", response=shell.response("failed", out.items, usage, err))
        return
    yield out.close()
    final = shell.response("incomplete" if finish == "length" else "completed", out.items, usage)
    done(out.items, final)
    yield ev("response.completed", response=final)
