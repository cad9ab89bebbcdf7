"""Rerank answers of OpenAI-compatible servers that have a `/rerank` endpoint, read into aigw's
types. Pure functions.

vLLM, llama-server, Jina and Cohere (v2) agree on `results: [{"index", "relevance_score",
"document"?}]`; they differ in usage: `usage.total_tokens` (vLLM, Jina, llama-server, which adds
`prompt_tokens`) or Cohere's `meta.billed_units.input_tokens` / `meta.tokens.input_tokens`. An
upstream body is untrusted: a result without a valid index or a numeric score is an
`UpstreamProtocolError` (a 502), never a stray TypeError later on.
"""

from __future__ import annotations

import math
from typing import Any

from aigw.domain import Usage
from aigw.errors import UpstreamProtocolError
from aigw.reranking import RerankRequest, RerankResponse, new_id, read_tokens


def rerank_body(req: RerankRequest) -> dict[str, Any]:
    """What the upstream gets: the client's body with the upstream's model name, and documents
    as plain strings (which every rerank API accepts; objects only some)."""
    return {**req.body, "model": req.model, "documents": req.documents}


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value)


def _usage(data: dict[str, Any]) -> Usage | None:
    usage = data.get("usage")
    if isinstance(usage, dict):
        n = _count(usage.get("total_tokens"))
        n = n if n is not None else _count(usage.get("prompt_tokens"))
        if n is not None:
            return read_tokens(n)
    meta = data.get("meta")
    if isinstance(meta, dict):
        for part in ("billed_units", "tokens"):
            counts = meta.get(part)
            n = _count(counts.get("input_tokens")) if isinstance(counts, dict) else None
            if n is not None:
                return read_tokens(n)
    return None


def rerank_from_wire(provider: str, data: dict[str, Any], req: RerankRequest) -> RerankResponse:
    """The upstream's answer, checked: each result names one of the request's documents and
    scores it with a finite number."""

    def bad(why: str) -> UpstreamProtocolError:
        return UpstreamProtocolError(f"{provider}: malformed rerank response: {why}", provider=provider)

    items = data.get("results")
    if not isinstance(items, list):
        raise bad("no results")
    count = len(req.body["documents"])
    results: list[dict[str, Any]] = []
    seen: set[int] = set()
    for item in items:
        if not isinstance(item, dict):
            raise bad("a result is not an object")
        index, score = item.get("index"), item.get("relevance_score")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            raise bad(f"index {index!r:.40} is not one of the {count} documents")
        if index in seen:
            raise bad(f"index {index} appears twice")
        seen.add(index)
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            raise bad(f"relevance_score {score!r:.40} is not a number")
        results.append({"index": index, "relevance_score": float(score)})
    rid = data.get("id")
    model = data.get("model")
    return RerankResponse(
        rid if isinstance(rid, str) and rid else new_id(),
        model if isinstance(model, str) and model else req.model,
        results,
        _usage(data),
    )
