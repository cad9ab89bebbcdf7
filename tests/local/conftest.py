"""Real llama.cpp on GGUF models the tests write themselves, behind a real aigw process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.daemon import DaemonProcess, free_port, write_config

MEDIUM = {"n_embd": 256, "n_layer": 4, "n_ff": 512, "n_ctx": 4096}


def needs_llama_cpp() -> None:
    """Skip (cleanly) where the 'local' extra is not installed."""
    pytest.importorskip("llama_cpp", reason="the 'local' extra (llama-cpp-python) is not installed")
    pytest.importorskip("gguf", reason="the 'local' extra (gguf) is not installed")


@pytest.fixture(scope="session")
def gguf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    needs_llama_cpp()
    from tests.fixtures.tiny_gguf import write_tiny_llama

    d = tmp_path_factory.mktemp("gguf")
    for i, name in enumerate(("tiny", "tiny2", "tiny3")):
        write_tiny_llama(d / f"{name}.gguf", seed=i)
    write_tiny_llama(d / "medium.gguf", seed=7, **MEDIUM)
    return d


def local_config(port: int, gguf: Path, *, local: str = "", extra: str = "") -> str:
    return f"""
[server]
port = {port}
shutdown_grace_s = 5

[local]
{local}

[providers.local]
type = "llama_cpp"
parallel = 2  # fixed, so memory estimates do not depend on each test's budget

[providers.local.models]
tiny = "{gguf}/tiny.gguf"
tiny2 = "{gguf}/tiny2.gguf"
tiny3 = "{gguf}/tiny3.gguf"
medium = {{ path = "{gguf}/medium.gguf", context = 4096 }}
emb = {{ path = "{gguf}/tiny.gguf", embedding = true }}
{extra}
"""


def start_local_daemon(home: Path, gguf: Path, **kw: str) -> DaemonProcess:
    port = free_port()
    write_config(home, local_config(port, gguf, **kw))
    return DaemonProcess(home, port).start()


@pytest.fixture(scope="session")
def local_daemon(gguf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    d = start_local_daemon(tmp_path_factory.mktemp("local-home"), gguf_dir, local="max_queue = 3")
    yield d
    assert d.terminate() == 0
    assert "Traceback" not in d.log(), d.log()
