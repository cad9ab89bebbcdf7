"""Two real daemons sharing one real redis-server, as a team runs them behind a load balancer,
driven by the official `openai` SDK and aigw's own CLI: a key made through one instance works on
the other, revoking it on the other stops it on the first at once, a limit of 100 requests a
minute admits 100 between both, and Redis dying in the middle of a load gives no 500 in either
failure mode, and is used again when it is back, without a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.fixtures.daemon import DaemonProcess, base_env, free_port, write_config
from tests.fixtures.fake_openai import FakeOpenAIServer
from tests.fixtures.redis_server import RedisServer

pytestmark = pytest.mark.process
pytest.importorskip("redis", reason="the 'team' extra is not installed")
NO_CACHE = {"Cache-Control": "no-cache, no-store"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAIServer]:
    up = FakeOpenAIServer().start()
    yield up
    up.stop()


def team(
    tmp: Path, redis: RedisServer, upstream: FakeOpenAIServer, mode: str = "open", extra: str = ""
) -> list[DaemonProcess]:
    out = []
    for name in ("a", "b"):
        home, port = tmp / name, free_port()
        write_config(home, f"""
[server]
port = {port}
require_keys = true

[state]
backend = "redis"
url = "{redis.url}"
on_state_error = "{mode}"
retry_s = 0.2

[prices]
"up/gpt-test" = {{ input = 1000.0, output = 1000.0 }}  # $0.001 a token

