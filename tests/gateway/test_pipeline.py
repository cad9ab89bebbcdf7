"""The request pipeline in process, with a fake provider behind the seam (no sockets): admission,
cache and single-flight, fallback, the facts each answer reports, the usage log, streams that end
well, break or are never read, and local work stopped when its client leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from aigw.access.budget import Budgets
from aigw.access.keys import ApiKey, KeyStore
from aigw.access.meter import Meter
from aigw.access.ratelimit import RateLimiter
from aigw.cache.store import ResponseStore, open_store
from aigw.completion import CompletionRequest
from aigw.config import CacheConfig, Config, ProviderConfig
from aigw.domain import (
    TEXT_COMPLETION,
    Capability,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    ModelInfo,
    Price,
    Usage,
)
from aigw.errors import PermissionDenied, RateLimited, UpstreamConnectError
from aigw.gateway.call import Caller
from aigw.gateway.gateway import Gateway
from aigw.gateway.pipeline import ClientGone, Pipeline
from aigw.state.db import open_db
from aigw.usage.metrics import Metrics
from aigw.usage.prices import PriceTable
from aigw.usage.recorder import UsageRecorder

pytestmark = pytest.mark.anyio
USAGE = Usage(7, 3, 10)


class Fake:
    """A provider whose models behave as their names say: `ok`, `down` (cannot connect), `slow`
    (waits until released), `broken` (a stream that fails after its first content)."""

    capabilities = frozenset({Capability.CHAT, Capability.STREAM, Capability.EMBED, Capability.COMPLETIONS})

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.cancelled = 0

    def capabilities_for(self, model: str) -> frozenset[Capability]:
        return self.capabilities

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(m, self.name) for m in ("ok", "down", "slow", "broken")]

    async def _behave(self, model: str) -> None:
        self.calls.append(model)
        if model == "down":
            raise UpstreamConnectError(f"{self.name}: down", provider=self.name)
        if model == "slow":
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise

    async def chat(self, req: ChatRequest) -> ChatResponse:
        self.bodies.append(req.body)
        await self._behave(req.model)
        text = f"{self.name} says {req.messages[-1]['content']}"
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        return ChatResponse("id-1", 1, req.model, [choice], USAGE)

    async def stream_chat(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.bodies.append(req.body)
        await self._behave(req.model)
        for i, word in enumerate([self.name, "says", str(req.messages[-1]["content"])]):
            delta = {"role": "assistant", "content": word} if i == 0 else {"content": " " + word}
            yield ChatChunk("id-1", 1, req.model, [{"index": 0, "delta": delta, "finish_reason": None}])
            if req.model == "broken":
                raise UpstreamConnectError(f"{self.name}: cut", provider=self.name)
        yield ChatChunk("id-1", 1, req.model, [{"index": 0, "delta": {}, "finish_reason": "stop"}])
        yield ChatChunk("id-1", 1, req.model, [], usage=USAGE)

    async def embed(self, req: EmbedRequest) -> EmbedResponse:
        await self._behave(req.model)
        return EmbedResponse(req.model, [{"object": "embedding", "index": 0, "embedding": [0.5, 0.5]}], USAGE)

    async def complete(self, req: CompletionRequest) -> ChatResponse:
        self.bodies.append(req.body)
        await self._behave(req.model)
        text = f"{self.name} goes on"
        choices = [{"index": i, "text": text, "finish_reason": "stop"} for i in range(req.choices)]
        return ChatResponse("cmpl-1", 1, req.model, choices, USAGE, object=TEXT_COMPLETION)

    async def stream_complete(self, req: CompletionRequest) -> AsyncIterator[ChatChunk]:
        self.bodies.append(req.body)
        await self._behave(req.model)
        for text, finish in ((self.name, None), (" goes on", "stop")):
            choice = {"index": 0, "text": text, "finish_reason": finish}
            yield ChatChunk("cmpl-1", 1, req.model, [choice], object=TEXT_COMPLETION)
        yield ChatChunk("cmpl-1", 1, req.model, [], usage=USAGE, object=TEXT_COMPLETION)

    async def aclose(self) -> None:
        return None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Rig:
    def __init__(self, tmp: Path) -> None:
        cfg = Config.model_validate(
            {
                "models": {
                    "smart": {
                        "targets": [{"provider": "a", "model": "down"}, {"provider": "b", "model": "ok"}]
                    }
                }
            }
            | {"providers": {"a": ProviderConfig(type="openai"), "b": ProviderConfig(type="openai")}}
        )
        self.a, self.b = Fake("a"), Fake("b")
        db = tmp / "aigw.db"
        self.keys = KeyStore(open_db(db))
        self.recorder = UsageRecorder(db, flush_interval_s=0.05)
        prices = PriceTable({"ok": Price(1000.0, 1000.0), "slow": Price(1000.0, 1000.0)})
        self.meter = Meter(
            cfg,
            limiter=RateLimiter(),
            metrics=Metrics(),
            recorder=self.recorder,
            prices=prices,
            budgets=Budgets(),
        )
        self.store: ResponseStore = open_store(tmp / "cache", CacheConfig())
        self.gw = Gateway(
            cfg, {"a": self.a, "b": self.b}, keys=self.keys, meter=self.meter, cache_store=self.store
        )

    def rows(self) -> list[dict[str, Any]]:
        self.recorder.flush()
        cur = self.keys._db.execute(
            "SELECT provider, model, status, prompt_tokens, completion_tokens, cost_usd, cache, error_kind "
            "FROM usage ORDER BY id"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def close(self) -> None:
        self.recorder.close()
        self.store.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


def chat(model: str, text: str = "hi", **body: Any) -> ChatRequest:
    return ChatRequest({"model": model, "messages": [{"role": "user", "content": text}], **body}, model)


ANON = Caller(None, "127.0.0.1")


async def test_an_answer_reports_how_it_was_served_and_is_logged(rig: Rig) -> None:
    answer = await rig.gw.chat(chat("b/ok"), ANON)
    assert answer.value.choices[0]["message"]["content"] == "b says hi"
    f = answer.facts
    assert (f.target.provider, f.target.model, f.fallbacks, f.retries, f.cache) == ("b", "ok", 0, 0, "bypass")
    assert 0 <= f.overhead_s < 1
    assert rig.rows() == [
        {"provider": "b", "model": "ok", "status": 200, "prompt_tokens": 7, "completion_tokens": 3,
         "cost_usd": pytest.approx(0.01), "cache": "bypass", "error_kind": None}
    ]  # fmt: skip


async def test_an_alias_falls_back_and_says_so(rig: Rig) -> None:
    answer = await rig.gw.chat(chat("smart"), ANON)
    assert answer.facts.target.provider == "b" and answer.facts.fallbacks == 1
    assert rig.a.calls == ["down"] * 3  # the first target's retries, then the next target
    stream = await rig.gw.stream(chat("smart"), ANON)
    text = "".join([c.choices[0]["delta"].get("content", "") async for c in stream.chunks if c.choices])
    assert text == "b says hi" and stream.facts.fallbacks == 1


async def test_cacheable_answers_are_stored_and_served_to_any_dialect(rig: Rig) -> None:
    first = await rig.gw.chat(chat("b/ok", temperature=0), ANON)
    again = await rig.gw.chat(chat("b/ok", temperature=0), ANON)
    assert (first.facts.cache, again.facts.cache) == ("miss", "hit")
    assert again.wire() == first.wire()
    assert again.value.choices == first.value.choices and again.value.usage == USAGE  # parsed back
    replayed = await rig.gw.stream(chat("b/ok", temperature=0, stream=True), ANON)
    chunks = [c async for c in replayed.chunks]
    assert replayed.facts.cache == "hit" and chunks[-1].usage == USAGE
    assert "".join(c.choices[0]["delta"].get("content", "") for c in chunks if c.choices) == "b says hi"
    assert rig.b.calls == ["ok"]
    assert [r["cache"] for r in rig.rows()] == ["miss", "hit", "hit"]


async def test_identical_requests_in_flight_make_one_upstream_call(rig: Rig) -> None:
    calls = [rig.gw.chat(chat("b/slow", temperature=0), ANON) for _ in range(5)]
    tasks = [asyncio.ensure_future(c) for c in calls]
    await asyncio.sleep(0.05)
    rig.b.release.set()
    answers = await asyncio.gather(*tasks)
    assert rig.b.calls == ["slow"]
    assert sorted(a.facts.cache for a in answers) == ["hit", "hit", "hit", "hit", "miss"]


async def test_a_stream_is_accounted_when_it_ends(rig: Rig) -> None:
    reply = await rig.gw.stream(chat("b/ok", stream=True), ANON)
    assert rig.rows() == []  # nothing to account until the stream ends
    chunks = [c async for c in reply.chunks]
    assert chunks[-1].is_usage_only and reply.facts.target.provider == "b"
    assert [(r["status"], r["prompt_tokens"], r["completion_tokens"]) for r in rig.rows()] == [(200, 7, 3)]


async def test_a_stream_that_breaks_after_content_is_charged_for_what_was_delivered(rig: Rig) -> None:
    reply = await rig.gw.stream(chat("b/broken", stream=True), ANON)
    got = []
    with pytest.raises(UpstreamConnectError):
        async for c in reply.chunks:
            got.append(c)
    assert len(got) == 1
    (row,) = rig.rows()
    assert (row["status"], row["error_kind"], row["completion_tokens"]) == (502, "UpstreamConnectError", 1)
    assert row["prompt_tokens"] > 0  # content reached the client: the prompt is charged


async def test_a_stream_never_read_gives_its_reservation_back(rig: Rig) -> None:
    key, _ = rig.keys.create("k", tpm=1000, budget_usd=5.0)
    caller = Caller(key, "127.0.0.1")
    reply = await rig.gw.stream(chat("b/ok", text="x" * 400, stream=True), caller)
    tokens = rig.meter.limiter.snapshot(key.id, rig.meter.limits_for(key))["tokens"]["remaining"]
    assert tokens < 1000 and rig.meter.budgets.held(key.id) > 0
    await reply.abandon()
    tokens = rig.meter.limiter.snapshot(key.id, rig.meter.limits_for(key))["tokens"]["remaining"]
    assert tokens == 1000 and rig.meter.budgets.held(key.id) == 0 and rig.rows() == []


async def test_admission_refuses_before_any_upstream_call(rig: Rig) -> None:
    only: ApiKey = rig.keys.create("only-smart", models=["smart"])[0]
    with pytest.raises(PermissionDenied, match="may not use model 'b/ok'"):
        await rig.gw.chat(chat("b/ok"), Caller(only, "127.0.0.1"))
    broke = rig.keys.create("broke", budget_usd=0.025)[0]
    await rig.gw.chat(chat("b/ok"), Caller(broke, "127.0.0.1"))  # $0.01 of $0.025
    with pytest.raises(RateLimited) as e:  # $0.015 left: the prompt and 16 tokens cost $0.02
        await rig.gw.chat(chat("b/ok"), Caller(broke, "127.0.0.1"))
    assert e.value.code == "budget_exhausted" and "$0.0150 of its budget left" in e.value.message
    slow = rig.keys.create("one-a-minute", rpm=1)[0]
    await rig.gw.chat(chat("b/ok"), Caller(slow, "127.0.0.1"))
    with pytest.raises(RateLimited) as e:
        await rig.gw.embed(EmbedRequest({"model": "b/ok", "input": "x"}, "b/ok"), Caller(slow, "127.0.0.1"))
    assert e.value.code == "rate_limit_exceeded" and e.value.retry_after
    assert rig.b.calls == ["ok", "ok"]


async def test_a_pinned_provider_cannot_widen_a_keys_models(rig: Rig) -> None:
    key = rig.keys.create("narrow", models=["smart", "b/ok"])[0]
    caller = Caller(key, "127.0.0.1")
    assert (await rig.gw.chat(chat("smart"), caller, provider="b")).facts.target.provider == "b"
    assert (await rig.gw.chat(chat("b/ok"), caller, provider="b")).value.choices
    with pytest.raises(PermissionDenied, match=r"may not use model 'b/ok' \('a/b/ok'\)"):
        await rig.gw.chat(chat("b/ok"), caller, provider="a")
    assert rig.a.calls == []


async def test_a_token_limit_caps_the_answer_and_is_never_overshot(rig: Rig) -> None:
    key = rig.keys.create("tpm", tpm=1000)[0]
    caller = Caller(key, "127.0.0.1")
    await rig.gw.chat(chat("b/ok", max_tokens=20_000), caller)
    await rig.gw.chat(chat("b/ok", max_completion_tokens=500), caller)
    reply = await rig.gw.stream(chat("b/ok", stream=True), caller)  # no max_tokens: one is set
    await reply.abandon()
    capped, kept, defaulted = rig.b.bodies
    assert capped["max_tokens"] == 1000 - 4  # what the bucket holds less the prompt's estimate
    assert kept["max_completion_tokens"] == 500 and "max_tokens" not in kept
    assert defaulted["max_tokens"] == 1000 - 10 - 10 - 4  # two answers of 10 tokens used
    tokens = rig.meter.limiter.snapshot(key.id, rig.meter.limits_for(key))["tokens"]["remaining"]
    assert tokens == 980  # the abandoned stream gave its reservation back
    with pytest.raises(RateLimited, match="leaves no room for an answer"):
        await rig.gw.chat(chat("b/ok", text="x" * 4000), caller)


async def test_a_budget_holds_each_requests_worst_case(rig: Rig) -> None:
    key = rig.keys.create("fifty-cents", budget_usd=0.05)[0]  # "slow" costs $0.001 a token
    caller = Caller(key, "127.0.0.1")
    calls = [asyncio.ensure_future(rig.gw.chat(chat("b/slow"), caller)) for _ in range(64)]
    await asyncio.sleep(0.05)
    rig.b.release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    answered = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert len(answered) == 1 and len(refused) == 63  # the first held the whole budget
    assert rig.b.bodies[0]["max_tokens"] == 46  # ($0.05 - a 4-token prompt) / $0.001
    assert rig.meter.budgets.held(key.id) == 0 and rig.meter.spent(key.id) == pytest.approx(0.01)


class SeenEarlier(Budgets):
    """Budgets whose quick figure is one seen earlier (as a shared store's may be): the meter must
    decide refusals and caps on fresh figures."""

    def __init__(self, seen: float) -> None:
        super().__init__()
        self.seen = seen

    def committed(self, key_id: str, *, fresh: bool = True) -> tuple[float, bool]:
        return (sum(self.standing(key_id)), True) if fresh else (self.seen, False)


async def test_a_budget_decided_on_figures_seen_earlier_is_checked_on_fresh_ones(rig: Rig) -> None:
    key = rig.keys.create("ten-dollars", budget_usd=10.0)[0]
    caller = Caller(key, "127.0.0.1")
    rig.meter.budgets = SeenEarlier(seen=10.0)  # seen exhausted, but nothing is spent: answered
    assert (await rig.gw.chat(chat("b/ok", max_tokens=100), caller)).value.choices
    assert rig.b.bodies[-1]["max_tokens"] == 100
    rig.meter.budgets = stale = SeenEarlier(seen=0.0)  # seen untouched, but $9.95 is spent: capped
    stale.settle(key.id, 0.0, 9.95)
    assert (await rig.gw.chat(chat("b/ok", max_tokens=100), caller)).value.choices
    assert rig.b.bodies[-1]["max_tokens"] == 46  # ($0.05 - a 4-token prompt) / $0.001
    stale.settle(key.id, 0.0, 0.04)
    with pytest.raises(RateLimited, match="not enough"):  # $0.01 left: refused on fresh figures
        await rig.gw.chat(chat("b/ok", max_tokens=100), caller)
    assert stale.held(key.id) == 0


async def test_a_budgeted_key_may_not_use_an_unpriced_model(rig: Rig) -> None:
    key = rig.keys.create("budgeted", budget_usd=10.0)[0]
    with pytest.raises(PermissionDenied, match="has no known price"):
        await rig.gw.chat(chat("b/broken"), Caller(key, "127.0.0.1"))
    assert rig.b.calls == [] and (await rig.gw.chat(chat("b/broken"), ANON)).value.choices


async def test_local_work_stops_when_its_client_leaves(rig: Rig) -> None:
    """For this machine's own models the pipeline watches the client; the fake stands in for one."""
    pipeline = Pipeline(rig.gw.models, rig.gw.router, rig.meter, rig.gw.cache, lambda route: True)
    left = asyncio.Event()

    async def gone() -> None:
        await left.wait()

    caller = Caller(None, "127.0.0.1", gone=gone)
    task = asyncio.ensure_future(pipeline.chat(chat("b/slow"), caller))
    await asyncio.sleep(0.05)
    left.set()
    with pytest.raises(ClientGone):
        await task
    assert rig.b.cancelled == 1
    opening = asyncio.ensure_future(pipeline.stream(chat("b/slow", stream=True), caller))
    with pytest.raises(ClientGone):
        await opening
    assert rig.b.cancelled == 2
    (first, second) = rig.rows()
    assert first["status"] == second["status"] == 400 and first["error_kind"] == "ClientGone"


async def test_embeddings_go_through_the_same_pipeline(rig: Rig) -> None:
    req = EmbedRequest({"model": "b/ok", "input": ["a"]}, "b/ok")
    first = await rig.gw.embed(req, ANON)
    again = await rig.gw.embed(req, ANON)
    assert (first.facts.cache, again.facts.cache) == ("miss", "hit")
    assert again.value.data == first.value.data and rig.b.calls == ["ok"]


def test_the_reasoning_a_dialect_asked_for_is_part_of_the_cache_key() -> None:
    from aigw.cache.keys import request_digest
    from aigw.domain import Reasoning
    from aigw.gateway.pipeline import _cache_body

    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    plain = request_digest("chat", _cache_body(ChatRequest(body, "m")))
    low = request_digest("chat", _cache_body(ChatRequest(body, "m", hint=Reasoning("low"))))
    high = request_digest("chat", _cache_body(ChatRequest(body, "m", hint=Reasoning("high"))))
    assert len({plain, low, high}) == 3
    assert request_digest("chat", _cache_body(ChatRequest(body, "m", hint=Reasoning("low")))) == low


async def test_legacy_completions_fall_back_are_accounted_and_reserve_every_choice(rig: Rig) -> None:
    def completion(model: str, **body: Any) -> CompletionRequest:
        return CompletionRequest({"model": model, "prompt": ["one", "two"], **body}, model)

    answer = await rig.gw.complete(completion("smart", temperature=0), ANON)
    assert answer.facts.fallbacks == 1 and answer.value.object == "text_completion"
    assert orjson.loads(answer.wire())["choices"][1]["text"] == "b goes on"
    again = await rig.gw.complete(completion("smart", temperature=0), ANON)
    assert again.facts.cache == "hit" and orjson.loads(again.wire())["object"] == "text_completion"
    reply = await rig.gw.stream_complete(completion("b/ok", stream=True), ANON)
    assert "".join([c.choices[0]["text"] async for c in reply.chunks if c.choices]) == "b goes on"
    key = rig.keys.create("tpm", tpm=1000)[0]
    await rig.gw.complete(completion("b/ok", n=2, max_tokens=20_000), Caller(key, "127.0.0.1"))
    assert rig.b.bodies[-1]["max_tokens"] == (1000 - 4) // 4  # four answers share what the bucket holds
    rows = rig.rows()
    assert [r["status"] for r in rows] == [200] * 4 and [r["cache"] for r in rows][:2] == ["miss", "hit"]
