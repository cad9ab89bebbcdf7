"""Search and query without a collection: the only one, else the one indexed last; none, a line
saying how to make one; an unknown name lists the collections there are."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from aigw.daemon.client import _chat_call
from aigw.rag.embed import LazyEmbedder, SentenceTransformerEmbedder
from aigw.rag.errors import CollectionNotFound
from aigw.rag.index import Document
from aigw.rag.owners import ADMIN, Viewer
from aigw.rag.service import RagService, default_collection
from aigw.rag.store import CollectionStats


def stats(name: str, created: float, indexed: float | None) -> CollectionStats:
    return CollectionStats(name, "m", 8, 1, 1, 1, 1, created, indexed)


def test_the_only_collection_is_the_default() -> None:
    assert default_collection([stats("docs", 1.0, None)]) == "docs"


def test_else_the_one_indexed_last() -> None:
    older, newer = stats("docs", 1.0, 50.0), stats("notes", 2.0, 10.0)
    assert default_collection([older, newer]) == "docs"
    made_since = stats("fresh", 60.0, None)  # made after docs' last index, nothing in it yet
    assert default_collection([older, newer, made_since]) == "fresh"


def test_none_at_all_says_how_to_make_one() -> None:
    with pytest.raises(CollectionNotFound) as err:
        default_collection([])
    assert "aigw rag index" in err.value.message and err.value.status_code == 404


def doc(path: str, text: str) -> Document:
    return Document(path, "markdown", text, hashlib.sha256(text.encode()).hexdigest())


def test_the_service_searches_the_default_collection_and_lists_the_known_ones(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    service = RagService(tmp_path / "rag.db", "all-MiniLM-L6-v2")
    service._embedder = LazyEmbedder("all-MiniLM-L6-v2", loader=lambda _: embedder)

    async def via(model: str, texts: list[str]) -> list[list[float]]:
        return [v.tolist() for v in embedder.embed(texts)]

    async def scenario() -> None:
        with pytest.raises(CollectionNotFound, match="aigw rag index"):
            await service.search(None, "roses", 3, viewer=ADMIN, via=via)
        roses = doc("/g/roses.md", "# Roses\n\nPrune roses in late winter.\n")
        await service.index("garden", [roses], [], None, viewer=ADMIN, via=via)
        only = await service.search(None, "pruning", 3, viewer=ADMIN, via=via)
        assert [h.path for h in only] == ["/g/roses.md"]
        pasta = doc("/k/pasta.md", "# Pasta\n\nBoil pasta for nine minutes.\n")
        await service.index("kitchen", [pasta], [], None, viewer=Viewer("key1"), via=via)
        latest = await service.search(None, "pruning", 3, viewer=ADMIN, via=via)
        assert [h.path for h in latest] == ["/k/pasta.md"]  # kitchen was indexed last
        # A key sees only what it may read: for an anonymous caller that is garden alone.
        mine = await service.search(None, "pasta", 3, viewer=Viewer(None), via=via)
        assert [h.path for h in mine] == ["/g/roses.md"]
        with pytest.raises(CollectionNotFound) as err:
            await service.search("default", "x", 3, viewer=ADMIN, via=via)
        assert "garden" in err.value.message and "kitchen" in err.value.message

    try:
        asyncio.run(scenario())
    finally:
        service.close()


def test_the_client_leaves_the_choice_to_the_daemon() -> None:
    path, body = _chat_call([{"role": "user", "content": "q"}], "m", "")
    assert path == "/v1/rag/query" and "collection" not in body
    path, body = _chat_call([{"role": "user", "content": "q"}], "m", "docs")
    assert body["collection"] == "docs"
    path, body = _chat_call([{"role": "user", "content": "q"}], "m", None)
    assert path == "/v1/chat/completions"


def test_the_api_passes_no_collection_on_as_none() -> None:
    from aigw.api.rag.routes import QueryIn, SearchIn

    assert SearchIn(query="x").collection is None and QueryIn(query="x").collection is None
    assert SearchIn(query="x", collection="docs").collection == "docs"
