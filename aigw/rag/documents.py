"""Index documents that arrive as text (the daemon's side of `aigw rag index`).

    index_documents(store, collection, documents, embedder, *, remove=(), max_tokens=256,
                    overlap_tokens=32, batch_chunks=256) -> DocumentsSummary

The CLI walks the folder and reads the files (it has them; the daemon owns the model and the
writes); each `Document` carries its absolute path, kind, extracted text and the sha256 of the
file's bytes, the same hash `index_folder` stores, so `--local` and daemon runs agree on what is
unchanged. Chunks of several documents are embedded in one call; each document is then written
in its own transaction, and `remove` paths are deleted, one transaction each.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aigw.errors import InvalidRequest
from aigw.rag.chunk import Chunk, chunk_text
from aigw.rag.embed import Embedder
from aigw.rag.errors import EmbeddingModelMismatch
from aigw.rag.store import RagStore

KINDS = frozenset({"markdown", "rst", "text", "code", "html", "pdf"})


@dataclass(frozen=True, slots=True)
class Document:
    path: str
    kind: str
    text: str
    sha256: str
    size: int = 0
    mtime: float = 0.0


@dataclass(slots=True)
class DocumentsSummary:
    collection: str
    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0
    seconds: float = 0.0
    notes: list[tuple[str, str]] = field(default_factory=list)


def index_documents(
    store: RagStore,
    collection: str,
    documents: Sequence[Document],
    embedder: Embedder,
    *,
    remove: Sequence[str] = (),
    max_tokens: int = 256,
    overlap_tokens: int = 32,
    batch_chunks: int = 256,
) -> DocumentsSummary:
    started = time.perf_counter()
    summary = DocumentsSummary(collection)
    info = store.collection(collection)
    if info is not None and info.model != embedder.name:
        raise EmbeddingModelMismatch(collection, info.model, info.dimension, embedder.name, None)
    for doc in documents:
        if doc.kind not in KINDS:
            raise InvalidRequest(
                f"{doc.path}: unknown kind {doc.kind!r} (one of {sorted(KINDS)})", param="kind"
            )
    stored = store.file_hashes(collection) if info is not None else {}
    for path in remove:
        if store.remove_file(collection, path):
            summary.removed += 1
    pending: list[tuple[Document, list[Chunk]]] = []
    waiting = 0
    for doc in documents:
        if stored.get(doc.path) == doc.sha256:
            summary.unchanged += 1
            continue
        chunks = chunk_text(
            doc.text,
            "text" if doc.kind == "pdf" else doc.kind,  # type: ignore[arg-type]
            max_tokens=min(max_tokens, embedder.max_tokens),
            overlap_tokens=overlap_tokens,
            count_tokens=embedder.count_tokens,
        )
        if not chunks:
            summary.notes.append((doc.path, "no text to index"))
        pending.append((doc, chunks))
        waiting += len(chunks)
        if waiting >= batch_chunks:
            _write(store, collection, embedder, pending, summary)
            pending, waiting = [], 0
    _write(store, collection, embedder, pending, summary)
    summary.seconds = time.perf_counter() - started
    return summary


def _write(
    store: RagStore,
    collection: str,
    embedder: Embedder,
    pending: list[tuple[Document, list[Chunk]]],
    summary: DocumentsSummary,
) -> None:
    if not pending:
        return
    texts = [c.embedding_text for _, chunks in pending for c in chunks]
    vectors = embedder.embed(texts) if texts else None
    store.ensure_collection(collection, embedder.name, embedder.dimension)
    at = 0
    for doc, chunks in pending:
        vecs: Any = vectors[at : at + len(chunks)] if vectors is not None else []
        at += len(chunks)
        store.replace_file(collection, doc.path, doc.sha256, chunks, vecs, size=doc.size, mtime=doc.mtime)
        summary.indexed += 1
        summary.chunks += len(chunks)
