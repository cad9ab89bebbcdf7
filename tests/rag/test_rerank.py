"""A RAG search re-ranked by a cross-encoder, in process: the real MiniLM retrieves, a tiny real
cross-encoder re-ranks through the gateway's pipeline, and the order is exactly what
CrossEncoder.predict gives on the retrieved chunks."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from aigw.config import Config, ProviderConfig
from aigw.gateway.call import Caller
from aigw.gateway.gateway import Gateway
from aigw.gateway.rag import candidates, source
from aigw.local.cross_encoder.provider import CrossEncoderProvider
from aigw.rag.embed import LazyEmbedder, SentenceTransformerEmbedder
from aigw.rag.index import Document
from aigw.rag.service import RagService
from tests.fixtures.tiny_cross_encoder import write_tiny_cross_encoder

TOPICS = ["keys", "pasta", "roses", "trains", "clouds", "tea", "chess", "rivers", "bread", "owls"]
NOTES = [
    (f"/notes/{topic}-{i}.md", f"# {topic.title()} {i}\n\nNote {i} about {topic}: " + f"{topic} " * (i + 1))
    for topic in TOPICS
    for i in range(3)
]  # 30 files of one chunk each: more than a re-ranked search of 3 retrieves (20)


def test_a_search_is_re_ranked_in_the_cross_encoders_order(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    from sentence_transformers import CrossEncoder

    model_dir = write_tiny_cross_encoder(tmp_path / "tiny-rr")
    reference = CrossEncoder(str(model_dir), device="cpu")
    service = RagService(tmp_path / "rag.db", "all-MiniLM-L6-v2")
    service._embedder = LazyEmbedder("all-MiniLM-L6-v2", loader=lambda _: embedder)
    cfg = Config.model_validate({"providers": {"rr": ProviderConfig(type="cross_encoder")}})
    gw = Gateway(cfg, {"rr": CrossEncoderProvider("rr", {"tiny": model_dir})}, rag=service)
    caller = Caller(None, "127.0.0.1", dialect="rag")
    question = "which note talks about rotating keys?"

    async def scenario() -> None:
        docs = [Document(p, "markdown", t, hashlib.sha256(t.encode()).hexdigest()) for p, t in NOTES]
        await gw.rag_desk.index(caller, "notes", docs, [], None)
        pool = await gw.rag_desk.search(caller, "notes", question, candidates(3))
        assert len(pool) == 20 and all(h.rerank_score is None for h in pool)
        scores = reference.predict([(question, h.ranked_text) for h in pool], show_progress_bar=False)
        best = sorted(range(len(pool)), key=lambda i: -float(scores[i]))[:3]

        hits = await gw.rag_desk.search(caller, "notes", question, 3, rerank="rr/tiny")
        assert [h.path for h in hits] == [pool[i].path for i in best]
        assert [h.rerank_score for h in hits] == pytest.approx([float(scores[i]) for i in best], abs=1e-5)
        assert [h.score for h in hits] == [pool[i].score for i in best]  # the cosine is kept
        assert hits[0].ranked_text.startswith(hits[0].heading + "\n\n")
        assert source(1, hits[0])["rerank_score"] == round(float(scores[best[0]]), 6)
        assert "rerank_score" not in source(1, pool[0])
        assert [r.target for r in gw.meter.recent if r.provider == "rr"] == ["rr/tiny"]  # via the pipeline
        await gw.aclose()

    asyncio.run(scenario())
