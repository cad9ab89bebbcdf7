"""Answer a question from a collection.

    search_text(store, collection, question, embedder, *, k=5, candidates=None) -> list[Hit]

The question is embedded with `embedder`, which must be the model the collection was indexed
with (EmbeddingModelMismatch otherwise: vectors of two models are not comparable), then searched
with `RagStore.search` (binary index, exact re-rank).
"""

from __future__ import annotations

from aigw.errors import InvalidRequest
from aigw.rag.embed import Embedder
from aigw.rag.errors import CollectionNotFound, EmbeddingModelMismatch
from aigw.rag.store import Hit, RagStore


def search_text(
    store: RagStore,
    collection: str,
    question: str,
    embedder: Embedder,
    *,
    k: int = 5,
    candidates: int | None = None,
) -> list[Hit]:
    """The k chunks of `collection` nearest `question`, best first."""
    if not question.strip():
        raise InvalidRequest("the question is empty", param="query")
    info = store.collection(collection)
    if info is None:
        raise CollectionNotFound(collection)
    if info.model != embedder.name:
        raise EmbeddingModelMismatch(collection, info.model, info.dimension, embedder.name, None)
    vector = embedder.embed([question])[0]
    return store.search(collection, vector, k=k, candidates=candidates)
