"""Every kind of bad input gets an OpenAI-format error; the daemon keeps serving and logs no traceback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.daemon import DaemonProcess

pytestmark = pytest.mark.process

GOOD_MSG = [{"role": "user", "content": "hi"}]


def assert_openai_error(resp: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    if param is not None:
        assert err["param"] == param, err
    return dict(err)


@pytest.mark.parametrize(
    "raw",
    [b"{", b"not json", b"", b"[1, 2]", b'"a string"', b"\xff\xfe", b'{"model": "gpt-test", "messages": [}'],
)
def test_malformed_bodies(daemon: DaemonProcess, raw: bytes) -> None:
    resp = daemon.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert_openai_error(resp, 400)


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"model": None}, "model"),
        ({"model": ""}, "model"),
        ({"model": 42}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0]"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
        ({"temperature": 3}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": -1}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"n": 0}, "n"),
        ({"stream": "yes"}, "stream"),
        ({"stop": 5}, "stop"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"tools": [{"type": "nope"}]}, "tools[0].type"),
        ({"response_format": {"type": ""}}, "response_format.type"),
        ({"response_format": {}}, "response_format.type"),
        ({"provider": "nobody"}, "provider"),
        ({"seed": "1"}, "seed"),
    ],
)
def test_invalid_fields_name_the_field(
    daemon: DaemonProcess, patch: dict[str, Any], param: str | None
) -> None:
    body = {"model": "gpt-test", "messages": GOOD_MSG, **patch}
    body = {k: v for k, v in body.items() if v is not None}
    err = assert_openai_error(daemon.post("/v1/chat/completions", json=body), 400)
    if param is not None:
        assert err["param"] == param, err
        assert param.split("[")[0] in err["message"]


def test_missing_field_message(daemon: DaemonProcess) -> None:
    err = assert_openai_error(
        daemon.post("/v1/chat/completions", json={"model": "gpt-test"}), 400, "messages"
    )
    assert err["message"] == "Missing required parameter: 'messages'."


@pytest.mark.parametrize(
    "body",
    [
        {"model": "text-embed"},
        {"model": "text-embed", "input": []},
        {"model": "text-embed", "input": 3},
        {"model": "text-embed", "input": "x", "encoding_format": "hex"},
        {"input": "x"},
    ],
)
def test_invalid_embeddings(daemon: DaemonProcess, body: dict[str, Any]) -> None:
    assert_openai_error(daemon.post("/v1/embeddings", json=body), 400)


def test_body_over_limit_is_413(daemon: DaemonProcess) -> None:
    big = {"model": "gpt-test", "messages": [{"role": "user", "content": "x" * 70_000}]}
    err = assert_openai_error(daemon.post("/v1/chat/completions", json=big), 413)
    assert "65536" in err["message"]


def test_chunked_body_over_limit_is_413(daemon: DaemonProcess) -> None:
    def gen() -> Any:
        yield b'{"model": "gpt-test", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"x" * 8192
        yield b'"}]}'

    resp = httpx.post(daemon.url + "/v1/chat/completions", content=gen(), timeout=10)
    assert_openai_error(resp, 413)


def test_unknown_route_and_method(daemon: DaemonProcess) -> None:
    assert_openai_error(daemon.get("/v1/nothing"), 404)
    assert_openai_error(daemon.get("/v1/chat/completions"), 405)


def test_unknown_model_on_models_endpoint(daemon: DaemonProcess) -> None:
    assert daemon.get("/v1/models/smart").json()["id"] == "smart"
    assert_openai_error(daemon.get("/v1/models/none-such"), 404, "model")


def test_key_fragments_in_upstream_errors_are_redacted(daemon: DaemonProcess) -> None:
    body = {"model": "fake/fail-401", "messages": GOOD_MSG}
    for stream in (False, True):
        resp = daemon.post("/v1/chat/completions", json={**body, "stream": stream})
        err = assert_openai_error(resp, 502)
        assert "Incorrect API key provided: [redacted]" in err["message"], err
        assert "sk-test" not in resp.text and "rint" not in err["message"]
    assert "sk-test" not in daemon.log()


def test_health_endpoints(daemon: DaemonProcess) -> None:
    assert daemon.get("/health").json()["status"] == "ok"
    detail = daemon.get("/health/detailed").json()
    fake = detail["providers"]["fake"]
    assert fake["configured"] is True and fake["reachable"] is True
    assert "gpt-test" in fake["models"]
    assert "sk-test-secret" not in daemon.get("/health/detailed").text
    assert detail["aliases"]["smart"] == ["fake/gpt-test", "other/shared-model"]


def test_unicode_and_control_characters_in_model_names(daemon: DaemonProcess) -> None:
    for model in ("fake/模型", "fake/a\nb"):
        for stream in (False, True):
            body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "x"}]}
            resp = httpx.post(daemon.url + "/v1/chat/completions", json=body, timeout=10)
            assert resp.status_code == 200, resp.text
            assert "\n" not in resp.headers["x-aigw-model"] and resp.headers["x-aigw-model"].isascii()
