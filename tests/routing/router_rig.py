"""The rig of test_router_chain: scripted in-memory providers behind the Provider seam, a fake
clock, a fake sleep that records its delays and advances the clock, a seeded rng."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aigw.config import RoutingConfig
from aigw.domain import (
    Capability,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    ModelInfo,
    Route,
    Target,
)
from aigw.errors import UpstreamConnectError, UpstreamError, UpstreamStatusError, UpstreamTimeout
from aigw.routing.health import HealthBoard
from aigw.routing.router import Router

CAPS = frozenset({Capability.CHAT, Capability.STREAM, Capability.EMBED})
ROUTE = Route("smart", (Target("a", "ma"), Target("b", "mb")), alias="smart")
ONLY_A = Route("solo", (Target("a", "ma"),))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeper:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.now += seconds


@dataclass
class Stall:
    """Real asyncio sleep before answering (streams: after the role chunk, before content)."""

    seconds: float


@dataclass
class Slow:
    """Takes `seconds` of fake time, then fails with `error`."""

    seconds: float
    error: Exception


@dataclass
class Broken:
    """A stream that fails after: nothing, the role chunk, or the first content."""

    error: Exception
    after: str  # "none" | "role" | "content"


class Scripted:
    """A provider whose every call takes the next outcome of its script ("ok" when spent)."""

    def __init__(self, name: str, *script: Any, clock: Clock | None = None) -> None:
        self.name = name
        self.capabilities = CAPS
        self.script = list(script)
        self.clock = clock
        self.calls = 0
        self.stalled: asyncio.Event | None = None  # set when a Stall step begins

    def capabilities_for(self, model: str) -> frozenset[Capability]:
        return self.capabilities

    async def list_models(self) -> list[ModelInfo]:
        return []

    async def _outcome(self) -> Any:
        self.calls += 1
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, Exception):
            raise step
        if isinstance(step, Slow):
            assert self.clock is not None
            self.clock.now += step.seconds
            raise step.error
        if isinstance(step, Stall):
            if self.stalled is not None:
                self.stalled.set()
            await asyncio.sleep(step.seconds)
        return step

    async def chat(self, req: ChatRequest) -> ChatResponse:
        await self._outcome()
        return ChatResponse(self.name, 0, req.model, [{"index": 0, "message": {"content": self.name}}])

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> ChatChunk:
        return ChatChunk(self.name, 0, self.name, [{"index": 0, "delta": delta, "finish_reason": finish}])

    async def stream_chat(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.calls += 1
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, Exception):
            raise step
        if isinstance(step, Broken) and step.after == "none":
            raise step.error
        yield self._chunk({"role": "assistant"})
        if isinstance(step, Broken) and step.after == "role":
            raise step.error
        if isinstance(step, Stall):
            await asyncio.sleep(step.seconds)
        yield self._chunk({"content": f"from {self.name}"})
        if isinstance(step, Broken):
            raise step.error
        yield self._chunk({}, "stop")

    async def embed(self, req: EmbedRequest) -> EmbedResponse:
        await self._outcome()
        return EmbedResponse(self.name, [{"index": 0, "embedding": [1.0]}])

    async def aclose(self) -> None:
        pass


class Rig:
    def __init__(self, a: list[Any] | None = None, b: list[Any] | None = None, **cfg: Any) -> None:
        self.clock = Clock()
        self.sleep = Sleeper(self.clock)
        self.a = Scripted("a", *(a or []), clock=self.clock)
        self.b = Scripted("b", *(b or []), clock=self.clock)
        self.health = HealthBoard(["a", "b"])
        self.router = Router(
            {"a": self.a, "b": self.b},
            self.health,
            RoutingConfig(**cfg),
            clock=self.clock,
            sleep=self.sleep,
            rng=random.Random(42),
        )

    def chat(self, route: Route = ROUTE) -> Any:
        return asyncio.run(self.router.chat(route, REQ))

    def breaker(self, name: str) -> dict[str, Any]:
        return self.router.breakers.snapshot()[f"{name}/m{name}"]

    @property
    def calls(self) -> tuple[int, int]:
        return self.a.calls, self.b.calls


REQ = ChatRequest(body={"model": "smart", "messages": [{"role": "user", "content": "hi"}]}, model="smart")


def status(code: int, retry_after: float | None = None) -> UpstreamStatusError:
    return UpstreamStatusError(f"a: HTTP {code}", provider="a", upstream_status=code, retry_after=retry_after)


RETRYABLE: list[UpstreamError] = [*(status(c) for c in (408, 409, 429, 500, 502, 503, 504, 529))]
RETRYABLE += [UpstreamConnectError("a: refused", provider="a"), UpstreamTimeout("a: slow", provider="a")]
