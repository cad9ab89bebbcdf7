"""Rerank answers of OpenAI-compatible upstreams (vLLM, llama-server, Jina, Cohere v2), read and
checked; and what the upstream is sent."""

from __future__ import annotations

from typing import Any

import pytest

from aigw.errors import UpstreamProtocolError
from aigw.providers.openai.rerank import rerank_body, rerank_from_wire
from aigw.reranking import RerankRequest, conform

REQ = RerankRequest(
    {"model": "alias", "query": "q", "documents": ["a", {"text": "b"}, "c"], "top_n": 2, "x": 1}, "up-model"
)


def test_the_upstream_gets_its_model_and_plain_string_documents() -> None:
    sent = {"model": "up-model", "query": "q", "documents": ["a", "b", "c"], "top_n": 2, "x": 1}
    assert rerank_body(REQ) == sent


@pytest.mark.parametrize(
    ("answer", "tokens"),
    [
        # vLLM / Jina: usage.total_tokens, documents back
        ({"id": "rerank-v", "model": "m", "usage": {"total_tokens": 9},
          "results": [{"index": 2, "relevance_score": 0.2, "document": {"text": "c"}},
                      {"index": 0, "relevance_score": 0.8, "document": {"text": "a"}}]}, 9),
        # llama-server: prompt_tokens too
        ({"model": "m", "object": "list", "usage": {"prompt_tokens": 7, "total_tokens": 7},
          "results": [{"index": 0, "relevance_score": 0.8}, {"index": 2, "relevance_score": 0.2}]}, 7),
        # Cohere v2: meta, no usage
        ({"id": "c0", "results": [{"index": 0, "relevance_score": 0.8}, {"index": 2, "relevance_score": 0.2}],
          "meta": {"billed_units": {"search_units": 1}, "tokens": {"input_tokens": 5}}}, 5),
        ({"results": [{"index": 0, "relevance_score": 1}, {"index": 2, "relevance_score": 0}]}, None),
    ],
)  # fmt: skip
def test_each_servers_answer_is_read_into_one_shape(answer: dict[str, Any], tokens: int | None) -> None:
    resp = conform(rerank_from_wire("up", answer, REQ), REQ)
    assert [r["index"] for r in resp.results] == [0, 2]  # best first, cut to top_n
    assert all(isinstance(r["relevance_score"], float) for r in resp.results)
    assert resp.results[0]["relevance_score"] > resp.results[1]["relevance_score"]
    assert [r["document"]["text"] for r in resp.results] == ["a", "c"]
    assert (resp.usage.total_tokens if resp.usage else None) == tokens
    assert resp.id and resp.model


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"results": "no"},
        {"results": [1]},
        {"results": [{"index": 3, "relevance_score": 0.1}]},
        {"results": [{"index": -1, "relevance_score": 0.1}]},
        {"results": [{"index": True, "relevance_score": 0.1}]},
        {"results": [{"index": 0, "relevance_score": "high"}]},
        {"results": [{"index": 0, "relevance_score": float("nan")}]},
        {"results": [{"index": 0, "relevance_score": 0.1}, {"index": 0, "relevance_score": 0.2}]},
    ],
)
def test_a_malformed_answer_is_a_protocol_error(answer: dict[str, Any]) -> None:
    with pytest.raises(UpstreamProtocolError, match="up: malformed rerank response"):
        rerank_from_wire("up", answer, REQ)
