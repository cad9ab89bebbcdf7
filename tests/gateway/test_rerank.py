"""Reranks through the request pipeline in process, with fake rerankers behind the seam: the answer's
shape whatever the provider gave, the usage log, the cache, fallback, refusals of targets without
a reranker, and admission (a key's models and rate limits)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from aigw.access.budget import Budgets
from aigw.access.keys import KeyStore
from aigw.access.meter import Meter
from aigw.access.ratelimit import RateLimiter
from aigw.access.reserve import estimate_tokens
from aigw.cache.store import ResponseStore, open_store
from aigw.config import CacheConfig, Config, ProviderConfig
from aigw.domain import (
    Capability,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    ModelInfo,
    Price,
)
from aigw.errors import CapabilityError, PermissionDenied, RateLimited, UpstreamConnectError
from aigw.gateway.call import Caller
from aigw.gateway.gateway import Gateway
from aigw.reranking import RerankRequest, RerankResponse, read_tokens
from aigw.state.db import open_db
from aigw.usage.metrics import Metrics
from aigw.usage.prices import PriceTable
from aigw.usage.recorder import UsageRecorder

pytestmark = pytest.mark.anyio
DOCS = ["apples", "bananas and apples", "cherries", "dates"]
SCORES = [0.5, 0.9, 0.1, 0.7]  # what the fake gives, by index: best first is 1, 3, 0, 2
ANON = Caller(None, "127.0.0.1")


class ChatOnly:
    """A provider that cannot rerank."""

    capabilities = frozenset({Capability.CHAT, Capability.STREAM})

    def __init__(self, name: str) -> None:
        self.name = name

    def capabilities_for(self, model: str) -> frozenset[Capability]:
        return self.capabilities

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo("ok", self.name)]

    async def chat(self, req: ChatRequest) -> ChatResponse:
        raise AssertionError("not called")

    async def stream_chat(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise AssertionError("not called")
        yield  # pragma: no cover

    async def embed(self, req: EmbedRequest) -> EmbedResponse:
        raise AssertionError("not called")

    async def aclose(self) -> None:
        return None


class FakeReranker(ChatOnly):
    """Scores by SCORES, in the documents' order, with no documents (the pipeline sorts, cuts and
    adds them); the model `down` cannot be reached."""

    capabilities = frozenset({Capability.RERANK})

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.calls: list[RerankRequest] = []

    async def rerank(self, req: RerankRequest) -> RerankResponse:
        self.calls.append(req)
        if req.model == "down":
            raise UpstreamConnectError(f"{self.name}: down", provider=self.name)
        results = [{"index": i, "relevance_score": SCORES[i]} for i in range(len(req.documents))]
        return RerankResponse("rerank-1", req.model, results, read_tokens(40))


class Rig:
    def __init__(self, tmp: Path) -> None:
        chain = {"targets": [{"provider": "a", "model": "down"}, {"provider": "b", "model": "ok"}]}
        mixed = {"targets": [{"provider": "chat", "model": "ok"}, {"provider": "b", "model": "ok"}]}
        cfg = Config.model_validate(
            {
                "models": {"chain": chain, "mixed": mixed},
                "providers": {n: ProviderConfig(type="openai") for n in ("a", "b", "chat")},
            }
        )
        self.a, self.b = FakeReranker("a"), FakeReranker("b")
        db = tmp / "aigw.db"
        self.keys = KeyStore(open_db(db))
        self.recorder = UsageRecorder(db, flush_interval_s=0.05)
        self.meter = Meter(
            cfg,
            limiter=RateLimiter(),
            metrics=Metrics(),
            recorder=self.recorder,
            prices=PriceTable({"ok": Price(1000.0, 0.0)}),
            budgets=Budgets(),
        )
        self.store: ResponseStore = open_store(tmp / "cache", CacheConfig())
        providers = {"a": self.a, "b": self.b, "chat": ChatOnly("chat")}
        self.gw = Gateway(cfg, providers, keys=self.keys, meter=self.meter, cache_store=self.store)

    def rows(self) -> list[dict[str, Any]]:
        self.recorder.flush()
        cur = self.keys._db.execute(
            "SELECT provider, model, status, prompt_tokens, completion_tokens, cost_usd, cache FROM usage"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.recorder.close()
    r.store.close()


def rerank(model: str, **body: Any) -> RerankRequest:
    return RerankRequest({"model": model, "query": "apples", "documents": DOCS, **body}, model)


async def test_the_answer_is_sorted_cut_and_carries_documents_as_asked(rig: Rig) -> None:
    answer = await rig.gw.rerank(rerank("b/ok", top_n=3), ANON)
    wire = answer.value.to_wire()
    assert [r["index"] for r in wire["results"]] == [1, 3, 0]
    assert [r["relevance_score"] for r in wire["results"]] == [0.9, 0.7, 0.5]
    assert [r["document"]["text"] for r in wire["results"]] == ["bananas and apples", "dates", "apples"]
    assert wire["usage"] == {"total_tokens": 40} and wire["id"] == "rerank-1"
    bare = await rig.gw.rerank(rerank("b/ok", return_documents=False), ANON)
    assert [r["index"] for r in bare.value.results] == [1, 3, 0, 2]
    assert all(set(r) == {"index", "relevance_score"} for r in bare.value.results)
    assert rig.rows() == [
        {"provider": "b", "model": "ok", "status": 200, "prompt_tokens": 40, "completion_tokens": 0,
         "cost_usd": pytest.approx(0.04), "cache": "miss"}
    ] * 2  # fmt: skip


async def test_a_rerank_is_answered_from_the_cache(rig: Rig) -> None:
    first = await rig.gw.rerank(rerank("b/ok", top_n=2), ANON)
    again = await rig.gw.rerank(rerank("b/ok", top_n=2), ANON)
    assert (first.facts.cache, again.facts.cache) == ("miss", "hit")
    assert again.wire() == first.wire() and again.value.results == first.value.results  # parsed back
    assert again.value.usage is not None and again.value.usage.total_tokens == 40
    other = await rig.gw.rerank(rerank("b/ok", top_n=3), ANON)  # another request: another entry
    assert other.facts.cache == "miss" and len(rig.b.calls) == 2
    assert [r["cache"] for r in rig.rows()] == ["miss", "hit", "miss"]


async def test_an_alias_falls_back_to_the_next_reranker(rig: Rig) -> None:
    answer = await rig.gw.rerank(rerank("chain"), ANON)
    assert answer.facts.target.provider == "b" and answer.facts.fallbacks == 1
    assert [c.model for c in rig.a.calls] == ["down"] * 3  # the first target's retries
    assert rig.b.calls[0].model == "ok" and rig.b.calls[0].body["model"] == "chain"


async def test_targets_without_a_reranker_are_skipped_or_refused(rig: Rig) -> None:
    answer = await rig.gw.rerank(rerank("mixed"), ANON)
    assert answer.facts.target.provider == "b" and answer.facts.fallbacks == 0
    with pytest.raises(CapabilityError) as e:
        await rig.gw.rerank(rerank("chat/ok"), ANON)
    assert e.value.status_code == 400 and e.value.param == "model"
    assert "'chat/ok' (chat/ok) does not support rerank" in e.value.message


async def test_admission_applies_to_reranks(rig: Rig) -> None:
    narrow = rig.keys.create("narrow", models=["chain"])[0]
    with pytest.raises(PermissionDenied, match="may not use model 'b/ok'"):
        await rig.gw.rerank(rerank("b/ok"), Caller(narrow, "127.0.0.1"))
    once = rig.keys.create("once", rpm=1)[0]
    await rig.gw.rerank(rerank("b/ok"), Caller(once, "127.0.0.1"))
    with pytest.raises(RateLimited):
        await rig.gw.rerank(rerank("b/ok", top_n=1), Caller(once, "127.0.0.1"))
    assert len(rig.b.calls) == 1


async def test_concurrent_identical_reranks_make_one_call(rig: Rig) -> None:
    answers = await asyncio.gather(*(rig.gw.rerank(rerank("b/ok"), ANON) for _ in range(3)))
    assert len(rig.b.calls) == 1
    assert sorted(a.facts.cache for a in answers) == ["hit", "hit", "miss"]


def test_a_reranks_tokens_are_estimated_from_query_and_documents() -> None:
    body = {"model": "m", "query": "q" * 40, "documents": ["d" * 80, {"text": "e" * 80}]}
    assert estimate_tokens(body) == (40 * 2 + 160) // 4