[providers.up]
type = "openai"
base_url = "{upstream.base_url}"
api_key = "sk-test"
discover_models = false
models = ["gpt-test"]
{extra}
""")  # fmt: skip
        (home / "config.toml").chmod(0o600)
        out.append(DaemonProcess(home, port).start())
    return out


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    r = RedisServer(tmp_path / "redis").start()
    yield r
    r.stop()


def cli(home: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "aigw", *args],
        env=base_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def ask(d: DaemonProcess, key: str, **body: object) -> int:
    r = httpx.post(
        f"{d.url}/v1/chat/completions",
        json={"model": "up/gpt-test", "messages": [{"role": "user", "content": "hi"}], **body},
        headers={"Authorization": f"Bearer {key}", **NO_CACHE},
        timeout=30,
    )
    return r.status_code


def stop_all(daemons: list[DaemonProcess]) -> None:
    for d in daemons:
        assert d.terminate() == 0
        assert "Traceback" not in d.log(), d.log()


def test_keys_and_limits_are_shared(tmp_path: Path, redis: RedisServer, upstream: FakeOpenAIServer) -> None:
    a, b = team(tmp_path, redis, upstream)
    try:
        made = json.loads(cli(a.home, "keys", "create", "alice", "--rpm", "100", "--json"))
        started = time.monotonic()
        sdk = openai.OpenAI(base_url=f"{b.url}/v1", api_key=made["key"], max_retries=0)
        got = sdk.chat.completions.create(model="up/gpt-test", messages=[{"role": "user", "content": "hi"}])
        assert got.choices[0].message.content == "echo: hi"  # made on A, accepted by B
        with ThreadPoolExecutor(8) as pool:  # 199 more, split over both instances
            codes = [200, *pool.map(lambda i: ask((a, b)[i % 2], made["key"]), range(199))]
        refilled = (time.monotonic() - started) * 100 / 60  # the bucket refills as the minute goes on
        ok = codes.count(200)
        assert 100 <= ok <= 100 + refilled and codes.count(429) == 200 - ok, (ok, refilled)  # not 200
        other = json.loads(cli(b.home, "keys", "create", "bob", "--json"))
        assert ask(a, other["key"]) == 200
        cli(b.home, "keys", "revoke", "bob")
        assert ask(a, other["key"]) == 401  # revoked on B: refused on A at once
        listed = json.loads(cli(a.home, "keys", "list", "--json"))
        assert {k["name"]: k["revoked_at"] is not None for k in listed} == {"alice": False, "bob": True}
    finally:
        stop_all([a, b])


def test_a_budget_is_never_overshot_across_instances(
    tmp_path: Path, redis: RedisServer, upstream: FakeOpenAIServer
) -> None:
    import redis as redis_lib

    a, b = team(tmp_path, redis, upstream)
    try:
        made = json.loads(cli(a.home, "keys", "create", "dana", "--budget-usd", "0.05", "--json"))
        with ThreadPoolExecutor(8) as pool:  # each answer costs $0.003; each holds $0.009 in flight
            codes = list(pool.map(lambda i: ask((a, b)[i % 2], made["key"], max_tokens=5), range(60)))
        assert 500 not in codes and set(codes) <= {200, 429}
        spent = float(redis_lib.Redis.from_url(redis.url).hget(f"{{aigw:budget:{made['id']}}}", "spent") or 0)
        assert spent == pytest.approx(0.003 * codes.count(200))  # every answer charged once, in one place
        assert 0.05 - 0.009 < spent <= 0.05  # spent down to less than one reservation, never beyond
    finally:
        stop_all([a, b])


def test_the_response_cache_and_single_flight_are_shared(
    tmp_path: Path, redis: RedisServer, upstream: FakeOpenAIServer
) -> None:
    a, b = team(tmp_path, redis, upstream)

    def calls() -> int:
        return int(httpx.get(f"http://127.0.0.1:{upstream.port}/_last").json()["requests"])

    def cached(d: DaemonProcess, key: str, model: str, text: str) -> httpx.Response:
        return httpx.post(
            f"{d.url}/v1/chat/completions",
            json={"model": model, "temperature": 0, "messages": [{"role": "user", "content": text}]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )

    try:
        key = json.loads(cli(a.home, "keys", "create", "erin", "--json"))["key"]
        first = cached(a, key, "up/gpt-test", "a miss on A")
        assert first.headers["x-aigw-cache"] == "miss"
        before = calls()
        for _ in range(50):  # the answer reaches Redis from A's writer thread within milliseconds
            second = cached(b, key, "up/gpt-test", "a miss on A")
            if second.headers["x-aigw-cache"] == "hit":
                break
            time.sleep(0.02)
        assert second.headers["x-aigw-cache"] == "hit" and second.json() == first.json()
        assert calls() == before  # B did not call the upstream
        before = calls()
        with ThreadPoolExecutor(5) as pool:  # five identical requests at once, split over both
            got = list(pool.map(lambda i: cached((a, b)[i % 2], key, "up/slow-400", "at once"), range(5)))
        assert [r.status_code for r in got] == [200] * 5 and calls() == before + 1
        assert sorted(r.headers["x-aigw-cache"] for r in got) == ["hit", "hit", "hit", "hit", "miss"]
    finally:
        stop_all([a, b])


def test_a_breaker_opened_by_one_instance_opens_on_all(
    tmp_path: Path, redis: RedisServer, upstream: FakeOpenAIServer
) -> None:
    extra = "[routing]\nretries = 0\n[routing.breaker]\nfailures = 2\ncooldown_s = 30\n"
    a, b = team(tmp_path, redis, upstream, extra=extra)
    try:
        key = json.loads(cli(a.home, "keys", "create", "fay", "--json"))["key"]
        calls = lambda: int(httpx.get(f"http://127.0.0.1:{upstream.port}/_last").json()["requests"])  # noqa: E731
        assert [ask(a, key, model="up/fail-503") for _ in range(2)] == [502, 502]  # A's breaker opens
        before = calls()
        for _ in range(50):  # B hears of it within milliseconds
            health = httpx.get(f"{b.url}/health/detailed", headers=b.admin_headers(), timeout=10)
            breakers = health.json()["breakers"]
            if breakers.get("up/fail-503", {}).get("state") == "open":
                break
            time.sleep(0.02)
        assert breakers["up/fail-503"]["state"] == "open" and breakers["up/fail-503"]["opens"] == 1
        assert ask(b, key, model="up/fail-503") == 503 and calls() == before  # B skips it without a call
    finally:
        stop_all([a, b])


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_redis_dying_under_load_gives_no_500(
    tmp_path: Path, redis: RedisServer, upstream: FakeOpenAIServer, mode: str
) -> None:
    a, b = team(tmp_path, redis, upstream, mode)
    try:
        key = json.loads(cli(a.home, "keys", "create", "carol", "--rpm", "100000", "--json"))["key"]
        assert ask(a, key) == 200 and ask(b, key) == 200  # each instance knows the key now
        codes: list[int] = []
        with ThreadPoolExecutor(4) as pool:
            first = pool.map(lambda i: ask((a, b)[i % 2], key), range(40))
            codes += list(first)
            redis.stop()
            during = list(pool.map(lambda i: ask((a, b)[i % 2], key), range(40)))
            codes += during
            redis.start()
            time.sleep(0.3)  # the hold-off after the last failure
            after = list(pool.map(lambda i: ask((a, b)[i % 2], key), range(40)))
            codes += after
        assert 500 not in codes and all(c in (200, 503) for c in codes), codes
        if mode == "open":
            assert during == [200] * 40  # served with each instance's own limits (and cached key)
        else:
            assert 503 in during
        assert after[-10:] == [200] * 10  # back without a restart (keys written again: Redis restarted empty)
        health = httpx.get(f"{a.url}/health/detailed", headers=a.admin_headers(), timeout=10).json()
        assert health["state"]["reachable"] and health["state"]["outages"] >= 1
    finally:
        stop_all([a, b])
