"""The one indexer: documents in, chunks and vectors committed, for `aigw rag index --local` (a folder
read here, `ingest.index_folder`) and for the daemon (documents the CLI sends, `index_documents`).

Throughput: chunks of several documents are embedded in one call of about `batch_chunks` texts
(the model sorts them by length and pads less) on an embedding thread, while the caller reads and
chunks the next documents and the batch embedded before is committed. Each document is committed
in its own transaction, with its kind in its metadata, so a run killed at any point leaves every
file either fully old or fully new. The embedder is first touched when a document needs
embedding: with a `LazyEmbedder`, re-indexing unchanged files never loads a model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from aigw.errors import InvalidRequest
from aigw.rag.chunk import Chunk, chunk_text
from aigw.rag.embed import Embedder
from aigw.rag.errors import EmbeddingModelMismatch
from aigw.rag.store import RagStore
from aigw.rag.walk import FILE_KINDS, FileKind, Note

if TYPE_CHECKING:
    from aigw.rag.embed import FloatArray

Progress = Callable[[int, int, int], None]
"""progress(files_done, files_total, chunks_done), called as files are settled; an exception
raised from it stops the run (files committed so far stay committed)."""


@dataclass(frozen=True, slots=True)
class Document:
    """A file's text, ready to chunk: its absolute path, kind, extracted text and the sha256 of the
    file's bytes (what decides, next time, whether it changed)."""

    path: str
    kind: FileKind
    text: str
    sha256: str
    size: int = 0
    mtime: float = 0.0


@dataclass(slots=True)
class IndexSummary:
    collection: str
    root: str = ""
    """The folder indexed (empty when the documents came from elsewhere)."""
    indexed: int = 0  # files (re)written
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0  # chunks written by this run
    skipped: list[Note] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(slots=True)
class _Pending:
    doc: Document
    chunks: list[Chunk]


class Indexer:
    """Adds documents to a collection; use as a context manager (it owns the embedding thread)."""

    def __init__(
        self,
        store: RagStore,
        collection: str,
        embedder: Embedder,
        summary: IndexSummary,
        *,
        total: int = 0,
        max_tokens: int = 256,
        overlap_tokens: int = 32,
        batch_chunks: int = 256,
        progress: Progress | None = None,
        owner: str | None = None,
    ) -> None:
        info = store.collection(collection)
        if info is not None and info.model != embedder.name:
            raise EmbeddingModelMismatch(collection, info.model, info.dimension, embedder.name, None)
        self.store = store
        self.collection = collection
        self.embedder = embedder
        self.summary = summary
        self.total = total
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.batch_chunks = batch_chunks
        self.progress = progress
        self.owner = owner
        self.done = 0
        self._pending: list[_Pending] = []
        self._pending_chunks = 0
        self._ready = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aigw-rag-embed")
        self._inflight: tuple[list[_Pending], Future[FloatArray]] | None = None

    def __enter__(self) -> Indexer:
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc is None:
                self.flush(final=True)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def settled(self) -> None:
        """A file is done with (indexed, unchanged or skipped)."""
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, self.summary.chunks)

    def add(self, doc: Document) -> None:
        """Chunk a document; embed the pending ones once they make a batch."""
        chunks = chunk_text(
            doc.text,
            "text" if doc.kind == "pdf" else doc.kind,
            max_tokens=min(self.max_tokens, self.embedder.max_tokens),
            overlap_tokens=self.overlap_tokens,
            count_tokens=self.embedder.count_tokens,
        )
        if not chunks:
            self.summary.skipped.append(Note(doc.path, "no text to index"))
        self._pending.append(_Pending(doc, chunks))
        self._pending_chunks += len(chunks)
        if self._pending_chunks >= self.batch_chunks:
            self.flush()

    def flush(self, *, final: bool = False) -> None:
        """Start embedding the pending documents on the embedding thread, then commit the batch that
        was embedding before (its writes overlap this batch's inference)."""
        submitted = None
        if self._pending:
            texts = [c.embedding_text for p in self._pending for c in p.chunks]
            submitted = (self._pending, self._pool.submit(self.embedder.embed, texts))
            self._pending, self._pending_chunks = [], 0
        previous, self._inflight = self._inflight, submitted
        if previous is not None:
            self._commit(*previous)
        if final and self._inflight is not None:
            last, self._inflight = self._inflight, None
            self._commit(*last)

    def _commit(self, batch: list[_Pending], future: Future[FloatArray]) -> None:
        vectors = future.result()
        if not self._ready:  # the dimension from the vectors: a provider's model needs no probe
            dimension = int(vectors.shape[1]) if len(vectors) else self.embedder.dimension
            self.store.ensure_collection(self.collection, self.embedder.name, dimension, self.owner)
            self._ready = True
        offset = 0
        for p in batch:
            n, doc = len(p.chunks), p.doc
            self.store.replace_file(
                self.collection, doc.path, doc.sha256, p.chunks, vectors[offset : offset + n],
                size=doc.size, mtime=doc.mtime, metadata={"kind": doc.kind},
            )  # fmt: skip
            offset += n
            self.summary.indexed += 1
            self.summary.chunks += n
            self.settled()


def index_documents(
    store: RagStore,
    collection: str,
    documents: Sequence[Document],
    embedder: Embedder,
    *,
    remove: Iterable[str] = (),
    max_tokens: int = 256,
    overlap_tokens: int = 32,
    batch_chunks: int = 256,
    owner: str | None = None,
) -> IndexSummary:
    """Index documents that arrive as text (the daemon's side of `aigw rag index`): each is skipped
    when its sha256 is the one stored, else chunked, embedded and written; `remove` paths are
    deleted, one transaction each."""
    started = time.perf_counter()
    for doc in documents:
        if doc.kind not in FILE_KINDS:
            raise InvalidRequest(
                f"{doc.path}: unknown kind {doc.kind!r} (one of {list(FILE_KINDS)})", param="kind"
            )
    summary = IndexSummary(collection)
    with Indexer(
        store, collection, embedder, summary, total=len(documents),
        max_tokens=max_tokens, overlap_tokens=overlap_tokens, batch_chunks=batch_chunks, owner=owner,
    ) as indexer:  # fmt: skip
        stored = store.file_hashes(collection) if store.collection(collection) is not None else {}
        for path in remove:
            if store.remove_file(collection, path):
                summary.removed += 1
        for doc in documents:
            if stored.get(doc.path) == doc.sha256:
                summary.unchanged += 1
                indexer.settled()
            else:
                indexer.add(doc)
    summary.seconds = time.perf_counter() - started
    return summary
