"""What clients nobody here wrote need from the wire: CORS for the browser SDKs, x-request-id on
every response, encoding_format applied whatever the target does, /v1/models as the key sees it,
404s that name the endpoint, trailing slashes, clean mid-stream errors, and HTTP/1.0 streams."""

from __future__ import annotations

import base64
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from aigw.access.keys import KeyStore
from aigw.state.db import open_db
from tests.api.test_bad_input import assert_openai_error
from tests.fixtures.daemon import DaemonProcess, fake_config, free_port, write_config
from tests.fixtures.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.process

ORIGIN = "http://localhost:5173"
MSG = [{"role": "user", "content": "hello"}]
# What the OpenAI Node SDK's preflight asks for (openai-node's `buildHeaders`).
STAINLESS = (
    "authorization,content-type,x-stainless-arch,x-stainless-lang,x-stainless-os,"
    "x-stainless-package-version,x-stainless-retry-count,x-stainless-runtime,"
    "x-stainless-runtime-version,x-stainless-timeout"
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    home = tmp_path_factory.mktemp("aigw-clients")
    store = KeyStore(open_db(home / "aigw.db"))
    out = {}
    for name, models in {"narrow": ["smart", "gpt-test"], "open": None}.items():
        _, out[name] = store.create(name, models=models)
    return home, out


@pytest.fixture(scope="module")
def daemon(upstream: FakeOpenAIServer, keys: tuple[Path, dict[str, str]]) -> Iterator[DaemonProcess]:
    home, _ = keys
    port = free_port()
    text = fake_config(upstream.base_url, port, "[usage]\nflush_interval_s = 0.1\n")
    write_config(home, text.replace("[server]\n", f'[server]\nallowed_origins = ["{ORIGIN}"]\n', 1))
    d = DaemonProcess(home, port).start()
    yield d
    assert d.terminate() == 0, d.log()


def sdk(d: DaemonProcess, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=d.url + "/v1", api_key=key, max_retries=0)


# -- 11. CORS --------------------------------------------------------------------------------------


def test_a_browser_sdk_preflight_from_an_allowed_origin_gets_its_headers(daemon: DaemonProcess) -> None:
    pre = httpx.options(
        daemon.url + "/v1/chat/completions",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": STAINLESS,
        },
    )
    assert pre.status_code == 204
    allowed = {h.strip() for h in pre.headers["access-control-allow-headers"].split(",")}
    assert set(STAINLESS.split(",")) <= allowed
    assert pre.headers["access-control-allow-origin"] == ORIGIN


def test_a_preflight_from_another_origin_is_still_refused(daemon: DaemonProcess) -> None:
    pre = httpx.options(
        daemon.url + "/v1/chat/completions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Headers": STAINLESS},
    )
    assert pre.status_code == 403 and "access-control-allow-headers" not in pre.headers


def test_responses_expose_the_headers_clients_read(daemon: DaemonProcess) -> None:
    resp = daemon.post(
        "/v1/chat/completions", json={"model": "gpt-test", "messages": MSG}, headers={"Origin": ORIGIN}
    )
    assert resp.status_code == 200
    exposed = {h.strip() for h in resp.headers["access-control-expose-headers"].split(",")}
    present = {h for h in resp.headers if h.startswith(("x-aigw-", "x-ratelimit-", "x-request-id"))}
    assert present and present <= exposed
    assert {"retry-after", "x-request-id"} <= exposed
    refused = daemon.post(
        "/v1/chat/completions",
        json={"model": "gpt-test", "messages": MSG},
        headers={"Origin": ORIGIN, "Authorization": "Bearer aigw-unknown"},
    )
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ORIGIN


# -- 13. x-request-id ------------------------------------------------------------------------------


def test_every_response_carries_a_request_id(daemon: DaemonProcess) -> None:
    answers = [
        daemon.post("/v1/chat/completions", json={"model": "gpt-test", "messages": MSG}),
        daemon.post("/v1/chat/completions", json={"model": "nope", "messages": MSG}),
        daemon.get("/v1/models"),
        daemon.get("/health"),
        daemon.get("/no/such/thing"),
        daemon.post("/v1/chat/completions", json={}, headers={"Authorization": "Bearer aigw-unknown"}),
        daemon.get("/admin/stats"),
    ]
    ids = [a.headers.get("x-request-id") for a in answers]
    assert all(ids) and len(set(ids)) == len(ids), ids
    with httpx.stream(
        "POST",
        daemon.url + "/v1/chat/completions",
        json={"model": "gpt-test", "messages": MSG, "stream": True},
    ) as s:
        assert s.headers["x-request-id"].startswith("req_")


def test_the_sdk_reads_the_request_id_and_the_usage_row_keeps_it(daemon: DaemonProcess) -> None:
    raw = sdk(daemon).chat.completions.with_raw_response.create(model="gpt-test", messages=MSG)
    rid = raw.request_id
    assert rid and rid.startswith("req_")
    refused = daemon.post("/v1/chat/completions", json={"model": "not-a-model", "messages": MSG})
    assert refused.status_code == 404
    db = open_db(daemon.home / "aigw.db")
    wanted = {rid, refused.headers["x-request-id"]}
    found: set[str] = set()
    for _ in range(50):
        query = "SELECT request_id, dialect FROM usage WHERE request_id IN (?, ?)"
        rows = list(db.query(query, list(wanted)))
        found = {str(r["request_id"]) for r in rows}
        assert all(r["dialect"] == "openai" for r in rows)
        if found == wanted:
            break
        time.sleep(0.1)
    assert found == wanted


