"""POST /v1/completions (legacy text completions, fill-in-the-middle with `suffix`): JSON, or SSE
ending in `data: [DONE]`, as /v1/chat/completions."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from aigw.api import sse
from aigw.api.caller import caller_of
from aigw.api.deps import get_gateway
from aigw.api.headers import JSONBytes, fact_headers
from aigw.api.openai.chat import events
from aigw.api.openai.schemas import CompletionBody, read_request
from aigw.completion import CompletionRequest

router = APIRouter()


@router.post("/v1/completions")
@router.post("/completions", include_in_schema=False)
async def completions(request: Request) -> Response:
    gw = get_gateway(request)
    body = await read_request(request, CompletionBody, gw.config.server.max_body_bytes)
    pinned = body.pop("provider", None)
    req = CompletionRequest(body=body, model=body["model"])
    caller = caller_of(request)
    if req.stream:
        reply = await gw.stream_complete(req, caller, provider=pinned)
        return sse.SSEResponse(events(reply, req.include_usage), fact_headers(reply.facts), reply.abandon)
    answer = await gw.complete(req, caller, provider=pinned)
    return JSONBytes(answer.wire(), fact_headers(answer.facts))
