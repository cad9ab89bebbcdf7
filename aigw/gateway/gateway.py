"""The Gateway: every long-lived service of the daemon, owned by the app's lifespan.

It builds the providers from config, keeps the index of which provider serves which model,
resolves request models to routes and hands them to the router.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from aigw import __version__
from aigw.access.keycache import KeyCache
from aigw.access.keys import ApiKey, KeyStore
from aigw.access.meter import Meter
from aigw.access.ratelimit import RateLimiter
from aigw.cache.service import AnswerCache
from aigw.cache.store import ResponseStore, open_store
from aigw.config import Config
from aigw.domain import Capability, EmbedRequest, ModelInfo, Route, Target
from aigw.errors import AigwError, InvalidRequest, ModelNotFound, UpstreamConnectError, UpstreamTimeout
from aigw.local.engine import FOREVER, Engine, EngineLimits
from aigw.paths import Paths
from aigw.providers.base import Fingerprinted, Provider
from aigw.providers.registry import ProviderRegistry
from aigw.providers.spec import ProviderContext
from aigw.rag.provider import PROVIDER_NAME, TYPE_NAME, EmbeddingProvider
from aigw.rag.service import RagService, missing_packages
from aigw.routing.health import HealthBoard
from aigw.routing.resolve import resolve
from aigw.routing.router import Router
from aigw.state.db import open_db
from aigw.usage.metrics import Metrics
from aigw.usage.prices import PriceTable
from aigw.usage.recorder import UsageRecorder

log = logging.getLogger("aigw.gateway")

LIST_TIMEOUT_S = 5.0
MISS_REFRESH_INTERVAL_S = 5.0
LISTING_MAX_AGE_S = 0.5
LISTING_WAIT_S = 0.25


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
        keys: KeyStore | None = None,
        meter: Meter | None = None,
        cache_store: ResponseStore | None = None,
        database: Path | None = None,
        rag: RagService | None = None,
    ) -> None:
        self.config = config
        self.engine = engine or Engine(EngineLimits(memory_budget_bytes=config.local.budget_bytes()))
        self._types = {n: config.provider_type(n) for n in config.providers} | dict(types or {})
        """Each provider's type name, as /health/detailed shows it."""
        self._credentials = dict(credentials or {})
        self.providers = dict(providers)
        self.rag = rag
        if rag is not None:
            rag.bind(self.embed_texts)
        if rag is not None and PROVIDER_NAME not in self.providers and not missing_packages():
            self.providers[PROVIDER_NAME] = EmbeddingProvider(rag)
            self._types[PROVIDER_NAME] = TYPE_NAME
        self.health = HealthBoard(list(self.providers))
        self.router = Router(self.providers, self.health, config.routing)
        self.keys = keys
        self.database = database
        """The SQLite database of keys and usage (None: a gateway without one, in tests)."""
        self.key_cache = KeyCache(keys.by_hash if keys is not None else lambda _: None)
        self.meter = meter or Meter(
            config,
            limiter=RateLimiter(),
            metrics=Metrics(),
            recorder=None,
            prices=PriceTable(overrides=config.prices),
            spent={},
        )
        self.cache = AnswerCache(
            cache_store,
            config.cache.mode,
            self.cache_identity,
            wait_s=config.routing.deadline_s,
            shared=config.cache.shared,
        )
        self._clock = clock
        self._started = clock()
        self._aliases: dict[str, tuple[Target, ...]] = {
            name: tuple(Target(t.provider, t.model) for t in spec.targets)
            for name, spec in config.models.items()
        }
        self._models: dict[str, list[ModelInfo]] = {p: [] for p in self.providers}
        self._served_by: dict[str, list[str]] = {}
        self._last_refresh = float("-inf")
        self._refresh_lock = asyncio.Lock()
        self._bg_refresh: asyncio.Task[None] | None = None

    @classmethod
    def build(
        cls, config: Config, paths: Paths, registry: ProviderRegistry, environ: Mapping[str, str]
    ) -> Gateway:
        engine = Engine(
            EngineLimits(
                memory_budget_bytes=config.local.budget_bytes(),
                keep_alive_s=FOREVER if config.local.keep_alive_s < 0 else config.local.keep_alive_s,
                max_queue=config.local.max_queue,
                load_wait_s=config.local.load_wait_s,
            )
        )
        ctx = ProviderContext(environ=environ, paths=paths, engine=engine, local=config.local)
        providers = {name: registry.create(name, pcfg, ctx) for name, pcfg in config.providers.items()}
        types = {name: registry.of(name, pcfg) for name, pcfg in config.providers.items()}
        local = frozenset(name for name, t in types.items() if t.is_local)
        keys = KeyStore(open_db(paths.database))
        recorder = UsageRecorder(paths.database, flush_interval_s=config.usage.flush_interval_s)
        spent = recorder.totals_by_key()
        meter = Meter(
            config,
            limiter=RateLimiter(),
            metrics=Metrics(),
            recorder=recorder,
            prices=PriceTable.from_config(config, registry.prices(), local),
            spent=spent,
        )
        store = (
            open_store(paths.cache_dir / "responses", config.cache) if config.cache.mode != "off" else None
        )
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
        )

    async def embed_texts(self, model: str, texts: list[str]) -> list[list[float]]:
        """Embeddings of `texts` by any model the gateway routes to (for RAG collections that use
        a provider's embedding model)."""
        route = await self.resolve(model, None)
        result = await self.router.embed(
            route, EmbedRequest(body={"model": model, "input": texts}, model=model)
        )
        data = sorted(result.value.data, key=lambda d: int(d.get("index", 0)))
        return [list(d["embedding"]) for d in data]

    def rate_subject(self, subject: str) -> tuple[str, ApiKey | None]:
        """A rate-limit subject named by a key's id or name, or a client address."""
        key = self.keys.get(subject) if self.keys is not None else None
        return (key.id, key) if key is not None else (subject, None)

    # -- model index -------------------------------------------------------------------------

    async def _list_one(self, name: str, provider: Provider) -> None:
        try:
            async with asyncio.timeout(LIST_TIMEOUT_S):
                models = await provider.list_models()
        except TimeoutError:
            self.health.record_error(name, f"{name}: model listing timed out", unreachable=True)
            return
        except AigwError as e:
            unreachable = isinstance(e, UpstreamConnectError | UpstreamTimeout)
            self.health.record_error(name, e.message, unreachable=unreachable)
            return
        except Exception as e:  # one broken provider must not break the index of the others
            log.error("listing models of %s failed unexpectedly: %s: %s", name, type(e).__name__, e)
            self.health.record_error(name, f"{name}: model listing failed ({type(e).__name__})")
            return
        self._models[name] = models
        self.health.record_ok(name)

    async def refresh_models(self, max_age_s: float = 0.0) -> None:
        """List every provider's models (concurrently); skipped when the index is fresh enough."""
        async with self._refresh_lock:
            if self._clock() - self._last_refresh < max_age_s:
                return
            await asyncio.gather(*(self._list_one(n, p) for n, p in self.providers.items()))
            served: dict[str, list[str]] = {}
            for pname, models in self._models.items():
                for m in models:
                    served.setdefault(m.id, []).append(pname)
            self._served_by = served
            self._last_refresh = self._clock()

    def start(self) -> None:
        """List models in the background: an unreachable upstream must not delay startup. Warm the
        RAG embedding model too when there are collections."""
        self._background_refresh()
        if self.rag is not None:
            self.rag.warm()

    def _background_refresh(self) -> None:
        if self._bg_refresh is None or self._bg_refresh.done():
            self._bg_refresh = asyncio.create_task(self.refresh_models(LISTING_MAX_AGE_S))

    async def listing_index(self) -> None:
        """Make the index fresh for a listing without letting a slow upstream hold the caller:
        the first listing waits for the first refresh; later ones wait at most LISTING_WAIT_S
        for a refresh (local models and healthy upstreams answer well within it) and otherwise
        get what is known while the refresh finishes in the background."""
        if self._last_refresh == float("-inf"):
            await self.refresh_models(LISTING_MAX_AGE_S)
        elif self._clock() - self._last_refresh >= LISTING_MAX_AGE_S:
            self._background_refresh()
            assert self._bg_refresh is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._bg_refresh), LISTING_WAIT_S)

    def known_model_ids(self) -> list[str]:
        ids = list(self._aliases)
        for pname, models in self._models.items():
            ids.extend(f"{pname}/{m.id}" for m in models)
        return ids

    def model_list(self) -> list[ModelInfo]:
        out = [ModelInfo(a, "aigw") for a in self._aliases]
        for pname, models in self._models.items():
            out.extend(ModelInfo(f"{pname}/{m.id}", pname, m.created) for m in models)
        return out

    async def resolve(self, model: str, pinned: str | None) -> Route:
        kw: dict[str, Any] = {"aliases": self._aliases, "providers": self.providers}
        route = resolve(model, pinned, served_by=self._served_by, **kw)
        if route is None and self._clock() - self._last_refresh >= MISS_REFRESH_INTERVAL_S:
            await self.refresh_models(max_age_s=MISS_REFRESH_INTERVAL_S)
            route = resolve(model, pinned, served_by=self._served_by, **kw)
        if route is None:
            raise ModelNotFound(self._not_found_message(model), param="model")
        return route

    def _not_found_message(self, model: str) -> str:
        known = self.known_model_ids()
        if not any(Capability.CHAT in p.capabilities for p in self.providers.values()):
            return (
                f"The model {model!r} does not exist: no providers are configured "
                "(set OPENAI_API_KEY or write a config.toml; see `aigw config path`)"
            )
        shown = ", ".join(known[:20]) + (f", and {len(known) - 20} more" if len(known) > 20 else "")
        return f"The model {model!r} does not exist. Known models: {shown or 'none listed'}"

    def cache_identity(self, target: Target) -> str:
        """What identifies a target's answers in cache keys: provider, model, and for a local
        model the fingerprint of the weights it serves now."""
        provider = self.providers.get(target.provider)
        fingerprint = getattr(provider, "fingerprint", None)
        fp = cast(Fingerprinted, provider).fingerprint(target.model) if callable(fingerprint) else None
        base = f"{target.provider}/{target.model}"
        return base if fp is None else f"{base}@{fp}"

    def cache_names(self, model: str) -> list[str]:
        """The "provider/model" names whose cached answers a model name covers: an alias's
        targets, or the name itself (provider/model, or a bare model of any provider)."""
        targets = self._aliases.get(model)
        if targets is None:
            return [model]
        return [f"{t.provider}/{t.model}" for t in targets]

    def serves_locally(self, route: Route) -> bool:
        """Whether any of the route's targets is a local model (of this machine's engine)."""
        return any(self.engine.knows(f"{t.provider}/{t.model}") for t in route.targets)

    async def local_key(self, model: str) -> str:
        """The engine key of the local model a request's `model` names."""
        route = await self.resolve(model, None)
        for t in route.targets:
            key = f"{t.provider}/{t.model}"
            if self.engine.knows(key):
                return key
        raise InvalidRequest(f"{model!r} is not a local model", param="model")

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
                "models": [m.id for m in self._models[name]],
                **snap,
            }
        return {
            "status": "ok",
            "version": __version__,
            "uptime_s": round(self.uptime_s(), 3),
            "providers": providers,
            "aliases": {a: [f"{t.provider}/{t.model}" for t in ts] for a, ts in self._aliases.items()},
            "breakers": self.router.breakers.snapshot(),
            "routing": self.router.stats.snapshot(),
            "local": {**self.engine.memory(), "loaded": self.engine.status()},
        }

    async def aclose(self) -> None:
        if self._bg_refresh is not None:
            self._bg_refresh.cancel()
        await asyncio.to_thread(self.meter.close)  # flushes the usage log
        await asyncio.to_thread(self.cache.close)  # finishes the cache's pending writes
        if self.rag is not None:
            await asyncio.to_thread(self.rag.close)
        await self.engine.aclose()
        for name, p in self.providers.items():
            try:
                await p.aclose()
            except Exception:  # a provider's close must not stop the others closing
                log.exception("closing provider %s failed", name)
