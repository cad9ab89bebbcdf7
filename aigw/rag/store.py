"""The vector store: named collections of files, chunks and embeddings in SQLite + sqlite-vec.

    store = RagStore.open(rag_database(Paths.from_env()))      # or RagStore.open(path)
    store.ensure_collection(name, model, dimension) -> CollectionInfo   # EmbeddingModelMismatch
    store.collection(name) -> CollectionInfo | None
    store.file_hashes(name) -> dict[path, sha256]
    store.replace_file(name, path, file_hash, chunks, vectors, *, size=0, mtime=0.0, metadata=None)
    store.remove_file(name, path) -> bool
    store.search(name, query_vector, k=5, candidates=None) -> list[Hit]   # binary index + exact re-rank
    store.search_exact(name, query_vector, k=5) -> list[Hit]             # brute force (recall baseline)
    store.stats(name=None) -> list[CollectionStats]
    store.drop_collection(name) -> bool
    store.integrity_check() -> str                                        # "ok" or the problems found

Where: `rag.db` beside `aigw.db`, not inside it. SQLite's locks are per library copy: when the
standard sqlite3 cannot load extensions, sqlite-vec needs sqlean's own SQLite, and a sqlean
connection closing a file that the stdlib connections of the same process (the usage log, keys)
hold open drops their POSIX locks, which lets another process checkpoint or recover under them
(https://sqlite.org/howtocorrupt.html#multiple_copies_of_sqlite_linked_into_the_same_application).
A separate file keeps each database on one SQLite library per process.

Schema: `rag_collections` (name, model, dimension), `rag_files` (path, content hash, size, mtime,
indexed_at), `rag_chunks` (position, heading, lines, content, content hash, metadata JSON), and per
collection N: `rag_vectors_N` (chunk id -> float32 blob, the full-precision vectors) and
`rag_bits_N`, a vec0 `bit[dim]` table of their sign bits. A search takes `candidates` nearest by
Hamming distance from the bit index, then ranks those by exact cosine on the float vectors. The float
vectors sit in a plain rowid table rather than a vec0 float table because fetching 100 of them from
vec0 by rowid took longer than scanning 50,000 (vec0 reads whole vector chunks per lookup).

Every write is one `BEGIN IMMEDIATE` transaction: an interrupted write leaves the store as it was.
Hit.score is cosine similarity (1 = same direction). A RagStore may be shared between threads:
its methods are serialised by a lock.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from aigw.errors import InvalidRequest
from aigw.rag.bitindex import BitIndex
from aigw.rag.chunk import Chunk
from aigw.rag.errors import CollectionNotFound, EmbeddingModelMismatch
from aigw.rag.schema import (
    COLLECTION_COLUMNS,
    HIT_SQL,
    MAX_CANDIDATES,
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
    CollectionInfo,
    CollectionStats,
    Hit,
    collection_tables,
    hit_from_row,
)
from aigw.rag.sqlite import connect

__all__ = ["CollectionInfo", "CollectionStats", "Hit", "RagStore", "rag_database"]

if TYPE_CHECKING:
    import sqlite3

    import numpy as np
    import numpy.typing as npt

    from aigw.paths import Paths

    Vector = npt.NDArray[np.float32] | Sequence[float]


def rag_database(paths: Paths) -> Path:
    """Where the RAG store lives: `rag.db` in aigw's data directory (AIGW_HOME when set)."""
    return paths.data_dir / "rag.db"


