"""`aigw models pull` against a local stand-in for the Hub: good file, bad checksum, interrupted transfer."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aigw.local.catalog import Catalog, CatalogEntry, Source, load_catalog
from aigw.local.pull import PullError, PullStopped, PullTarget, pull, resolve
from tests.fixtures.daemon import base_env
from tests.fixtures.fake_hub import FakeHub, HubFile

REPO = "acme/Tiny-GGUF"
CONTENT = os.urandom(3 * 1024 * 1024 + 123)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    pytest.importorskip("huggingface_hub", reason="the 'local' extra (huggingface-hub) is not installed")
    h = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", h.url)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield h
    h.stop()


def test_resolve_catalog_names_and_repo_paths() -> None:
    cat = load_catalog()
    assert cat.default in cat.entries
    t = resolve("qwen2.5-0.5b", cat)
    assert t.repo == "Qwen/Qwen2.5-0.5B-Instruct-GGUF" and t.file.endswith(".gguf")
    t = resolve("org/repo-GGUF/sub/Model-Q4.gguf", cat)
    assert (t.name, t.repo, t.file) == ("model-q4", "org/repo-GGUF", "sub/Model-Q4.gguf")
    with pytest.raises(Exception, match="unknown model"):
        resolve("no-such-model", cat)


def test_good_file_is_downloaded_and_verified(hub: FakeHub, tmp_path: Path) -> None:
    hub.add(REPO, "tiny.gguf", HubFile(CONTENT))
    dest = pull(PullTarget("tiny", REPO, "tiny.gguf", None), tmp_path, progress=False)
    assert dest == tmp_path / "tiny.gguf" and dest.read_bytes() == CONTENT
    again = pull(PullTarget("tiny", REPO, "tiny.gguf", None), tmp_path, progress=False)
    assert again == dest and len(hub.files[f"{REPO}/tiny.gguf"].gets) == 1  # intact: not fetched again


def test_a_vision_models_projector_is_pulled_beside_it(hub: FakeHub, tmp_path: Path) -> None:
    projector = os.urandom(4096)
    hub.add(REPO, "seer.gguf", HubFile(CONTENT))
    hub.add(REPO, "mmproj-seer.gguf", HubFile(projector))
    dest = pull(PullTarget("seer", REPO, "seer.gguf", None, "mmproj-seer.gguf"), tmp_path, progress=False)
    assert dest.read_bytes() == CONTENT
    assert (tmp_path / "seer.mmproj.gguf").read_bytes() == projector  # where discovery pairs them
    entry = resolve("smolvlm-256m", load_catalog(), "gguf")
    assert entry.mmproj is not None and entry.mmproj.startswith("mmproj-")


def test_catalog_checksum_is_enforced(hub: FakeHub, tmp_path: Path) -> None:
    hub.add(REPO, "tiny.gguf", HubFile(CONTENT))
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(PullError, match="failed its checksum"):
        pull(PullTarget("tiny", REPO, "tiny.gguf", wrong), tmp_path, progress=False)
    assert not (tmp_path / "tiny.gguf").exists()
    assert not list(tmp_path.rglob("tiny.gguf"))  # the bad download is gone too


def test_hub_checksum_that_does_not_match_is_refused(hub: FakeHub, tmp_path: Path) -> None:
    hub.add(REPO, "tiny.gguf", HubFile(CONTENT, etag=hashlib.sha256(b"other").hexdigest()))
    with pytest.raises(PullError, match="refused and deleted"):
        pull(PullTarget("tiny", REPO, "tiny.gguf", None), tmp_path, progress=False)
    assert not (tmp_path / "tiny.gguf").exists()


def test_interrupted_transfer_resumes(hub: FakeHub, tmp_path: Path) -> None:
    # huggingface_hub writes in 10 MiB chunks: cut after the first one has reached the disk.
    big = os.urandom(12 * 1024 * 1024)
    f = hub.add(REPO, "tiny.gguf", HubFile(big, cut_after=11 * 1024 * 1024))
    target = PullTarget("tiny", REPO, "tiny.gguf", None)
    try:
        dest = pull(target, tmp_path, progress=False)
    except PullError:  # the library gave up this time: the next pull picks up where it stopped
        dest = pull(target, tmp_path, progress=False)
    assert dest.read_bytes() == big
    assert f.gets[0] == "" and f.gets[1] == f"bytes={10 * 1024 * 1024}-", f.gets


def test_a_watched_pull_reports_its_bytes_and_stops_when_asked(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    mib = 1024 * 1024
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", mib)
    f = hub.add(REPO, "tiny.gguf", HubFile(CONTENT))
    target = PullTarget("tiny", REPO, "tiny.gguf", None)
    stop = threading.Event()
    seen: list[tuple[str, int, int | None]] = []

    def on_bytes(file: str, done: int, total: int | None) -> None:
        seen.append((file, done, total))
        if done >= 2 * mib:
            stop.set()  # as when the client leaves: the pull stops at its next chunk

    with pytest.raises(PullStopped, match="stopped before its end"):
        pull(target, tmp_path, progress=False, on_bytes=on_bytes, stop=stop)
    assert seen == [("tiny.gguf", mib, len(CONTENT)), ("tiny.gguf", 2 * mib, len(CONTENT))]
    assert not (tmp_path / "tiny.gguf").exists()
    later: list[int] = []
    files: list[tuple[str, int]] = []
    dest = pull(
        target, tmp_path, progress=False, on_bytes=lambda _f, done, _t: later.append(done),
        on_file=lambda name, size: files.append((name, size)),
    )  # fmt: skip
    assert dest.read_bytes() == CONTENT and len(f.gets) == 2
    assert later == [mib, 2 * mib, 3 * mib, len(CONTENT)] and files == [("tiny.gguf", len(CONTENT))]


def test_missing_file_is_a_clear_error(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(PullError, match="does not exist"):
        pull(PullTarget("x", REPO, "nope.gguf", None), tmp_path, progress=False)


@pytest.mark.process
def test_cli_pull_by_repo_path(hub: FakeHub, tmp_path: Path) -> None:
    hub.add(REPO, "Tiny-Q8.gguf", HubFile(CONTENT))
    env = base_env(tmp_path) | {"HF_ENDPOINT": hub.url}
    env.pop("HF_HUB_OFFLINE", None)  # tests/rag sets it for the session: this pull is from a local stand-in
    r = subprocess.run(
        [sys.executable, "-m", "aigw", "models", "pull", f"{REPO}/Tiny-Q8.gguf"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "models" / "tiny-q8.gguf").read_bytes() == CONTENT
    assert "tiny-q8" in r.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "aigw", "models", "pull", f"{REPO}/missing.gguf"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    last = bad.stderr.strip().splitlines()[-1]
    assert bad.returncode == 1 and last == f"aigw: {REPO}/missing.gguf does not exist on the Hub"
    assert "Traceback" not in bad.stderr


def test_catalog_entries_are_complete() -> None:
    cat = load_catalog()
    for entry in cat.entries.values():
        assert isinstance(entry, CatalogEntry) and entry.context > 0
        assert isinstance(entry.gguf, Source) and entry.gguf.file and entry.gguf.file.endswith(".gguf")
    assert isinstance(cat, Catalog) and any(e.embedding for e in cat.entries.values())


def test_mlx_model_directory_is_pulled_file_by_file_and_verified(hub: FakeHub, tmp_path: Path) -> None:
    pytest.importorskip("mlx_lm")
    from tests.fixtures.tiny_mlx import write_tiny_mlx

    src = write_tiny_mlx(tmp_path / "src")
    repo = "mlx-community/Tiny-4bit"
    for f in src.iterdir():
        hub.add(repo, f.name, HubFile(f.read_bytes()))
    target = resolve(repo, load_catalog())
    assert (target.format, target.name) == ("mlx", "tiny-4bit")
    dest = pull(target, tmp_path / "models", progress=False)
    assert dest == tmp_path / "models" / "tiny-4bit"
    assert {p.name for p in dest.iterdir()} == {f.name for f in src.iterdir()}
    assert (dest / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    from aigw.local.mlx import TYPE as MLX

    assert "tiny-4bit" in MLX.discover(tmp_path / "models")
    assert MLX.describe(dest)["format"] == "mlx" and MLX.is_model(dest)

    hub.add("mlx-community/Bad", "config.json", HubFile(b"{}", etag=hashlib.sha256(b"x").hexdigest()))
    with pytest.raises(PullError, match="failed its checksum"):
        pull(resolve("mlx-community/Bad", load_catalog()), tmp_path / "models", progress=False)
    assert not (tmp_path / "models" / "bad").exists()


def test_catalog_pull_prefers_mlx_only_on_apple_silicon() -> None:
    from aigw.local.pull import prefers_mlx

    cat = load_catalog()
    assert resolve("qwen2.5-0.5b", cat).format == ("mlx" if prefers_mlx() else "gguf")
    assert resolve("qwen2.5-0.5b", cat, "gguf").file == "qwen2.5-0.5b-instruct-q4_k_m.gguf"
    assert resolve("qwen2.5-0.5b", cat, "mlx").repo == "mlx-community/Qwen2.5-0.5B-Instruct-4bit"
    with pytest.raises(Exception, match="no MLX form"):
        resolve("smollm2-360m", cat, "mlx")
