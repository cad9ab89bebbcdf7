"""POST /v1/embeddings."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from aigw.api.caller import caller_of
from aigw.api.deps import get_gateway
from aigw.api.headers import JSONBytes, fact_headers
from aigw.api.openai.schemas import EmbeddingRequest, read_request
from aigw.domain import EmbedRequest

router = APIRouter()


@router.post("/v1/embeddings")
@router.post("/embeddings", include_in_schema=False)
async def embeddings(request: Request) -> Response:
    gw = get_gateway(request)
    body = await read_request(request, EmbeddingRequest, gw.config.server.max_body_bytes)
    pinned = body.pop("provider", None)
    answer = await gw.embed(EmbedRequest(body=body, model=body["model"]), caller_of(request), provider=pinned)
    return JSONBytes(answer.wire(), fact_headers(answer.facts))
