"""Load balancing through the real daemon, driven by the official openai SDK: aliases over two (or
three) fake OpenAI-compatible replicas, each counting the requests it received (GET /_last)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.fixtures.daemon import DaemonProcess, free_port, write_config
from tests.fixtures.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.process

MSG = [{"role": "user", "content": "hi"}]


def config(port: int, r1: str, r2: str, r3: str) -> str:
    providers = "".join(
        f"""
[providers.{name}]
type = "openai"
base_url = "{url}"
models = ["gpt-test"]
discover_models = false
"""
        for name, url in (("r1", r1), ("r2", r2), ("r3", r3))
    )
    return f"""
[server]
port = {port}

[cache]
mode = "off"                  # every request reaches a replica

[routing]
retries = 1
backoff_base_s = 0.01
backoff_max_s = 0.02

[routing.breaker]
cooldown_s = 60
{providers}
[models.pool]
strategy = "round_robin"
targets = [{{ provider = "r1", model = "gpt-test" }}, {{ provider = "r2", model = "gpt-test" }}]

[models.heavy]
strategy = "weighted"
targets = [{{ provider = "r1", model = "gpt-test", weight = 3 }}, {{ provider = "r2", model = "gpt-test" }}]

[models.failing]
strategy = "round_robin"
targets = [{{ provider = "r1", model = "fail-503" }}, {{ provider = "r2", model = "gpt-test" }}]

[models.gone]
strategy = "round_robin"
targets = [{{ provider = "r3", model = "gpt-test" }}, {{ provider = "r1", model = "gpt-test" }}]

[models.busy]
strategy = "least_busy"
targets = [{{ provider = "r1", model = "slow-800" }}, {{ provider = "r2", model = "slow-800" }}]

[models.skewed]
strategy = "least_busy"
targets = [{{ provider = "r1", model = "slow-800" }}, {{ provider = "r2", model = "slow-20" }}]

