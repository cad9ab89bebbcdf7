"""Per-request accounting on the API path: admission (model allow-list, budget, rate limits) before
routing; afterwards rate-limit reconciliation, the usage row, spend and metrics.

Admission is decided in memory (no I/O): buckets in the rate limiter, each key's spend kept as a
running total (loaded from the usage log at start). The usage row is handed to the recorder, which
writes it off the event loop.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from aigw.access.budget import Budgets
from aigw.access.keys import ApiKey
from aigw.access.net import LOOPBACK
from aigw.access.ratelimit import Admission, Limits, RateLimiter
from aigw.access.reserve import Reservation, Reserver, estimate_tokens
from aigw.config import Config
from aigw.domain import Route, Target, Usage
from aigw.errors import AigwError, RateLimited
from aigw.usage.genai import Finished
from aigw.usage.metrics import Metrics
from aigw.usage.prices import PriceTable
from aigw.usage.recorder import UsageRecorder, UsageRow
from aigw.usage.speed import Speed
from aigw.usage.telemetry import Telemetry

RECENT_REQUESTS = 500  # kept in memory for the dashboard (aigw tui)


@dataclass(frozen=True, slots=True)
class Recent:
    """One finished request, as the dashboard shows it."""

    ts: float
    key: str | None
    model: str
    provider: str
    status: int
    latency_ms: float
    tokens: int
    cache: str | None
    fallbacks: int
    prompt_tokens: int = 0
    target: str = ""
    """The provider/model that answered (a local model's engine key)."""
    speed: Speed = field(default_factory=Speed)


@dataclass(slots=True)
class Ticket:
    """One admitted request."""

    subject: str
    key: ApiKey | None
    limits: Limits
    admission: Admission
    route: Route
    started: float
    content: dict[str, Any] | None = field(default=None)
    est_tokens: int = 0
    """The prompt's estimated tokens: charged when the answer carries no usage."""
    held_usd: float = 0.0
    """Budget held while the request runs (its worst-case cost)."""
    cap: int | None = None
    """The max_tokens the request goes upstream with, when admission capped it (None: as sent)."""
    request_id: str | None = None
    dialect: str | None = None
    operation: str | None = "chat"
    """gen_ai.operation.name for telemetry (None: no GenAI operation, not exported)."""

    @property
    def headers(self) -> dict[str, str]:
        return self.admission.headers


def _anonymous(subject: str) -> str:
    return "clients on this machine" if subject == LOOPBACK else f"client {subject}"


class Meter:
    def __init__(
        self,
        config: Config,
        *,
        limiter: RateLimiter,
        metrics: Metrics,
        recorder: UsageRecorder | None,
        prices: PriceTable,
        budgets: Budgets,
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._default = Limits(config.limits.rpm, config.limits.tpm)
        self._reserver = Reserver(prices, config.limits.default_max_tokens)
        self._log_content = config.usage.log_content
        self._telemetry = telemetry
        """Spans and GenAI metrics over OTLP (`aigw.usage.telemetry`); None when off."""
        self._capture = self._log_content or (telemetry is not None and telemetry.log_content)
        self.limiter = limiter
        self.metrics = metrics
        self._recorder = recorder
        self._prices = prices
        self.budgets = budgets
        self._clock = clock
        self.recent: deque[Recent] = deque(maxlen=RECENT_REQUESTS)
        self.cache_counts = {"hit": 0, "miss": 0, "bypass": 0}

    def close(self) -> None:
        """Flush the usage log and telemetry (blocking: call it off the event loop)."""
        if self._recorder is not None:
            self._recorder.close()
        if self._telemetry is not None:
            self._telemetry.close()

    def flush(self) -> None:
        """Write the usage rows recorded so far (blocking: call it off the event loop)."""
        if self._recorder is not None:
            self._recorder.flush()

    def limits_for(self, key: ApiKey | None) -> Limits:
        if key is None:
            return self._default
        return Limits(key.rpm, key.tpm)

    def spent(self, key_id: str) -> float:
        return self.budgets.spent(key_id)

    def admit(
        self,
        key: ApiKey | None,
        client: str,
        route: Route,
        body: dict[str, Any],
        *,
        generates: bool = False,
        est_tokens: int | None = None,
        request_id: str | None = None,
        dialect: str | None = None,
        operation: str | None = "chat",
    ) -> Ticket:
        """Admit a request whose model the caller may use, or raise (403 unpriced under a budget,
        429 over a limit or budget). The ticket holds its reservation; for a request that
        `generates`, the ticket's `cap` is the max_tokens it must go upstream with (see
        `aigw.access.reserve`)."""
        est = estimate_tokens(body) if est_tokens is None else max(1, est_tokens)
        limits = self.limits_for(key)
        subject = key.id if key is not None else client
        plan, holder = self._reserve(key, subject, limits, route, body, est=est, generates=generates)
        try:
            admission = self.limiter.admit(subject, limits, plan.tokens)
        except AigwError:  # the shared state failing closed: give the hold back
            if holder is not None:
                self.budgets.settle(holder.id, plan.held_usd, 0.0)
            raise
        if not admission.allowed:
            if holder is not None:
                self.budgets.settle(holder.id, plan.held_usd, 0.0)
            self.metrics.ratelimited(admission.limited_by or "requests")
            who = f"API key {key.name!r}" if key is not None else _anonymous(client)
            raise RateLimited(
                f"Rate limit of {who} reached ({admission.limited_by} per minute); "
                f"retry in {admission.retry_after:.1f} s",
                retry_after=admission.retry_after,
                headers=admission.headers,
            )
        content = {"messages": body.get("messages")} if self._capture else None
        ticket = Ticket(subject, key, limits, admission, route, self._clock(), content, est, plan.held_usd)
        ticket.cap = plan.cap
        ticket.request_id = request_id
        ticket.dialect = dialect
        ticket.operation = operation
        return ticket

    def _reserve(
        self, key: ApiKey | None, subject: str, limits: Limits, route: Route, body: dict[str, Any],
        *, est: int, generates: bool,
    ) -> tuple[Reservation, ApiKey | None]:  # fmt: skip
        """The request's reservation, its budget hold taken (the key that holds, or None). A shared
        budget's figures may be what this instance saw last (no round trip): they are used only
        while they leave room for twice the hold, and a refusal is decided on fresh figures."""
        for fresh in (False, True):
            budget_left: float | None = None
            exact = True
            if key is not None and key.budget_usd is not None:
                committed, exact = self.budgets.committed(key.id, fresh=fresh)
                try:
                    self.budgets.check(key, committed)
                except RateLimited:
                    if not exact:
                        continue
                    self.metrics.ratelimited("budget")
                    raise
                budget_left = key.budget_usd - committed
            try:
                plan = self._reserver.reserve(
                    key, route, body, est, tpm=limits.tpm, tpm_room=self.limiter.room(subject, limits),
                    budget_left=budget_left, generates=generates,
                )  # fmt: skip
            except RateLimited as e:
                if not exact and e.code == "budget_exhausted":
                    continue
                self.metrics.ratelimited("budget" if e.code == "budget_exhausted" else "tokens")
                raise
            if budget_left is not None and not exact and plan.held_usd > budget_left / 2:
                continue  # the budget may bound this request: decide on fresh figures
            holder = key if key is not None and plan.held_usd > 0 else None
            if holder is None or self.budgets.take(holder, plan.held_usd):
                return plan, holder
            if exact:
                break
        assert key is not None
        self.metrics.ratelimited("budget")
        raise RateLimited(
            f"API key {key.name!r}: its requests in flight hold the rest of its budget; retry when they "
            "finish",
            retry_after=1.0,
            code="budget_exhausted",
        )

    def done(
        self,
        t: Ticket,
        target: Target,
        usage: Usage | None,
        *,
        overhead_s: float,
        fallbacks: int,
        cache: str = "bypass",
        completion: Any = None,
        completion_chars: int = 0,
        retries: int = 0,
    ) -> None:
        """A request answered. Without usage from the upstream (a stream cut short, a server that
        sends none) its tokens are estimated, never taken as zero."""
        latency = self._clock() - t.started
        if usage is not None:
            prompt, completion_tokens = usage.prompt_tokens, usage.completion_tokens
        else:
            prompt, completion_tokens = t.est_tokens, -(-completion_chars // 4)
        cost = self._charge(t, target, prompt, completion_tokens)
        self.metrics.request_done(
            provider=target.provider,
            model=target.model,
            status=200,
            latency_s=latency,
            overhead_s=overhead_s,
            prompt_tokens=prompt,
            completion_tokens=completion_tokens,
            fallbacks=fallbacks,
            cache=cache,
        )
        content = None
        if t.content is not None:
            t.content["completion"] = completion
            content = t.content
        self._record(
            t,
            target,
            200,
            latency=latency,
            prompt=prompt,
            completion=completion_tokens,
            cost=cost,
            cache=cache,
            fallbacks=fallbacks,
            content=content,
            speed=Speed.of(usage),
            retries=retries,
        )

    def hit(self, t: Ticket, target: Target, prompt: int, completion: int) -> None:
        """A request answered from the cache: it costs nothing and uses no tokens of the rate
        limit (no upstream processed any); the usage row says what it saved."""
        latency = self._clock() - t.started
        self.limiter.settle(t.subject, t.limits, t.admission, 0)
        if t.key is not None and t.held_usd:
            self.budgets.settle(t.key.id, t.held_usd, 0.0)
        saved = (
            self._prices.cost(target.provider, target.model, prompt, completion)
            if prompt or completion
            else 0.0
        )
        self.metrics.cache_hit(latency)
        self._record(
            t, target, 200, latency=latency, prompt=prompt, completion=completion, cache="hit", saved=saved
        )

    def _charge(self, t: Ticket, target: Target | None, prompt: int, completion: int) -> float:
        """Settle the rate limits and the budget; the request's cost in USD."""
        self.limiter.settle(t.subject, t.limits, t.admission, prompt + completion)
        cost = 0.0
        if target is not None and (prompt or completion):
            cost = self._prices.cost(target.provider, target.model, prompt, completion)
        if t.key is not None and (t.held_usd or cost):
            self.budgets.settle(t.key.id, t.held_usd, cost)
        return cost

    def abandoned(self, t: Ticket) -> None:
        """The client left (or aigw is stopping) before an answer: give the reservation back."""
        self._charge(t, None, 0, 0)
        if self._telemetry is not None and t.operation is not None:
            self._export(t, None, None, self._clock() - t.started, error="cancelled", content=t.content)

    def failed(
        self, t: Ticket, err: AigwError, target: Target | None = None, *, delivered_chars: int = 0
    ) -> None:
        """A request failed; one that broke after content reached the client is charged for it."""
        latency = self._clock() - t.started
        delivered = target is not None and delivered_chars > 0
        prompt = t.est_tokens if delivered else 0
        completion = -(-delivered_chars // 4) if delivered else 0
        cost = self._charge(t, target, prompt, completion)
        provider = getattr(err, "provider", None) or (target.provider if target else "")
        model = target.model if target else ""
        self.metrics.request_failed(provider=provider, model=model, status=err.status_code, latency_s=latency)
        kind = type(err).__name__
        self._record(
            t,
            target,
            err.status_code,
            latency=latency,
            prompt=prompt,
            completion=completion,
            cost=cost,
            error_kind=kind,
            content=t.content,
            provider=provider,
            message=err.message,
        )

    def rejected(
        self,
        key: ApiKey | None,
        client: str,
        requested: str | None,
        route: Route | None,
        err: AigwError,
        *,
        request_id: str | None = None,
        dialect: str | None = None,
        operation: str | None = "chat",
    ) -> None:
        """A request refused before any upstream was asked (401, 403, 404 for its model, 429): a
        usage row, a line in the dashboard's tail and a metric, like every request."""
        if route is None:
            route = Route((requested or "")[:200], ())
        refused = Admission(False, 0.0, None, 0, {})
        t = Ticket(key.id if key else client, key, self.limits_for(key), refused, route, self._clock())
        t.request_id = request_id
        t.dialect = dialect
        t.operation = operation
        model = route.requested if route.targets else ""  # an unresolved name is no metric label
        self.metrics.request_failed(provider="", model=model, status=err.status_code, latency_s=0.0)
        kind = type(err).__name__
        self._record(t, None, err.status_code, latency=0.0, error_kind=kind, message=err.message)

    def _record(
        self,
        t: Ticket,
        target: Target | None,
        status: int,
        *,
        latency: float,
        prompt: int = 0,
        completion: int = 0,
        cost: float = 0.0,
        cache: str | None = None,
        saved: float = 0.0,
        fallbacks: int = 0,
        error_kind: str | None = None,
        content: dict[str, Any] | None = None,
        provider: str | None = None,
        speed: Speed | None = None,
        retries: int = 0,
        message: str | None = None,
    ) -> None:
        speed = speed or Speed()
        self.recent.append(
            Recent(
                t.started,
                t.key.name if t.key else None,
                t.route.requested,
                target.provider if target else (provider or ""),
                status,
                round(latency * 1000, 3),
                prompt + completion,
                cache,
                fallbacks,
                prompt,
                f"{target.provider}/{target.model}" if target else "",
                speed,
            )
        )
        if cache in self.cache_counts:
            self.cache_counts[cache] += 1
        if self._telemetry is not None and t.operation is not None:
            self._export(t, target, status, latency, prompt=prompt, completion=completion, cache=cache,
                         trace=(fallbacks, retries), error=error_kind, message=message,
                         content=content or t.content, provider=provider)  # fmt: skip
        if self._recorder is None:
            return
        self._recorder.record(
            UsageRow(
                ts=t.started,
                key_id=t.key.id if t.key else None,
                alias=t.route.alias,
                provider=target.provider if target else (provider or None),
                model=target.model if target else (t.route.requested or None),
                status=status,
                latency_ms=latency * 1000,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost_usd=cost,
                cache_hit=cache == "hit",
                cache=cache,
                saved_usd=saved,
                fallbacks=fallbacks,
                error_kind=error_kind,
                content=None if content is None or not self._log_content else _json(content),
                request_id=t.request_id,
                dialect=t.dialect,
                cached_tokens=speed.cached_tokens,
                prefill_ms=speed.prefill_ms,
                decode_tps=speed.decode_tps,
            )
        )

    def _export(
        self,
        t: Ticket,
        target: Target | None,
        status: int | None,
        latency: float,
        *,
        prompt: int = 0,
        completion: int = 0,
        cache: str | None = None,
        trace: tuple[int, int] = (0, 0),
        error: str | None = None,
        message: str | None = None,
        content: dict[str, Any] | None = None,
        provider: str | None = None,
    ) -> None:
        """Hand the request to telemetry: its span and GenAI metrics. A cache hit used no tokens; a
        failure, only those it was charged for (content it delivered before breaking)."""
        assert self._telemetry is not None and t.operation is not None
        tokens = cache != "hit" and (error is None or bool(prompt or completion))
        self._telemetry.request(
            Finished(
                t.operation, t.route.requested, bool(t.route.targets), t.started, t.started + latency,
                status=status, provider=target.provider if target else (provider or None),
                model=target.model if target else None,
                input_tokens=prompt if tokens else None, output_tokens=completion if tokens else None,
                cache=cache, fallbacks=None if error else trace[0], retries=None if error else trace[1],
                key=t.key.name if t.key else None, dialect=t.dialect, request_id=t.request_id,
                error=error, message=message, content=content,
            )
        )  # fmt: skip


def _json(content: dict[str, Any]) -> str:
    return orjson.dumps(content, default=str).decode()
