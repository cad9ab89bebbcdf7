"""The sqlite-vec store: collections, atomic writes, removal, search, stats, integrity."""

from __future__ import annotations

import sqlite3
import sys
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from aigw.errors import InvalidRequest
from aigw.paths import Paths
from aigw.rag.chunk import Chunk
from aigw.rag.errors import CollectionNotFound, EmbeddingModelMismatch, RagUnavailable
from aigw.rag.store import RagStore, rag_database
from aigw.state.db import open_db

MODEL = "test/model-a"
DIM = 64


def unit_vectors(n: int, seed: int, dim: int = DIM) -> npt.NDArray[np.float32]:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    out: npt.NDArray[np.float32] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def chunks(path: str, n: int) -> list[Chunk]:
    return [Chunk(f"{path} chunk {i}", f"{path} heading", i, 10 * i + 1, 10 * i + 9) for i in range(n)]


def snapshot(store: RagStore) -> list[tuple[object, ...]]:
    conn = store._conn
    return [
        *conn.execute("SELECT path, content_hash, size FROM rag_files ORDER BY path"),
        *conn.execute("SELECT file_id, position, content, content_hash FROM rag_chunks ORDER BY id"),
        *conn.execute("SELECT chunk_id, embedding FROM rag_vectors_1 ORDER BY chunk_id"),
        (conn.execute("SELECT count(*) FROM rag_bits_1").fetchone(),),
    ]


def test_collections_refuse_another_model(store: RagStore) -> None:
    info = store.ensure_collection("docs", MODEL, DIM)
    assert (info.name, info.model, info.dimension) == ("docs", MODEL, DIM)
    assert store.ensure_collection("docs", MODEL, DIM) == info
    with pytest.raises(EmbeddingModelMismatch) as err:
        store.ensure_collection("docs", "test/model-b", 128)
    assert MODEL in err.value.message and "test/model-b" in err.value.message
    assert err.value.status_code == 409
    with pytest.raises(EmbeddingModelMismatch):
        store.ensure_collection("docs", MODEL, 128)
    assert store.ensure_collection("other", "test/model-b", 128).model == "test/model-b"
    with pytest.raises(InvalidRequest):
        store.ensure_collection("odd", MODEL, 30)  # bit vectors need a multiple of 8


def test_replace_search_remove(store: RagStore) -> None:
    store.ensure_collection("docs", MODEL, DIM)
    vectors = unit_vectors(5, seed=1)
    store.replace_file("docs", "/d/a.md", "h-a", chunks("/d/a.md", 3), vectors[:3], size=30, mtime=1.0)
    store.replace_file("docs", "/d/b.md", "h-b", chunks("/d/b.md", 2), vectors[3:], size=20, mtime=2.0)
    assert store.file_hashes("docs") == {"/d/a.md": "h-a", "/d/b.md": "h-b"}

    hits = store.search("docs", vectors[4], k=2)
    assert (hits[0].path, hits[0].position, hits[0].content) == ("/d/b.md", 1, "/d/b.md chunk 1")
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert (hits[0].heading, hits[0].start_line, hits[0].end_line) == ("/d/b.md heading", 11, 19)
    assert hits[0].score >= hits[1].score
    assert store.search_exact("docs", vectors[4], k=5)[0].content == "/d/b.md chunk 1"

    # replacing a file swaps all of its chunks
    store.replace_file("docs", "/d/a.md", "h-a2", chunks("/d/a.md", 1), unit_vectors(1, seed=9))
    assert store.file_hashes("docs")["/d/a.md"] == "h-a2"
    assert store.stats("docs")[0].chunks == 3
    assert all(h.path != "/d/a.md" or h.position == 0 for h in store.search("docs", vectors[0], k=5))

    assert store.remove_file("docs", "/d/b.md") is True
    assert store.remove_file("docs", "/d/b.md") is False
    assert store.file_hashes("docs") == {"/d/a.md": "h-a2"}
    assert [h.path for h in store.search("docs", vectors[4], k=5)] == ["/d/a.md"]
    assert store.integrity_check() == "ok"


def test_replace_file_is_atomic(store: RagStore) -> None:
    store.ensure_collection("docs", MODEL, DIM)
    store.replace_file("docs", "/d/a.md", "old", chunks("/d/a.md", 3), unit_vectors(3, seed=1))
    before = snapshot(store)
    bad = [*unit_vectors(3, seed=2), unit_vectors(1, seed=3, dim=DIM - 8)[0]]
    with pytest.raises(InvalidRequest, match=r"vector 3 .* 56 dimensions"):
        store.replace_file("docs", "/d/a.md", "new", chunks("/d/a.md", 4), bad)  # fails mid-write
    assert snapshot(store) == before
    with pytest.raises(InvalidRequest):
        store.replace_file("docs", "/d/new.md", "new", chunks("/d/new.md", 2), bad[2:])
    assert snapshot(store) == before
    with pytest.raises(InvalidRequest, match="3 chunks but 2 vectors"):
        store.replace_file("docs", "/d/a.md", "new", chunks("/d/a.md", 3), unit_vectors(2, seed=4))
    assert store.integrity_check() == "ok"


def test_unknown_collection_and_bad_queries(store: RagStore) -> None:
    with pytest.raises(CollectionNotFound):
        store.search("nope", unit_vectors(1, 1)[0])
    with pytest.raises(CollectionNotFound):
        store.replace_file("nope", "/x", "h", [], [])
    with pytest.raises(CollectionNotFound):
        store.stats("nope")
    assert store.file_hashes("nope") == {}
    assert store.remove_file("nope", "/x") is False
    store.ensure_collection("docs", MODEL, DIM)
    with pytest.raises(InvalidRequest, match="query vector has 8 dimensions"):
        store.search("docs", np.ones(8, dtype=np.float32))
    with pytest.raises(InvalidRequest):
        store.search("docs", unit_vectors(1, 1)[0], k=0)
    assert store.search("docs", unit_vectors(1, 1)[0]) == []


