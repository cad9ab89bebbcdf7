"""POST /v1/messages (whole or streamed) and POST /v1/messages/count_tokens.

A thin translator: the request becomes the pipeline's chat request (`request.to_chat`), so it has
everything chat has (keys, limits, budgets, cache, fallback before the first content, usage rows,
metrics, cancellation); the answer is rendered as Anthropic's message or SSE events, errors in
Anthropic's shape. Anthropic's clients send their key as `x-api-key`, which the access guard takes
as well as a Bearer token.
"""

from __future__ import annotations

import logging

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from aigw.access.reserve import estimate_tokens
from aigw.api import sse
from aigw.api.anthropic.errors import error_payload, error_response
from aigw.api.anthropic.request import to_chat
from aigw.api.anthropic.response import event, message, stream_events
from aigw.api.body import read_json_object
from aigw.api.caller import caller_of
from aigw.api.deps import get_gateway
from aigw.api.headers import JSONBytes, fact_headers
from aigw.api.requestid import SCOPE_REQUEST_ID
from aigw.domain import ChatRequest, Native
from aigw.errors import AigwError, ServiceUnavailable

log = logging.getLogger("aigw.api.anthropic")
router = APIRouter()
_SHUTDOWN = ServiceUnavailable("aigw is shutting down")


def _own_headers(request: Request, dropped: list[str]) -> dict[str, str]:
    """Anthropic's SDKs read the request id from `request-id`; dropped hints are named."""
    headers = {"request-id": str(request.scope.get(SCOPE_REQUEST_ID, ""))}
    if dropped:
        headers["x-aigw-dropped"] = ", ".join(dropped)
    return headers


def _betas(request: Request) -> tuple[tuple[str, str], ...]:
    """The anthropic-beta header, forwarded to an Anthropic target."""
    beta = request.headers.get("anthropic-beta")
    return (("anthropic-beta", beta),) if beta else ()


def _failed(request: Request, e: AigwError) -> Response:
    if e.status_code >= 500:
        log.warning("%s: %s", type(e).__name__, e.message)
    response = error_response(e)
    response.headers["request-id"] = str(request.scope.get(SCOPE_REQUEST_ID, ""))
    return response


@router.post("/v1/messages")
@router.post("/messages", include_in_schema=False)
async def messages(request: Request) -> Response:
    try:
        gw = get_gateway(request)
        raw = await read_json_object(request.scope, request.receive, gw.config.server.max_body_bytes)
        t = to_chat(raw)
        model = t.body["model"]
        native = Native("anthropic", raw, _betas(request))
        req = ChatRequest(body=t.body, model=model, native=native, hint=t.hint)
        caller = caller_of(request)
        if req.stream:
            reply = await gw.stream(req, caller)
            first = await anext(reply.chunks, None)  # already here: a stream starts with content
            passed = first is not None and bool(first.native)
            own = _own_headers(request, [] if passed else t.dropped)
            body = stream_events(first, reply.chunks, model, estimate_tokens(t.body))
            aborted = event("error", {"type": "error", "error": error_payload(_SHUTDOWN)})
            return sse.SSEResponse(body, {**fact_headers(reply.facts), **own}, reply.abandon, aborted)
        answer = await gw.chat(req, caller)
        own = _own_headers(request, [] if answer.value.native is not None else t.dropped)
        return JSONBytes(orjson.dumps(message(answer.value, model)), {**fact_headers(answer.facts), **own})
    except AigwError as e:
        return _failed(request, e)


@router.post("/v1/messages/count_tokens")
@router.post("/messages/count_tokens", include_in_schema=False)
async def count_tokens(request: Request) -> Response:
    """The prompt's tokens: exact where the model's first target can count them (a local model's
    own tokenizer and chat template, Anthropic's counting endpoint), else estimated at about four
    characters a token (as the rate limiter reserves). Nothing is generated or charged."""
    try:
        gw = get_gateway(request)
        raw = await read_json_object(request.scope, request.receive, gw.config.server.max_body_bytes)
        t = to_chat({**raw, "max_tokens": 1})
        model = t.body["model"]
        native = Native("anthropic", raw, _betas(request))
        tokens = await gw.count_tokens(ChatRequest(t.body, model, native, t.hint), caller_of(request))
        if tokens is None:
            tools = t.body.get("tools")
            tokens = estimate_tokens(t.body) + (len(orjson.dumps(tools)) // 4 if tools else 0)
        return JSONBytes(orjson.dumps({"input_tokens": tokens}), _own_headers(request, []))
    except AigwError as e:
        return _failed(request, e)