def test_a_clients_own_request_id_is_kept_and_a_malformed_one_replaced(daemon: DaemonProcess) -> None:
    mine = daemon.get("/v1/models", headers={"x-request-id": "trace-42.a:b"})
    assert mine.headers["x-request-id"] == "trace-42.a:b"
    for bad in ("x" * 200, "has space", "semi;colon"):
        got = daemon.get("/v1/models", headers={"x-request-id": bad}).headers["x-request-id"]
        assert got.startswith("req_")


# -- 12. encoding_format ---------------------------------------------------------------------------


def test_base64_is_applied_when_the_upstream_ignores_it(daemon: DaemonProcess) -> None:
    # The fake upstream answers floats whatever is asked, as many OpenAI-compatible servers do.
    floats = sdk(daemon).embeddings.create(model="text-embed", input="abc", encoding_format="float")
    b64 = sdk(daemon).embeddings.create(model="text-embed", input="abc", encoding_format="base64")
    encoded = b64.data[0].embedding
    assert isinstance(encoded, str)
    raw = base64.b64decode(encoded)
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(floats.data[0].embedding)
    default = sdk(daemon).embeddings.create(model="text-embed", input="abc")  # the SDK asks base64
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding)


# -- 14. /v1/models --------------------------------------------------------------------------------


def test_models_lists_only_what_the_key_may_use(
    daemon: DaemonProcess, keys: tuple[Path, dict[str, str]]
) -> None:
    _, plain = keys
    narrow = [m.id for m in sdk(daemon, plain["narrow"]).models.list()]
    assert sorted(narrow) == ["gpt-test", "smart"]
    for name in narrow:  # each listed id is one the key can chat with
        assert sdk(daemon, plain["narrow"]).chat.completions.create(model=name, messages=MSG).choices
    everything = [m.id for m in sdk(daemon, plain["open"]).models.list()]
    assert "fake/gpt-test" in everything and "other/shared-model" in everything
    with pytest.raises(openai.NotFoundError):
        sdk(daemon, plain["narrow"]).models.retrieve("other/shared-model")


def test_a_bare_name_chat_accepts_is_retrievable(daemon: DaemonProcess) -> None:
    client = sdk(daemon)
    assert client.chat.completions.create(model="gpt-test", messages=MSG).choices
    got = client.models.retrieve("gpt-test")
    assert got.id == "gpt-test" and got.owned_by == "fake"
    assert client.models.retrieve("fake/gpt-test").id == "fake/gpt-test"
    assert client.models.retrieve("smart").owned_by == "aigw"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


# -- 15. 404s, slashes, stream errors, HTTP/1.0 ----------------------------------------------------


def test_an_unknown_endpoint_is_named_with_the_ones_that_exist(daemon: DaemonProcess) -> None:
    err = assert_openai_error(daemon.post("/v1/assistants", json={}), 404)
    assert "POST '/v1/assistants'" in err["message"]
    assert "POST /v1/chat/completions" in err["message"] and "GET /v1/models" in err["message"]
    wrong = assert_openai_error(daemon.get("/v1/chat/completions"), 405)
    assert "GET '/v1/chat/completions'" in wrong["message"] and "POST" in wrong["message"]


def test_a_trailing_slash_is_served_not_redirected(daemon: DaemonProcess) -> None:
    body = {"model": "gpt-test", "messages": MSG}
    for path in ("/v1/chat/completions/", "/chat/completions/"):
        resp = daemon.post(path, json=body)
        assert resp.status_code == 200 and resp.json()["choices"], (path, resp.status_code)
    assert daemon.get("/v1/models/").json()["object"] == "list"
    c = openai.OpenAI(base_url=daemon.url + "/v1/", api_key="unused", max_retries=0)
    assert c.embeddings.create(model="text-embed", input="x").data


def test_a_stream_broken_midway_says_so_without_library_internals(daemon: DaemonProcess) -> None:
    body = {"model": "fake/break-stream", "messages": MSG, "stream": True}
    with httpx.stream("POST", daemon.url + "/v1/chat/completions", json=body) as s:
        text = "".join(s.iter_text())
    assert '"error"' in text
    error_line = next(line for line in text.splitlines() if '"error"' in line)
    assert "<" not in error_line and "Error:" not in error_line and "payload" not in error_line
    assert "ended before it was complete" in error_line


def _http10(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):  # the server ends the response by closing
            out += chunk
    return out


def test_an_http10_client_gets_a_stream_it_can_read(daemon: DaemonProcess) -> None:
    body = b'{"model": "gpt-test", "stream": true, "messages": [{"role": "user", "content": "one two"}]}'
    raw = _http10(
        daemon.port,
        b"POST /v1/chat/completions HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body,
    )
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0]
    assert b"transfer-encoding" not in head.lower()
    assert payload.startswith(b"data: ") and payload.rstrip().endswith(b"data: [DONE]")
    plain = _http10(daemon.port, b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    assert b"content-length" in plain.lower() and plain.endswith(b"}")


def test_log_lines_of_a_request_carry_its_id(daemon: DaemonProcess) -> None:
    failed = daemon.post("/v1/chat/completions", json={"model": "fake/fail-503", "messages": MSG})
    assert failed.status_code == 502
    rid = failed.headers["x-request-id"]
    for _ in range(50):
        if f"[{rid}]" in daemon.log():
            break
        time.sleep(0.1)
    line = next(line for line in daemon.log().splitlines() if f"[{rid}]" in line)
    assert "fail" in line or "503" in line
