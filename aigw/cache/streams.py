"""Between streamed chunks and a stored completion, both ways.

`Assembler` folds a stream's chunks into the completion a non-streaming request would have got
(the form the cache stores); it is `complete` only when every choice ended with a finish_reason
and every delta field was one it knows how to fold, so a cut or unusual stream is never cached.
`replay` turns a stored completion back into chunks: one carrying each choice's whole message,
one with each finish_reason, and the usage chunk when the client asked for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aigw.domain import ChatChunk, Usage


@dataclass(slots=True)
class _Choice:
    role: str | None = None
    text: dict[str, list[str]] = field(default_factory=dict)  # content, refusal, reasoning_content, ...
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    logprobs: list[Any] | None = None
    finish_reason: str | None = None


class Assembler:
    def __init__(self) -> None:
        self._choices: dict[int, _Choice] = {}
        self._head: dict[str, Any] | None = None
        self._extra: dict[str, Any] = {}
        self.usage: Usage | None = None
        self._foldable = True

    def add(self, chunk: ChatChunk) -> None:
        if self._head is None:
            self._head = {"id": chunk.id, "created": chunk.created, "model": chunk.model}
        self._extra.update(chunk.extra)
        if chunk.usage is not None:
            self.usage = chunk.usage
        for wire in chunk.choices:
            self._add_choice(wire)

    def _add_choice(self, wire: dict[str, Any]) -> None:
        index = wire.get("index", 0)
        if not isinstance(index, int):
            self._foldable = False
            return
        c = self._choices.setdefault(index, _Choice())
        delta = wire.get("delta") or {}
        if not isinstance(delta, dict):
            self._foldable = False
            return
        for key, value in delta.items():
            if value is None:
                continue
            if key == "role" and isinstance(value, str):
                c.role = value
            elif key == "tool_calls" and isinstance(value, list):
                self._add_calls(c, value)
            elif isinstance(value, str):
                c.text.setdefault(key, []).append(value)
            else:
                self._foldable = False  # a delta aigw cannot fold faithfully: do not cache
        lp = wire.get("logprobs")
        if isinstance(lp, dict) and isinstance(lp.get("content"), list):
            c.logprobs = (c.logprobs or []) + lp["content"]
        if wire.get("finish_reason") is not None:
            c.finish_reason = wire["finish_reason"]

    def _add_calls(self, c: _Choice, calls: list[Any]) -> None:
        for call in calls:
            if not isinstance(call, dict) or not isinstance(call.get("index"), int):
                self._foldable = False
                return
            slot = c.calls.setdefault(call["index"], {"function": {"name": "", "arguments": ""}})
            for k in ("id", "type"):
                if isinstance(call.get(k), str):
                    slot[k] = call[k]
            fn = call.get("function")
            if isinstance(fn, dict):
                for k in ("name", "arguments"):
                    if isinstance(fn.get(k), str):
                        slot["function"][k] += fn[k]

    @property
    def complete(self) -> bool:
        """Every choice finished, and everything in the stream could be folded."""
        return (
            self._foldable
            and self._head is not None
            and bool(self._choices)
            and all(c.finish_reason is not None for c in self._choices.values())
        )

    def completion(self) -> dict[str, Any]:
        """The completion in its non-streaming wire form."""
        head = self._head or {"id": "", "created": 0, "model": ""}
        choices = []
        for index in sorted(self._choices):
            c = self._choices[index]
            message: dict[str, Any] = {"role": c.role or "assistant"}
            message["content"] = "".join(c.text["content"]) if "content" in c.text else None
            for key, parts in c.text.items():
                if key != "content":
                    message[key] = "".join(parts)
            if c.calls:
                message["tool_calls"] = [{"type": "function", **c.calls[i]} for i in sorted(c.calls)]
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": None if c.logprobs is None else {"content": c.logprobs},
                    "finish_reason": c.finish_reason,
                }
            )
        out: dict[str, Any] = {"id": head["id"], "object": "chat.completion", "created": head["created"]}
        out["model"] = head["model"]
        out["choices"] = choices
        if self.usage is not None:
            out["usage"] = self.usage.to_wire()
        out.update(self._extra)
        return out


def replay(completion: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """The chunks that replay a stored completion as a stream."""
    base = {k: v for k, v in completion.items() if k not in ("object", "choices", "usage")}
    base["object"] = "chat.completion.chunk"
    firsts, lasts = [], []
    for ch in completion.get("choices") or []:
        message = ch.get("message") or {}
        delta: dict[str, Any] = {}
        for key, value in message.items():
            if value is None or value == []:
                continue
            if key == "tool_calls" and isinstance(value, list):
                delta[key] = [{"index": i, **call} for i, call in enumerate(value)]
            else:
                delta[key] = value
        index = ch.get("index", 0)
        firsts.append({"index": index, "delta": delta, "logprobs": ch.get("logprobs"), "finish_reason": None})
        lasts.append(
            {"index": index, "delta": {}, "logprobs": None, "finish_reason": ch.get("finish_reason")}
        )
    chunks = [{**base, "choices": firsts}, {**base, "choices": lasts}]
    if include_usage:
        for c in chunks:
            c["usage"] = None
        chunks.append({**base, "choices": [], "usage": completion.get("usage")})
    return chunks


def replay_chunks(completion: dict[str, Any]) -> list[ChatChunk]:
    """The chunks that replay a stored completion as a stream, ending with a usage-only chunk
    when the completion has usage (a dialect shows it or not, as its client asked)."""
    return [ChatChunk.from_wire(c) for c in replay(completion, completion.get("usage") is not None)]
