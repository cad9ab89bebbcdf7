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
from aigw.api.headers import JSONBytes, client_address, proxy_headers
from aigw.api.proxy import accept
from aigw.api.schemas import ChatCompletionRequest
from aigw.domain import ChatChunk, ChatRequest, Usage
from aigw.errors import AigwError
from aigw.meter import Meter, Ticket
from aigw.routing.router import RoutedStream
from aigw.security.guard import SCOPE_KEY

log = logging.getLogger("aigw.api.chat")
router = APIRouter()


def _encode(chunk: ChatChunk, include_usage: bool) -> bytes | None:
    if chunk.is_usage_only and not include_usage:
        return None  # aigw asked the upstream for usage; this client did not
    return sse.event(chunk.to_wire(include_usage=include_usage))


async def _relay(
    stream: RoutedStream, include_usage: bool, meter: Meter, ticket: Ticket, overhead_s: float
) -> AsyncGenerator[bytes, None]:
    usage: Usage | None = None
    failure: AigwError | None = None
    text: list[str] | None = [] if ticket.content is not None else None
    chars = 0  # what reached the client: charged when the stream ends without usage
    try:
        for chunk in stream.head:
            usage = chunk.usage or usage
            chars += _collect(chunk, text)
            if data := _encode(chunk, include_usage):
                yield data
        async for chunk in stream.rest:
            usage = chunk.usage or usage
            chars += _collect(chunk, text)
            if data := _encode(chunk, include_usage):
                yield data
    except AigwError as e:
        # Headers are gone: the failure becomes an OpenAI-style error event.
        log.warning("stream from %s broke: %s", stream.target.provider, e.message)
        failure = e
        yield sse.event({"error": error_payload(e)})
    finally:
        await stream.aclose()
        if failure is not None:
            meter.failed(ticket, failure, stream.target, delivered_chars=chars)
        else:
            completion = "".join(text) if text is not None else None
            meter.done(
                ticket,
                stream.target,
                usage,
                overhead_s=overhead_s,
                fallbacks=stream.trace.fallbacks,
                completion=completion,
                completion_chars=chars,
            )
    yield sse.DONE


def _collect(chunk: ChatChunk, text: list[str] | None) -> int:
    """The characters of content and tool-call arguments in a chunk (kept when logging)."""
    n = 0
    for choice in chunk.choices:
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            continue
        content = delta.get("content")
        if isinstance(content, str):
            n += len(content)
            if text is not None:
                text.append(content)
        for call in delta.get("tool_calls") or ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                n += len(fn["arguments"])
    return n


@router.post("/v1/chat/completions")
@router.post("/chat/completions", include_in_schema=False)
async def chat_completions(request: Request) -> Response:
    t0 = time.perf_counter()
    inc = await accept(request, ChatCompletionRequest)
    gw, route = inc.gateway, inc.route
    meter = gw.meter
    ticket = meter.admit(request.scope.get(SCOPE_KEY), client_address(request), route, inc.body)
    req = ChatRequest(body=inc.body, model=inc.body["model"])
    local = gw.serves_locally(route)
    try:
        if req.stream:
            opening = gw.router.open_stream(route, req)
            # A local model may queue or load before its first token: stop if the client leaves.
            stream = await (unless_disconnected(request, opening) if local else opening)
        else:
            work = gw.router.chat(route, req)
            result = await (unless_disconnected(request, work) if local else work)
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

        async def unstarted() -> None:  # the client left before the first byte was sent
            await stream.aclose()
            meter.abandoned(ticket)

        body = _relay(stream, req.include_usage, meter, ticket, overhead)
        return sse.SSEResponse(body, headers, on_unstarted=unstarted)
    value = result.value
    overhead = time.perf_counter() - t0 - result.upstream_s
    completion = value.choices if ticket.content is not None else None
    chars = 0 if value.usage is not None else len(orjson.dumps(value.choices))
    meter.done(
        ticket,
        result.target,
        value.usage,
        overhead_s=overhead,
        fallbacks=result.trace.fallbacks,
        completion=completion,
        completion_chars=chars,
    )
    headers = proxy_headers(result.target, overhead, result.trace)
    headers.update(ticket.headers)
    return JSONBytes(orjson.dumps(value.to_wire()), headers)
