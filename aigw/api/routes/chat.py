"""POST /v1/chat/completions: non-streaming JSON, or SSE ending in `data: [DONE]`."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from aigw.api import sse
from aigw.api.disconnect import unless_disconnected
from aigw.api.errors import error_payload
from aigw.api.headers import JSONBytes, proxy_headers
from aigw.api.proxy import accept
from aigw.api.schemas import ChatCompletionRequest
from aigw.domain import ChatChunk, ChatRequest
from aigw.errors import AigwError
from aigw.routing.router import RoutedStream

log = logging.getLogger("aigw.api.chat")
router = APIRouter()


def _encode(chunk: ChatChunk, include_usage: bool) -> bytes | None:
    if chunk.is_usage_only and not include_usage:
        return None  # aigw asked the upstream for usage; this client did not
    return sse.event(chunk.to_wire(include_usage=include_usage))


async def _relay(stream: RoutedStream, include_usage: bool) -> AsyncGenerator[bytes, None]:
    try:
        for chunk in stream.head:
            if data := _encode(chunk, include_usage):
                yield data
        async for chunk in stream.rest:
            if data := _encode(chunk, include_usage):
                yield data
    except AigwError as e:
        # Headers are gone: the failure becomes an OpenAI-style error event.
        log.warning("stream from %s broke: %s", stream.target.provider, e.message)
        yield sse.event({"error": error_payload(e)})
    finally:
        await stream.aclose()
    yield sse.DONE


@router.post("/v1/chat/completions")
@router.post("/chat/completions", include_in_schema=False)
async def chat_completions(request: Request) -> Response:
    t0 = time.perf_counter()
    inc = await accept(request, ChatCompletionRequest)
    gw, route = inc.gateway, inc.route
    req = ChatRequest(body=inc.body, model=inc.body["model"])
    if req.stream:
        opening = gw.router.open_stream(route, req)
        # A local model may queue or load before its first token: stop if the client leaves.
        stream = await (unless_disconnected(request, opening) if gw.serves_locally(route) else opening)
        headers = proxy_headers(stream.target, time.perf_counter() - t0 - stream.upstream_s, stream.trace)
        return sse.SSEResponse(_relay(stream, req.include_usage), headers)
    work = gw.router.chat(route, req)
    result = await (unless_disconnected(request, work) if gw.serves_locally(route) else work)
    payload = orjson.dumps(result.value.to_wire())
    overhead = time.perf_counter() - t0 - result.upstream_s
    return JSONBytes(payload, proxy_headers(result.target, overhead, result.trace))