[models.chain]
targets = [{{ provider = "r1", model = "gpt-test" }}, {{ provider = "r2", model = "gpt-test" }}]
"""


@pytest.fixture(scope="module")
def replicas() -> Iterator[dict[str, FakeOpenAIServer]]:
    servers = {name: FakeOpenAIServer().start() for name in ("r1", "r2", "r3")}
    yield servers
    for name, s in servers.items():
        if name != "r3":  # r3 is stopped by its test
            s.stop()


@pytest.fixture(scope="module")
def daemon(
    replicas: dict[str, FakeOpenAIServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    home = tmp_path_factory.mktemp("aigw-balance")
    port = free_port()
    urls = (replicas[n].base_url for n in ("r1", "r2", "r3"))
    write_config(home, config(port, *urls))
    d = DaemonProcess(home, port).start()
    yield d
    assert d.terminate() == 0, d.log()
    assert "Traceback" not in d.log(), d.log()


def received(replicas: dict[str, FakeOpenAIServer]) -> Counter[str]:
    """Requests each live replica has received so far."""
    return Counter(
        {
            name: int(httpx.get(f"http://127.0.0.1:{s.port}/_last", timeout=5).json()["requests"])
            for name, s in replicas.items()
            if name != "r3"
        }
    )


def sdk(d: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=d.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def answered_by(d: DaemonProcess, model: str, n: int) -> Counter[str]:
    """Send `n` requests one after another; who answered each (x-aigw-provider)."""
    client = sdk(d)
    out: Counter[str] = Counter()
    for _ in range(n):
        raw = client.chat.completions.with_raw_response.create(model=model, messages=MSG)
        assert raw.parse().choices[0].message.content == "echo: hi"
        out[raw.headers["x-aigw-provider"]] += 1
    return out


def test_round_robin_splits_200_requests_exactly(
    daemon: DaemonProcess, replicas: dict[str, FakeOpenAIServer]
) -> None:
    before = received(replicas)
    assert answered_by(daemon, "pool", 200) == {"r1": 100, "r2": 100}
    assert received(replicas) - before == {"r1": 100, "r2": 100}


def test_weighted_three_to_one(daemon: DaemonProcess, replicas: dict[str, FakeOpenAIServer]) -> None:
    before = received(replicas)
    assert answered_by(daemon, "heavy", 400) == {"r1": 300, "r2": 100}
    assert received(replicas) - before == {"r1": 300, "r2": 100}


def test_an_ordered_alias_still_tries_its_first_target(daemon: DaemonProcess) -> None:
    assert answered_by(daemon, "chain", 10) == {"r1": 10}


def test_a_failing_replica_is_taken_out_by_its_breaker(
    daemon: DaemonProcess, replicas: dict[str, FakeOpenAIServer]
) -> None:
    before = received(replicas)
    assert answered_by(daemon, "failing", 200) == {"r2": 200}
    failed = (received(replicas) - before)["r1"]
    assert failed <= 6  # two attempts a turn until 5 failures in a row open its breaker
    breaker = daemon.get("/health/detailed").json()["breakers"]["r1/fail-503"]
    assert breaker["state"] == "open"


def test_a_stopped_replica_leaves_the_other_answering_everything(
    daemon: DaemonProcess, replicas: dict[str, FakeOpenAIServer]
) -> None:
    assert answered_by(daemon, "gone", 10) == {"r3": 5, "r1": 5}  # its connections are pooled now
    replicas["r3"].stop()
    before = received(replicas)
    assert answered_by(daemon, "gone", 200) == {"r1": 200}
    assert received(replicas) - before == {"r1": 200}
    assert daemon.get("/health/detailed").json()["providers"]["r3"]["reachable"] is False


async def _concurrently(d: DaemonProcess, model: str, n: int, streams: bool) -> Counter[str]:
    client = openai.AsyncOpenAI(base_url=d.url + "/v1", api_key="unused", max_retries=0, timeout=30)

    async def one(i: int) -> str:
        if streams and i % 2:
            async with client.chat.completions.with_streaming_response.create(
                model=model,
                messages=MSG,
                stream=True,
            ) as resp:
                async for _ in resp.iter_lines():
                    pass
                return resp.headers["x-aigw-provider"]
        raw = await client.chat.completions.with_raw_response.create(model=model, messages=MSG)
        return raw.headers["x-aigw-provider"]

    try:
        return Counter(await asyncio.gather(*(one(i) for i in range(n))))
    finally:
        await client.close()


def test_least_busy_spreads_concurrent_slow_requests(daemon: DaemonProcess) -> None:
    """Eight at once (half of them streams, counted until they end), each taking 0.8 s: four each."""
    assert asyncio.run(_concurrently(daemon, "busy", 8, streams=True)) == {"r1": 4, "r2": 4}


def test_least_busy_sends_more_to_the_replica_that_frees_up_first(daemon: DaemonProcess) -> None:
    """Four callers in a loop, 24 requests in all: r1 takes 0.8 s a request, r2 20 ms. Round robin
    would send each 12; least_busy sends r1 only what arrives while r2 is as busy as it."""

    async def run() -> Counter[str]:
        client = openai.AsyncOpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0)
        left = 24
        got: Counter[str] = Counter()

        async def caller() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                raw = await client.chat.completions.with_raw_response.create(model="skewed", messages=MSG)
                got[raw.headers["x-aigw-provider"]] += 1

        try:
            await asyncio.gather(*(caller() for _ in range(4)))
        finally:
            await client.close()
        return got

    got = asyncio.run(run())
    assert sum(got.values()) == 24 and 1 <= got["r1"] <= 6 and got["r2"] >= 18, got


def test_strategies_are_shown(daemon: DaemonProcess) -> None:
    detail = daemon.get("/health/detailed").json()
    assert detail["strategies"] == {
        "pool": "round_robin",
        "heavy": "weighted",
        "failing": "round_robin",
        "gone": "round_robin",
        "busy": "least_busy",
        "skewed": "least_busy",
        "chain": "ordered",
    }
    assert detail["aliases"]["pool"] == ["r1/gpt-test", "r2/gpt-test"]
    status = subprocess.run(
        [sys.executable, "-m", "aigw", "status"],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "  alias pool -> r1/gpt-test, r2/gpt-test (round_robin)\n" in status.stdout, status
    assert "  alias chain -> r1/gpt-test, r2/gpt-test\n" in status.stdout  # ordered: as before
