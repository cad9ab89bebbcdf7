"""Executes a resolved Route: ordered targets, retries with backoff, fallback, circuit breakers.

For each target able to honour the request (capabilities), in order (the configured order, or
the one an alias's balancing strategy chose for this request: `balance.py`), skipping those whose
breaker is open: attempt; on a retryable failure retry the same target (exponential backoff with
jitter, at least the upstream's Retry-After up to a cap); on any other failure, or when the
retries are spent, fall back to the next target. A failure that judges the request itself (a 400)
goes back to the client at once. `deadline_s` bounds the whole chain. See `policy.py`.

Streams: an attempt lasts until the first chunk with content (more than the opening role), and
when another target remains it must get there within `first_token_timeout_s`. Until then any
failure falls back invisibly: nothing has been sent to the client. After it, the stream belongs
to that target; a failure ends it with an error event (counted in `stats.broken_streams`). So
no stream ever carries content from two targets.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar, cast

from aigw.completion import CompletionRequest
from aigw.config import AliasConfig, RoutingConfig
from aigw.domain import (
    Capability,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Route,
    Target,
)
from aigw.errors import (
    AigwError,
    CapabilityError,
    FirstTokenTimeout,
    ServiceUnavailable,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    quoted,
)
from aigw.providers.base import Completing, Provider, Reranking
from aigw.reranking import RerankRequest, RerankResponse
from aigw.routing.balance import Busy, InFlight, Lasting, Released, Standing, balancers
from aigw.routing.breaker import Breaker, BreakerBoard, Permit
from aigw.routing.capabilities import CHAT_FEATURES, requirements
from aigw.routing.health import HealthBoard
from aigw.routing.policy import Verdict, counts_against_target, has_content, retry_delay, verdict

T = TypeVar("T")
log = logging.getLogger("aigw.router")
_WHAT = MappingProxyType({
    Capability.COMPLETIONS: "legacy completions (/v1/completions; chat models take /v1/chat/completions)",
    Capability.INSERT: "fill-in-the-middle (the model has no FIM tokens)",
    Capability.RERANK: "reranking (/v1/rerank)",
})  # fmt: skip
"""How a refusal names what a target lacks, when its capability's name would not say."""
Sleep = Callable[[float], Coroutine[Any, Any, None]]


@dataclass(slots=True)
class Trace:
    """How a request travelled: targets tried before the one that answered, retries in all."""

    fallbacks: int = 0
    retries: int = 0


@dataclass(slots=True)
class Routed(Generic[T]):
    value: T
    target: Target
    upstream_s: float
    trace: Trace = field(default_factory=Trace)


@dataclass(slots=True)
class RoutedStream:
    """A stream whose first content has arrived: `head` holds the chunks up to and including it
    (empty when the upstream ended without any); `rest` relays the remainder."""

    head: list[ChatChunk]
    rest: AsyncGenerator[ChatChunk, None]
    target: Target
    upstream_s: float
    trace: Trace = field(default_factory=Trace)
    upstream: AsyncIterator[ChatChunk] | None = None

    async def aclose(self) -> None:
        """Close the relay, and the upstream stream even when the relay never started."""
        await self.rest.aclose()
        if self.upstream is not None:
            await _aclose(self.upstream)


@dataclass(slots=True)
class RouterStats:
    fallbacks: int = 0
    retries: int = 0
    broken_streams: int = 0
    """Streams that failed after content reached the client (ended with an error event)."""

    def snapshot(self) -> dict[str, int]:
        return {"fallbacks": self.fallbacks, "retries": self.retries, "broken_streams": self.broken_streams}


@dataclass(slots=True)
class _Win(Generic[T]):
    value: T
    target: Target
    trace: Trace
    breaker: Breaker
    permit: Permit


