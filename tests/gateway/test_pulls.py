"""Pulls for the API (Ollama's /api/pull) in process, against a local stand-in for the Hub: a pull
nobody waits for any more (its client left) stops at its next chunk instead of running to its end,
and the daemon stopping stops every pull under way."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aigw.config import Config
from aigw.engine.engine import Engine, EngineLimits
from aigw.gateway.pulls import ModelPulls
from aigw.local.library import ModelLibrary
from aigw.providers.registry import ProviderRegistry
from tests.fixtures.fake_hub import FakeHub, HubFile

pytestmark = pytest.mark.anyio
REPO = "acme/Big-GGUF"
MIB = 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    hf = pytest.importorskip("huggingface_hub.constants", reason="the 'local' extra is not installed")
    monkeypatch.setattr(hf, "DOWNLOAD_CHUNK_SIZE", MIB // 4)  # many chunks: many chances to stop
    h = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", h.url)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    h.add(REPO, "big.gguf", HubFile(os.urandom(64 * MIB)))
    yield h
    h.stop()


def pulls(models: Path) -> ModelPulls:
    cfg = Config.model_validate({"providers": {"local": {"type": "llama_cpp"}}})
    library = ModelLibrary(models, cfg, ProviderRegistry.from_entry_points())
    return ModelPulls(library, Engine(EngineLimits(memory_budget_bytes=1 << 30)))


def until_quiet(staging: Path) -> None:
    """Until no partial download is left in `staging` (huggingface_hub removes its temporary file
    when the download ends, however it ends, and moves it to the file's name first if complete)."""
    deadline = time.monotonic() + 60
    while not staging.exists() or any(staging.rglob("*.incomplete")):
        assert time.monotonic() < deadline, "the download never ended"
        time.sleep(0.02)


async def test_a_pull_nobody_waits_for_stops_at_its_next_chunk(hub: FakeHub, tmp_path: Path) -> None:
    p = pulls(tmp_path)
    planned = p.plan(f"{REPO}/big.gguf")
    first = asyncio.Event()
    seen: list[dict[str, Any]] = []

    def progress(event: dict[str, Any]) -> None:
        seen.append(event)
        first.set()

    task = asyncio.ensure_future(p.pull(planned, progress))
    await first.wait()
    task.cancel()  # what the Ollama route does when its client leaves
    with pytest.raises(asyncio.CancelledError):
        await task
    staging = tmp_path / ".downloads"
    await asyncio.to_thread(until_quiet, staging)
    assert not planned.where.path.exists() and not list(
        staging.rglob("big.gguf")
    )  # it did not run to its end
    assert seen[0]["completed"] < seen[0]["total"] == 64 * MIB


async def test_stopping_the_daemon_stops_every_pull(hub: FakeHub, tmp_path: Path) -> None:
    p = pulls(tmp_path)
    planned = p.plan(f"{REPO}/big.gguf")
    first = asyncio.Event()
    task = asyncio.ensure_future(p.pull(planned, lambda _e: first.set()))
    await first.wait()
    p.stop()  # Gateway.aclose
    with pytest.raises(Exception, match="stopped before its end"):
        await task
    assert not planned.where.path.exists()
