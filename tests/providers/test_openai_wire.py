"""Pure wire handling of the openai provider and the error tree."""

from __future__ import annotations

import orjson
import pytest

from aigw.domain import ChatRequest, Usage
from aigw.errors import UpstreamStatusError
from aigw.providers.openai.wire import chunk_from_wire, error_from_body, parse_retry_after, response_from_wire


def test_response_round_trip_keeps_unknown_fields() -> None:
    wire = {
        "id": "c1",
        "object": "chat.completion",
        "created": 5,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi", "refusal": None},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 2,
            "completion_tokens": 1,
            "total_tokens": 3,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
        "system_fingerprint": "fp",
        "service_tier": "default",
    }
    assert response_from_wire("p", wire).to_wire() == wire


def test_chunk_usage_only() -> None:
    c = chunk_from_wire(
        "p",
        {
            "id": "c",
            "created": 1,
            "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        },
    )
    assert c.is_usage_only and c.usage == Usage(1, 2, 3)
    assert c.to_wire(include_usage=True)["usage"]["total_tokens"] == 3
    assert "usage" not in c.to_wire(include_usage=False)


@pytest.mark.parametrize(
    ("status", "retryable", "client_status"),
    [
        (400, False, 400),
        (401, False, 502),
        (403, False, 502),
        (404, False, 404),
        (408, True, 502),
        (409, True, 502),
        (429, True, 429),
        (500, True, 502),
        (503, True, 502),
        (529, True, 502),
    ],
)
def test_status_mapping(status: int, retryable: bool, client_status: int) -> None:
    e = error_from_body("p", status, b'{"error": {"message": "boom", "type": "t", "code": "c"}}', None)
    assert isinstance(e, UpstreamStatusError)
    assert (e.retryable, e.status_code) == (retryable, client_status)
    assert "boom" in e.message and e.message.startswith("p returned HTTP")


def test_non_json_error_body() -> None:
    e = error_from_body("p", 503, b"<html>bad gateway</html>", 2.0)
    assert "bad gateway" in e.message and e.retry_after == 2.0


def test_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after(None) is None


def test_chat_request_views() -> None:
    req = ChatRequest(
        body=orjson.loads(
            b'{"model": "a", "messages": [], "stop": "x", "max_completion_tokens": 5,'
            b' "stream": true, "stream_options": {"include_usage": true}}'
        ),
        model="a",
    )
    assert req.stop == ["x"] and req.max_tokens == 5 and req.stream and req.include_usage
    assert req.with_model("b").model == "b" and req.with_model("b").body is req.body


@pytest.mark.parametrize(
    "wire",
    [
        {"choices": [], "usage": {"prompt_tokens": "12a"}},
        {"choices": [], "created": "abc"},
        {"choices": ["not an object"]},
        {"choices": [], "usage": [1, 2]},
        {"choices": [], "created": float("nan")},
        {"choices": [], "usage": {"total_tokens": True}},
        {"choices": "x"},
        {},
    ],
)
def test_malformed_upstream_bodies_are_protocol_errors(wire: dict[str, object]) -> None:
    from aigw.errors import UpstreamProtocolError

    with pytest.raises(UpstreamProtocolError):
        response_from_wire("p", wire)
    if wire:  # a chunk may lack choices; anything else malformed is refused the same way
        with pytest.raises(UpstreamProtocolError):
            chunk_from_wire("p", wire)


def test_retry_after_nonsense() -> None:
    assert parse_retry_after("inf") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("1e12") == 86_400.0
