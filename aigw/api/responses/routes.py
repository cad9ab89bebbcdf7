"""POST /v1/responses (whole or streamed), GET and DELETE /v1/responses/{id}.

A translator over the pipeline, like /v1/messages: the request becomes a chat request
(`request.to_chat`) with everything chat has; the answer is a Response object or its events.
`store` (on unless false) keeps the response and its conversation in aigw's database, so
`previous_response_id` continues it on any target; a stored response belongs to its key.
Errors are OpenAI's error objects, as for every /v1 endpoint of OpenAI's.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from aigw.api import sse
from aigw.api.body import read_json_object
from aigw.api.caller import caller_of
from aigw.api.deps import get_gateway
from aigw.api.headers import JSONBytes, fact_headers
from aigw.api.responses.render import Shell, as_messages, new_id, output_of, relay_native, stream_events
from aigw.api.responses.request import native_body, to_chat
from aigw.api.sse import chain
from aigw.domain import ChatRequest, Native
from aigw.errors import AigwError, InvalidRequest, quoted
from aigw.gateway.call import Caller
from aigw.gateway.gateway import Gateway
from aigw.state.responses import StoredResponses

router = APIRouter()


class ResponseNotFound(AigwError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


def _store(gw: Gateway) -> StoredResponses:
    if gw.stored is None:
        raise ResponseNotFound("This gateway keeps no responses (it has no database)")
    return gw.stored


def _history(gw: Gateway, raw: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
    prev = raw.get("previous_response_id")
    if prev is None:
        return []
    if not isinstance(prev, str) or not prev:
        raise InvalidRequest("Invalid value for 'previous_response_id'", param="previous_response_id")
    key_id = caller.key.id if caller.key is not None else None
    found = _store(gw).messages(prev, key_id, caller.admin)
    if found is None:
        raise ResponseNotFound(f"Previous response with id {quoted(prev)} not found.")
    return found


@router.post("/v1/responses")
@router.post("/responses", include_in_schema=False)
async def create(request: Request) -> Response:
    gw = get_gateway(request)
    raw = await read_json_object(request.scope, request.receive, gw.config.server.max_body_bytes)
    t = to_chat(raw)
    caller = caller_of(request)
    history = _history(gw, raw, caller)
    turn = history + t.body["messages"]
    system = [{"role": "system", "content": "\n\n".join(t.system)}] if t.system else []
    model = t.body["model"]
    native = Native("responses", native_body(raw, history))
    req = ChatRequest({**t.body, "messages": system + turn}, model, native, t.hint)
    shell = Shell(new_id("resp"), model, raw)
    keep = raw.get("store") is not False and gw.stored is not None
    key_id = caller.key.id if caller.key is not None else None
    dropped = {"x-aigw-dropped": ", ".join(t.dropped)} if t.dropped else {}

    def save(output: list[dict[str, Any]], response: dict[str, Any]) -> None:
        if keep and gw.stored is not None:
            rid = str(response.get("id") or shell.rid)  # a passed-through answer keeps its own id
            gw.stored.put(rid, key_id, turn + as_messages(output), response)

    def save_native(response: dict[str, Any]) -> None:
        save(list(response.get("output") or []), response)

    if req.stream:
        reply = await gw.stream(req, caller)
        first = await anext(reply.chunks, None)  # already here: a stream starts with content
        if first is not None and first.native:
            events = relay_native(first, reply.chunks, save_native)
            return sse.SSEResponse(events, fact_headers(reply.facts), reply.abandon)
        events = stream_events(chain(first, reply.chunks), shell, save)
        return sse.SSEResponse(events, {**fact_headers(reply.facts), **dropped}, reply.abandon)
    answer = await gw.chat(req, caller)
    if answer.value.native is not None:
        save_native(answer.value.native)
        return JSONBytes(orjson.dumps(answer.value.native), fact_headers(answer.facts))
    output, status = output_of(answer.value)
    response = shell.response(status, output, answer.value.usage)
    save(output, response)
    return JSONBytes(orjson.dumps(response), {**fact_headers(answer.facts), **dropped})


@router.get("/v1/responses/{response_id}")
@router.get("/responses/{response_id}", include_in_schema=False)
async def retrieve(response_id: str, request: Request) -> Response:
    gw = get_gateway(request)
    caller = caller_of(request)
    found = _store(gw).response(response_id, caller.key.id if caller.key else None, caller.admin)
    if found is None:
        raise ResponseNotFound(f"Response with id {quoted(response_id)} not found.")
    return JSONBytes(orjson.dumps(found), {})


@router.delete("/v1/responses/{response_id}")
@router.delete("/responses/{response_id}", include_in_schema=False)
async def delete(response_id: str, request: Request) -> Response:
    gw = get_gateway(request)
    caller = caller_of(request)
    if not _store(gw).delete(response_id, caller.key.id if caller.key else None, caller.admin):
        raise ResponseNotFound(f"Response with id {quoted(response_id)} not found.")
    return JSONBytes(orjson.dumps({"id": response_id, "object": "response.deleted", "deleted": True}), {})
