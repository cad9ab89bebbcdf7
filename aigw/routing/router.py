"""Executes a resolved Route against its providers.

The route's targets are ordered; this release uses the first target (retries, fallback and
breakers build on the same data model). Every outcome is reported to the health board.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from aigw.domain import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse
from aigw.errors import (
    AigwError,
    CapabilityError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from aigw.providers.base import Capability, Provider
from aigw.routing.capabilities import CHAT_FEATURES, requirements
from aigw.routing.health import HealthBoard
from aigw.routing.resolve import Route, Target

T = TypeVar("T")
log = logging.getLogger("aigw.router")


@dataclass(slots=True)
class Routed(Generic[T]):
    value: T
    target: Target
    upstream_s: float


@dataclass(slots=True)
class RoutedStream:
    """An upstream stream whose first chunk has arrived (so failures before it were raised)."""

    first: ChatChunk | None
    rest: AsyncGenerator[ChatChunk, None]
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

    def _pick(
        self, route: Route, needs: Capability, req: ChatRequest | None = None
    ) -> tuple[Target, Provider]:
        """The first target able to honour everything the request asks for."""
        missing: tuple[Target, str, str] | None = None
        for target in route.targets:
            provider = self._providers[target.provider]
            caps = provider.capabilities_for(target.model)
            if needs not in caps:
                missing = missing or (target, needs.value, "model")
                continue
            if req is None or caps >= CHAT_FEATURES:
                return target, provider
            lacking = [(cap, param) for cap, param in requirements(req) if cap not in caps]
            if not lacking:
                return target, provider
            missing = missing or (target, lacking[0][0].value, lacking[0][1])
        assert missing is not None
        target, what, param = missing
        raise CapabilityError(
            f"Model {route.requested!r} ({target.provider}/{target.model}) does not support {what} "
            f"(requested by '{param}')",
            param=param,
        )

    def _failed(self, target: Target, err: AigwError) -> None:
        if not isinstance(err, UpstreamError):
            return
        if isinstance(err, UpstreamStatusError) and err.is_client_fault:
            return  # the request was at fault, not the provider
        unreachable = isinstance(err, UpstreamConnectError | UpstreamTimeout)
        self._health.record_error(target.provider, err.message, unreachable=unreachable)

    def _failure(self, target: Target, exc: Exception) -> AigwError:
        """Record a provider's failure; what to raise. Anything outside aigw's error tree is a bug
        in the provider, logged and reported to the client as a 502."""
        if not isinstance(exc, AigwError):
            log.error("provider %s failed unexpectedly: %s: %s", target.provider, type(exc).__name__, exc)
            exc = UpstreamProtocolError(
                f"{target.provider}: unexpected failure ({type(exc).__name__})", provider=target.provider
            )
        self._failed(target, exc)
        return exc

    async def _call(
        self,
        route: Route,
        needs: Capability,
        call: Callable[[Provider, Target], Awaitable[T]],
        req: ChatRequest | None = None,
    ) -> Routed[T]:
        target, provider = self._pick(route, needs, req)
        t0 = self._clock()
        try:
            value = await call(provider, target)
        except Exception as e:
            raise self._failure(target, e) from None
        self._health.record_ok(target.provider)
        return Routed(value, target, self._clock() - t0)

    async def chat(self, route: Route, req: ChatRequest) -> Routed[ChatResponse]:
        return await self._call(route, Capability.CHAT, lambda p, t: p.chat(req.with_model(t.model)), req)

    async def open_stream(self, route: Route, req: ChatRequest) -> RoutedStream:
        """Start a stream and wait for its first chunk, so early failures surface as exceptions here."""
        target, provider = self._pick(route, Capability.STREAM, req)
        t0 = self._clock()
        it = self._guard(target, provider.stream_chat(req.with_model(target.model)))
        try:
            first: ChatChunk | None = await anext(it)
        except StopAsyncIteration:
            first = None
        self._health.record_ok(target.provider)
        return RoutedStream(first, it, target, self._clock() - t0)

    async def _guard(self, target: Target, it: AsyncIterator[ChatChunk]) -> AsyncGenerator[ChatChunk, None]:
        """Relay a provider's stream, recording failures and mapping stray exceptions to aigw errors."""
        try:
            async for chunk in it:
                yield chunk
        except Exception as e:
            raise self._failure(target, e) from None
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()

    async def embed(self, route: Route, req: EmbedRequest) -> Routed[EmbedResponse]:
        return await self._call(route, Capability.EMBED, lambda p, t: p.embed(req.with_model(t.model)))
