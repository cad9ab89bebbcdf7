"""kill -9 in the middle of indexing: the next run completes and the store stays consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aigw.rag.embed import SentenceTransformerEmbedder
from aigw.rag.ingest import index_folder
from aigw.rag.store import RagStore
from tests.rag.corpus import products, write_corpus

FILES = 240

CHILD = """
import sys
from aigw.rag.embed import SentenceTransformerEmbedder
from aigw.rag.ingest import index_folder
from aigw.rag.store import RagStore

store = RagStore.open(sys.argv[1])
index_folder(store, "docs", sys.argv[2], SentenceTransformerEmbedder.load(), batch_chunks=6)
print("finished", flush=True)
"""

pytestmark = pytest.mark.process


def committed_files(store: RagStore) -> int:
    return int(store._conn.execute("SELECT count(*) FROM rag_files").fetchone()[0])


def test_kill_during_index_then_rerun(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    docs = tmp_path / "docs"
    write_corpus(docs, products(FILES, seed=3))
    db = tmp_path / "rag.db"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(docs)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    store = RagStore.open(db)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and child.poll() is None:
            if store.collection("docs") and committed_files(store) >= 20:
                break
            time.sleep(0.02)
        assert child.poll() is None, child.communicate()
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL

        done = committed_files(store)
        assert 20 <= done < FILES
        assert store.integrity_check() == "ok"

        summary = index_folder(store, "docs", docs, embedder)
        assert summary.unchanged == done  # what was committed before the kill is kept as is
        assert summary.unchanged + summary.indexed == FILES
        assert summary.removed == 0 and summary.skipped == []

        conn = store._conn
        chunks = conn.execute("SELECT count(*) FROM rag_chunks").fetchone()[0]
        assert chunks == FILES * 3
        assert conn.execute("SELECT count(*) FROM rag_vectors_1").fetchone()[0] == chunks
        assert conn.execute("SELECT count(*) FROM rag_bits_1").fetchone()[0] == chunks
        assert conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM rag_chunks GROUP BY file_id, position HAVING count(*) > 1)"
        ).fetchone()[0] == 0
        assert conn.execute(
            "SELECT count(*) FROM rag_chunks WHERE file_id NOT IN (SELECT id FROM rag_files)"
        ).fetchone()[0] == 0
        assert store.stats("docs")[0].files == FILES
        assert store.integrity_check() == "ok"
    finally:
        if child.poll() is None:
            child.kill()
        store.close()
