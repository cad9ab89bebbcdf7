"""Ollama's API on aigw's port: POST /api/chat, /api/generate, /api/embed, /api/embeddings.

Thin translators over the request pipeline, as the other dialects: keys, limits, budgets, cache,
fallback before the first content, usage rows and metrics apply; answers and errors are Ollama's
(NDJSON streams by default, `{"error": "..."}`). The model listing endpoints are in
aigw.api.ollama.models.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from aigw.api.body import read_json_object
from aigw.api.caller import caller_of
from aigw.api.deps import get_gateway
from aigw.api.headers import JSONBytes, fact_headers
from aigw.api.ollama import request as wire
from aigw.api.ollama.errors import error_response
from aigw.api.ollama.names import to_ollama
from aigw.api.ollama.ndjson import NDJSONResponse
from aigw.api.ollama.response import Clock, chat_answer, now_iso, stream_lines
from aigw.completion import CompletionRequest
from aigw.domain import ChatRequest, EmbedRequest
from aigw.errors import AigwError, InvalidRequest

log = logging.getLogger("aigw.api.ollama")
router = APIRouter()


def _failed(e: AigwError) -> Response:
    if e.status_code >= 500:
        log.warning("%s: %s", type(e).__name__, e.message)
    return error_response(e)


def _dropped(names: list[str]) -> dict[str, str]:
    return {"x-aigw-dropped": ", ".join(names)} if names else {}


async def _converse(request: Request, *, generate: bool) -> Response:
    clock = Clock()
    try:
        gw = get_gateway(request)
        raw = await read_json_object(request.scope, request.receive, gw.config.server.max_body_bytes)
        if wire.is_load_request(raw, "prompt" if generate else "messages"):
            return await _load(request, raw, generate=generate)
        completing = generate and wire.is_completion(raw)
        if completing:
            t = wire.generate_to_completion(raw)
        else:
            t = wire.generate_to_chat(raw) if generate else wire.chat_to_chat(raw)
        if raw.get("keep_alive") is not None:  # a local model's; a cloud API would refuse the field
            route = await gw.models.resolve(t.body["model"], None)
            if gw.serves_locally(route):
                t.body["keep_alive"] = raw["keep_alive"]
            else:
                t.drop("keep_alive")
        name = to_ollama(t.body["model"])
        caller = caller_of(request)
        if completing:
            completion = CompletionRequest(t.body, t.body["model"])
            return await _complete(request, completion, name, clock, t.dropped)
        req = ChatRequest(body=t.body, model=t.body["model"], hint=t.hint)
        if req.stream:
            reply = await gw.stream(req, caller)
            first = await anext(reply.chunks, None)
            body = stream_lines(first, reply.chunks, name, clock, generate=generate)
            headers = {**fact_headers(reply.facts), **_dropped(t.dropped)}
            return NDJSONResponse(body, headers, reply.abandon)
        answer = await gw.chat(req, caller)
        out = chat_answer(answer.value, name, clock, generate=generate)
        return JSONBytes(orjson.dumps(out), {**fact_headers(answer.facts), **_dropped(t.dropped)})
    except AigwError as e:
        return _failed(e)


async def _complete(
    request: Request, req: CompletionRequest, name: str, clock: Clock, dropped: list[str]
) -> Response:
    """/api/generate with a raw prompt or a suffix, answered by a legacy completion."""
    gw, caller = get_gateway(request), caller_of(request)
    if req.stream:
        reply = await gw.stream_complete(req, caller)
        first = await anext(reply.chunks, None)
        body = stream_lines(first, reply.chunks, name, clock, generate=True)
        return NDJSONResponse(body, {**fact_headers(reply.facts), **_dropped(dropped)}, reply.abandon)
    answer = await gw.complete(req, caller)
    out = chat_answer(answer.value, name, clock, generate=True)
    return JSONBytes(orjson.dumps(out), {**fact_headers(answer.facts), **_dropped(dropped)})


async def _load(request: Request, raw: dict[str, Any], *, generate: bool) -> Response:
    """An empty prompt loads a local model (keep_alive 0 unloads it), as Ollama's clients expect;
    a cloud model needs nothing."""
    gw = get_gateway(request)
    model = wire.model_of(raw)
    keep = wire.keep_alive_s(raw.get("keep_alive"))
    reason = "unload" if keep == 0 else "load"
    route = await gw.models.resolve(model, None)
    gw.models.check_allowed(caller_of(request).key, route)
    if gw.serves_locally(route):
        key = await gw.local_key(model)
        if reason == "unload":
            await gw.engine.unload(key)
        else:
            await gw.engine.load(key, keep)  # "keep_alive": -1 keeps it loaded
    out: dict[str, Any] = {"model": to_ollama(model), "created_at": now_iso()}
    out |= {"response": ""} if generate else {"message": {"role": "assistant", "content": ""}}
    return JSONBytes(orjson.dumps(out | {"done": True, "done_reason": reason}), {})


@router.post("/api/chat")
async def chat(request: Request) -> Response:
    return await _converse(request, generate=False)


@router.post("/api/generate")
async def generate(request: Request) -> Response:
    return await _converse(request, generate=True)


async def _embed(request: Request, field: str) -> tuple[str, list[list[float]], int, Clock]:
    clock = Clock()
    gw = get_gateway(request)
    raw = await read_json_object(request.scope, request.receive, gw.config.server.max_body_bytes)
    model = wire.model_of(raw)
    given = raw.get(field)
    if given in (None, "", []):  # nothing to embed: a load, as Ollama's clients use it
        route = await gw.models.resolve(model, None)
        gw.models.check_allowed(caller_of(request).key, route)
        if gw.serves_locally(route):
            await gw.engine.load(await gw.local_key(model))
        return to_ollama(model), [], 0, clock
    inputs = [given] if isinstance(given, str) else given
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise InvalidRequest(f"{field} must be a string or an array of strings", param=field)
    body: dict[str, Any] = {"model": model, "input": inputs}
    if raw.get("dimensions") is not None:  # changes the vectors: the target honours it or refuses
        body["dimensions"] = raw["dimensions"]
    answer = await gw.embed(EmbedRequest(body=body, model=model), caller_of(request))
    vectors = [list(d["embedding"]) for d in answer.value.data]
    usage = answer.value.usage
    return to_ollama(model), vectors, usage.prompt_tokens if usage is not None else 0, clock


@router.post("/api/embed")
async def embed(request: Request) -> Response:
    try:
        name, vectors, tokens, clock = await _embed(request, "input")
        stats = clock.stats(None)
        out = {"model": name, "embeddings": vectors, "total_duration": stats["total_duration"]}
        out |= {"load_duration": 0, "prompt_eval_count": tokens}
        return JSONBytes(orjson.dumps(out), {})
    except AigwError as e:
        return _failed(e)


@router.post("/api/embeddings")
async def embeddings(request: Request) -> Response:
    """The older endpoint: one `prompt`, one `embedding`."""
    try:
        _, vectors, _, _ = await _embed(request, "prompt")
        return JSONBytes(orjson.dumps({"embedding": vectors[0] if vectors else []}), {})
    except AigwError as e:
        return _failed(e)
