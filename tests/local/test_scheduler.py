"""The memory budget: least-recently-used idle models go first; busy models are never unloaded."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.daemon import DaemonProcess
from tests.local.conftest import start_local_daemon

pytestmark = pytest.mark.process

MSG = [{"role": "user", "content": "hi"}]


def chat(d: DaemonProcess, model: str, **kw: Any) -> httpx.Response:
    body = {"model": model, "messages": MSG, "max_tokens": 2, **kw}
    return httpx.post(d.url + "/v1/chat/completions", json=body, timeout=60)


def loaded(d: DaemonProcess) -> list[str]:
    return [m["model"].removeprefix("local/") for m in d.aget("/admin/local").json()["loaded"]]


def sizes(d: DaemonProcess, *models: str) -> int:
    total = 0
    for m in models:
        assert d.apost("/admin/local/load", json={"model": m}).status_code == 200
        total += next(
            x["memory_bytes"] for x in d.aget("/admin/local").json()["loaded"] if x["model"] == f"local/{m}"
        )
    return total


@pytest.fixture
def measure(gguf_dir: Path, tmp_path: Path) -> dict[str, int]:
    """Each model's memory estimate, read from a daemon with room for everything."""
    d = start_local_daemon(tmp_path / "measure", gguf_dir)
    try:
        return {m: sizes(d, m) for m in ("tiny", "medium")}
    finally:
        assert d.terminate() == 0


def test_least_recently_used_idle_model_is_unloaded_first(
    gguf_dir: Path, tmp_path: Path, measure: dict[str, int]
) -> None:
    budget_gb = 2.5 * measure["tiny"] / 1024**3  # room for two tiny models, not three
    d = start_local_daemon(tmp_path / "home", gguf_dir, local=f"memory_budget_gb = {budget_gb}")
    try:
        for model in ("tiny", "tiny2", "tiny"):  # tiny is now more recent than tiny2
            assert chat(d, model).status_code == 200
        assert sorted(loaded(d)) == ["tiny", "tiny2"]
        assert chat(d, "tiny3").status_code == 200
        assert sorted(loaded(d)) == ["tiny", "tiny3"]
        status = d.aget("/admin/local").json()
        assert status["used_bytes"] <= status["budget_bytes"]
    finally:
        assert d.terminate() == 0


def test_busy_model_is_never_unloaded_and_the_new_load_gets_503(
    gguf_dir: Path, tmp_path: Path, measure: dict[str, int]
) -> None:
    budget_gb = (measure["medium"] + measure["tiny"] // 2) / 1024**3  # medium, or tiny, not both
    d = start_local_daemon(
        tmp_path / "home", gguf_dir, local=f"memory_budget_gb = {budget_gb}\nload_wait_s = 1"
    )
    try:
        body = {"model": "medium", "messages": MSG, "max_tokens": 3000, "temperature": 0, "stream": True}
        streaming = threading.Event()
        done: dict[str, int] = {}

        def long_stream() -> None:
            with httpx.stream("POST", d.url + "/v1/chat/completions", json=body, timeout=120) as resp:
                for line in resp.iter_lines():
                    if '"content":"' in line:
                        streaming.set()
                done["status"] = resp.status_code

        t = threading.Thread(target=long_stream)
        t.start()
        assert streaming.wait(30)
        refused = chat(d, "tiny")
        assert refused.status_code == 503
        assert "held by busy models" in refused.json()["error"]["message"]
        assert refused.headers["retry-after"] == "5"
        assert loaded(d) == ["medium"]  # still there, still generating
        t.join(120)
        assert done["status"] == 200
        assert chat(d, "tiny").status_code == 200  # medium is idle now: it makes room
        assert loaded(d) == ["tiny"]
    finally:
        assert d.terminate() == 0
        assert "Traceback" not in d.log()


def test_model_larger_than_the_budget_is_a_clear_503(gguf_dir: Path, tmp_path: Path) -> None:
    # ~1 MiB: tiny fits, medium never does
    d = start_local_daemon(tmp_path / "home", gguf_dir, local="memory_budget_gb = 0.001")
    try:
        resp = chat(d, "medium")
        assert resp.status_code == 503
        assert "more than the whole memory budget" in resp.json()["error"]["message"]
        assert chat(d, "tiny").status_code == 200
    finally:
        assert d.terminate() == 0


def test_explicit_load_and_unload(gguf_dir: Path, tmp_path: Path) -> None:
    d = start_local_daemon(tmp_path / "home", gguf_dir)
    try:
        r = d.apost("/admin/local/load", json={"model": "tiny"})
        assert r.status_code == 200 and r.json()["status"]["state"] == "idle"
        assert loaded(d) == ["tiny"]
        assert d.apost("/admin/local/unload", json={"model": "tiny"}).json()["was_loaded"] is True
        assert loaded(d) == []
        assert d.apost("/admin/local/load", json={"model": "nope"}).status_code == 404
        t0 = time.monotonic()
        assert d.apost("/admin/local/unload", json={"model": "tiny"}).json()["was_loaded"] is False
        assert time.monotonic() - t0 < 5
    finally:
        assert d.terminate() == 0
