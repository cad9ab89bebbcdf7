"""The Gateway: every long-lived service of the daemon, owned by the app's lifespan, and the
operations the API dialects call.

It builds the providers from config and owns the model index, the router, the accounting (meter),
the response cache, the local engine and RAG; the request pipeline (`pipeline.py`) sequences each
request through them. Dialects call `chat`, `stream`, `embed` or `rag_answer`; the admin API
calls the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from aigw import __version__
from aigw.access.budget import Budgets
from aigw.access.keycache import KeyCache
from aigw.access.keys import ApiKey, Keys
from aigw.access.meter import Meter
from aigw.access.ratelimit import RateLimiter
from aigw.cache.service import AnswerCache
from aigw.cache.store import ResponseStore
from aigw.config import Config
from aigw.domain import ChatRequest, Route, Target
from aigw.engine.engine import FOREVER, Engine, EngineLimits
from aigw.errors import InvalidRequest, quoted
from aigw.gateway.call import Caller
from aigw.gateway.models import ModelIndex
from aigw.gateway.pipeline import Pipeline
from aigw.gateway.pulls import ModelPulls
from aigw.gateway.rag import RagDesk
from aigw.local.library import ModelLibrary
from aigw.paths import Paths
from aigw.providers.base import Fingerprinted, Provider, TokenCounting
from aigw.providers.registry import ProviderRegistry
from aigw.providers.spec import ProviderContext
from aigw.rag.provider import PROVIDER_NAME, TYPE_NAME, EmbeddingProvider
from aigw.rag.service import RagService, missing_packages
from aigw.routing.health import HealthBoard
from aigw.routing.router import Router
from aigw.state.backend import budgets, key_store, rate_limiter, response_store, shared_busy, shared_state
from aigw.state.responses import StoredResponses
from aigw.usage.metrics import Metrics
from aigw.usage.prices import PriceTable
from aigw.usage.recorder import UsageRecorder
from aigw.usage.telemetry import open_telemetry

if TYPE_CHECKING:
    from aigw.state.redis.conn import SharedState

log = logging.getLogger("aigw.gateway")


class Gateway:
    def __init__(
        self,
        config: Config,
        providers: Mapping[str, Provider],
        *,
        types: Mapping[str, str] | None = None,
        credentials: Mapping[str, bool] | None = None,
        engine: Engine | None = None,
        clock: Callable[[], float] = time.monotonic,
        keys: Keys | None = None,
        meter: Meter | None = None,
        cache_store: ResponseStore | None = None,
        database: Path | None = None,
        rag: RagService | None = None,
        pulls: ModelPulls | None = None,
        state: SharedState | None = None,
    ) -> None:
        self.config = config
        self.state = state
        """The Redis every instance shares (None: this machine's own state)."""
        self.pulls = pulls
        """Pulling and deleting local models (None when the gateway was built without a models dir)."""
        self.engine = engine or Engine(EngineLimits(memory_budget_bytes=config.local.budget_bytes()))
        self._types = {n: config.provider_type(n) for n in config.providers} | dict(types or {})
        """Each provider's type name, as /health/detailed shows it."""
        self._credentials = dict(credentials or {})
        self.providers = dict(providers)
        self.rag = rag
        if rag is not None and PROVIDER_NAME not in self.providers and not missing_packages():
            self.providers[PROVIDER_NAME] = EmbeddingProvider(rag)
            self._types[PROVIDER_NAME] = TYPE_NAME
        self.health = HealthBoard(list(self.providers))
        self.models = ModelIndex(
            self.providers, config.models, self.health, patterns=config.model_patterns, clock=clock
        )
        self._busy = shared_busy(state)
        self.router = Router(
            self.providers, self.health, config.routing, aliases=config.models, busy=self._busy
        )
        self.keys = keys
        self.database = database
        """The SQLite database of keys and usage (None: a gateway without one, in tests)."""
        self.stored = StoredResponses(database) if database is not None else None
        """Responses kept for `previous_response_id` (/v1/responses with `store`)."""
        self.key_cache = KeyCache(keys.by_hash if keys is not None else lambda _: None)
        self.meter = meter or Meter(
            config,
            limiter=RateLimiter(),
            metrics=Metrics(),
            recorder=None,
            prices=PriceTable(overrides=config.prices),
            budgets=Budgets(),
        )
        self.cache = AnswerCache(
            cache_store,
            config.cache.mode,
            self.cache_identity,
            wait_s=config.routing.deadline_s,
            shared=config.cache.shared,
        )
        self.pipeline = Pipeline(self.models, self.router, self.meter, self.cache, self.serves_locally)
        self.rag_desk = RagDesk(rag, self.pipeline, config)
        """RAG for callers: their collections, their embeddings on their account."""
        # The operations the dialects call: the pipeline's own (no extra frame on the hot path).
        self.chat = self.pipeline.chat
        """A whole chat completion (see `Pipeline.chat`)."""
        self.stream = self.pipeline.stream
        """A streamed chat completion, once its first content has arrived (`Pipeline.stream`)."""
        self.rerank = self.pipeline.rerank
        """Documents ranked against a query (`Pipeline.rerank`)."""
        self.embed = self.pipeline.embed
        """Embeddings (`Pipeline.embed`)."""
        self.complete = self.pipeline.complete
        """A whole legacy text completion (`Pipeline.complete`)."""
        self.stream_complete = self.pipeline.stream_complete
        """A streamed legacy text completion (`Pipeline.stream_complete`)."""
        self._clock = clock
        self._started = clock()
        self._unwatch: list[Callable[[], None]] = []
        """How to stop watching the shared state (key changes, breakers)."""

    @classmethod
    def build(
        cls, config: Config, paths: Paths, registry: ProviderRegistry, environ: Mapping[str, str]
    ) -> Gateway:
        budget = config.local.budget()
        engine = Engine(
            EngineLimits(
                memory_budget_bytes=budget.bytes,
                keep_alive_s=FOREVER if config.local.keep_alive_s < 0 else config.local.keep_alive_s,
                max_queue=config.local.max_queue,
                load_wait_s=config.local.load_wait_s,
                pressure_poll_s=config.local.pressure_poll_s,
            )
        )
        log.info("local memory budget: %s", budget.describe())
        ctx = ProviderContext(environ=environ, paths=paths, engine=engine, local=config.local)
        providers = {name: registry.create(name, pcfg, ctx) for name, pcfg in config.providers.items()}
        types = {name: registry.of(name, pcfg) for name, pcfg in config.providers.items()}
        local = frozenset(name for name, t in types.items() if t.is_local)
        state = shared_state(config.state)
        keys = key_store(state, paths.database)
        recorder = UsageRecorder(paths.database, flush_interval_s=config.usage.flush_interval_s)
        meter = Meter(
            config,
            limiter=rate_limiter(state),
            metrics=Metrics(),
            recorder=recorder,
            prices=PriceTable.from_config(config, registry.prices(), local),
            budgets=budgets(state, recorder.totals_by_key()),
            telemetry=open_telemetry(config.telemetry, __version__),
        )
        store = response_store(state, paths.cache_dir / "responses", config.cache)
        return cls(
            config,
            providers,
            credentials={n: t.has_credentials(config.providers[n], environ) for n, t in types.items()},
            engine=engine,
            keys=keys,
            meter=meter,
            cache_store=store,
            database=paths.database,
            rag=RagService(paths.data_dir / "rag.db", config.rag.model),
            pulls=ModelPulls(ModelLibrary(paths.models_dir, config, registry), engine),
            state=state,
        )

    # -- operations (the API dialects call these) ----------------------------------------------

    def inflight(self) -> AbstractContextManager[None]:
        """Counts a request in progress (the ai_inflight_requests gauge) while inside."""
        return self.meter.metrics.inflight()

    def rate_subject(self, subject: str) -> tuple[str, ApiKey | None]:
        """A rate-limit subject named by a key's id or name, or a client address."""
        key = self.keys.get(subject) if self.keys is not None else None
        return (key.id, key) if key is not None else (subject, None)

    def start(self) -> None:
        """List models in the background: an unreachable upstream must not delay startup. Warm the
        RAG embedding model too when there are collections. With shared state, forget cached key
        lookups whenever any instance creates or revokes one, and share breakers' transitions."""
        self.models.refresh_in_background()
        loop = asyncio.get_running_loop()
        watch = getattr(self.keys, "watch", None)
        if callable(watch):
            self._unwatch.append(watch(lambda: loop.call_soon_threadsafe(self.key_cache.clear)))
        if self.state is not None and self.config.state.shared_breakers:
            from aigw.state.redis.breakers import SharedBreakers

            self._unwatch.append(SharedBreakers(self.state, self.router.breakers).start(loop))
        if self._busy is not None:
            self._unwatch.append(self._busy.start_syncing())
        if self.rag is not None:
            self.rag.warm()

    def cache_identity(self, target: Target) -> str:
        """What identifies a target's answers in cache keys: provider, model, and for a local
        model the fingerprint of the weights it serves now."""
        provider = self.providers.get(target.provider)
        fingerprint = getattr(provider, "fingerprint", None)
        fp = cast(Fingerprinted, provider).fingerprint(target.model) if callable(fingerprint) else None
        base = f"{target.provider}/{target.model}"
        return base if fp is None else f"{base}@{fp}"

    def serves_locally(self, route: Route) -> bool:
        """Whether any of the route's targets is a local model (of this machine's engine)."""
        for t in route.targets:  # noqa: SIM110 (a loop: no generator frame on the hot path)
            if self.engine.knows(f"{t.provider}/{t.model}"):
                return True
        return False

    async def count_tokens(self, req: ChatRequest, caller: Caller) -> int | None:
        """The exact prompt tokens of `req` at the first target its model names, when that target
        can count them (a local model's tokenizer, Anthropic's endpoint); None otherwise. Nothing
        is generated or charged, but the key must be allowed the model."""
        route = await self.models.resolve(req.model, None)
        self.models.check_allowed(caller.key, route)
        target = route.targets[0]
        provider = self.providers[target.provider]
        if isinstance(provider, TokenCounting):
            return await provider.count_tokens(req.with_model(target.model))
        return None

    async def local_key(self, model: str) -> str:
        """The engine key of the local model a request's `model` names."""
        route = await self.models.resolve(model, None)
        for t in route.targets:
            key = f"{t.provider}/{t.model}"
            if self.engine.knows(key):
                return key
        raise InvalidRequest(f"{quoted(model)} is not a local model", param="model")

    # -- status ------------------------------------------------------------------------------

    def uptime_s(self) -> float:
        return self._clock() - self._started

    def detailed_health(self) -> dict[str, Any]:
        providers = {}
        for name in self.providers:
            snap = self.health.snapshot(name)
            providers[name] = {
                "type": self._types.get(name),
                "configured": name in self.config.providers,
                "api_key_set": self._credentials.get(name, False),
                "models": self.models.served(name),
                **snap,
            }
        return {
            "status": "ok",
            "version": __version__,
            "uptime_s": round(self.uptime_s(), 3),
            "providers": providers,
            "aliases": {a: [f"{t.provider}/{t.model}" for t in ts] for a, ts in self.models.aliases.items()},
            "strategies": {a: spec.strategy for a, spec in self.config.models.items()},
            "breakers": self.router.breakers.snapshot(),
            "routing": self.router.stats.snapshot(),
            "local": {**self.engine.memory(), "loaded": self.engine.status()},
            "state": self.state.health() if self.state is not None else {"backend": "sqlite"},
        }

    async def aclose(self) -> None:
        self.models.stop()
        for unwatch in self._unwatch:
            await asyncio.to_thread(unwatch)
        if self.pulls is not None:
            self.pulls.stop()
        await asyncio.to_thread(self.meter.close)  # flushes the usage log and telemetry
        await asyncio.to_thread(self.cache.close)  # finishes the cache's pending writes
        if self.rag is not None:
            await asyncio.to_thread(self.rag.close)
        if self.stored is not None:
            self.stored.close()
        await self.engine.aclose()
        for name, p in self.providers.items():
            try:
                await p.aclose()
            except Exception:  # a provider's close must not stop the others closing
                log.exception("closing provider %s failed", name)
        if self.state is not None:  # last: what requests still settle goes to Redis, leases go back
            await asyncio.to_thread(self.state.close)
