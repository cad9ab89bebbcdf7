"""POST /v1/embeddings."""

from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from aigw.api.cached import from_cache
from aigw.api.guard import SCOPE_KEY
from aigw.api.headers import JSONBytes, client_address, proxy_headers
from aigw.api.openai.schemas import EmbeddingRequest
from aigw.api.proxy import accept
from aigw.domain import EmbedRequest
from aigw.errors import AigwError

router = APIRouter()


@router.post("/v1/embeddings")
@router.post("/embeddings", include_in_schema=False)
async def embeddings(request: Request) -> Response:
    t0 = time.perf_counter()
    inc = await accept(request, EmbeddingRequest)
    meter = inc.gateway.meter
    ticket = meter.admit(request.scope.get(SCOPE_KEY), client_address(request), inc.route, inc.body)
    cache = inc.gateway.cache
    key_id = ticket.key.id if ticket.key is not None else None
    plan = cache.plan("embed", inc.route, inc.body, request.headers.get("cache-control"), key_id)
    try:
        if plan.decision.lookup and (found := await cache.lookup(plan)) is not None:
            return from_cache(found, meter, ticket, t0, stream=False, include_usage=False)
        result = await inc.gateway.router.embed(
            inc.route, EmbedRequest(body=inc.body, model=inc.body["model"])
        )
    except AigwError as e:
        plan.publish(None)
        meter.failed(ticket, e)
        raise
    except BaseException:
        plan.publish(None)
        meter.abandoned(ticket)
        raise
    overhead = time.perf_counter() - t0 - result.upstream_s
    payload = orjson.dumps(result.value.to_wire())
    if plan.decision.store:
        cache.save(plan, result.target, payload, result.value.usage)
    meter.done(
        ticket,
        result.target,
        result.value.usage,
        overhead_s=overhead,
        fallbacks=result.trace.fallbacks,
        cache=plan.status,
    )
    headers = proxy_headers(result.target, overhead, result.trace, plan.status)
    headers.update(ticket.headers)
    return JSONBytes(payload, headers)
