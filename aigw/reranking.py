"""Reranking (/v1/rerank, the Cohere/Jina shape): provider-neutral request and response types.

A request keeps its validated wire body (`body`), so fields aigw does not know pass through to
upstreams that have a rerank endpoint; typed accessors serve providers that score themselves.
Whatever a provider returns, `conform` gives every answer the same shape: results sorted by
relevance (best first, ties by index), cut to `top_n`, each with its document's text when the
request asked for documents (the default) and without it otherwise.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aigw.domain import Usage

MAX_DOCUMENTS = 1000
"""The most documents one request may rank (Cohere's recommended ceiling): a cross-encoder reads
the query once per document, so a larger set is better split over several requests."""


def document_text(document: Any) -> str:
    """A document as its text: a string, or an object's `text` (as Jina and Cohere accept)."""
    if isinstance(document, dict):
        return str(document.get("text", ""))
    return str(document)


@dataclass(frozen=True, slots=True)
class RerankRequest:
    body: dict[str, Any]
    """The validated wire body as the client sent it, minus aigw's own fields."""
    model: str
    """The model name the upstream should see (set by model resolution)."""

    def with_model(self, model: str) -> RerankRequest:
        return RerankRequest(self.body, model)

    @property
    def query(self) -> str:
        return str(self.body["query"])

    @property
    def documents(self) -> list[str]:
        """Each document's text, in the request's order."""
        return [document_text(d) for d in self.body["documents"]]

    @property
    def top_n(self) -> int | None:
        v = self.body.get("top_n")
        return None if v is None else int(v)

    @property
    def return_documents(self) -> bool:
        """Whether each result carries its document (default true, as Jina's API)."""
        v = self.body.get("return_documents")
        return True if v is None else bool(v)


@dataclass(slots=True)
class RerankResponse:
    id: str
    model: str
    results: list[dict[str, Any]]
    """`{"index", "relevance_score"}` each, plus `"document": {"text"}` when asked for."""
    usage: Usage | None = None
    """The tokens read (a reranker generates nothing): prompt_tokens = total_tokens."""

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "model": self.model, "results": self.results}
        if self.usage is not None:
            out["usage"] = {"total_tokens": self.usage.total_tokens}
        return out

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> RerankResponse:
        """From aigw's own JSON (trusted: a cached answer, say)."""
        usage = d.get("usage")
        total = int(usage.get("total_tokens") or 0) if isinstance(usage, dict) else None
        return cls(
            str(d.get("id") or ""),
            str(d.get("model") or ""),
            list(d.get("results") or []),
            None if total is None else read_tokens(total),
        )


def read_tokens(n: int) -> Usage:
    """The usage of a rerank that read `n` tokens."""
    return Usage(prompt_tokens=n, completion_tokens=0, total_tokens=n)


def new_id() -> str:
    return f"rerank-{uuid.uuid4().hex}"


def ranked(req: RerankRequest, scores: Iterable[tuple[int, float]]) -> list[dict[str, Any]]:
    """Results from (index, score) pairs: best first (ties by index), cut to top_n, each with its
    document when the request asked for documents."""
    order = sorted(scores, key=lambda s: (-s[1], s[0]))
    if req.top_n is not None:
        order = order[: req.top_n]
    texts = req.documents if req.return_documents else None
    out: list[dict[str, Any]] = []
    for index, score in order:
        result: dict[str, Any] = {"index": index, "relevance_score": score}
        if texts is not None:
            result["document"] = {"text": texts[index]}
        out.append(result)
    return out


def conform(resp: RerankResponse, req: RerankRequest) -> RerankResponse:
    """The answer in the shape the request asked for, whatever the target gave (an upstream may
    ignore top_n, or return documents when they were not asked for, or omit them when they were).
    The results' indexes and scores were checked when the answer was read."""
    resp.results = ranked(req, ((int(r["index"]), float(r["relevance_score"])) for r in resp.results))
    return resp
