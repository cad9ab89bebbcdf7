"""POST /v1/embeddings."""

from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from aigw.api.headers import JSONBytes, proxy_headers
from aigw.api.proxy import accept
from aigw.api.schemas import EmbeddingRequest
from aigw.domain import EmbedRequest

router = APIRouter()


@router.post("/v1/embeddings")
@router.post("/embeddings", include_in_schema=False)
async def embeddings(request: Request) -> Response:
    t0 = time.perf_counter()
    inc = await accept(request, EmbeddingRequest)
    result = await inc.gateway.router.embed(inc.route, EmbedRequest(body=inc.body, model=inc.body["model"]))
    headers = proxy_headers(result.target, time.perf_counter() - t0 - result.upstream_s, result.trace)
    return JSONBytes(orjson.dumps(result.value.to_wire()), headers)
