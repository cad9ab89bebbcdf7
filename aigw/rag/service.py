"""The daemon's RAG: one store, one embedding model kept warm, two threads.

Everything that blocks runs off the event loop: the store's work (chunking, SQLite) on the
service's single worker thread, so writes are serialised and searches queue behind an index batch
at most; the embedding model's encoding on its own thread, which `embed` (the model's provider
for /v1/embeddings) uses. The worker never embeds by itself: every operation is handed `via`, the
gateway's pipeline on its caller's account, and the vectors come through it (`RoutedEmbedder`), so
RAG's embeddings are admitted and accounted like any other. Each operation is also handed the
caller as a `Viewer`, and keeps to the collections it may see (`aigw.rag.owners`). The store
opens on first use and the model loads on first use, then stays loaded for the daemon's
lifetime. Nothing heavy is imported until then.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aigw.rag.errors import CollectionForbidden, CollectionNotFound, RagUnavailable
from aigw.rag.owners import Viewer

if TYPE_CHECKING:
    from aigw.rag.embed import Embedder, LazyEmbedder
    from aigw.rag.index import Document, IndexSummary
    from aigw.rag.remote import EmbedCall
    from aigw.rag.store import CollectionInfo, CollectionStats, Hit, RagStore

T = TypeVar("T")

_NEEDED = ("sentence_transformers", "sqlite_vec", "numpy", "pathspec")
WALK_NEEDS = ("pathspec",)
"""What walking a folder needs (the CLI's side of an index through the daemon)."""


def missing_packages(needed: Sequence[str] = _NEEDED) -> list[str]:
    return [m for m in needed if importlib.util.find_spec(m) is None]


def rag_install_line(missing: Sequence[str]) -> str:
    """What RAG needs that is not installed, and how to install it, in one line."""
    from aigw.extras import install_hint

    return (
        f"RAG needs {', '.join(missing)}: {install_hint('rag')} (on CPU-only Linux, first "
        "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu)"
    )


def default_collection(visible: Sequence[CollectionStats]) -> str:
    """The collection to use when none is named: the only one, else the one indexed last (by its
    files' latest index time, or its creation for one still empty); CollectionNotFound (saying
    how to make one) when there is none."""
    if not visible:
        raise CollectionNotFound(None, [])
    return max(visible, key=lambda c: (c.last_indexed_at or c.created_at, c.created_at)).name


class RagService:
    def __init__(self, database: Path, model: str, timeout_s: float = 300.0) -> None:
        self.database = database
        self.model = model
        self._store: RagStore | None = None
        self._embedder: LazyEmbedder | None = None
        self._timeout_s = timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aigw-rag")
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aigw-rag-encode")
        self._lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------------------------

    def _check(self) -> None:
        missing = missing_packages()
        if missing:
            raise RagUnavailable(rag_install_line(missing))

    def store(self) -> RagStore:
        """The store (opened now if needed). Worker thread only."""
        if self._store is None:
            self._check()
            from aigw.rag.store import RagStore

            self._store = RagStore.open(self.database)
        return self._store

    def embedder(self) -> LazyEmbedder:
        with self._lock:  # the worker and the encoding thread both ask
            if self._embedder is None:
                self._check()
                from aigw.rag.embed import LazyEmbedder

                self._embedder = LazyEmbedder(self.model)
            return self._embedder

    def embedder_for(self, model: str | None, via: EmbedCall) -> Embedder:
        """The embedder of `model` (None or its own name: the daemon's model; else a provider's),
        its vectors made through `via`. Worker thread only."""
        from aigw.rag.remote import RoutedEmbedder

        assert self._loop is not None
        local = self.embedder()
        if model is None or model in (self.model, local.name):
            return RoutedEmbedder(
                local.name, via, self._loop, self._timeout_s, call_as=self.model, sizing=local
            )
        return RoutedEmbedder(model, via, self._loop, self._timeout_s)

    def _collection_embedder(
        self, info: CollectionInfo | None, requested: str | None, via: EmbedCall
    ) -> Embedder:
        """A collection's own model when it exists (EmbeddingModelMismatch if another is asked
        for); else the requested one, or the default."""
        if info is None:
            return self.embedder_for(requested, via)
        embedder = self.embedder_for(info.model, via)
        if requested is not None and self.embedder_for(requested, via).name != info.model:
            from aigw.rag.errors import EmbeddingModelMismatch

            raise EmbeddingModelMismatch(info.name, info.model, info.dimension, requested, None)
        return embedder

    def _readable(self, collection: str, viewer: Viewer) -> CollectionInfo:
        """The collection if `viewer` may read it; else CollectionNotFound naming the ones it may."""
        info = self.store().collection(collection)
        if info is None or not viewer.may_read(info):
            known = [c.name for c in self.store().stats() if viewer.may_read(c)]
            raise CollectionNotFound(collection, known)
        return info

    def _writable(self, collection: str, viewer: Viewer) -> CollectionInfo | None:
        """The collection (None when new) if `viewer` may change it."""
        info = self.store().collection(collection)
        if info is not None and not viewer.may_write(info):
            if not viewer.may_read(info):
                self._readable(collection, viewer)  # raises: it does not exist for this caller
            raise CollectionForbidden(collection)
        return info

    @property
    def model_loaded(self) -> bool:
        return self._embedder is not None and self._embedder.loaded

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        self._loop = asyncio.get_running_loop()
        return await self._loop.run_in_executor(self._worker, fn, *args)

    def warm(self) -> None:
        """Load the model in the background when collections exist, so the first search after a
        start does not wait for it. Without the RAG packages or collections it does nothing."""
        if missing_packages() or not self.database.exists():
            return

        def work() -> None:
            if self.store().stats():
                self.embedder().get()

        future = self._worker.submit(work)
        future.add_done_callback(lambda f: f.exception())  # a failure surfaces on first real use

    # -- operations ------------------------------------------------------------------------------

    async def index(
        self,
        collection: str,
        documents: Sequence[Document],
        remove: Sequence[str],
        model: str | None,
        *,
        viewer: Viewer,
        via: EmbedCall,
    ) -> IndexSummary:
        from aigw.rag.index import index_documents

        def work() -> IndexSummary:
            info = self._writable(collection, viewer)
            embedder = self._collection_embedder(info, model, via)
            return index_documents(
                self.store(), collection, documents, embedder, remove=remove, owner=viewer.owner
            )

        return await self._run(work)

    async def file_hashes(self, collection: str, viewer: Viewer) -> dict[str, str]:
        """Each indexed file's sha256; {} for a collection not made yet."""

        def work() -> dict[str, str]:
            info = self._writable(collection, viewer)
            return {} if info is None else self.store().file_hashes(collection)

        return await self._run(work)

    async def search(
        self, collection: str | None, query: str, k: int, *, viewer: Viewer, via: EmbedCall
    ) -> list[Hit]:
        """The chunks of `collection` nearest `query`; with no collection named, of the one
        `default_collection` picks among those `viewer` may read."""
        from aigw.rag.query import search_text

        def work() -> list[Hit]:
            name = collection
            if name is None:
                name = default_collection([c for c in self.store().stats() if viewer.may_read(c)])
            info = self._readable(name, viewer)
            embedder = self._collection_embedder(info, None, via)
            return search_text(self.store(), name, query, embedder, k=k)

        return await self._run(work)

    async def stats(self, viewer: Viewer) -> list[CollectionStats]:
        return await self._run(lambda: [c for c in self.store().stats() if viewer.may_read(c)])

    async def drop(self, collection: str, viewer: Viewer) -> bool:
        def work() -> bool:
            if self.store().collection(collection) is None:
                return False
            self._readable(collection, viewer)
            self._writable(collection, viewer)
            return self.store().drop_collection(collection)

        return await self._run(work)

    async def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """Vectors of the service's model, with the prompt's token count: what its provider
        answers (for /v1/embeddings, and for RAG's own embeddings through the pipeline)."""

        def work() -> tuple[list[list[float]], int]:
            e = self.embedder()
            vectors = e.embed(list(texts))
            return [v.tolist() for v in vectors], sum(e.count_tokens(t) for t in texts)

        return await asyncio.get_running_loop().run_in_executor(self._encoder, work)

    def close(self) -> None:
        self._worker.shutdown(wait=True)
        self._encoder.shutdown(wait=True)
        if self._store is not None:
            self._store.close()
            self._store = None
