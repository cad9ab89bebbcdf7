"""Anonymous clients are limited per address, and every loopback address is one: binding to
127.0.0.2, .3, ... does not escape the limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.daemon import DaemonProcess, fake_config, free_port, write_config
from tests.fixtures.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def limited(upstream: FakeOpenAIServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    home: Path = tmp_path_factory.mktemp("aigw-anon")
    port = free_port()
    write_config(home, fake_config(upstream.base_url, port, "[limits]\nrpm = 2\n"))
    d = DaemonProcess(home, port).start()
    yield d
    assert d.terminate() == 0, d.log()


def test_loopback_addresses_share_one_limit(limited: DaemonProcess) -> None:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    statuses = []
    for source in ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"):
        with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10) as client:
            resp = client.post(limited.url + "/v1/chat/completions", json=body)
            statuses.append(resp.status_code)
    assert statuses == [200, 200, 429, 429]
    assert "clients on this machine" in resp.json()["error"]["message"]
