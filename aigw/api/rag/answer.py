"""Answers grounded in a RAG collection: retrieve, put the numbered chunks in the system prompt,
ask a chat model through the router (with the caller's key, limits and usage like any chat), and
return its completion with the `sources` the numbers refer to. Streams start with a chunk that
has no choices and carries the sources."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from aigw.api import sse
from aigw.api.guard import SCOPE_KEY
from aigw.api.headers import JSONBytes, client_address, proxy_headers
from aigw.api.openai.chat import relay
from aigw.domain import ChatRequest
from aigw.errors import AigwError, InvalidRequest, ServiceUnavailable
from aigw.gateway.gateway import Gateway

INSTRUCTIONS = (
    "Answer using only the numbered sources below. Cite the sources you use with their numbers in "
    "square brackets, like [1] or [2][3], right after the statements they support. If the sources "
    "do not contain the answer, say so plainly."
)


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


async def answer(request: Request, gw: Gateway, q: dict[str, Any]) -> Response:
    t0 = time.perf_counter()
    if gw.rag is None:
        raise ServiceUnavailable("RAG is not available in this daemon")
    messages: list[dict[str, Any]] = q["messages"] or [{"role": "user", "content": q["query"]}]
    k = q["k"] or gw.config.rag.top_k
    hits = await gw.rag.search(q["collection"], _question(messages), k)
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
    model = q["model"] or gw.config.rag.chat_model or gw.config.chat.default_model
    if model is None:
        raise InvalidRequest(
            "no chat model: pass 'model', or set [rag] chat_model in the config", param="model"
        )
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": prompt(hits)}, *messages],
        "stream": q["stream"],
    }
    if q["temperature"] is not None:
        body["temperature"] = q["temperature"]
    route = await gw.resolve(model, None)
    meter = gw.meter
    ticket = meter.admit(request.scope.get(SCOPE_KEY), client_address(request), route, body)
    req = ChatRequest(body=body, model=model)
    try:
        if req.stream:
            stream = await gw.router.open_stream(route, req)
        else:
            result = await gw.router.chat(route, req)
    except AigwError as e:
        meter.failed(ticket, e)
        raise
    except BaseException:
        meter.abandoned(ticket)
        raise
    if req.stream:
        overhead = time.perf_counter() - t0 - stream.upstream_s
        headers = proxy_headers(stream.target, overhead, stream.trace)
        headers.update(ticket.headers)
        first = {"id": "rag-sources", "object": "chat.completion.chunk", "created": int(time.time())}
        first.update(model=stream.target.model, choices=[], sources=sources)

        async def body_with_sources() -> AsyncGenerator[bytes, None]:
            yield sse.event(first)
            async with aclosing(
                relay(stream, False, meter, ticket, overhead, saver=None, cache="bypass")
            ) as rest:
                async for data in rest:
                    yield data

        async def unstarted() -> None:
            await stream.aclose()
            meter.abandoned(ticket)

        return sse.SSEResponse(body_with_sources(), headers, on_unstarted=unstarted)
    value = result.value
    overhead = time.perf_counter() - t0 - result.upstream_s
    meter.done(ticket, result.target, value.usage, overhead_s=overhead, fallbacks=result.trace.fallbacks)
    wire = value.to_wire()
    wire["sources"] = sources
    headers = proxy_headers(result.target, overhead, result.trace)
    headers.update(ticket.headers)
    return JSONBytes(orjson.dumps(wire), headers)
