"""Streams are forwarded chunk by chunk, and a departed client stops the upstream stream."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.process

BODY = {"model": "fake/drip-200", "stream": True, "messages": [{"role": "user", "content": "x"}]}


def _progress(upstream: FakeOpenAIServer) -> dict[str, object]:
    return dict(httpx.get(f"http://127.0.0.1:{upstream.port}/_last").json())


def test_first_chunk_arrives_while_upstream_is_still_sending(
    daemon: DaemonProcess, upstream: FakeOpenAIServer
) -> None:
    with httpx.stream("POST", daemon.url + "/v1/chat/completions", json=BODY, timeout=30) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        sent_when_first_arrived = _progress(upstream)["stream_chunks_sent"]
        rest = [line for line in lines if line.startswith("data:")]
    assert json.loads(first[5:])["choices"][0]["delta"]["role"] == "assistant"
    assert isinstance(sent_when_first_arrived, int) and sent_when_first_arrived < 11  # not buffered
    assert rest[-1] == "data: [DONE]"


def test_client_disconnect_stops_the_upstream_stream(
    daemon: DaemonProcess, upstream: FakeOpenAIServer
) -> None:
    with httpx.stream("POST", daemon.url + "/v1/chat/completions", json=BODY, timeout=30) as resp:
        for line in resp.iter_lines():
            if line.startswith("data:"):
                break
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _progress(upstream)["stream_aborted"]:
        time.sleep(0.05)
    progress = _progress(upstream)
    assert progress["stream_aborted"] is True
    assert isinstance(progress["stream_chunks_sent"], int) and progress["stream_chunks_sent"] < 11
    assert daemon.get("/health").status_code == 200
