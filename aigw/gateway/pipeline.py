"""The request pipeline: the only code that sequences a request, for every API dialect.

Each operation takes a provider-neutral request and its caller and runs, once:

    resolve the model -> admit (key's models, budget, rate limits) -> cache plan and lookup
      (or follow an identical request in flight) -> route with retries and fallback (stopping
      local work when the client leaves) -> store the answer -> account (rate limits settled,
      spend, the usage row, metrics) -> the facts the x-aigw-* headers report

A failure on the way is accounted as a failure (or, when the client left, the reservation is
given back) and raised: each dialect renders aigw's errors in its own shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import orjson

from aigw.access.meter import Meter, Ticket
from aigw.access.reserve import with_max_tokens
from aigw.cache.policy import BYPASS
from aigw.cache.service import AnswerCache, Plan
from aigw.cache.store import CachedAnswer
from aigw.cache.streams import replay_chunks
from aigw.completion import CompletionRequest
from aigw.domain import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Native,
    Route,
    Target,
    conform_encoding,
)
from aigw.errors import AigwError, InvalidRequest
from aigw.gateway.call import Answer, Caller, Facts, Gone, StreamReply, W
from aigw.gateway.models import ModelIndex
from aigw.gateway.relay import Saver, relay
from aigw.reranking import RerankRequest, RerankResponse, conform
from aigw.routing.router import Routed, Router, Trace
from aigw.usage.genai import CHAT, EMBEDDINGS, RERANK, TEXT_COMPLETION

T = TypeVar("T")


class ClientGone(InvalidRequest):
    """The client disconnected before its answer was ready; nobody will read this error."""


class Pipeline:
    def __init__(
        self,
        models: ModelIndex,
        router: Router,
        meter: Meter,
        cache: AnswerCache,
        serves_locally: Callable[[Route], bool],
    ) -> None:
        self._models = models
        self._router = router
        self._meter = meter
        self._cache = cache
        self._local = serves_locally

    # -- operations ----------------------------------------------------------------------------

    async def chat(
        self, req: ChatRequest, caller: Caller, *, provider: str | None = None
    ) -> Answer[ChatResponse]:
        """A whole chat completion."""
        t0 = time.perf_counter()
        route, ticket, plan, req = await self._begin_chat(req, caller, provider)
        got = await self._fetch(
            plan, ticket, lambda: self._watched(self._router.chat(route, req), route, caller)
        )
        return self._generated(got, t0, plan, ticket)

    async def stream(self, req: ChatRequest, caller: Caller, *, provider: str | None = None) -> StreamReply:
        """A streamed chat completion, returned once its first content has arrived: until then any
        target may still fail over to the next, invisibly to the client."""
        t0 = time.perf_counter()
        route, ticket, plan, req = await self._begin_chat(req, caller, provider)
        stream = await self._fetch(
            plan, ticket, lambda: self._watched(self._router.open_stream(route, req), route, caller)
        )
        if isinstance(stream, CachedAnswer):
            return StreamReply(self._hit(stream, ticket, t0), _replayed(stream), _nothing)
        overhead = time.perf_counter() - t0 - stream.upstream_s
        facts = self._facts(stream.target, overhead, stream.trace, plan, ticket)
        saver = Saver(self._cache, plan) if plan.decision.store else None
        chunks = relay(stream, self._meter, ticket, overhead, saver=saver, cache=plan.status)

        async def abandon() -> None:  # the client left before the first byte was sent
            plan.publish(None)
            await stream.aclose()
            self._meter.abandoned(ticket)

        return StreamReply(facts, chunks, abandon)

    async def embed(
        self, req: EmbedRequest, caller: Caller, *, provider: str | None = None
    ) -> Answer[EmbedResponse]:
        """Embeddings."""
        t0 = time.perf_counter()
        route, ticket, plan = await self._begin("embed", req.model, req.body, caller, provider, op=EMBEDDINGS)
        got = await self._fetch(plan, ticket, lambda: self._router.embed(route, req))
        if isinstance(got, CachedAnswer):
            return Answer(self._hit(got, ticket, t0), wire=got.body, parse=EmbedResponse.from_wire)
        conform_encoding(got.value, req.body.get("encoding_format"))
        return self._answered(got, t0, plan, ticket)

    async def complete(
        self, req: CompletionRequest, caller: Caller, *, provider: str | None = None
    ) -> Answer[ChatResponse]:
        """A whole legacy text completion (cached as chat completions are)."""
        t0 = time.perf_counter()
        route, ticket, req = await self._begin_completion(req, caller, provider)
        key_id = caller.key.id if caller.key is not None else None
        plan = self._cache.plan("completion", route, req.body, caller.cache_control, key_id)
        got = await self._fetch(
            plan, ticket, lambda: self._watched(self._router.complete(route, req), route, caller)
        )
        return self._generated(got, t0, plan, ticket)

    async def stream_complete(
        self, req: CompletionRequest, caller: Caller, *, provider: str | None = None
    ) -> StreamReply:
        """A streamed legacy text completion, once its first content has arrived (not cached)."""
        t0 = time.perf_counter()
        route, ticket, req = await self._begin_completion(req, caller, provider)
        plan = Plan("completion", BYPASS)
        try:
            stream = await self._watched(self._router.open_completion_stream(route, req), route, caller)
        except BaseException as e:
            self._failed(e, plan, ticket)
            raise
        overhead = time.perf_counter() - t0 - stream.upstream_s
        facts = self._facts(stream.target, overhead, stream.trace, plan, ticket)
        chunks = relay(stream, self._meter, ticket, overhead, saver=None, cache=plan.status)

        async def abandon() -> None:  # the client left before the first byte was sent
            await stream.aclose()
            self._meter.abandoned(ticket)

        return StreamReply(facts, chunks, abandon)

    # -- the steps -----------------------------------------------------------------------------

    async def _begin(
        self, kind: str, model: str, body: dict[str, Any], caller: Caller, provider: str | None, *, op: str
    ) -> tuple[Route, Ticket, Plan]:
        route, ticket = await self._admitted(model, body, caller, provider, op, generates=False)
        key_id = caller.key.id if caller.key is not None else None
        return route, ticket, self._cache.plan(kind, route, body, caller.cache_control, key_id)

    async def _begin_chat(
        self, req: ChatRequest, caller: Caller, provider: str | None
    ) -> tuple[Route, Ticket, Plan, ChatRequest]:
        """As `_begin`, for a request that generates: admission may cap its max_tokens."""
        route, ticket = await self._admitted(req.model, req.body, caller, provider, CHAT, generates=True)
        if ticket.cap is not None:
            req = _capped(req, ticket.cap)
        key_id = caller.key.id if caller.key is not None else None
        plan = self._cache.plan("chat", route, _cache_body(req), caller.cache_control, key_id)
        return route, ticket, plan, req

    async def _begin_completion(
        self, req: CompletionRequest, caller: Caller, provider: str | None
    ) -> tuple[Route, Ticket, CompletionRequest]:
        """Admission for a legacy completion: every choice's answer reserved, and capped to fit."""
        body = req.admission_body()
        op = TEXT_COMPLETION
        route, ticket = await self._admitted(req.model, body, caller, provider, op, generates=True)
        return route, ticket, req if ticket.cap is None else req.capped(ticket.cap)

    async def _admitted(
        self,
        model: str,
        body: dict[str, Any],
        caller: Caller,
        provider: str | None,
        operation: str,
        *,
        generates: bool,
    ) -> tuple[Route, Ticket]:
        """Resolve the model and admit the request; a refusal (404, 403, 429) is logged as one."""
        route = None
        try:
            route = await self._models.resolve(model, provider)
            self._models.check_allowed(caller.key, route)
            ticket = self._meter.admit(
                caller.key,
                caller.address,
                route,
                body,
                generates=generates,
                request_id=caller.request_id,
                dialect=caller.dialect,
                operation=operation,
            )
        except AigwError as e:
            rid, dialect, op = caller.request_id, caller.dialect, operation
            self._meter.rejected(
                caller.key, caller.address, model, route, e, request_id=rid, dialect=dialect, operation=op
            )
            raise
        return route, ticket

    async def _lookup(self, plan: Plan) -> CachedAnswer | None:
        return await self._cache.lookup(plan) if plan.decision.lookup else None

    async def _fetch(self, plan: Plan, ticket: Ticket, call: Callable[[], Awaitable[T]]) -> CachedAnswer | T:
        """The cached answer, or the routed call's; a failure on the way is accounted and raised."""
        try:
            found = await self._lookup(plan)
            return found if found is not None else await call()
        except BaseException as e:
            self._failed(e, plan, ticket)
            raise

    def _generated(
        self, got: CachedAnswer | Routed[ChatResponse], t0: float, plan: Plan, ticket: Ticket
    ) -> Answer[ChatResponse]:
        """A whole generated answer (chat, or a legacy completion), from the cache or fresh; its
        text goes to the usage log when content is logged, and counts when usage is missing."""
        if isinstance(got, CachedAnswer):
            return Answer(self._hit(got, ticket, t0), wire=got.body, parse=ChatResponse.from_wire)
        choices = got.value.choices
        return self._answered(
            got, t0, plan, ticket,
            completion=choices if ticket.content is not None else None,
            chars=0 if got.value.usage is not None else len(orjson.dumps(choices)),
        )  # fmt: skip

    def _answered(
        self,
        result: Routed[W],
        t0: float,
        plan: Plan,
        ticket: Ticket,
        *,
        completion: Any = None,
        chars: int = 0,
    ) -> Answer[W]:
        """A fresh answer: stored when the plan allows, accounted, with its facts."""
        value = result.value
        overhead = time.perf_counter() - t0 - result.upstream_s
        answer = Answer(self._facts(result.target, overhead, result.trace, plan, ticket), value=value)
        if plan.decision.store:
            self._cache.save(plan, result.target, answer.wire(), value.usage)
        self._meter.done(
            ticket,
            result.target,
            value.usage,
            overhead_s=overhead,
            fallbacks=result.trace.fallbacks,
            cache=plan.status,
            completion=completion,
            completion_chars=chars,
            retries=result.trace.retries,
        )
        return answer

    def _hit(self, found: CachedAnswer, ticket: Ticket, t0: float) -> Facts:
        target = Target(found.provider, found.model)
        self._meter.hit(ticket, target, found.prompt_tokens, found.completion_tokens)
        return Facts(target, time.perf_counter() - t0, cache="hit", limits=ticket.headers)

    @staticmethod
    def _facts(target: Target, overhead_s: float, trace: Trace, plan: Plan, ticket: Ticket) -> Facts:
        return Facts(target, overhead_s, trace.fallbacks, trace.retries, plan.status, ticket.headers)

    def _failed(self, e: BaseException, plan: Plan, ticket: Ticket) -> None:
        """Account a request that got no answer: a failure, or (cancelled: aigw is stopping) its
        reservation given back. Followers of an identical request call the upstream themselves."""
        plan.publish(None)
        if isinstance(e, AigwError):
            self._meter.failed(ticket, e)
        else:
            self._meter.abandoned(ticket)

    def _watched(self, work: Coroutine[Any, Any, T], route: Route, caller: Caller) -> Awaitable[T]:
        """`work`, cancelled when the client leaves first, if it runs on this machine's own models.

        A local generation costs this machine's compute for as long as it runs (and may queue or
        load before its first token). Cloud calls are left alone: watching costs a task per
        request on the hot path, and the upstream bills the call either way."""
        if caller.gone is None or not self._local(route):
            return work
        return _until_gone(work, caller.gone)

    async def rerank(
        self, req: RerankRequest, caller: Caller, *, provider: str | None = None
    ) -> Answer[RerankResponse]:
        """Documents ranked against a query (/v1/rerank), answered from the cache like embeddings
        (a ranking is deterministic)."""
        t0 = time.perf_counter()
        route, ticket, plan = await self._begin("rerank", req.model, req.body, caller, provider, op=RERANK)
        got = await self._fetch(plan, ticket, lambda: self._router.rerank(route, req))
        if isinstance(got, CachedAnswer):
            return Answer(self._hit(got, ticket, t0), wire=got.body, parse=RerankResponse.from_wire)
        conform(got.value, req)
        return self._answered(got, t0, plan, ticket)


async def _until_gone(work: Coroutine[Any, Any, T], gone: Gone) -> T:
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():  # the client left, or this request itself was cancelled
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise ClientGone("the client disconnected")
    return task.result()


async def _replayed(found: CachedAnswer) -> AsyncGenerator[ChatChunk, None]:
    for chunk in replay_chunks(orjson.loads(found.body)):
        yield chunk


async def _nothing() -> None:
    """A replayed answer was accounted at its lookup: nothing to give back."""


def _cache_body(req: ChatRequest) -> dict[str, Any]:
    """What makes the request's answer: its body, and the reasoning its dialect asked for."""
    if req.hint is None:
        return req.body
    return {**req.body, "aigw:reasoning": [req.hint.effort, req.hint.budget]}


def _capped(req: ChatRequest, cap: int) -> ChatRequest:
    """The request with its answer capped at `cap` tokens, in its own dialect's form too."""
    native = req.native
    if native is not None:
        native = Native(native.dialect, {**native.body, "max_tokens": cap}, native.headers)
    return ChatRequest(with_max_tokens(req.body, cap), req.model, native, req.hint)
