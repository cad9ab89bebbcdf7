"""The local-model CLI as a person uses it: pull on first chat, list, show, load/ps/unload, rm."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aigw.local.catalog import load_catalog
from tests.fixtures.daemon import base_env
from tests.fixtures.fake_hub import FakeHub, HubFile

pytestmark = pytest.mark.process
pytest.importorskip("gguf", reason="the 'local' extra (gguf) is not installed")


def aigw(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aigw", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def hub_with_default(tmp_path: Path) -> Iterator[FakeHub]:
    from tests.fixtures.tiny_gguf import write_tiny_llama

    hub = FakeHub().start()
    entry = load_catalog().entries[load_catalog().default]
    assert entry.gguf is not None and entry.gguf.file is not None
    content = write_tiny_llama(tmp_path / "served.gguf").read_bytes()
    hub.add(entry.gguf.repo, entry.gguf.file, HubFile(content))
    yield hub
    hub.stop()


def test_first_chat_pulls_the_default_model_then_answers(hub_with_default: FakeHub, tmp_path: Path) -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8080)) == 0:
            pytest.skip("port 8080 is in use on this machine")
    home = tmp_path / "home"
    env = base_env(home) | {"HF_ENDPOINT": hub_with_default.url}
    env.pop("HF_HUB_OFFLINE", None)  # tests/rag sets it for the session: this pull is from a local stand-in
    env.pop("AIGW_URL")
    try:
        refused = aigw(env, "chat", "hello")  # no terminal to ask in: a clear line, nothing pulled
        assert refused.returncode == 1 and "--yes" in refused.stderr
        assert not (home / "models").exists() or not list((home / "models").glob("*.gguf"))
        r = aigw(env, "chat", "--yes", "hello")
        assert r.returncode == 0, r.stderr
        assert "pulling Qwen/" in r.stderr and "[local/qwen2.5-0.5b" in r.stderr
        assert r.stdout.strip()
        listed = json.loads(aigw(env, "models", "list", "--json").stdout)
        assert "local/qwen2.5-0.5b" in {m["id"] for m in listed["served"]}
        assert next(e for e in listed["catalog"] if e["name"] == "qwen2.5-0.5b")["pulled"] is True

        assert aigw(env, "models", "load", "qwen2.5-0.5b").returncode == 0
        ps = json.loads(aigw(env, "models", "ps", "--json").stdout)
        assert [m["model"] for m in ps["loaded"]] == ["local/qwen2.5-0.5b"]
        assert "local/qwen2.5-0.5b" in aigw(env, "models", "ps").stdout
        assert "unloaded" in aigw(env, "models", "unload", "qwen2.5-0.5b").stdout

        show = aigw(env, "models", "show", "qwen2.5-0.5b")
        assert (
            show.returncode == 0 and "architecture: llama" in show.stdout and "from the GGUF" in show.stdout
        )
        rm = aigw(env, "models", "rm", "qwen2.5-0.5b")
        assert rm.returncode == 0 and not (home / "models" / "qwen2.5-0.5b.gguf").exists()
        gone = aigw(env, "models", "show", "qwen2.5-0.5b")
        assert gone.returncode == 1 and gone.stderr.startswith("aigw: no local model")
    finally:
        aigw(env, "stop")
