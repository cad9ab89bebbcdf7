"""POST /v1/rerank (also /rerank, and Cohere's path /v2/rerank): the Cohere/Jina request and answer.

    {"model", "query": "...", "documents": ["...", {"text": "..."}], "top_n": 3, "return_documents": true}
    -> {"id": "rerank-...", "model", "results": [{"index", "relevance_score", "document": {"text"}}],
        "usage": {"total_tokens"}}

Results come best first, cut to `top_n`; `document` is left out when `return_documents` is false
(default true, as Jina's API; on every path, Cohere's too). Fields aigw does not know pass through
to upstreams with a rerank endpoint; a local reranker refuses them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from aigw.api.caller import caller_of
from aigw.api.deps import get_gateway
from aigw.api.headers import JSONBytes, fact_headers
from aigw.api.openai.schemas import read_request
from aigw.errors import InvalidRequest, quoted
from aigw.reranking import MAX_DOCUMENTS, RerankRequest

router = APIRouter()


class RerankBody(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(min_length=1)
    query: str = Field(min_length=1)
    documents: list[str | dict[str, Any]]
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool | None = None
    user: str | None = None
    provider: str | None = Field(default=None, min_length=1)


def check_documents(documents: list[Any]) -> None:
    """Some documents, not too many, each a string or an object with a string `text` (and
    nothing else: no field is silently ignored)."""
    if not documents:
        raise InvalidRequest("'documents' must not be empty", param="documents")
    if len(documents) > MAX_DOCUMENTS:
        raise InvalidRequest(
            f"'documents' has {len(documents)} documents; aigw ranks at most {MAX_DOCUMENTS} in one "
            "request (split them over several)",
            param="documents",
        )
    for i, d in enumerate(documents):
        if not isinstance(d, dict):
            continue
        if not isinstance(d.get("text"), str):
            raise InvalidRequest(f"documents[{i}] needs a string 'text'", param=f"documents[{i}].text")
        other = next((k for k in d if k != "text"), None)
        if other is not None:
            raise InvalidRequest(
                f"documents[{i}] has {quoted(other)}: a document object takes only 'text'",
                param=f"documents[{i}]",
            )


@router.post("/v1/rerank")
@router.post("/v2/rerank")
@router.post("/rerank", include_in_schema=False)
async def rerank(request: Request) -> Response:
    gw = get_gateway(request)
    body = await read_request(request, RerankBody, gw.config.server.max_body_bytes)
    check_documents(body["documents"])
    pinned = body.pop("provider", None)
    answer = await gw.rerank(RerankRequest(body, body["model"]), caller_of(request), provider=pinned)
    return JSONBytes(answer.wire(), fact_headers(answer.facts))
