"""RAG as callers use it: every operation on behalf of a caller.

Each operation sees only the collections its caller may (`aigw.rag.owners`), and every embedding
it makes (the chunks it indexes, a search's question) goes through the pipeline on the caller's
account: admitted (the key's models, budget, rate limits), charged and logged like a
/v1/embeddings request. Answers grounded in a collection retrieve, put the numbered chunks in the
system prompt, and ask a chat model through the pipeline the same way, returning the answer with
the `sources` its numbers refer to.

A search (or an answer) may be re-ranked by a reranker (`rerank`: a model /v1/rerank serves): it
retrieves `candidates(k)` chunks, has the reranker score them through the pipeline on the
caller's account (a rerank request like any other), and keeps the k it ranks best, in its order,
each with its `rerank_score`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from aigw.config import Config
from aigw.domain import ChatRequest, ChatResponse, EmbedRequest
from aigw.errors import InvalidRequest, ServiceUnavailable
from aigw.gateway.call import Answer, Caller, StreamReply
from aigw.gateway.pipeline import Pipeline
from aigw.rag.owners import ADMIN, Viewer
from aigw.rag.remote import EmbedCall
from aigw.rag.service import RagService
from aigw.reranking import RerankRequest

if TYPE_CHECKING:
    from aigw.rag.index import Document, IndexSummary
    from aigw.rag.store import CollectionStats, Hit

INSTRUCTIONS = (
    "Answer using only the numbered sources below. Cite the sources you use with their numbers in "
    "square brackets, like [1] or [2][3], right after the statements they support. If the sources "
    "do not contain the answer, say so plainly."
)


@dataclass(frozen=True, slots=True)
class RagQuery:
    collection: str | None
    """None: the default collection (`aigw.rag.service.default_collection`)."""
    messages: list[dict[str, Any]]
    """The conversation; its last user message with text is what is searched for."""
    k: int | None = None
    model: str | None = None
    stream: bool = False
    temperature: float | None = None
    rerank: str | None = None
    """A reranker to re-rank the retrieved chunks with (None: the embedding's order)."""


@dataclass(slots=True)
class Grounded:
    """An answer and the sources its [n] citations refer to."""

    sources: list[dict[str, Any]]
    answer: Answer[ChatResponse] | StreamReply


def prompt(hits: list[Any]) -> str:
    parts = [INSTRUCTIONS, ""]
    for i, h in enumerate(hits, 1):
        where = f"{h.path}" + (f" — {h.heading}" if h.heading else "")
        parts.append(f"[{i}] {where}\n{h.content.strip()}\n")
    return "\n".join(parts)


def _question(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user" and isinstance(m.get("content"), str) and m["content"].strip():
            return str(m["content"])
    raise InvalidRequest("the messages have no user message with text to search for", param="messages")


def candidates(k: int) -> int:
    """How many chunks a re-ranked search retrieves to keep k: the reranker reads more than the
    embedding would keep, or re-ranking could only reorder what was already chosen."""
    return max(k * 4, 20)


def viewer_of(caller: Caller) -> Viewer:
    if caller.admin:
        return ADMIN
    if caller.key is None:
        return Viewer(None)
    return Viewer(caller.key.id, granted=frozenset(caller.key.collections))


class RagDesk:
    """The RAG operations of the API, each for one caller."""

    def __init__(self, service: RagService | None, pipeline: Pipeline, config: Config) -> None:
        self._service = service
        self._pipeline = pipeline
        self._config = config

    @property
    def service(self) -> RagService:
        if self._service is None:
            raise ServiceUnavailable("RAG is not available in this daemon")
        return self._service

    def _via(self, caller: Caller, *, store: bool) -> EmbedCall:
        """Embeddings through the pipeline on `caller`'s account (an index's batches are not
        worth a place in the answer cache; a search's question may be asked again)."""
        on_account = replace(caller, cache_control=None if store else "no-store", gone=None)
        pipeline = self._pipeline

        async def via(model: str, texts: list[str]) -> list[list[float]]:
            answer = await pipeline.embed(EmbedRequest({"model": model, "input": texts}, model), on_account)
            data = sorted(answer.value.data, key=lambda d: int(d.get("index", 0)))
            return [list(d["embedding"]) for d in data]

        return via

    async def index(
        self,
        caller: Caller,
        collection: str,
        documents: Sequence[Document],
        remove: Sequence[str],
        model: str | None,
    ) -> IndexSummary:
        return await self.service.index(
            collection,
            documents,
            remove,
            model,
            viewer=viewer_of(caller),
            via=self._via(caller, store=False),
        )

    async def files(self, caller: Caller, collection: str) -> dict[str, str]:
        return await self.service.file_hashes(collection, viewer_of(caller))

    async def search(
        self, caller: Caller, collection: str | None, query: str, k: int | None, rerank: str | None = None
    ) -> list[Hit]:
        """The k chunks nearest `query`; with `rerank`, the k of `candidates(k)` the reranker ranks best."""
        k = k or self._config.rag.top_k
        hits = await self.service.search(
            collection,
            query,
            k if rerank is None else candidates(k),
            viewer=viewer_of(caller),
            via=self._via(caller, store=True),
        )
        if rerank is None or not hits:
            return hits
        return await self._reranked(caller, rerank, query, hits, k)

    async def _reranked(self, caller: Caller, model: str, query: str, hits: list[Hit], k: int) -> list[Hit]:
        texts = [h.ranked_text for h in hits]
        body = {"model": model, "query": query, "documents": texts, "top_n": k, "return_documents": False}
        on_account = replace(caller, cache_control=None, gone=None)
        answer = await self._pipeline.rerank(RerankRequest(body, model), on_account)
        return [
            replace(hits[r["index"]], rerank_score=float(r["relevance_score"]))
            for r in answer.value.results
        ]

    async def stats(self, caller: Caller) -> list[CollectionStats]:
        return await self.service.stats(viewer_of(caller))

    async def drop(self, caller: Caller, collection: str) -> bool:
        return await self.service.drop(collection, viewer_of(caller))

    async def answer(self, caller: Caller, q: RagQuery) -> Grounded:
        return await rag_answer(self, self._pipeline, self._config, q, caller)


def source(n: int, hit: Hit) -> dict[str, Any]:
    """What an answer's [n] refers to."""
    out: dict[str, Any] = {
        "n": n,
        "path": hit.path,
        "heading": hit.heading,
        "score": round(hit.score, 6),
        "lines": [hit.start_line, hit.end_line],
    }
    if hit.rerank_score is not None:
        out["rerank_score"] = round(hit.rerank_score, 6)
    return out


async def rag_answer(
    desk: RagDesk, pipeline: Pipeline, config: Config, q: RagQuery, caller: Caller
) -> Grounded:
    hits = await desk.search(caller, q.collection, _question(q.messages), q.k, q.rerank)
    sources = [source(i, h) for i, h in enumerate(hits, 1)]
    model = q.model or config.rag.chat_model or config.chat.default_model
    if model is None:
        raise InvalidRequest(
            "no chat model: pass 'model', or set [rag] chat_model in the config", param="model"
        )
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": prompt(hits)}, *q.messages],
        "stream": q.stream,
    }
    if q.temperature is not None:
        body["temperature"] = q.temperature
    req = ChatRequest(body=body, model=model)
    if q.stream:
        return Grounded(sources, await pipeline.stream(req, caller))
    return Grounded(sources, await pipeline.chat(req, caller))
