"""Fault injection, in process: the real router and the real `openai` provider against an
upstream whose failures are programmed per request. Exact attempt counts, the answering target,
breakers on an injected clock, and no request left hanging at the upstream."""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from aigw.config import BreakerConfig, RoutingConfig
from aigw.domain import ChatRequest, EmbedRequest, Route, Target
from aigw.errors import ServiceUnavailable, UpstreamError, UpstreamStatusError, UpstreamTimeout
from aigw.providers.openai import TYPE as TYPE_OPENAI
from aigw.providers.openai import OpenAIConfig as ProviderConfig
from aigw.providers.openai.provider import OpenAICompatProvider
from aigw.routing.health import HealthBoard
from aigw.routing.policy import has_content
from aigw.routing.router import Router
from tests.fixtures.fault_upstream import FaultUpstreamServer, answer_text

pytestmark = pytest.mark.anyio

HANG_S = 1.0
ROUTE = Route("smart", (Target("p1", "a"), Target("p2", "b"), Target("p3", "c")), alias="smart")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server() -> Iterator[FaultUpstreamServer]:
    s = FaultUpstreamServer(hang_s=HANG_S, retry_after="0.25").start()
    yield s
    s.stop()


@pytest.fixture
def upstream(server: FaultUpstreamServer) -> FaultUpstreamServer:
    server.fake.reset()
    return server


def provider(name: str, url: str, max_connections: int = 64) -> OpenAICompatProvider:
    cfg = ProviderConfig(
        type="openai",
        base_url=url,
        discover_models=False,
        first_byte_timeout_s=0.3,
        read_timeout_s=1.0,
        max_connections=max_connections,
    )
    return OpenAICompatProvider(name, cfg, TYPE_OPENAI.connection(cfg, {}))


def routing(**kw: Any) -> RoutingConfig:
    base: dict[str, Any] = {"retries": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.05}
    base["retry_after_cap_s"] = 1.0
    base["first_token_timeout_s"] = 0.5
    base.update(kw)
    return RoutingConfig(**base)


def in_use(p: OpenAICompatProvider) -> int:
    """Connections a provider holds and has not given back to its pool."""
    return p._http.in_use()


class Rig:
    def __init__(
        self, url: str, cfg: RoutingConfig, clock: FakeClock | None = None, max_connections: int = 64
    ) -> None:
        self.providers = {n: provider(n, url, max_connections) for n in ("p1", "p2", "p3")}
        self.health = HealthBoard(list(self.providers))
        self.clock = clock
        kw: dict[str, Any] = {"rng": random.Random(7)}
        if clock is not None:
            kw.update(clock=clock, sleep=clock.sleep)
        self.router = Router(self.providers, self.health, cfg, **kw)

    async def aclose(self) -> None:
        for p in self.providers.values():
            await p.aclose()


@pytest.fixture
async def rig(upstream: FaultUpstreamServer) -> AsyncIterator[Rig]:
    r = Rig(upstream.base_url, routing())
    yield r
    await r.aclose()


def chat_req(stream: bool = False) -> ChatRequest:
    return ChatRequest(
        body={"model": "smart", "messages": [{"role": "user", "content": "hi"}], "stream": stream},
        model="smart",
    )


async def stream_text(r: Router) -> tuple[str, set[str], Target]:
    s = await r.open_stream(ROUTE, chat_req(stream=True))
    chunks = list(s.head) + [c async for c in s.rest]
    text = "".join(str((c.choices[0].get("delta") or {}).get("content") or "") for c in chunks if c.choices)
    return text, {c.model for c in chunks}, s.target


RETRYABLE = ["500", "502", "503", "429", "reset", "cut"]
# Not retried while another target can answer: a malformed answer, a target that hangs.
NOT_RETRYABLE = ["bad-json", "hang"]


async def test_a_hang_is_retried_on_the_last_target(rig: Rig, upstream: FaultUpstreamServer) -> None:
    upstream.fake.script("a", "hang")
    routed = await rig.router.chat(Route("a", (Target("p1", "a"),)), chat_req())
    assert routed.target == Target("p1", "a") and upstream.fake.attempts == {"a": 2}


