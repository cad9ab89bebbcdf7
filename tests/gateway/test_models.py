"""Gateway model index: refresh on a miss, throttled, with an in-memory provider behind the seam."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from aigw.config import Config, ProviderConfig
from aigw.domain import (
    Capability,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    ModelInfo,
    Target,
)
from aigw.errors import ModelNotFound, UpstreamConnectError
from aigw.gateway.gateway import Gateway
from aigw.gateway.models import ModelIndex
from aigw.providers.openai import TYPE as TYPE_OPENAI
from aigw.providers.openai.config import OpenAIConfig
from aigw.providers.openai.provider import OpenAICompatProvider
from aigw.routing.health import HealthBoard
from tests.fixtures.daemon import free_port


class ListOnly:
    """A provider whose model list the test controls; it serves nothing else."""

    capabilities = frozenset({Capability.CHAT})

    def __init__(self, name: str, models: list[str]) -> None:
        self.name = name
        self.models = models
        self.listed = 0
        self.fail = False

    def capabilities_for(self, model: str) -> frozenset[Capability]:
        return self.capabilities

    async def list_models(self) -> list[ModelInfo]:
        self.listed += 1
        if self.fail:
            raise UpstreamConnectError(f"{self.name}: down", provider=self.name)
        return [ModelInfo(m, self.name) for m in self.models]

    async def chat(self, req: ChatRequest) -> ChatResponse:
        raise NotImplementedError

    def stream_chat(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise NotImplementedError

    async def embed(self, req: EmbedRequest) -> EmbedResponse:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(models: list[str]) -> tuple[Gateway, ListOnly, Clock]:
    p = ListOnly("up", models)
    clock = Clock()
    cfg = Config(providers={"up": ProviderConfig(type="openai")})
    return Gateway(cfg, {"up": p}, clock=clock), p, clock


def test_miss_refreshes_then_resolves() -> None:
    gw, p, _ = make([])
    p.models.append("new-model")
    route = asyncio.run(gw.models.resolve("new-model", None))
    assert route.targets == (Target("up", "new-model"),) and p.listed == 1


def test_misses_are_throttled() -> None:
    gw, p, clock = make([])

    async def run() -> None:
        for _ in range(3):
            with pytest.raises(ModelNotFound):
                await gw.models.resolve("ghost", None)
        assert p.listed == 1
        clock.t += 10
        with pytest.raises(ModelNotFound) as e:
            await gw.models.resolve("ghost", None)
        assert p.listed == 2
        assert "up/" not in e.value.message or "Known models" in e.value.message

    asyncio.run(run())


def test_listing_failure_is_recorded_not_raised() -> None:
    gw, p, _ = make(["m"])
    p.fail = True
    asyncio.run(gw.models.refresh())
    health = gw.detailed_health()["providers"]["up"]
    assert health["reachable"] is False and health["last_error"] == "up: down"
    assert health["models"] == []


def test_no_providers_message_says_how_to_configure() -> None:
    gw = Gateway(Config(), {})
    with pytest.raises(ModelNotFound) as e:
        asyncio.run(gw.models.resolve("gpt-4o", None))
    assert "no providers are configured" in e.value.message


def test_listing_does_not_wait_for_a_hanging_upstream_once_an_index_exists() -> None:
    gw, p, clock = make(["m"])

    async def run() -> None:
        await gw.models.fresh()  # the first listing waits for the first refresh
        assert p.listed == 1
        hang = asyncio.Event()
        original = p.list_models

        async def hanging() -> list[ModelInfo]:
            await hang.wait()
            return await original()

        p.list_models = hanging  # type: ignore[method-assign]
        clock.t += 10
        await asyncio.wait_for(gw.models.fresh(), 0.5)  # served from the index, refresh behind
        assert [m.id for m in gw.models.listing()] == ["up/m"]
        await gw.aclose()

    asyncio.run(run())


def test_a_static_listing_is_no_contact_with_the_upstream() -> None:
    """With discovery off, listing the configured models asks nobody: a dead upstream stays
    "not yet contacted" (and after a failure, gets no fresh last_ok_at) until it really answers."""

    async def run() -> None:
        dead = f"http://127.0.0.1:{free_port()}/v1"
        static = OpenAIConfig(type="openai", base_url=dead, discover_models=False, models=["m1"])
        discovering = OpenAIConfig(type="openai", base_url=dead, discover_models=True)
        providers = {
            "static": OpenAICompatProvider("static", static, TYPE_OPENAI.connection(static, {})),
            "found": OpenAICompatProvider("found", discovering, TYPE_OPENAI.connection(discovering, {})),
        }
        health = HealthBoard(list(providers))
        index = ModelIndex(providers, {}, health)
        try:
            await index.refresh()
            assert index.served("static") == ["m1"]
            assert health.snapshot("static")["reachable"] is None
            assert health.snapshot("static")["last_ok_at"] is None
            assert health.snapshot("found")["reachable"] is False
            health.record_error("static", "static: cannot reach", unreachable=True)
            await index.refresh()
            assert health.snapshot("static")["reachable"] is False
            assert health.snapshot("static")["last_ok_at"] is None
        finally:
            for p in providers.values():
                await p.aclose()

    asyncio.run(run())