def test_stats_and_drop(store: RagStore) -> None:
    store.ensure_collection("docs", MODEL, DIM)
    store.ensure_collection("notes", "test/model-b", 32)
    store.replace_file("docs", "/d/a.md", "h", chunks("/d/a.md", 4), unit_vectors(4, 1), size=1234)
    store.replace_file("notes", "/n/x.txt", "h", chunks("/n/x.txt", 1), unit_vectors(1, 2, dim=32), size=10)
    docs, notes = store.stats()
    assert (docs.name, docs.model, docs.dimension, docs.files, docs.chunks) == ("docs", MODEL, DIM, 1, 4)
    assert docs.source_bytes == 1234
    assert docs.stored_bytes >= 4 * (DIM * 4 + DIM // 8)
    assert docs.last_indexed_at is not None and docs.last_indexed_at >= docs.created_at
    assert (notes.name, notes.chunks) == ("notes", 1)

    assert store.drop_collection("docs") is True
    assert store.drop_collection("docs") is False
    assert [s.name for s in store.stats()] == ["notes"]
    tables = {r[0] for r in store._conn.execute("SELECT name FROM sqlite_master")}
    assert not any(t.startswith(("rag_bits_1", "rag_vectors_1")) for t in tables)
    assert store._conn.execute("SELECT count(*) FROM rag_chunks").fetchone()[0] == 1
    assert store.search("notes", unit_vectors(1, 2, dim=32)[0], k=1)[0].path == "/n/x.txt"
    assert store.integrity_check() == "ok"


def test_integrity_check_reports_broken_invariants(store: RagStore) -> None:
    store.ensure_collection("docs", MODEL, DIM)
    store.replace_file("docs", "/d/a.md", "h", chunks("/d/a.md", 3), unit_vectors(3, 1))
    store._conn.execute("DELETE FROM rag_bits_1 WHERE rowid = (SELECT min(id) FROM rag_chunks)")
    report = store.integrity_check()
    assert report != "ok"
    assert "3 chunks, 2 rows in rag_bits_1" in report


def test_lives_beside_aigw_db_and_the_gateway_schema_still_migrates(tmp_path: Path) -> None:
    paths = Paths.from_env({"AIGW_HOME": str(tmp_path)})
    assert rag_database(paths) == tmp_path / "rag.db"
    with RagStore.open(rag_database(paths)) as store:
        store.ensure_collection("docs", MODEL, DIM)
        db = open_db(paths.database)  # the gateway's own database, plain stdlib sqlite3
        assert db.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] >= 1
        db.conn.close()
    assert (tmp_path / "rag.db").stat().st_mode & 0o777 == 0o600
    # an SQLite without sqlite-vec can still read and check the file
    conn = sqlite3.connect(tmp_path / "rag.db")
    assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT name FROM rag_collections").fetchall() == [("docs",)]
    conn.close()


def test_reopen_and_share_between_threads(tmp_path: Path) -> None:
    path = tmp_path / "rag.db"
    with RagStore.open(path) as store:
        store.ensure_collection("docs", MODEL, DIM)
    vectors = unit_vectors(40, seed=5)
    errors: list[BaseException] = []
    with RagStore.open(path) as store, RagStore.open(path) as other:  # idempotent schema setup

        def writer() -> None:
            try:
                for i in range(20):
                    path = f"/d/{i}.md"
                    other.replace_file("docs", path, str(i), chunks(path, 2), vectors[2 * i : 2 * i + 2])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def reader() -> None:
            try:
                for i in range(40):
                    store.search("docs", vectors[i], k=3)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer), *(threading.Thread(target=reader) for _ in range(3))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert store.stats("docs")[0].chunks == 40
        assert store.search("docs", vectors[7], k=1)[0].path == "/d/3.md"
        assert store.integrity_check() == "ok"


def test_without_an_sqlite_that_loads_extensions_the_error_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        pytest.skip("this Python's own sqlite3 loads extensions")
    monkeypatch.setitem(sys.modules, "sqlean", None)  # as if sqlean.py were not installed
    with pytest.raises(RagUnavailable, match=r"pip install sqlean\.py") as err:
        RagStore.open(tmp_path / "rag.db")
    assert err.value.status_code == 503


def test_a_version_1_store_gains_owners_and_keeps_its_collections(tmp_path: Path) -> None:
    from aigw.rag.sqlite import connect

    path = tmp_path / "rag.db"
    conn = connect(path)
    conn.execute("CREATE TABLE rag_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO rag_meta VALUES ('schema_version', '1')")
    conn.execute(
        "CREATE TABLE rag_collections (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
        " model TEXT NOT NULL, dimension INTEGER NOT NULL, created_at REAL NOT NULL)"
    )
    conn.execute(
        "INSERT INTO rag_collections (name, model, dimension, created_at) VALUES ('old', 'm', 8, 1.0)"
    )
    conn.commit()
    conn.close()
    with RagStore.open(path) as store:
        old = store.collection("old")
        assert old is not None and old.owner is None and old.model == "m"
        made = store.ensure_collection("new", "m", 8, owner="key_0123456789ab")
        assert made.owner == "key_0123456789ab"
        assert {s.name: s.owner for s in store.stats()} == {"old": None, "new": "key_0123456789ab"}
    with RagStore.open(path) as again:  # opening a current store changes nothing
        assert again.collection("new") == made
