"""SIGTERM (and Ctrl-C): stop accepting, finish in-flight requests, exit 0."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.daemon import DaemonProcess, fake_config, free_port, write_config
from tests.fixtures.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.process


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_in_flight_request_and_exits_zero(
    upstream: FakeOpenAIServer, home: Path, sig: signal.Signals
) -> None:
    port = free_port()
    write_config(home, fake_config(upstream.base_url, port))
    d = DaemonProcess(home, port).start()
    result: dict[str, httpx.Response] = {}
    text = f"in flight {sig.name}"  # this run's own request, not an earlier run's

    def call() -> None:
        result["resp"] = httpx.post(
            d.url + "/v1/chat/completions",
            json={"model": "fake/slow-1500", "messages": [{"role": "user", "content": text}]},
            timeout=30,
        )

    t = threading.Thread(target=call)
    t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # wait until the upstream has the request
        last = httpx.get(f"http://127.0.0.1:{upstream.port}/_last").json()["body"]
        if last["model"] == "slow-1500" and last["messages"][0]["content"] == text:
            break
        time.sleep(0.02)
    assert d.proc is not None
    d.proc.send_signal(sig)
    assert d.proc.wait(20) == 0
    t.join(10)
    assert result["resp"].status_code == 200
    assert result["resp"].json()["choices"][0]["message"]["content"] == f"echo: {text}"
    with pytest.raises(httpx.ConnectError):
        httpx.get(d.url + "/health", timeout=2)
    assert not (home / "aigw.pid").exists()
    assert "Traceback" not in d.log()


def test_stream_cut_by_the_grace_period_ends_with_an_error_event(
    upstream: FakeOpenAIServer, home: Path
) -> None:
    port = free_port()
    write_config(
        home, fake_config(upstream.base_url, port).replace("shutdown_grace_s = 5", "shutdown_grace_s = 1")
    )
    d = DaemonProcess(home, port).start()
    body = {"model": "fake/drip-1000", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with httpx.stream("POST", d.url + "/v1/chat/completions", json=body, timeout=30) as resp:
        lines = resp.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
        assert d.proc is not None
        d.proc.send_signal(signal.SIGTERM)
        rest = [line for line in lines if line.startswith("data:")]
    assert d.proc.wait(20) == 0
    assert "shutting down" in rest[-2] and rest[-1] == "data: [DONE]"
    assert "Traceback" not in d.log()
