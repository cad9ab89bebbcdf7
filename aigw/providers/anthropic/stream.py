"""Anthropic Messages stream events -> OpenAI chat chunks. Pure: no I/O.

Events: message_start, content_block_start / _delta / _stop (text, tool_use with input_json_delta,
thinking with thinking_delta -> `reasoning_content` deltas and signature_delta -> a
`thinking_blocks` delta carrying the signature, redacted_thinking -> a `thinking_blocks` delta;
other block types skipped), message_delta (stop_reason, output usage), message_stop,
ping, and error (raised as the mapped UpstreamStatusError).
"""

from __future__ import annotations

from typing import Any

from aigw.domain import ChatChunk
from aigw.errors import UpstreamProtocolError
from aigw.providers.anthropic.wire import dumps, error_from_event, finish_reason, text_field, usage_from_wire


class StreamTranslator:
    """Anthropic stream events in, OpenAI chunks out. Feed each event's JSON data in order.

    The first chunk carries role "assistant"; tool_use blocks become tool_calls deltas with a
    running index; message_delta's stop_reason becomes the finish_reason chunk; message_stop
    ends with a usage-only chunk (choices []) and sets `done`.
    """

    def __init__(self, provider: str, json_tool: str | None, created: int) -> None:
        self.provider = provider
        self.json_tool = json_tool
        self.created = created
        self.done = False
        self._id = self._model = ""
        self._started = False
        # block index -> (kind, tool index, the arguments to send at its end unless fragments came)
        self._blocks: dict[int, tuple[str, int, str | None]] = {}
        self._tools = 0
        self._usage: dict[str, Any] = {}

    def feed(self, d: dict[str, Any]) -> list[ChatChunk]:
        kind = d.get("type")
        if kind == "error":
            raise error_from_event(self.provider, d)
        if kind == "ping" or self.done:
            return []
        if kind != "message_start" and not self._started:
            if kind in ("content_block_start", "content_block_delta", "message_delta", "message_stop"):
                raise self._bad(f"{kind} before message_start")
            return []
        try:
            return self._feed(kind, d)
        except (ValueError, KeyError, TypeError) as e:
            raise self._bad(f"malformed {kind} event: {e}") from None

    def _bad(self, what: str) -> UpstreamProtocolError:
        return UpstreamProtocolError(f"{self.provider}: {what}", provider=self.provider)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> ChatChunk:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return ChatChunk(self._id, self.created, self._model, [choice])

    def _feed(self, kind: Any, d: dict[str, Any]) -> list[ChatChunk]:
        if kind == "message_start":
            msg = d["message"]
            if not isinstance(msg, dict):
                raise ValueError("message is not an object")
            self._id, self._model = str(msg.get("id") or ""), str(msg.get("model") or "")
            if isinstance(msg.get("usage"), dict):
                self._usage.update(msg["usage"])
            self._started = True
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(_index(d), d["content_block"])
        if kind == "content_block_delta":
            return self._block_delta(_index(d), d["delta"])
        if kind == "content_block_stop":
            return self._block_stop(_index(d))
        if kind == "message_delta":
            if isinstance(d.get("usage"), dict):
                self._usage.update({k: v for k, v in d["usage"].items() if v is not None})
            delta = d.get("delta")
            reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            real_tools = any(b[0] == "tool" for b in self._blocks.values())
            finish = finish_reason(reason, real_tools)
            return [] if finish is None else [self._chunk({}, finish)]
        if kind == "message_stop":
            self.done = True
            return [ChatChunk(self._id, self.created, self._model, [], usage_from_wire(self._usage))]
        return []  # unknown event types may be added by the vendor

    def _block_start(self, index: int, block: Any) -> list[ChatChunk]:
        if not isinstance(block, dict):
            raise ValueError("content_block is not an object")
        btype = block.get("type")
        if btype == "text" and self.json_tool is None:
            self._blocks[index] = ("text", 0, None)
            text = text_field(block.get("text") or "", "text")
            return [self._chunk({"content": text})] if text else []
        if btype == "thinking":
            self._blocks[index] = ("thinking", 0, None)
            text = text_field(block.get("thinking") or "", "thinking")
            return [self._chunk({"reasoning_content": text})] if text else []
        if btype == "redacted_thinking":
            self._blocks[index] = ("ignore", 0, None)
            redacted = {"type": "redacted_thinking", "data": text_field(block.get("data"), "data")}
            return [self._chunk({"thinking_blocks": [redacted]})]
        if btype != "tool_use":
            self._blocks[index] = ("ignore", 0, None)  # a block type added later
            return []
        initial = block.get("input")
        args = dumps(initial) if isinstance(initial, dict) and initial else "{}"
        if block.get("name") == self.json_tool:
            self._blocks[index] = ("json", 0, args)
            return []
        self._blocks[index] = ("tool", self._tools, args)
        fn = {"name": text_field(block.get("name"), "tool name"), "arguments": ""}
        call = {
            "index": self._tools,
            "id": text_field(block.get("id"), "tool id"),
            "type": "function",
            "function": fn,
        }
        self._tools += 1
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, index: int, delta: Any) -> list[ChatChunk]:
        if not isinstance(delta, dict):
            raise ValueError("delta is not an object")
        kind, tool, _ = self._blocks.get(index, ("ignore", 0, None))
        dtype = delta.get("type")
        if kind == "text" and dtype == "text_delta":
            text = text_field(delta.get("text"), "text")
            return [self._chunk({"content": text})] if text else []
        if kind in ("tool", "json") and dtype == "input_json_delta":
            part = text_field(delta.get("partial_json"), "partial_json")
            if not part:
                return []
            self._blocks[index] = (kind, tool, None)
            if kind == "json":
                return [self._chunk({"content": part})]
            return [self._chunk({"tool_calls": [{"index": tool, "function": {"arguments": part}}]})]
        if kind == "thinking" and dtype == "thinking_delta":
            text = text_field(delta.get("thinking"), "thinking")
            return [self._chunk({"reasoning_content": text})] if text else []
        if kind == "thinking" and dtype == "signature_delta":
            signed = {"type": "thinking", "signature": text_field(delta.get("signature"), "signature")}
            return [self._chunk({"thinking_blocks": [signed]})]
        return []  # citations_delta, and delta types added later

    def _block_stop(self, index: int) -> list[ChatChunk]:
        kind, tool, args = self._blocks.get(index, ("ignore", 0, None))
        if args is None:  # not a tool, or its input came in fragments
            return []
        if kind == "json":
            return [self._chunk({"content": args})]
        return [self._chunk({"tool_calls": [{"index": tool, "function": {"arguments": args}}]})]


def _index(d: dict[str, Any]) -> int:
    i = d.get("index")
    if not isinstance(i, int) or isinstance(i, bool):
        raise ValueError("index is not an integer")
    return i
