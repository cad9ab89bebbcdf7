"""/v1/rag/*: index documents, search a collection, answer from it, figures, removal.

The daemon owns the embedding model and the writes (aigw/rag/service.py); the CLI walks folders
and sends the documents. `POST /v1/rag/query` retrieves, then asks a chat model with the numbered
chunks in its prompt, and returns an OpenAI chat completion (or SSE stream) plus its `sources`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from aigw.api import sse
from aigw.api.caller import caller_of
from aigw.api.deps import GatewayDep
from aigw.api.headers import JSONBytes, fact_headers
from aigw.api.openai.chat import events
from aigw.errors import InvalidRequest
from aigw.gateway.call import StreamReply
from aigw.gateway.rag import RagQuery
from aigw.rag.index import Document
from aigw.rag.walk import FileKind

router = APIRouter(prefix="/v1/rag")

_STRICT = ConfigDict(extra="forbid", strict=True)
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
CollectionName = Field(default="default", pattern=_NAME)
UsedCollection = Field(default=None, pattern=_NAME)
"""Search and query without a collection use the default one (aigw.rag.service.default_collection)."""


class DocumentIn(BaseModel):
    model_config = _STRICT
    path: str = Field(min_length=1, max_length=4096)
    kind: FileKind
    text: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(default=0, ge=0)
    mtime: float = Field(default=0.0, ge=0)


class IndexIn(BaseModel):
    model_config = _STRICT
    collection: str = CollectionName
    model: str | None = Field(default=None, min_length=1)
    """A new collection's embedding model: the daemon's own (default) or a provider's, e.g.
    "openai/text-embedding-3-small". An existing collection keeps its own."""
    documents: list[DocumentIn] = Field(default_factory=list, max_length=10_000)
    remove: list[str] = Field(default_factory=list, max_length=100_000)


Reranker = Field(default=None, min_length=1)
"""A reranker (a model /v1/rerank serves) that re-ranks the retrieved chunks (aigw.gateway.rag)."""


class SearchIn(BaseModel):
    model_config = _STRICT
    query: str = Field(min_length=1)
    collection: str | None = UsedCollection
    k: int | None = Field(default=None, ge=1, le=100)
    rerank: str | None = Reranker


class QueryIn(BaseModel):
    model_config = _STRICT
    query: str | None = Field(default=None, min_length=1)
    messages: list[dict[str, Any]] | None = Field(default=None, min_length=1)
    collection: str | None = UsedCollection
    k: int | None = Field(default=None, ge=1, le=50)
    model: str | None = Field(default=None, min_length=1)
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)
    rerank: str | None = Reranker




def hit_dict(hit: Any) -> dict[str, Any]:
    """A hit's fields (floats rounded); `rerank_score` only when the search was re-ranked."""
    fields = dataclasses.asdict(hit)
    if fields.get("rerank_score") is None:
        fields.pop("rerank_score", None)
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in fields.items()}


@router.post("/index")
async def index(body: IndexIn, request: Request, gw: GatewayDep) -> dict[str, Any]:
    docs = [Document(d.path, d.kind, d.text, d.sha256, d.size, d.mtime) for d in body.documents]
    s = await gw.rag_desk.index(caller_of(request), body.collection, docs, body.remove, body.model)
    return {
        "collection": s.collection,
        "indexed": s.indexed,
        "unchanged": s.unchanged,
        "removed": s.removed,
        "chunks": s.chunks,
        "seconds": s.seconds,
        "notes": [{"path": n.path, "note": n.reason} for n in s.skipped],
    }


@router.get("/collections/{name}/files")
async def files(name: str, request: Request, gw: GatewayDep) -> dict[str, Any]:
    """Each indexed file's sha256 (the CLI sends only what changed); empty for a new collection."""
    return {"collection": name, "files": await gw.rag_desk.files(caller_of(request), name)}


@router.post("/search")
async def search(body: SearchIn, request: Request, gw: GatewayDep) -> dict[str, Any]:
    hits = await gw.rag_desk.search(caller_of(request), body.collection, body.query, body.k, body.rerank)
    return {"object": "list", "collection": body.collection, "data": [hit_dict(h) for h in hits]}


@router.post("/query")
async def query(body: QueryIn, request: Request, gw: GatewayDep) -> Response:
    """Retrieve, then answer with a chat model: an OpenAI chat completion (or SSE stream) plus the
    `sources` its [n] citations refer to; a stream's first chunk carries them and no choices."""
    if (body.query is None) == (body.messages is None):
        raise InvalidRequest("give either 'query' or 'messages'", param="query")
    messages = body.messages or [{"role": "user", "content": body.query}]
    q = RagQuery(body.collection, messages, body.k, body.model, body.stream, body.temperature, body.rerank)
    grounded = await gw.rag_desk.answer(caller_of(request), q)
    reply = grounded.answer
    if isinstance(reply, StreamReply):
        first = {"id": "rag-sources", "object": "chat.completion.chunk", "created": int(time.time())}
        first.update(model=reply.facts.target.model, choices=[], sources=grounded.sources)

        async def with_sources() -> AsyncGenerator[bytes, None]:
            yield sse.event(first)
            async with aclosing(events(reply, include_usage=False)) as rest:
                async for data in rest:
                    yield data

        return sse.SSEResponse(with_sources(), fact_headers(reply.facts), reply.abandon)
    wire = reply.value.to_wire()
    wire["sources"] = grounded.sources
    return JSONBytes(orjson.dumps(wire), fact_headers(reply.facts))


@router.get("/stats")
async def stats(request: Request, gw: GatewayDep) -> dict[str, Any]:
    desk = gw.rag_desk
    collections = [dataclasses.asdict(s) for s in await desk.stats(caller_of(request))]
    rag = desk.service
    return {"model": rag.model, "model_loaded": rag.model_loaded, "collections": collections}


@router.delete("/collections/{name}")
async def remove(name: str, request: Request, gw: GatewayDep) -> dict[str, Any]:
    return {"collection": name, "deleted": await gw.rag_desk.drop(caller_of(request), name)}
