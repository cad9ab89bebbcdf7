"""Search quality with real MiniLM embeddings: the binary index's recall, and answers found."""

from __future__ import annotations

from pathlib import Path

from aigw.rag.chunk import Chunk
from aigw.rag.embed import LazyEmbedder, SentenceTransformerEmbedder
from aigw.rag.ingest import index_folder
from aigw.rag.query import search_text
from aigw.rag.store import RagStore
from tests.rag.corpus import products, questions, sentences, write_corpus


def test_binary_index_recall_against_exact_search(
    store: RagStore, embedder: SentenceTransformerEmbedder
) -> None:
    corpus = sentences(2500, seed=11)
    vectors = embedder.embed(corpus)
    store.ensure_collection("recall", embedder.name, embedder.dimension)
    per_file = 100
    for f in range(0, len(corpus), per_file):
        path = f"/corpus/{f // per_file}.txt"
        chunks = [Chunk(corpus[i], "", i - f, 1, 1) for i in range(f, f + per_file)]
        store.replace_file("recall", path, str(f), chunks, vectors[f : f + per_file])
    queries = embedder.embed(sentences(60, seed=99))
    recalls = []
    for q in queries:
        exact = {(h.path, h.position) for h in store.search_exact("recall", q, k=10)}
        approx = [(h.path, h.position) for h in store.search("recall", q, k=10)]
        assert len(approx) == 10
        recalls.append(len(exact.intersection(approx)) / 10)
    assert sum(recalls) / len(recalls) >= 0.95, recalls


def test_questions_find_their_file(
    tmp_path: Path, store: RagStore, embedder: SentenceTransformerEmbedder
) -> None:
    items = products(250)
    paths = write_corpus(tmp_path / "docs", items)
    summary = index_folder(store, "products", tmp_path / "docs", embedder)
    assert (summary.indexed, summary.skipped) == (250, [])
    found = 0
    for i, p in enumerate(items):
        question = questions(p)[i % 3]
        hits = search_text(store, "products", question, embedder, k=3)
        found += any(h.path == str(paths[p.name].resolve()) for h in hits)
    assert found / len(items) >= 0.9, found

    # nothing changed: the second run only hashes files and never loads a model
    def no_model(name: str) -> SentenceTransformerEmbedder:
        raise AssertionError("an unchanged folder must not load the model")

    again = index_folder(store, "products", tmp_path / "docs", LazyEmbedder(embedder.name, no_model))
    assert (again.indexed, again.unchanged, again.removed, again.chunks) == (0, 250, 0, 0)
