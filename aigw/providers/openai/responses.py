"""An upstream's OpenAI Responses answers (a request passed through unchanged) read as chat
answers, for accounting and the pipeline: pure, no I/O.

Whole: output `message` items give the text, `function_call` items the tool calls; status
`incomplete` is finish_reason "length"; usage input/output tokens (cached input tokens kept).
Streamed: response.output_text.delta -> content; response.output_item.added of a function_call
-> its id and name; response.function_call_arguments.delta -> argument fragments;
response.completed / .incomplete -> the finish and usage chunks; response.failed and error events
-> UpstreamStatusError.
"""

from __future__ import annotations

from typing import Any

from aigw.domain import ChatChunk, ChatResponse, Usage
from aigw.errors import UpstreamProtocolError, UpstreamStatusError


def _usage(d: Any) -> Usage | None:
    if not isinstance(d, dict):
        return None
    p, c = int(d.get("input_tokens") or 0), int(d.get("output_tokens") or 0)
    details = d.get("input_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    extra = {"prompt_tokens_details": {"cached_tokens": int(cached)}} if isinstance(cached, int) else {}
    return Usage(p, c, p + c, extra)


def _finish(status: Any, calls: bool) -> str:
    if calls:
        return "tool_calls"
    return "length" if status == "incomplete" else "stop"


def response_to_chat(provider: str, d: dict[str, Any], created: int) -> ChatResponse:
    output = d.get("output")
    if not isinstance(output, list):
        raise UpstreamProtocolError(f"{provider}: response has no output", provider=provider)
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in output:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            texts += [p.get("text", "") for p in item.get("content") or [] if p.get("type") == "output_text"]
        elif kind == "function_call":
            fn = {"name": item.get("name", ""), "arguments": item.get("arguments") or "{}"}
            calls.append({"id": item.get("call_id") or item.get("id"), "type": "function", "function": fn})
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        msg["tool_calls"] = calls
    choice = {"index": 0, "message": msg, "finish_reason": _finish(d.get("status"), bool(calls))}
    return ChatResponse(
        str(d.get("id") or ""), created, str(d.get("model") or ""), [choice], _usage(d.get("usage"))
    )


class EventTranslator:
    """Responses stream events in (each event's JSON), chat chunks out; `done` after the last."""

    def __init__(self, provider: str, created: int) -> None:
        self.provider = provider
        self.created = created
        self.done = False
        self._calls: dict[int, int] = {}  # output_index -> tool call index

    def _chunk(
        self, delta: dict[str, Any], finish: str | None = None, usage: Usage | None = None
    ) -> ChatChunk:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish}] if delta or finish else []
        return ChatChunk("", self.created, "", choices, usage)

    def feed(self, d: dict[str, Any]) -> list[ChatChunk]:
        kind = d.get("type")
        if kind == "response.output_text.delta" and isinstance(d.get("delta"), str):
            return [self._chunk({"content": d["delta"]})]
        if kind == "response.output_item.added":
            item = d.get("item") or {}
            if item.get("type") == "function_call":
                n = len(self._calls)
                self._calls[int(d.get("output_index") or 0)] = n
                call = {"index": n, "id": item.get("call_id"), "type": "function"}
                call["function"] = {"name": item.get("name", ""), "arguments": ""}
                return [self._chunk({"tool_calls": [call]})]
        if kind == "response.function_call_arguments.delta":
            n = self._calls.get(int(d.get("output_index") or 0), 0)
            return [
                self._chunk({"tool_calls": [{"index": n, "function": {"arguments": d.get("delta") or ""}}]})
            ]
        if kind in ("response.completed", "response.incomplete"):
            self.done = True
            resp = d.get("response") or {}
            finish = _finish(resp.get("status"), bool(self._calls))
            return [self._chunk({}, finish), self._chunk({}, usage=_usage(resp.get("usage")))]
        if kind in ("response.failed", "error"):
            err = (d.get("response") or {}).get("error") or d.get("error") or d
            message = err.get("message") if isinstance(err, dict) else None
            raise UpstreamStatusError(
                f"{self.provider}: {message or 'the response failed'}",
                provider=self.provider,
                upstream_status=500,
            )
        return []