@pytest.mark.parametrize("kind", RETRYABLE)
async def test_retryable_fault_is_retried_on_the_same_target(
    rig: Rig, upstream: FaultUpstreamServer, kind: str
) -> None:
    upstream.fake.script("a", kind, kind)
    routed = await rig.router.chat(ROUTE, chat_req())
    assert routed.target == Target("p1", "a")
    assert routed.value.choices[0]["message"]["content"] == answer_text("a")
    assert upstream.fake.attempts == {"a": 3}
    assert (routed.trace.retries, routed.trace.fallbacks) == (2, 0)


@pytest.mark.parametrize("kind", RETRYABLE)
async def test_retries_spent_fall_back_to_the_next_target(
    rig: Rig, upstream: FaultUpstreamServer, kind: str
) -> None:
    upstream.fake.script("a", kind, kind, kind)
    routed = await rig.router.chat(ROUTE, chat_req())
    assert routed.target == Target("p2", "b")
    assert upstream.fake.attempts == {"a": 3, "b": 1}
    assert (routed.trace.retries, routed.trace.fallbacks) == (2, 1)


@pytest.mark.parametrize("kind", NOT_RETRYABLE)
async def test_malformed_answer_moves_on_without_retry(
    rig: Rig, upstream: FaultUpstreamServer, kind: str
) -> None:
    upstream.fake.script("a", kind)
    routed = await rig.router.chat(ROUTE, chat_req())
    assert routed.target == Target("p2", "b") and upstream.fake.attempts == {"a": 1, "b": 1}


@pytest.mark.parametrize("kind", [*RETRYABLE, "stall", "bad-json"])
async def test_stream_fault_before_content_falls_back_invisibly(
    rig: Rig, upstream: FaultUpstreamServer, kind: str
) -> None:
    upstream.fake.script("a", kind, kind, kind)
    text, models, target = await stream_text(rig.router)
    assert target == Target("p2", "b")
    assert text == answer_text("b") and models == {"b"}, "content from one target only"
    retries = 0 if kind in ("bad-json", "stall", "hang") else 2  # nor is a hung or stalled one
    assert upstream.fake.attempts == {"a": 1 + retries, "b": 1}


async def test_stream_cut_after_content_ends_with_an_error_and_is_counted(
    rig: Rig, upstream: FaultUpstreamServer
) -> None:
    upstream.fake.script("a", "cut-late")
    s = await rig.router.open_stream(ROUTE, chat_req(stream=True))
    got = list(s.head)
    with pytest.raises(UpstreamError) as e:
        async for c in s.rest:
            got.append(c)
    assert e.value.status_code == 502
    assert {c.model for c in got} == {"a"} and any(has_content(c) for c in got)
    assert rig.router.stats.broken_streams == 1 and upstream.fake.attempts == {"a": 1}


async def test_retry_after_is_honoured(upstream: FaultUpstreamServer) -> None:
    clock = FakeClock()
    r = Rig(upstream.base_url, routing(), clock)
    upstream.fake.script("a", "429")
    try:
        routed = await r.router.chat(ROUTE, chat_req())
    finally:
        await r.aclose()
    assert routed.target == Target("p1", "a") and clock.slept and clock.slept[0] >= 0.25


async def test_retry_after_beyond_the_cap_moves_on_at_once(upstream: FaultUpstreamServer) -> None:
    clock = FakeClock()
    r = Rig(upstream.base_url, routing(retry_after_cap_s=0.1), clock)
    upstream.fake.script("a", "429")
    try:
        routed = await r.router.chat(ROUTE, chat_req())
    finally:
        await r.aclose()
    assert (
        routed.target == Target("p2", "b")
        and clock.slept == []
        and upstream.fake.attempts == {"a": 1, "b": 1}
    )


async def test_every_target_failing_returns_the_last_error(rig: Rig, upstream: FaultUpstreamServer) -> None:
    for m in "abc":
        upstream.fake.script(m, "503", "503", "503")
    with pytest.raises(UpstreamStatusError) as e:
        await rig.router.chat(ROUTE, chat_req())
    assert e.value.status_code == 502 and e.value.provider == "p3"
    assert upstream.fake.attempts == {"a": 3, "b": 3, "c": 3}


async def test_the_deadline_bounds_the_whole_chain(upstream: FaultUpstreamServer) -> None:
    r = Rig(upstream.base_url, routing(deadline_s=0.5))
    for m in "abc":
        upstream.fake.script(m, "hang", "hang", "hang")
    t0 = time.monotonic()
    try:
        with pytest.raises(UpstreamTimeout) as e:
            await r.router.chat(ROUTE, chat_req())
    finally:
        await r.aclose()
    assert e.value.status_code == 504 and "deadline" in e.value.message
    assert time.monotonic() - t0 < 1.5


