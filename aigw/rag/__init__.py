"""RAG over local documents: chunk, embed (sentence-transformers), store (SQLite + sqlite-vec), search.

The library layer the daemon and CLI build on. Importing it is cheap: torch,
sentence-transformers and numpy load only when a model loads or vectors are handled.

    from aigw.rag import (LazyEmbedder, RagStore, index_folder, rag_database, search_text)

    store = RagStore.open(rag_database(Paths.from_env()))    # AIGW_HOME/rag.db
    embedder = LazyEmbedder("all-MiniLM-L6-v2")              # loads on first use; share one per process
    summary = index_folder(store, "docs", "./docs", embedder, progress=callback)
    hits = search_text(store, "docs", "how do I install on macOS?", embedder, k=5)
    store.stats(); store.drop_collection("docs"); store.integrity_check()

Modules: chunk (chunk_text, Chunk), markup (markdown/rst/html blocks), embed (Embedder,
SentenceTransformerEmbedder, LazyEmbedder), store (RagStore, Hit, CollectionStats), walk (which
files, of what kind), index (the indexer, IndexSummary), ingest (index_folder), query (search_text),
errors, sqlite.
"""

from aigw.rag.chunk import Chunk, chunk_text
from aigw.rag.embed import DEFAULT_MODEL, Embedder, LazyEmbedder, SentenceTransformerEmbedder
from aigw.rag.errors import CollectionNotFound, EmbedderUnavailable, EmbeddingModelMismatch, RagUnavailable
from aigw.rag.index import IndexSummary
from aigw.rag.ingest import index_folder
from aigw.rag.query import search_text
from aigw.rag.store import CollectionInfo, CollectionStats, Hit, RagStore, rag_database
from aigw.rag.walk import Note

__all__ = [
    "DEFAULT_MODEL",
    "Chunk",
    "CollectionInfo",
    "CollectionNotFound",
    "CollectionStats",
    "Embedder",
    "EmbedderUnavailable",
    "EmbeddingModelMismatch",
    "Hit",
    "IndexSummary",
    "LazyEmbedder",
    "Note",
    "RagStore",
    "RagUnavailable",
    "SentenceTransformerEmbedder",
    "chunk_text",
    "index_folder",
    "rag_database",
    "search_text",
]
