"""The daemon bounds each request's head: its size (431) and how long it may take to arrive (408),
and a connection that never says anything is closed; bodies and normal requests are unaffected."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.daemon import DaemonProcess, fake_config, free_port, write_config
from tests.fixtures.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def d(upstream: FakeOpenAIServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    home = tmp_path_factory.mktemp("aigw-http-limits")
    port = free_port()
    text = fake_config(upstream.base_url, port)
    write_config(
        home, text.replace("[server]\n", "[server]\nmax_header_bytes = 8192\nheader_timeout_s = 1\n", 1)
    )
    daemon = DaemonProcess(home, port).start()
    yield daemon
    assert daemon.terminate() == 0, daemon.log()


def _read_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return out


def test_oversized_headers_are_a_431(d: DaemonProcess) -> None:
    resp = httpx.get(d.url + "/health", headers={"x-big": "a" * 100_000}, timeout=10)
    assert resp.status_code == 431 and "8192" in resp.json()["error"]["message"]
    with socket.create_connection(("127.0.0.1", d.port)) as sock:  # a 60 MB header, sent as it goes
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: ")
        sent = 0
        try:
            while sent < 60_000_000:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < 60_000_000
        assert _read_all(sock).startswith(b"HTTP/1.1 431")
    assert httpx.get(d.url + "/health", timeout=5).status_code == 200


def test_slow_headers_are_a_408_and_silent_connections_close(d: DaemonProcess) -> None:
    with socket.create_connection(("127.0.0.1", d.port)) as slow:
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        answer = _read_all(slow)
        assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 4
    with socket.create_connection(("127.0.0.1", d.port)) as silent:
        assert _read_all(silent) == b""
    assert httpx.get(d.url + "/health", timeout=5).status_code == 200


def test_normal_requests_and_bodies_pass(d: DaemonProcess) -> None:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "x" * 60_000}]}
    with httpx.Client(timeout=10) as client:
        for _ in range(3):  # kept alive between requests
            resp = client.post(d.url + "/v1/chat/completions", json=body, headers={"x-pad": "p" * 4000})
            assert resp.status_code == 200, resp.text
        time.sleep(1.5)  # idle on a kept-alive connection: the keep-alive timeout applies, not this
        assert client.get(d.url + "/health").status_code == 200


def test_no_api_docs_pages(d: DaemonProcess) -> None:
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        assert d.get(path).status_code == 404
