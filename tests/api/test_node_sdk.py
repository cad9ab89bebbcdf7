"""The official OpenAI Node SDK (from npm, installed by scripts/test into tests/node) against a
real daemon: embeddings as it asks for them by default (base64), chat, streams, request ids,
models. Skipped only where node is missing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.daemon import DaemonProcess

pytestmark = pytest.mark.process

NODE_DIR = Path(__file__).parent.parent / "node"


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.skip("node is not installed")
    if not (NODE_DIR / "node_modules" / "openai").is_dir():
        pytest.fail("the Node SDK is not installed: run bash scripts/test (npm ci --prefix tests/node)")
    return exe


def test_the_node_sdk_works_unmodified(node: str, daemon: DaemonProcess) -> None:
    done = subprocess.run(
        [node, str(NODE_DIR / "openai_client.mjs"), daemon.url + "/v1"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=NODE_DIR,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [len(v) for v in out["embeddings"]] == [8, 8]
    for decoded, floats in zip(out["embeddings"], out["floats"], strict=True):
        assert decoded == pytest.approx(floats)  # base64, decoded by the SDK to the same vectors
    assert out["chat"] == "echo: hi node"
    assert out["stream"] == "echo: stream please"
    assert out["request_id"].startswith("req_")
    assert out["chat_request_id"] == out["request_id"]
    assert "fake/gpt-test" in out["models"]
