"""POST /v1/embeddings."""

from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from aigw.api.body import read_json_object
from aigw.api.deps import get_gateway
from aigw.api.errors import invalid_request_from_validation
from aigw.api.headers import proxy_headers
from aigw.api.schemas import EmbeddingRequest
from aigw.domain import EmbedRequest

router = APIRouter()


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    t0 = time.perf_counter()
    gw = get_gateway(request)
    body = await read_json_object(request, gw.config.server.max_body_bytes)
    try:
        EmbeddingRequest.model_validate(body)
    except ValidationError as e:
        raise invalid_request_from_validation(e) from None
    pinned = body.pop("provider", None)
    route = await gw.resolve(body["model"], pinned)
    result = await gw.router.embed(route, EmbedRequest(body=body, model=body["model"]))
    headers = proxy_headers(result.target, time.perf_counter() - t0 - result.upstream_s)
    return Response(orjson.dumps(result.value.to_wire()), media_type="application/json", headers=headers)
