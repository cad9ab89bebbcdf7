"""Fault injection through the real daemon, driven by the official openai SDK.

The bar: 2,000 requests (half streaming) at 16 concurrent through an alias of three targets,
the first failing 30% of requests in random ways and the second 10%: every request gets a valid
completion, and no stream carries content from two targets.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.fixtures.daemon import DaemonProcess, free_port, write_config
from tests.fixtures.fault_upstream import FAULTS, FaultUpstreamServer, answer_text

pytestmark = pytest.mark.process

MSG = [{"role": "user", "content": "hi"}]
# Faults a target can suffer before any content reached the client: all of them hidden.
HIDDEN_FAULTS = FAULTS


def config(url: str, port: int) -> str:
    providers = "".join(
        f"""
[providers.{name}]
type = "openai"
base_url = "{url}"
models = ["{model}"]
discover_models = false
first_byte_timeout_s = 0.5
read_timeout_s = 2
"""
        for name, model in (("p1", "a"), ("p2", "b"), ("p3", "c"))
    )
    return f"""
[server]
port = {port}

[routing]
retries = 2
backoff_base_s = 0.005
backoff_max_s = 0.05
retry_after_cap_s = 0.5
first_token_timeout_s = 0.5
deadline_s = 30

[routing.breaker]
cooldown_s = 1
{providers}
[models.smart]
targets = [
  {{ provider = "p1", model = "a" }}, {{ provider = "p2", model = "b" }}, {{ provider = "p3", model = "c" }}
]
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultUpstreamServer]:
    s = FaultUpstreamServer(hang_s=2.5, retry_after="1").start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def daemon(
    upstream: FaultUpstreamServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    home: Path = tmp_path_factory.mktemp("aigw-faults")
    port = free_port()
    write_config(home, config(upstream.base_url, port))
    d = DaemonProcess(home, port).start()
    yield d
    assert d.terminate() == 0, d.log()


@pytest.fixture
def fake(upstream: FaultUpstreamServer) -> FaultUpstreamServer:
    upstream.fake.reset()
    return upstream


def sdk(d: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=d.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_fallback_headers_name_the_answering_target(daemon: DaemonProcess, fake: FaultUpstreamServer) -> None:
    fake.fake.script("a", "500", "503", "reset")
    raw = sdk(daemon).chat.completions.with_raw_response.create(model="smart", messages=MSG)
    assert raw.parse().choices[0].message.content == answer_text("b")
    h = raw.headers
    assert (h["x-aigw-provider"], h["x-aigw-model"], h["x-aigw-fallbacks"], h["x-aigw-retries"]) == (
        "p2",
        "b",
        "1",
        "2",
    )
    assert fake.fake.attempts == {"a": 3, "b": 1}


@pytest.mark.parametrize(
    ("kind", "status", "attempts"),
    [
        ("500", 502, 3),
        ("503", 502, 3),
        ("429", 429, 1),  # Retry-After 1 s is beyond the 0.5 s cap: not waited for
        ("hang", 504, 3),
        ("reset", 502, 3),
        ("cut", 502, 3),
        ("bad-json", 502, 1),
    ],
)
def test_a_lone_failing_target_gives_an_openai_error_with_the_right_status(
    daemon: DaemonProcess, fake: FaultUpstreamServer, kind: str, status: int, attempts: int
) -> None:
    model = f"lone-{kind}"  # a target (and breaker) of its own
    fake.fake.script(model, *[kind] * attempts)
    with pytest.raises(openai.APIStatusError) as e:
        sdk(daemon).chat.completions.create(model=f"p1/{model}", messages=MSG)
    assert e.value.status_code == status
    body = e.value.body
    assert isinstance(body, dict) and body["message"] and body["type"]
    assert fake.fake.attempts == {model: attempts}
    assert sdk(daemon).chat.completions.create(model=f"p1/{model}", messages=MSG).choices[0].message.content


def test_a_stream_cut_after_content_ends_with_an_error_event(
    daemon: DaemonProcess, fake: FaultUpstreamServer
) -> None:
    fake.fake.script("a", "cut-late")
    got: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in sdk(daemon).chat.completions.create(model="smart", messages=MSG, stream=True):
            assert chunk.model == "a"
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
    assert "".join(got) and fake.fake.attempts == {"a": 1}
    routing = daemon.get("/health/detailed").json()["routing"]
    assert routing["broken_streams"] >= 1


def test_breaker_state_is_visible(daemon: DaemonProcess, fake: FaultUpstreamServer) -> None:
    daemon.post("/v1/chat/completions", json={"model": "p1/a", "messages": MSG})
    breakers = daemon.get("/health/detailed").json()["breakers"]
    assert breakers["p1/a"]["state"] in ("closed", "open", "half_open")
    assert {"consecutive_failures", "retry_in_s", "opens"} <= set(breakers["p1/a"])


async def _one(client: openai.AsyncOpenAI, i: int, seen: Counter[str]) -> None:
    if i % 2:
        models: set[str] = set()
        text: list[str] = []
        stream = await client.chat.completions.create(model="smart", messages=MSG, stream=True)  # type: ignore[arg-type]
        async for chunk in stream:
            models.add(chunk.model)
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
        assert len(models) == 1, f"stream mixed targets: {models}"
        model = models.pop()
        assert "".join(text) == answer_text(model)
    else:
        resp = await client.chat.completions.create(model="smart", messages=MSG)  # type: ignore[arg-type]
        model = resp.model
        assert resp.choices[0].message.content == answer_text(model)
        assert resp.choices[0].finish_reason == "stop"
    seen[model] += 1


def test_the_bar_zero_client_visible_failures(daemon: DaemonProcess, fake: FaultUpstreamServer) -> None:
    fake.fake.randomly("a", 0.30, HIDDEN_FAULTS, seed=11)
    fake.fake.randomly("b", 0.10, HIDDEN_FAULTS, seed=12)
    seen: Counter[str] = Counter()
    failures: list[BaseException] = []

    async def run() -> None:
        client = openai.AsyncOpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0, timeout=60)
        sem = asyncio.Semaphore(16)

        async def guarded(i: int) -> None:
            async with sem:
                try:
                    await _one(client, i, seen)
                except Exception as e:
                    failures.append(e)

        await asyncio.gather(*(guarded(i) for i in range(2000)))
        await client.close()

    t0 = time.monotonic()
    asyncio.run(run())
    elapsed = time.monotonic() - t0
    detail = httpx.get(daemon.url + "/health/detailed").json()
    faults = {k: v for k, v in fake.fake.faults_served.items() if k != "ok"}
    print(
        f"\n2000 requests in {elapsed:.1f} s; answered by {dict(seen)}; upstream attempts "
        f"{dict(fake.fake.attempts)}; faults injected {faults}; routing {detail['routing']}"
    )
    assert failures == [], f"{len(failures)} client-visible failures, first: {failures[0]!r}"
    assert sum(seen.values()) == 2000
    assert sum(faults.values()) > 300 and len(faults) == len(HIDDEN_FAULTS)  # (fewer when a breaker opens)
    assert seen["a"] > 0 and seen["b"] > 0  # how they split depends on when breakers open


def test_status_shows_an_open_breaker(daemon: DaemonProcess, fake: FaultUpstreamServer) -> None:
    fake.fake.script("brk", *["500"] * 5)
    for _ in range(2):  # 3 attempts, then 2: five consecutive failures open the breaker
        daemon.post("/v1/chat/completions", json={"model": "p1/brk", "messages": MSG})
    assert fake.fake.attempts == {"brk": 5}
    out = subprocess.run(
        [sys.executable, "-m", "aigw", "status"],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    # cooldown_s = 1: within it the wait is rounded up; past it (a slow machine) the next request probes
    assert re.search(r"breaker p1/brk: open, (retry in 1 s|the next request probes it)", out.stdout)
    assert "fallbacks" in out.stdout