class RagStore:
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        """Use `RagStore.open`; this takes over a connection that has sqlite-vec loaded."""
        self._conn = conn
        self.path = path
        self._lock = threading.RLock()
        self._bits: dict[int, BitIndex] = {}  # collection id -> its sign bits in memory
        self._data_version: int | None = None

    @classmethod
    def open(cls, path: Path | str, *, busy_timeout_ms: int = 5000) -> RagStore:
        """Open (creating) the store at `path` and make sure its tables exist."""
        conn = connect(path, busy_timeout_ms=busy_timeout_ms)
        store = cls(conn, Path(path))
        try:
            with store._write():
                for statement in SCHEMA:
                    conn.execute(statement)
                conn.execute(
                    "INSERT OR IGNORE INTO rag_meta (key, value) VALUES ('schema_version', '1')"
                )
                (version,) = conn.execute(
                    "SELECT CAST(value AS INTEGER) FROM rag_meta WHERE key = 'schema_version'"
                ).fetchone()
                columns = {r[1] for r in conn.execute("PRAGMA table_info(rag_collections)")}
                for number, sql in MIGRATIONS:
                    if number > version and "owner" not in columns:
                        conn.execute(sql)
                conn.execute(
                    "UPDATE rag_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
                )
        except BaseException:
            conn.close()
            raise
        return store

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> RagStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction, rolled back on any exception (KeyboardInterrupt too)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            finally:
                self._bits.clear()
            self._conn.execute("COMMIT")

    # -- collections -----------------------------------------------------------------------------

    def collection(self, name: str) -> CollectionInfo | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {COLLECTION_COLUMNS} FROM rag_collections WHERE name = ?", (name,)
            ).fetchone()
        return CollectionInfo(*row) if row else None

    def _require(self, name: str) -> CollectionInfo:
        info = self.collection(name)
        if info is None:
            raise CollectionNotFound(name)
        return info

    def ensure_collection(
        self, name: str, model: str, dimension: int, owner: str | None = None
    ) -> CollectionInfo:
        """The collection `name`, created for `model` (belonging to `owner`) if new;
        EmbeddingModelMismatch if it holds another model's vectors."""
        if not name or len(name) > 200:
            raise InvalidRequest("a collection name must have 1 to 200 characters", param="collection")
        if dimension <= 0 or dimension % 8:
            raise InvalidRequest(f"embedding dimension {dimension} is not a positive multiple of 8")
        with self._write() as conn:
            row = conn.execute(
                f"SELECT {COLLECTION_COLUMNS} FROM rag_collections WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                cur = conn.execute(
                    "INSERT INTO rag_collections (name, model, dimension, created_at, owner)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (name, model, dimension, time.time(), owner),
                )
                cid = int(cur.lastrowid or 0)
                for ddl in collection_tables(cid, dimension):
                    conn.execute(ddl)
                row = conn.execute(
                    f"SELECT {COLLECTION_COLUMNS} FROM rag_collections WHERE id = ?", (cid,)
                ).fetchone()
        info = CollectionInfo(*row)
        if info.model != model or info.dimension != dimension:
            raise EmbeddingModelMismatch(name, info.model, info.dimension, model, dimension)
        return info

    def drop_collection(self, name: str) -> bool:
        """Delete a collection and everything in it; False if there was none."""
        with self._write() as conn:
            row = conn.execute("SELECT id FROM rag_collections WHERE name = ?", (name,)).fetchone()
            if row is None:
                return False
            cid = int(row[0])
            conn.execute(f"DROP TABLE IF EXISTS rag_bits_{cid}")
            conn.execute(f"DROP TABLE IF EXISTS rag_vectors_{cid}")
            conn.execute(
                "DELETE FROM rag_chunks WHERE file_id IN (SELECT id FROM rag_files WHERE collection_id = ?)",
                (cid,),
            )
            conn.execute("DELETE FROM rag_files WHERE collection_id = ?", (cid,))
            conn.execute("DELETE FROM rag_collections WHERE id = ?", (cid,))
        return True

    # -- files -----------------------------------------------------------------------------------

    def file_hashes(self, collection: str) -> dict[str, str]:
        """path -> content hash of every file in the collection ({} when it does not exist)."""
        info = self.collection(collection)
        if info is None:
            return {}
        with self._lock:
            rows = self._conn.execute(
                "SELECT path, content_hash FROM rag_files WHERE collection_id = ?", (info.id,)
            ).fetchall()
        return {str(p): str(h) for p, h in rows}

    def replace_file(
        self,
        collection: str,
        path: str,
        file_hash: str,
        chunks: Sequence[Chunk],
        vectors: Sequence[Vector] | npt.NDArray[np.float32],
        *,
        size: int = 0,
        mtime: float = 0.0,
        metadata: Mapping[str, object] | None = None,
    ) -> None:
        """Make `path`'s chunks and vectors exactly these, in one transaction. `vectors[i]` embeds
        `chunks[i].embedding_text`; `metadata` (JSON-serialisable) is stored with every chunk."""
        import numpy as np

        info = self._require(collection)
        if len(chunks) != len(vectors):
            raise InvalidRequest(f"{len(chunks)} chunks but {len(vectors)} vectors for {path}")
        meta = json.dumps(dict(metadata or {}), sort_keys=True)
        with self._write() as conn:
            file_id = self._reset_file(conn, info, path)
            now = time.time()
            if file_id is None:
                cur = conn.execute(
                    "INSERT INTO rag_files (collection_id, path, content_hash, size, mtime, indexed_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (info.id, path, file_hash, size, mtime, now),
                )
                file_id = int(cur.lastrowid or 0)
            else:
                conn.execute(
                    "UPDATE rag_files SET content_hash = ?, size = ?, mtime = ?, indexed_at = ? WHERE id = ?",
                    (file_hash, size, mtime, now, file_id),
                )
            for i, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True)):
                blob = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
                if blob.shape[0] != info.dimension:
                    raise InvalidRequest(
                        f"vector {i} for {path} has {blob.shape[0]} dimensions; collection "
                        f"{collection!r} ({info.model}) has {info.dimension}"
                    )
                cur = conn.execute(
                    "INSERT INTO rag_chunks (file_id, position, heading, start_line, end_line, content, "
                    "content_hash, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        file_id,
                        chunk.position,
                        chunk.heading,
                        chunk.start_line,
                        chunk.end_line,
                        chunk.text,
                        hashlib.sha256(chunk.embedding_text.encode()).hexdigest(),
                        meta,
                    ),
                )
                data = blob.tobytes()
                conn.execute(f"INSERT INTO rag_vectors_{info.id} (chunk_id, embedding) VALUES (?, ?)",
                             (cur.lastrowid, data))  # fmt: skip
                conn.execute(
                    f"INSERT INTO rag_bits_{info.id} (rowid, embedding) VALUES (?, vec_quantize_binary(?))",
                    (cur.lastrowid, data),
                )

    def remove_file(self, collection: str, path: str) -> bool:
        """Remove `path` and its chunks and vectors, in one transaction; False if it was not there."""
        info = self.collection(collection)
        if info is None:
            return False
        with self._write() as conn:
            file_id = self._reset_file(conn, info, path)
            if file_id is None:
                return False
            conn.execute("DELETE FROM rag_files WHERE id = ?", (file_id,))
        return True

    def _reset_file(self, conn: sqlite3.Connection, info: CollectionInfo, path: str) -> int | None:
        """Delete a file's chunks and vectors (inside the caller's transaction); its id, if any."""
        row = conn.execute(
            "SELECT id FROM rag_files WHERE collection_id = ? AND path = ?", (info.id, path)
        ).fetchone()
        if row is None:
            return None
        file_id = int(row[0])
        ids = [(r[0],) for r in conn.execute("SELECT id FROM rag_chunks WHERE file_id = ?", (file_id,))]
        conn.executemany(f"DELETE FROM rag_bits_{info.id} WHERE rowid = ?", ids)
        conn.executemany(f"DELETE FROM rag_vectors_{info.id} WHERE chunk_id = ?", ids)
        conn.execute("DELETE FROM rag_chunks WHERE file_id = ?", (file_id,))
        return file_id

    # -- search ----------------------------------------------------------------------------------

    def search(
        self, collection: str, query_vector: Vector, k: int = 5, candidates: int | None = None
    ) -> list[Hit]:
        """The k chunks nearest `query_vector`: `candidates` (default max(10k, 100)) by Hamming
        distance on the bit index, re-ranked by exact cosine similarity."""
        info = self._require(collection)
        query = self._query_blob(info, query_vector, k)
        n = min(MAX_CANDIDATES, max(k, candidates if candidates is not None else max(10 * k, 100)))
        with self._lock:
            (qbits,) = self._conn.execute("SELECT vec_quantize_binary(?)", (query,)).fetchone()
            ids = self._bit_index(info.id).nearest(qbits, n)
            rows = self._conn.execute(
                HIT_SQL.format(cid=info.id, where="v.chunk_id IN (SELECT value FROM json_each(?))"),
                (query, json.dumps(ids), k),
            ).fetchall()
        return [hit_from_row(r) for r in rows]

    def _bit_index(self, cid: int) -> BitIndex:
        """The collection's sign bits in memory, reloaded after any change to the database."""
        (version,) = self._conn.execute("PRAGMA data_version").fetchone()
        if version != self._data_version:  # another connection committed
            self._bits.clear()
            self._data_version = version
        index = self._bits.get(cid)
        if index is None:
            index = BitIndex.build(self._conn.execute(f"SELECT rowid, embedding FROM rag_bits_{cid}"))
            self._bits[cid] = index
        return index

    def search_exact(self, collection: str, query_vector: Vector, k: int = 5) -> list[Hit]:
        """The exact k nearest chunks by cosine similarity, scanning every vector."""
        info = self._require(collection)
        query = self._query_blob(info, query_vector, k)
        with self._lock:
            rows = self._conn.execute(HIT_SQL.format(cid=info.id, where="1"), (query, k)).fetchall()
        return [hit_from_row(r) for r in rows]

    @staticmethod
    def _query_blob(info: CollectionInfo, query_vector: Vector, k: int) -> bytes:
        import numpy as np

        if k < 1:
            raise InvalidRequest("k must be at least 1", param="k")
        q = np.ascontiguousarray(query_vector, dtype=np.float32).reshape(-1)
        if q.shape[0] != info.dimension:
            raise InvalidRequest(
                f"query vector has {q.shape[0]} dimensions; collection {info.name!r} ({info.model}) "
                f"has {info.dimension}"
            )
        return q.tobytes()

    # -- health ----------------------------------------------------------------------------------

    def stats(self, name: str | None = None) -> list[CollectionStats]:
        """Figures for one collection (CollectionNotFound if missing) or all, by name."""
        if name is not None:
            self._require(name)
        with self._lock:
            rows = self._conn.execute(
                """SELECT c.name, c.model, c.dimension, c.created_at, c.owner,
                          (SELECT count(*) FROM rag_files f WHERE f.collection_id = c.id),
                          (SELECT coalesce(sum(f.size), 0) FROM rag_files f WHERE f.collection_id = c.id),
                          (SELECT max(f.indexed_at) FROM rag_files f WHERE f.collection_id = c.id),
                          (SELECT count(*) FROM rag_chunks k JOIN rag_files f ON f.id = k.file_id
                            WHERE f.collection_id = c.id),
                          (SELECT coalesce(sum(length(k.content) + length(k.metadata)), 0) FROM rag_chunks k
                            JOIN rag_files f ON f.id = k.file_id WHERE f.collection_id = c.id)
                   FROM rag_collections c WHERE ? IS NULL OR c.name = ? ORDER BY c.name""",
                (name, name),
            ).fetchall()
        out = []
        for cname, model, dim, created, owner, files, source, last, chunks, text_bytes in rows:
            stored = int(text_bytes) + int(chunks) * (4 * int(dim) + int(dim) // 8)
            out.append(
                CollectionStats(cname, model, dim, files, chunks, int(source), stored, created, last, owner)
            )
        return out

    def integrity_check(self) -> str:
        """SQLite's `PRAGMA integrity_check` plus the store's own invariants (every chunk has its
        file, a float vector and a bit vector; none of those is left over). "ok" when all hold."""
        problems: list[str] = []
        with self._lock:
            result = [str(r[0]) for r in self._conn.execute("PRAGMA integrity_check").fetchall()]
            if result != ["ok"]:
                problems.extend(result)
            orphans = self._conn.execute(
                "SELECT count(*) FROM rag_chunks WHERE file_id NOT IN (SELECT id FROM rag_files)"
            ).fetchone()[0]
            if orphans:
                problems.append(f"{orphans} chunks belong to no file")
            collections = self._conn.execute("SELECT id, name FROM rag_collections").fetchall()
            for cid, cname in collections:
                problems.extend(self._check_collection(int(cid), str(cname)))
        return "ok" if not problems else "\n".join(problems)

    def _check_collection(self, cid: int, name: str) -> list[str]:
        count = self._conn.execute(
            "SELECT count(*) FROM rag_chunks k JOIN rag_files f ON f.id = k.file_id "
            "WHERE f.collection_id = ?",
            (cid,),
        ).fetchone()[0]
        out = []
        for table, key in ((f"rag_vectors_{cid}", "chunk_id"), (f"rag_bits_{cid}", "rowid")):
            n, missing = self._conn.execute(
                f"SELECT count(*), count(*) - count(k.id) FROM {table} t LEFT JOIN rag_chunks k "
                f"ON k.id = t.{key}"
            ).fetchone()
            if n != count or missing:
                out.append(f"collection {name!r}: {count} chunks, {n} rows in {table}, {missing} orphaned")
        return out
