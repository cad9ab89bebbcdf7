"""POST /v1/chat/completions: non-streaming JSON, or SSE ending in `data: [DONE]`."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator

from fastapi import APIRouter, Request
from starlette.responses import Response

from aigw.api import sse
from aigw.api.caller import caller_of
from aigw.api.deps import get_gateway
from aigw.api.errors import error_payload
from aigw.api.headers import JSONBytes, fact_headers
from aigw.api.openai.schemas import ChatCompletionRequest, read_request
from aigw.domain import ChatChunk, ChatRequest
from aigw.errors import AigwError
from aigw.gateway.call import StreamReply

log = logging.getLogger("aigw.api.chat")
router = APIRouter()


@router.post("/v1/chat/completions")
@router.post("/chat/completions", include_in_schema=False)
async def chat_completions(request: Request) -> Response:
    gw = get_gateway(request)
    body = await read_request(request, ChatCompletionRequest, gw.config.server.max_body_bytes)
    pinned = body.pop("provider", None)
    req = ChatRequest(body=body, model=body["model"])
    caller = caller_of(request)
    if req.stream:
        reply = await gw.stream(req, caller, provider=pinned)
        return sse.SSEResponse(events(reply, req.include_usage), fact_headers(reply.facts), reply.abandon)
    answer = await gw.chat(req, caller, provider=pinned)
    return JSONBytes(answer.wire(), fact_headers(answer.facts))


def encode(chunk: ChatChunk, include_usage: bool) -> bytes | None:
    """A chunk as an SSE event; None for the usage-only chunk of a client that did not ask for usage
    (aigw asks every upstream for it, to account the request)."""
    if chunk.is_usage_only and not include_usage:
        return None
    return sse.event(chunk.to_wire(include_usage=include_usage))


async def events(reply: StreamReply, include_usage: bool) -> AsyncGenerator[bytes, None]:
    """The reply as OpenAI SSE: its chunks, an error event if it breaks (the headers are gone by
    then), and `data: [DONE]`."""
    try:
        async for chunk in reply.chunks:
            if data := encode(chunk, include_usage):
                yield data
    except AigwError as e:
        yield sse.event({"error": error_payload(e)})
    yield sse.DONE