class _NextTarget(Exception):
    def __init__(self, error: AigwError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(slots=True)
class _Opened(Lasting):
    head: list[ChatChunk]
    it: AsyncIterator[ChatChunk]

    def hold(self, release: Callable[[], None]) -> None:
        """Call `release` when the stream ends, however it ends."""
        self.it = Released(self.it, release)


async def _read_head(it: AsyncIterator[ChatChunk], head: list[ChatChunk]) -> None:
    """Read chunks into `head` up to and including the first with content (or to the end)."""
    async for chunk in it:
        head.append(chunk)
        if has_content(chunk):
            return


async def _aclose(it: AsyncIterator[ChatChunk]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()


class Router:
    def __init__(
        self,
        providers: Mapping[str, Provider],
        health: HealthBoard,
        config: RoutingConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        aliases: Mapping[str, AliasConfig] | None = None,
        busy: Busy | None = None,
    ) -> None:
        self._providers = providers
        self._health = health
        self._cfg = config or RoutingConfig()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.breakers = BreakerBoard(self._cfg.breaker, clock)
        self.stats = RouterStats()
        standing = Standing(self.breakers, health, self._cfg.breaker.cooldown_s)
        self._balancers = balancers(aliases or {}, standing, busy or InFlight())
        """The aliases whose strategy orders each request's targets (not `ordered` ones)."""

    # -- target selection ----------------------------------------------------------------------

    def _capable(
        self,
        route: Route,
        needs: Capability,
        req: ChatRequest | None = None,
        *,
        also: tuple[Capability, str] | None = None,
    ) -> list[tuple[Target, Provider]]:
        """The route's targets able to honour everything the request asks for, in order.
        `also`: one more capability a field of the request needs, and the field."""
        out: list[tuple[Target, Provider]] = []
        missing: tuple[Target, str, str] | None = None
        for target in route.targets:
            provider = self._providers[target.provider]
            caps = provider.capabilities_for(target.model)
            if needs not in caps:
                missing = missing or (target, _WHAT.get(needs, needs.value), "model")
                continue
            if also is not None and also[0] not in caps:
                missing = missing or (target, _WHAT.get(also[0], also[0].value), also[1])
                continue
            if req is not None and not caps >= CHAT_FEATURES:
                lacking = [(cap, param) for cap, param in requirements(req) if cap not in caps]
                if lacking:
                    missing = missing or (target, lacking[0][0].value, lacking[0][1])
                    continue
            out.append((target, provider))
        if not out:
            assert missing is not None
            target, what, param = missing
            raise CapabilityError(
                f"Model {quoted(route.requested)} ({target.provider}/{target.model}) does not support {what} "
                f"(requested by '{param}')",
                param=param,
            )
        return out

    # -- outcomes ------------------------------------------------------------------------------

    def _as_error(self, target: Target, exc: Exception) -> AigwError:
        """Anything outside aigw's error tree is a bug in the provider: logged, and a 502."""
        if isinstance(exc, AigwError):
            return exc
        if isinstance(exc, TimeoutError):
            return UpstreamTimeout(f"{target.provider}: timed out", provider=target.provider)
        log.error("provider %s failed unexpectedly: %s: %s", target.provider, type(exc).__name__, exc)
        return UpstreamProtocolError(
            f"{target.provider}: unexpected failure ({type(exc).__name__})", provider=target.provider
        )

    def _record_failure(self, target: Target, err: AigwError, breaker: Breaker, permit: Permit) -> None:
        if not counts_against_target(err):
            breaker.release(permit)
            return
        breaker.failure(permit)
        assert isinstance(err, UpstreamError)
        unreachable = isinstance(err, UpstreamConnectError | UpstreamTimeout)
        self._health.record_error(target.provider, err.message, unreachable=unreachable)

    # -- the chain -----------------------------------------------------------------------------

    async def _run(
        self,
        route: Route,
        targets: list[tuple[Target, Provider]],
        attempt: Callable[[Provider, Target, bool], Awaitable[T]],
    ) -> _Win[T]:
        """Try the targets in order; the first success wins. `attempt` gets whether another
        target remains after this one. When all fail, the client gets the last upstream failure
        (or, when every target refused the request, the first refusal)."""
        if route.alias is not None and (balancer := self._balancers.get(route.alias)) is not None:
            targets, attempt = balancer.order(targets), balancer.track(attempt)
        deadline = self._clock() + self._cfg.deadline_s
        trace = Trace()
        tried = 0
        failed: AigwError | None = None
        refused: CapabilityError | None = None
        waits: list[float] = []
        for i, (target, provider) in enumerate(targets):
            breaker = self.breakers.get(target)
            permit = breaker.allow()
            if permit is None:
                waits.append(breaker.retry_in())
                continue
            tried += 1
            has_next = any(self.breakers.get(t).available() for t, _ in targets[i + 1 :])
            call = functools.partial(attempt, provider, target, has_next)
            try:
                win = await self._try_target(
                    route,
                    target,
                    breaker,
                    permit,
                    call,
                    has_next=has_next,
                    deadline=deadline,
                    trace=trace,
                    last=failed,
                )
            except _NextTarget as nxt:
                if isinstance(nxt.error, CapabilityError):
                    refused = refused or nxt.error
                else:
                    failed = nxt.error
                continue
            trace.fallbacks = tried - 1
            self.stats.fallbacks += trace.fallbacks
            return win
        self.stats.fallbacks += max(0, tried - 1)
        err = failed or refused
        if err is not None:
            raise err
        wait = max(1.0, min(waits))  # 0 when another request holds the half-open probe
        raise ServiceUnavailable(
            f"Every target of {quoted(route.requested)} is failing (circuit open); retry in {wait:.0f} s",
            retry_after=wait,
        )

    async def _try_target(
        self,
        route: Route,
        target: Target,
        breaker: Breaker,
        permit: Permit,
        attempt: Callable[[], Awaitable[T]],
        *,
        has_next: bool,
        deadline: float,
        trace: Trace,
        last: AigwError | None,
    ) -> _Win[T]:
        """Attempt one target, retrying what may succeed on another try. Raises `_NextTarget` to
        move on, or the error the client should get."""
        retries = 0
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                breaker.release(permit)
                raise self._deadline_error(route, last)
            try:
                async with asyncio.timeout(remaining) as scope:
                    value = await attempt()
            except asyncio.CancelledError:
                breaker.release(permit)
                raise
            except Exception as e:
                if isinstance(e, TimeoutError) and scope.expired():
                    breaker.release(permit)
                    raise self._deadline_error(route, last) from None
                err = last = self._as_error(target, e)
                if isinstance(e, AigwError | TimeoutError):
                    self._record_failure(target, err, breaker, permit)
                else:  # a bug in the provider (maybe provoked by this request), not ill health
                    breaker.release(permit)
                    self._health.record_error(target.provider, err.message)
                decision = verdict(err, has_next=has_next)
                if decision is Verdict.FINAL:
                    raise err from None
                if decision is Verdict.RETRY and retries < self._cfg.retries and breaker.available():
                    delay = retry_delay(self._cfg, retries + 1, getattr(err, "retry_after", None), self._rng)
                    if delay is not None and self._clock() + delay < deadline:
                        await self._sleep(delay)
                        again = breaker.allow()
                        if again is not None:
                            permit = again
                            retries += 1
                            trace.retries += 1
                            self.stats.retries += 1
                            continue
                raise _NextTarget(err) from None
            breaker.success(permit)
            self._health.record_ok(target.provider)
            return _Win(value, target, trace, breaker, permit)

    def _deadline_error(self, route: Route, last: AigwError | None) -> UpstreamTimeout:
        why = f"; last failure: {last.message}" if last is not None else ""
        provider = last.provider if isinstance(last, UpstreamError) else route.targets[0].provider
        return UpstreamTimeout(
            f"No answer for {quoted(route.requested)} within the {self._cfg.deadline_s:g} s deadline{why}",
            provider=provider,
        )

    # -- operations ----------------------------------------------------------------------------

    async def chat(self, route: Route, req: ChatRequest) -> Routed[ChatResponse]:
        targets = self._capable(route, Capability.CHAT, req)
        t0 = self._clock()
        win = await self._run(route, targets, lambda p, t, _: p.chat(req.with_model(t.model)))
        return Routed(win.value, win.target, self._clock() - t0, win.trace)

    async def embed(self, route: Route, req: EmbedRequest) -> Routed[EmbedResponse]:
        targets = self._capable(route, Capability.EMBED)
        t0 = self._clock()
        win = await self._run(route, targets, lambda p, t, _: p.embed(req.with_model(t.model)))
        return Routed(win.value, win.target, self._clock() - t0, win.trace)

    def _completing(self, route: Route, req: CompletionRequest) -> list[tuple[Target, Provider]]:
        """The targets serving legacy completions (with fill-in-the-middle when `suffix` is set)."""
        fim = (Capability.INSERT, "suffix") if req.suffix is not None else None
        capable = self._capable(route, Capability.COMPLETIONS, also=fim)
        out: list[tuple[Target, Provider]] = [(t, p) for t, p in capable if isinstance(p, Completing)]
        if not out:  # a plugin's provider that declares the capability without the methods
            what = f"Model {quoted(route.requested)} does not serve /v1/completions"
            raise CapabilityError(what, param="model")
        return out

    async def complete(self, route: Route, req: CompletionRequest) -> Routed[ChatResponse]:
        """A legacy text completion (whole)."""
        targets = self._completing(route, req)
        t0 = self._clock()

        async def attempt(provider: Provider, target: Target, _: bool) -> ChatResponse:
            return await cast(Completing, provider).complete(req.with_model(target.model))

        win = await self._run(route, targets, attempt)
        return Routed(win.value, win.target, self._clock() - t0, win.trace)

    async def open_completion_stream(self, route: Route, req: CompletionRequest) -> RoutedStream:
        """A legacy text completion's stream, read up to its first content as `open_stream`."""
        targets = self._completing(route, req)
        t0 = self._clock()

        async def attempt(provider: Provider, target: Target, has_next: bool) -> _Opened:
            wait = self._cfg.first_token_timeout_s if has_next else None
            it = cast(Completing, provider).stream_complete(req.with_model(target.model))
            return await self._first_content(it, target, wait)

        win = await self._run(route, targets, attempt)
        rest = self._guard(win.target, win.value.it, win.breaker, win.permit)
        return RoutedStream(win.value.head, rest, win.target, self._clock() - t0, win.trace, win.value.it)

    async def open_stream(self, route: Route, req: ChatRequest) -> RoutedStream:
        """Start a stream and read up to its first content, falling back before it as needed."""
        targets = self._capable(route, Capability.STREAM, req)
        t0 = self._clock()

        async def attempt(provider: Provider, target: Target, has_next: bool) -> _Opened:
            wait = self._cfg.first_token_timeout_s if has_next else None
            return await self._first_content(provider.stream_chat(req.with_model(target.model)), target, wait)

        win = await self._run(route, targets, attempt)
        rest = self._guard(win.target, win.value.it, win.breaker, win.permit)
        return RoutedStream(win.value.head, rest, win.target, self._clock() - t0, win.trace, win.value.it)

    async def _first_content(
        self, it: AsyncIterator[ChatChunk], target: Target, wait: float | None
    ) -> _Opened:
        head: list[ChatChunk] = []
        try:
            if wait is None:  # the last target: no first-token timeout (and no timer to set up)
                await _read_head(it, head)
            else:
                async with asyncio.timeout(wait) as scope:
                    await _read_head(it, head)
        except TimeoutError:
            await _aclose(it)
            if wait is not None and scope.expired():
                raise FirstTokenTimeout(
                    f"{target.provider}: no first token within {wait:g} s", provider=target.provider
                ) from None
            raise
        except BaseException:
            await _aclose(it)
            raise
        return _Opened(head, it)

    async def _guard(
        self, target: Target, it: AsyncIterator[ChatChunk], breaker: Breaker, permit: Permit
    ) -> AsyncGenerator[ChatChunk, None]:
        """Relay the rest of a committed stream; a failure now reaches the client as an error."""
        try:
            async for chunk in it:
                yield chunk
        except Exception as e:
            err = self._as_error(target, e)
            self._record_failure(target, err, breaker, permit)
            self.stats.broken_streams += 1
            raise err from None
        finally:
            await _aclose(it)

    async def rerank(self, route: Route, req: RerankRequest) -> Routed[RerankResponse]:
        """Rank documents at the first target that answers; targets without a reranker are skipped
        (none at all: a 400 saying the model does not support rerank)."""
        targets: list[tuple[Target, Provider]] = [
            (t, p) for t, p in self._capable(route, Capability.RERANK) if isinstance(p, Reranking)
        ]
        if not targets:
            target = route.targets[0]
            raise CapabilityError(
                f"Model {quoted(route.requested)} ({target.provider}/{target.model}) does not support rerank",
                param="model",
            )
        t0 = self._clock()
        win = await self._run(
            route, targets, lambda p, t, _: cast(Reranking, p).rerank(req.with_model(t.model))
        )
        return Routed(win.value, win.target, self._clock() - t0, win.trace)
