"""POST /v1/embeddings."""

from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from aigw.api.headers import JSONBytes, client_address, proxy_headers
from aigw.api.proxy import accept
from aigw.api.schemas import EmbeddingRequest
from aigw.domain import EmbedRequest
from aigw.errors import AigwError
from aigw.security.guard import SCOPE_KEY

router = APIRouter()


@router.post("/v1/embeddings")
@router.post("/embeddings", include_in_schema=False)
async def embeddings(request: Request) -> Response:
    t0 = time.perf_counter()
    inc = await accept(request, EmbeddingRequest)
    meter = inc.gateway.meter
    ticket = meter.admit(request.scope.get(SCOPE_KEY), client_address(request), inc.route, inc.body)
    try:
        result = await inc.gateway.router.embed(
            inc.route, EmbedRequest(body=inc.body, model=inc.body["model"])
        )
    except AigwError as e:
        meter.failed(ticket, e)
        raise
    except BaseException:
        meter.abandoned(ticket)
        raise
    overhead = time.perf_counter() - t0 - result.upstream_s
    meter.done(
        ticket, result.target, result.value.usage, overhead_s=overhead, fallbacks=result.trace.fallbacks
    )
    headers = proxy_headers(result.target, overhead, result.trace)
    headers.update(ticket.headers)
    return JSONBytes(orjson.dumps(result.value.to_wire()), headers)
