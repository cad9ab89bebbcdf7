"""Answers grounded in a RAG collection: retrieve, put the numbered chunks in the system prompt, and
ask a chat model through the pipeline (with the caller's key, limits, cache and usage like any
chat), returning the answer with the `sources` its numbers refer to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aigw.config import Config
from aigw.domain import ChatRequest, ChatResponse
from aigw.errors import InvalidRequest, ServiceUnavailable
from aigw.gateway.call import Answer, Caller, StreamReply
from aigw.gateway.pipeline import Pipeline
from aigw.rag.service import RagService

INSTRUCTIONS = (
    "Answer using only the numbered sources below. Cite the sources you use with their numbers in "
    "square brackets, like [1] or [2][3], right after the statements they support. If the sources "
    "do not contain the answer, say so plainly."
)


@dataclass(frozen=True, slots=True)
class RagQuery:
    collection: str
    messages: list[dict[str, Any]]
    """The conversation; its last user message with text is what is searched for."""
    k: int | None = None
    model: str | None = None
    stream: bool = False
    temperature: float | None = None


@dataclass(slots=True)
class Grounded:
    """An answer and the sources its [n] citations refer to."""

    sources: list[dict[str, Any]]
    answer: Answer[ChatResponse] | StreamReply


def prompt(hits: list[Any]) -> str:
    parts = [INSTRUCTIONS, ""]
    for i, h in enumerate(hits, 1):
        where = f"{h.path}" + (f" — {h.heading}" if h.heading else "")
        parts.append(f"[{i}] {where}\n{h.content.strip()}\n")
    return "\n".join(parts)


def _question(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user" and isinstance(m.get("content"), str) and m["content"].strip():
            return str(m["content"])
    raise InvalidRequest("the messages have no user message with text to search for", param="messages")


async def rag_answer(
    pipeline: Pipeline, rag: RagService | None, config: Config, q: RagQuery, caller: Caller
) -> Grounded:
    if rag is None:
        raise ServiceUnavailable("RAG is not available in this daemon")
    hits = await rag.search(q.collection, _question(q.messages), q.k or config.rag.top_k)
    sources = [
        {
            "n": i,
            "path": h.path,
            "heading": h.heading,
            "score": round(h.score, 6),
            "lines": [h.start_line, h.end_line],
        }
        for i, h in enumerate(hits, 1)
    ]
    model = q.model or config.rag.chat_model or config.chat.default_model
    if model is None:
        raise InvalidRequest(
            "no chat model: pass 'model', or set [rag] chat_model in the config", param="model"
        )
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": prompt(hits)}, *q.messages],
        "stream": q.stream,
    }
    if q.temperature is not None:
        body["temperature"] = q.temperature
    req = ChatRequest(body=body, model=model)
    if q.stream:
        return Grounded(sources, await pipeline.stream(req, caller))
    return Grounded(sources, await pipeline.chat(req, caller))
