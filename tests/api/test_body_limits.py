"""Every endpoint reads at most `server.max_body_bytes` (65536 in the test config) and says so in a
413; encoded bodies are decoded or refused with 415; no error echoes a long input back."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator

import httpx
import pytest

from tests.api.test_bad_input import assert_openai_error
from tests.fixtures.daemon import DaemonProcess

pytestmark = pytest.mark.process

BIG = b'{"query": "' + b"x" * 70_000 + b'"}'
ENDPOINTS = [
    ("POST", "/v1/rag/search", False),
    ("POST", "/v1/rag/index", False),
    ("POST", "/v1/rag/query", False),
    ("POST", "/v1/chat/completions", False),
    ("POST", "/v1/embeddings", False),
    ("POST", "/admin/local/load", True),
    ("POST", "/admin/local/unload", True),
    ("POST", "/admin/cache/clear", True),
    ("POST", "/v1/models", False),
]


def _headers(daemon: DaemonProcess, admin: bool) -> dict[str, str]:
    return {"content-type": "application/json", **(daemon.admin_headers() if admin else {})}


@pytest.mark.parametrize(("method", "path", "admin"), ENDPOINTS)
def test_every_endpoint_refuses_a_body_over_the_limit(
    daemon: DaemonProcess, method: str, path: str, admin: bool
) -> None:
    resp = httpx.request(method, daemon.url + path, content=BIG, headers=_headers(daemon, admin), timeout=10)
    err = assert_openai_error(resp, 413)
    assert "65536" in err["message"]

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"x" * 8192

    resp = httpx.request(
        method, daemon.url + path, content=chunks(), headers=_headers(daemon, admin), timeout=10
    )
    assert_openai_error(resp, 413)
    assert daemon.get("/health").status_code == 200


def test_a_long_model_name_is_not_echoed_back(daemon: DaemonProcess) -> None:
    name = "m" * 60_000
    chat = daemon.post(
        "/v1/chat/completions", json={"model": name, "messages": [{"role": "user", "content": "x"}]}
    )
    assert len(assert_openai_error(chat, 404)["message"]) < 1000
    load = httpx.post(
        daemon.url + "/admin/local/load", json={"model": name}, headers=daemon.admin_headers(), timeout=10
    )
    assert load.status_code >= 400 and len(load.content) < 2000
    retrieve = daemon.get("/v1/models/" + "m" * 6000)
    assert len(assert_openai_error(retrieve, 404)["message"]) < 1000


def test_unknown_fields_are_not_echoed_back(daemon: DaemonProcess) -> None:
    body = b'{"query": "q", "' + b"k" * 50_000 + b'": 1}'
    resp = daemon.post("/v1/rag/search", content=body, headers={"content-type": "application/json"})
    assert resp.status_code in (400, 503) and len(resp.content) < 5000


CHAT = b'{"model": "gpt-test", "messages": [{"role": "user", "content": "zipped"}]}'


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_an_encoded_body_is_decoded(daemon: DaemonProcess, encoding: str) -> None:
    raw = gzip.compress(CHAT) if encoding == "gzip" else zlib.compress(CHAT)
    resp = daemon.post(
        "/v1/chat/completions",
        content=raw,
        headers={"content-type": "application/json", "content-encoding": encoding},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "echo: zipped"


def test_other_encodings_are_refused_with_415(daemon: DaemonProcess) -> None:
    for path in ("/v1/chat/completions", "/v1/rag/search"):
        resp = daemon.post(path, content=b"\x1b\x00\x00", headers={"content-encoding": "br"})
        assert "br" in assert_openai_error(resp, 415)["message"]


def test_a_broken_or_inflating_gzip_body(daemon: DaemonProcess) -> None:
    for path in ("/v1/chat/completions", "/v1/rag/search"):
        broken = daemon.post(path, content=b"\x1f\x8b not gzip", headers={"content-encoding": "gzip"})
        assert "Content-Encoding" in assert_openai_error(broken, 400)["message"]
        bomb = gzip.compress(b'{"query": "' + b" " * 5_000_000 + b'"}')
        assert len(bomb) < 65536
        assert_openai_error(daemon.post(path, content=bomb, headers={"content-encoding": "gzip"}), 413)
