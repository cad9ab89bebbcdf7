from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.daemon import DaemonProcess, fake_config, free_port, write_config
from tests.fixtures.fake_openai import FakeOpenAIServer


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def daemon(upstream: FakeOpenAIServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One real daemon shared by the API tests, in front of the fake upstream."""
    home = tmp_path_factory.mktemp("aigw-home")
    port = free_port()
    write_config(home, fake_config(upstream.base_url, port))
    d = DaemonProcess(home, port).start()
    yield d
    code = d.terminate()
    log = d.log()
    assert code == 0, log
    assert "Traceback" not in log, log


@pytest.fixture
def upstream_last(upstream: FakeOpenAIServer) -> dict[str, object]:
    return dict(httpx.get(f"http://127.0.0.1:{upstream.port}/_last").json())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h