async def test_breaker_opens_skips_and_recovers_on_schedule(upstream: FaultUpstreamServer) -> None:
    clock = FakeClock()
    cfg = routing(retries=0, breaker=BreakerConfig(failures=3, cooldown_s=30, min_requests=100))
    r = Rig(upstream.base_url, cfg, clock)
    try:
        upstream.fake.script("a", "500", "500", "500", "500")
        for _ in range(3):
            assert (await r.router.chat(ROUTE, chat_req())).target == Target("p2", "b")
        assert r.router.breakers.get(Target("p1", "a")).state == "open"
        assert upstream.fake.attempts["a"] == 3
        clock.now += 29.9  # still open: a is skipped, not tried
        assert (await r.router.chat(ROUTE, chat_req())).target == Target("p2", "b")
        assert upstream.fake.attempts["a"] == 3
        clock.now += 0.2  # cooldown over: one probe, which fails (the 4th scripted 500) and re-opens
        assert (await r.router.chat(ROUTE, chat_req())).target == Target("p2", "b")
        assert upstream.fake.attempts["a"] == 4 and r.router.breakers.get(Target("p1", "a")).state == "open"
        clock.now += 30.1  # the next probe succeeds and closes the breaker
        assert (await r.router.chat(ROUTE, chat_req())).target == Target("p1", "a")
        assert r.router.breakers.get(Target("p1", "a")).state == "closed"
        assert upstream.fake.attempts == {"a": 5, "b": 5}
    finally:
        await r.aclose()


async def test_all_breakers_open_is_a_503_with_retry_after(upstream: FaultUpstreamServer) -> None:
    clock = FakeClock()
    cfg = routing(retries=0, breaker=BreakerConfig(failures=1, cooldown_s=10))
    r = Rig(upstream.base_url, cfg, clock)
    for m in "abc":
        upstream.fake.script(m, "500")
    try:
        with pytest.raises(UpstreamStatusError):
            await r.router.chat(ROUTE, chat_req())
        with pytest.raises(ServiceUnavailable) as e:
            await r.router.chat(ROUTE, chat_req())
    finally:
        await r.aclose()
    assert e.value.status_code == 503 and e.value.retry_after == pytest.approx(10)
    assert upstream.fake.attempts == {"a": 1, "b": 1, "c": 1}


async def test_embeddings_fall_back_too(rig: Rig, upstream: FaultUpstreamServer) -> None:
    upstream.fake.script("a", "reset", "reset", "reset")
    routed = await rig.router.embed(
        ROUTE, EmbedRequest(body={"model": "smart", "input": ["x"]}, model="smart")
    )
    assert routed.target == Target("p2", "b") and len(routed.value.data) == 1


async def test_no_upstream_connection_leaks(upstream: FaultUpstreamServer) -> None:
    """Two connections per provider: a single connection leaked by a failure path would starve
    the pool within a few of the 200 requests, and they would stall into the deadline."""
    never_open = BreakerConfig(failures=10_000, min_requests=10_000)
    r = Rig(upstream.base_url, routing(deadline_s=20, breaker=never_open), max_connections=2)
    upstream.fake.randomly("a", 0.6, seed=3)
    upstream.fake.randomly("b", 0.3, seed=4)

    async def one(i: int) -> None:
        if i % 2:
            text, models, _ = await stream_text(r.router)
            assert len(models) == 1 and text == answer_text(next(iter(models)))
        else:
            await r.router.chat(ROUTE, chat_req())

    gc.disable()  # a leaked response must not be rescued by its finaliser
    try:
        await asyncio.gather(*(one(i) for i in range(200)))
        assert [in_use(p) for p in r.providers.values()] == [0, 0, 0]
        assert sum(upstream.fake.faults_served.values()) - upstream.fake.faults_served["ok"] > 100
        upstream.fake.reset()
        t0 = time.monotonic()
        for _ in range(6):
            assert (await r.router.chat(ROUTE, chat_req())).target == Target("p1", "a")
        assert time.monotonic() - t0 < 1.0
    finally:
        gc.enable()
        await r.aclose()
    for _ in range(60):  # the fake's hung handlers finish on their own clock
        if upstream.fake.in_flight == 0:
            break
        await asyncio.sleep(0.05)
    assert upstream.connections() <= 6
