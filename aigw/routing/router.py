"""Executes a resolved Route against its providers.

The route's targets are ordered; this release uses the first target (retries, fallback and
breakers build on the same data model). Every outcome is reported to the health board.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from aigw.domain import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse
from aigw.errors import AigwError, InvalidRequest, UpstreamConnectError, UpstreamError, UpstreamTimeout
from aigw.providers.base import Capability, Provider
from aigw.routing.health import HealthBoard
from aigw.routing.resolve import Route, Target

T = TypeVar("T")


@dataclass(slots=True)
class Routed(Generic[T]):
    value: T
    target: Target
    upstream_s: float


@dataclass(slots=True)
class RoutedStream:
    """An upstream stream whose first chunk has arrived (so failures before it were raised)."""

    first: ChatChunk | None
    rest: AsyncIterator[ChatChunk]
    target: Target
    upstream_s: float


class Router:
    def __init__(
        self,
        providers: Mapping[str, Provider],
        health: HealthBoard,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._providers = providers
        self._health = health
        self._clock = clock

    def _pick(self, route: Route, needs: Capability) -> tuple[Target, Provider]:
        for target in route.targets:
            provider = self._providers[target.provider]
            if needs in provider.capabilities:
                return target, provider
        raise InvalidRequest(f"Model {route.requested!r} does not support {needs.value}", param="model")

    def _failed(self, target: Target, err: AigwError) -> None:
        if isinstance(err, UpstreamError):
            unreachable = isinstance(err, UpstreamConnectError | UpstreamTimeout)
            self._health.record_error(target.provider, err.message, unreachable=unreachable)

    async def _call(
        self, route: Route, needs: Capability, call: Callable[[Provider, Target], Awaitable[T]]
    ) -> Routed[T]:
        target, provider = self._pick(route, needs)
        t0 = self._clock()
        try:
            value = await call(provider, target)
        except AigwError as e:
            self._failed(target, e)
            raise
        self._health.record_ok(target.provider)
        return Routed(value, target, self._clock() - t0)

    async def chat(self, route: Route, req: ChatRequest) -> Routed[ChatResponse]:
        return await self._call(route, Capability.CHAT, lambda p, t: p.chat(req.with_model(t.model)))

    async def open_stream(self, route: Route, req: ChatRequest) -> RoutedStream:
        target, provider = self._pick(route, Capability.STREAM)
        t0 = self._clock()
        it = provider.stream_chat(req.with_model(target.model)).__aiter__()
        try:
            first: ChatChunk | None = await it.__anext__()
        except StopAsyncIteration:
            first = None
        except AigwError as e:
            self._failed(target, e)
            raise
        self._health.record_ok(target.provider)
        return RoutedStream(first, it, target, self._clock() - t0)

    async def embed(self, route: Route, req: EmbedRequest) -> Routed[EmbedResponse]:
        return await self._call(route, Capability.EMBED, lambda p, t: p.embed(req.with_model(t.model)))
