"""The RAG store's tables and the records read from them (used by `aigw.rag.store`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 2
MAX_CANDIDATES = 4096  # sqlite-vec's largest k

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rag_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS rag_collections (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        model TEXT NOT NULL,
        dimension INTEGER NOT NULL CHECK (dimension > 0 AND dimension % 8 = 0),
        created_at REAL NOT NULL,
        owner TEXT)""",
    """CREATE TABLE IF NOT EXISTS rag_files (
        id INTEGER PRIMARY KEY,
        collection_id INTEGER NOT NULL REFERENCES rag_collections (id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime REAL NOT NULL,
        indexed_at REAL NOT NULL,
        UNIQUE (collection_id, path))""",
    """CREATE TABLE IF NOT EXISTS rag_chunks (
        id INTEGER PRIMARY KEY,
        file_id INTEGER NOT NULL REFERENCES rag_files (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        heading TEXT NOT NULL,
        start_line INTEGER NOT NULL,
        end_line INTEGER NOT NULL,
        content TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}')""",
    "CREATE INDEX IF NOT EXISTS rag_chunks_file ON rag_chunks (file_id, position)",
)


# Version 1 stores lack the owner column: added on open (NULL: the admin's or anonymous).
MIGRATIONS = ((2, "ALTER TABLE rag_collections ADD COLUMN owner TEXT"),)
COLLECTION_COLUMNS = "id, name, model, dimension, created_at, owner"


def collection_tables(cid: int, dimension: int) -> tuple[str, str]:
    """The DDL of collection `cid`'s float vectors (a plain rowid table: fetching candidates
    from it by id is fast) and its vec0 index of their sign bits."""
    return (
        f"CREATE TABLE rag_vectors_{cid} (chunk_id INTEGER PRIMARY KEY "
        "REFERENCES rag_chunks (id) ON DELETE CASCADE, "
        f"embedding BLOB NOT NULL CHECK (length(embedding) = {4 * dimension}))",
        f"CREATE VIRTUAL TABLE rag_bits_{cid} USING vec0(embedding bit[{dimension}])",
    )


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    id: int
    name: str
    model: str
    dimension: int
    created_at: float
    owner: str | None = None
    """The API key id that made it; None: made with the admin token or without a key."""


@dataclass(frozen=True, slots=True)
class Hit:
    path: str
    heading: str
    content: str
    score: float
    position: int
    start_line: int
    end_line: int
    rerank_score: float | None = None
    """The reranker's relevance (0..1) when a search was re-ranked (`score` stays the cosine)."""

    @property
    def ranked_text(self) -> str:
        """What a reranker reads of the chunk: what was embedded (heading path, blank line, text)."""
        return f"{self.heading}\n\n{self.content}" if self.heading else self.content


@dataclass(frozen=True, slots=True)
class CollectionStats:
    name: str
    model: str
    dimension: int
    files: int
    chunks: int
    source_bytes: int  # sum of the indexed files' sizes
    stored_bytes: int  # chunk text plus float and bit vectors (an estimate of the space used)
    created_at: float
    last_indexed_at: float | None
    owner: str | None = None


HIT_SQL = """
    SELECT f.path, k.heading, k.content, 1.0 - vec_distance_cosine(v.embedding, ?) AS score,
           k.position, k.start_line, k.end_line
    FROM rag_vectors_{cid} v JOIN rag_chunks k ON k.id = v.chunk_id JOIN rag_files f ON f.id = k.file_id
    WHERE {where}
    ORDER BY score DESC, k.id
    LIMIT ?
"""


def hit_from_row(row: Any) -> Hit:
    path, heading, content, score, position, start, end = row
    return Hit(str(path), str(heading), str(content), float(score), int(position), int(start), int(end))
