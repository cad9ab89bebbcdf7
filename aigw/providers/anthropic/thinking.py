"""Reasoning on Anthropic: extended thinking from OpenAI's `reasoning_effort` (or another
dialect's hint), and thinking blocks back as `reasoning_content` plus `thinking_blocks` (with
their signatures, which Anthropic requires when the blocks are sent back on the next turn; the
field LiteLLM uses). Pure functions, no I/O.
"""

from __future__ import annotations

from typing import Any

from aigw.domain import ChatRequest
from aigw.errors import CapabilityError, InvalidRequest
from aigw.providers.reasoning import requested

MIN_BUDGET = 1024
"""Anthropic's smallest thinking budget."""


def thinking_config(req: ChatRequest, max_tokens: int) -> dict[str, Any] | None:
    """The `thinking` field for this request, None for no thinking. The budget is at most half
    of `max_tokens` (Anthropic counts thinking in it), so the answer keeps the other half and is
    never longer than the client allowed. OpenAI's own `reasoning_effort` that cannot be honoured
    is refused; a dialect's hint is applied where it can be and otherwise left out."""
    hard = req.body.get("reasoning_effort") is not None
    want = requested(req.body, req.hint)
    if want is None:
        return None
    if want.effort == "none" or want.tokens <= 0:
        return None
    budget = min(want.tokens, max_tokens // 2)
    fixed = "top_k" if req.body.get("top_k") is not None else None
    if req.body.get("temperature") not in (None, 1):
        fixed = "temperature"
    if budget < MIN_BUDGET or fixed is not None:
        if not hard:
            return None
        if fixed is not None:
            raise CapabilityError(
                f"Anthropic does not take '{fixed}' with reasoning on; remove one of them", param=fixed
            )
        raise CapabilityError(
            f"reasoning on Anthropic needs max_tokens of at least {2 * MIN_BUDGET}", param="max_tokens"
        )
    return {"type": "enabled", "budget_tokens": budget}


def settle_with_tools(out: dict[str, Any], req: ChatRequest) -> None:
    """Anthropic thinks only when no tool is forced (tool_choice auto or none), and, in a tool
    loop, only when the last assistant turn starts with its signed thinking (which clients that
    do not keep `thinking_blocks` cannot send back). Where it cannot, OpenAI's own
    reasoning_effort is refused naming why; a dialect's hint gives way."""
    if "thinking" not in out:
        return
    forced = isinstance(out.get("tool_choice"), dict) and out["tool_choice"].get("type") in ("any", "tool")
    why, param = None, "reasoning_effort"
    if forced:
        why = (
            "Anthropic cannot think while a tool is forced (tool_choice required, a named tool, "
            "or response_format); remove reasoning_effort or the forcing"
        )
    elif _unsigned_tool_turn(out["messages"]):
        why = (
            "with reasoning on, Anthropic needs the last assistant turn's signed thinking back: "
            "send its message with the thinking_blocks it came with"
        )
        param = "messages"
    if why is None:
        return
    if req.body.get("reasoning_effort") is not None:
        raise CapabilityError(why, param=param)
    del out["thinking"]


def _unsigned_tool_turn(messages: list[dict[str, Any]]) -> bool:
    """Is the conversation in a tool loop (it ends with tool results) whose assistant turn does
    not start with its thinking?"""
    if len(messages) < 2 or messages[-2].get("role") != "assistant":
        return False
    results = messages[-1].get("content") or []
    if not any(b.get("type") == "tool_result" for b in results):
        return False
    blocks = messages[-2].get("content") or []
    return bool(blocks) and blocks[0].get("type") not in ("thinking", "redacted_thinking")


def assistant_thinking(m: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The signed thinking blocks of an earlier assistant turn (its `thinking_blocks`), which
    Anthropic needs back before that turn's tool calls. Unsigned reasoning is left out: Anthropic
    refuses a thinking block without its signature."""
    raw = m.get("thinking_blocks")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidRequest(f"{where}.thinking_blocks must be an array", param="messages")
    out: list[dict[str, Any]] = []
    for j, b in enumerate(raw):
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "thinking" and isinstance(b.get("signature"), str) and b["signature"]:
            text = str(b.get("thinking") or "")
            out.append({"type": "thinking", "thinking": text, "signature": b["signature"]})
        elif kind == "redacted_thinking" and isinstance(b.get("data"), str):
            out.append({"type": "redacted_thinking", "data": b["data"]})
        elif kind not in ("thinking", "redacted_thinking"):
            raise InvalidRequest(
                f"{where}.thinking_blocks[{j}] must be a thinking or redacted_thinking block",
                param="messages",
            )
    return out


def reasoning_fields(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """`reasoning_content` and `thinking_blocks` for an answer's thinking blocks (none: {})."""
    kept: list[dict[str, Any]] = []
    texts: list[str] = []
    for b in blocks:
        if b.get("type") == "thinking":
            text = b.get("thinking")
            if not isinstance(text, str):
                raise ValueError("thinking is not a string")
            texts.append(text)
            kept.append({"type": "thinking", "thinking": text, "signature": str(b.get("signature") or "")})
        elif b.get("type") == "redacted_thinking":
            kept.append({"type": "redacted_thinking", "data": str(b.get("data") or "")})
    if not kept:
        return {}
    return {"reasoning_content": "".join(texts), "thinking_blocks": kept}
