"""The daemon's RAG: one store, one embedding model kept warm, one worker thread.

Everything that blocks (loading the model, encoding, SQLite) runs on the service's single worker
thread, so the event loop never waits and writes are serialised; searches queue behind an index
batch at most. The store opens on first use and the model loads on first use, then stays loaded
for the daemon's lifetime. Nothing heavy is imported until then.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aigw.errors import InvalidRequest, quoted
from aigw.rag.errors import RagUnavailable

if TYPE_CHECKING:
    from aigw.rag.embed import Embedder, LazyEmbedder
    from aigw.rag.index import Document, IndexSummary
    from aigw.rag.remote import EmbedCall
    from aigw.rag.store import CollectionStats, Hit, RagStore

T = TypeVar("T")

_NEEDED = ("sentence_transformers", "sqlite_vec", "numpy", "pathspec")


def missing_packages() -> list[str]:
    return [m for m in _NEEDED if importlib.util.find_spec(m) is None]


class RagService:
    def __init__(
        self, database: Path, model: str, embed_call: EmbedCall | None = None, timeout_s: float = 300.0
    ) -> None:
        self.database = database
        self.model = model
        self._store: RagStore | None = None
        self._embedder: LazyEmbedder | None = None
        self._remote: dict[str, Embedder] = {}
        self._embed_call = embed_call
        self._timeout_s = timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aigw-rag")

    # -- plumbing --------------------------------------------------------------------------------

    def _check(self) -> None:
        missing = missing_packages()
        if missing:
            raise RagUnavailable(
                f"RAG needs {', '.join(missing)}: pip install 'aigw[rag]' "
                "(on CPU-only Linux, pip install torch==2.13.0 first)"
            )

    def store(self) -> RagStore:
        """The store (opened now if needed). Worker thread only."""
        if self._store is None:
            self._check()
            from aigw.rag.store import RagStore

            self._store = RagStore.open(self.database)
        return self._store

    def embedder(self) -> LazyEmbedder:
        if self._embedder is None:
            self._check()
            from aigw.rag.embed import LazyEmbedder

            self._embedder = LazyEmbedder(self.model)
        return self._embedder

    def bind(self, embed_call: EmbedCall) -> None:
        """How to embed with a provider's model (the gateway's router)."""
        self._embed_call = embed_call

    def embedder_for(self, model: str | None) -> Embedder:
        """The local model for None or its own name; else a provider's model (through the router).
        Worker thread only."""
        local = self.embedder()
        if model is None or model in (self.model, local.name):
            return local
        if self._embed_call is None or self._loop is None:
            raise InvalidRequest(
                f"{quoted(model)} is not this daemon's embedding model ({self.model})", param="model"
            )
        if model not in self._remote:
            from aigw.rag.remote import RemoteEmbedder

            self._remote[model] = RemoteEmbedder(model, self._embed_call, self._loop, self._timeout_s)
        return self._remote[model]

    def _collection_embedder(self, collection: str, requested: str | None) -> Embedder:
        """A collection's own model when it exists (EmbeddingModelMismatch if another is asked
        for); else the requested one, or the default."""
        info = self.store().collection(collection)
        if info is None:
            return self.embedder_for(requested)
        embedder = self.embedder_for(info.model)
        if requested is not None and self.embedder_for(requested).name != info.model:
            from aigw.rag.errors import EmbeddingModelMismatch

            raise EmbeddingModelMismatch(collection, info.model, info.dimension, requested, None)
        return embedder

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
        self, collection: str, documents: Sequence[Document], remove: Sequence[str], model: str | None = None
    ) -> IndexSummary:
        from aigw.rag.index import index_documents

        def work() -> IndexSummary:
            embedder = self._collection_embedder(collection, model)
            return index_documents(self.store(), collection, documents, embedder, remove=remove)

        return await self._run(work)

    async def file_hashes(self, collection: str) -> dict[str, str]:
        return await self._run(lambda: self.store().file_hashes(collection))

    async def search(self, collection: str, query: str, k: int) -> list[Hit]:
        from aigw.rag.query import search_text

        def work() -> list[Hit]:
            return search_text(
                self.store(), collection, query, self._collection_embedder(collection, None), k=k
            )

        return await self._run(work)

    async def stats(self) -> list[CollectionStats]:
        return await self._run(lambda: self.store().stats())

    async def drop(self, collection: str) -> bool:
        return await self._run(lambda: self.store().drop_collection(collection))

    async def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """Vectors of the service's model for /v1/embeddings, with the prompt's token count."""

        def work() -> tuple[list[list[float]], int]:
            e = self.embedder()
            vectors = e.embed(list(texts))
            return [v.tolist() for v in vectors], sum(e.count_tokens(t) for t in texts)

        return await self._run(work)

    def close(self) -> None:
        self._worker.shutdown(wait=True)
        if self._store is not None:
            self._store.close()
            self._store = None
