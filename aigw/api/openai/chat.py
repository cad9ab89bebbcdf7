"""POST /v1/chat/completions: non-streaming JSON, or SSE ending in `data: [DONE]`."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from aigw.access.meter import Meter, Ticket
from aigw.api import sse
from aigw.api.cached import from_cache
from aigw.api.disconnect import unless_disconnected
from aigw.api.errors import error_payload
from aigw.api.guard import SCOPE_KEY
from aigw.api.headers import JSONBytes, client_address, proxy_headers
from aigw.api.openai.schemas import ChatCompletionRequest
from aigw.api.proxy import accept
from aigw.cache.service import AnswerCache, Plan
from aigw.cache.streams import Assembler
from aigw.domain import ChatChunk, ChatRequest, Target, Usage
from aigw.errors import AigwError
from aigw.routing.router import RoutedStream

log = logging.getLogger("aigw.api.chat")
router = APIRouter()


def _encode(chunk: ChatChunk, include_usage: bool) -> bytes | None:
    if chunk.is_usage_only and not include_usage:
        return None  # aigw asked the upstream for usage; this client did not
    return sse.event(chunk.to_wire(include_usage=include_usage))


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
    key_id = ticket.key.id if ticket.key is not None else None
    plan = gw.cache.plan("chat", route, inc.body, request.headers.get("cache-control"), key_id)
    local = gw.serves_locally(route)
    try:
        if plan.decision.lookup and (found := await gw.cache.lookup(plan)) is not None:
            return from_cache(found, meter, ticket, t0, stream=req.stream, include_usage=req.include_usage)
        if req.stream:
            opening = gw.router.open_stream(route, req)
            # A local model may queue or load before its first token: stop if the client leaves.
            stream = await (unless_disconnected(request, opening) if local else opening)
        else:
            work = gw.router.chat(route, req)
            result = await (unless_disconnected(request, work) if local else work)
    except AigwError as e:
        plan.publish(None)
        meter.failed(ticket, e)
        raise
    except BaseException:
        plan.publish(None)
        meter.abandoned(ticket)
        raise
    if req.stream:
        overhead = time.perf_counter() - t0 - stream.upstream_s
        headers = proxy_headers(stream.target, overhead, stream.trace, plan.status)
        headers.update(ticket.headers)

        async def unstarted() -> None:  # the client left before the first byte was sent
            plan.publish(None)
            await stream.aclose()
            meter.abandoned(ticket)

        saver = _Saver(gw.cache, plan) if plan.decision.store else None
        body = relay(stream, req.include_usage, meter, ticket, overhead, saver=saver, cache=plan.status)
        return sse.SSEResponse(body, headers, on_unstarted=unstarted)
    value = result.value
    overhead = time.perf_counter() - t0 - result.upstream_s
    payload = orjson.dumps(value.to_wire())
    if plan.decision.store:
        gw.cache.save(plan, result.target, payload, value.usage)
    completion = value.choices if ticket.content is not None else None
    chars = 0 if value.usage is not None else len(orjson.dumps(value.choices))
    meter.done(
        ticket,
        result.target,
        value.usage,
        overhead_s=overhead,
        fallbacks=result.trace.fallbacks,
        cache=plan.status,
        completion=completion,
        completion_chars=chars,
    )
    headers = proxy_headers(result.target, overhead, result.trace, plan.status)
    headers.update(ticket.headers)
    return JSONBytes(payload, headers)


class _Saver:
    """Folds a stream as it passes; stores it when it ended normally and completely."""

    def __init__(self, cache: AnswerCache, plan: Plan) -> None:
        self.cache = cache
        self.plan = plan
        self.assembler = Assembler()

    def finish(self, target: Target, ended: bool) -> None:
        a = self.assembler
        if ended and a.complete:
            self.cache.save(self.plan, target, orjson.dumps(a.completion()), a.usage)
        else:
            self.plan.publish(None)


async def relay(
    stream: RoutedStream,
    include_usage: bool,
    meter: Meter,
    ticket: Ticket,
    overhead_s: float,
    *,
    saver: _Saver | None,
    cache: str,
) -> AsyncGenerator[bytes, None]:
    usage: Usage | None = None
    failure: AigwError | None = None
    ended = False
    text: list[str] | None = [] if ticket.content is not None else None
    chars = 0  # what reached the client: charged when the stream ends without usage
    fold = saver.assembler.add if saver is not None else None

    def take(chunk: ChatChunk) -> bytes | None:
        nonlocal usage, chars
        usage = chunk.usage or usage
        chars += _collect(chunk, text)
        if fold is not None:
            fold(chunk)
        return _encode(chunk, include_usage)

    try:
        for chunk in stream.head:
            if data := take(chunk):
                yield data
        async for chunk in stream.rest:
            if data := take(chunk):
                yield data
        ended = True
    except AigwError as e:
        # Headers are gone: the failure becomes an OpenAI-style error event.
        log.warning("stream from %s broke: %s", stream.target.provider, e.message)
        failure = e
        yield sse.event({"error": error_payload(e)})
    finally:
        await stream.aclose()
        if saver is not None:
            saver.finish(stream.target, ended)
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
                cache=cache,
                completion=completion,
                completion_chars=chars,
            )
    yield sse.DONE
