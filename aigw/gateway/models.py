"""The model index: which provider serves which model, aliases, and what a request's `model` names.

Providers are listed concurrently in the background at start (an unreachable upstream never
delays startup), again when a listing is asked for and the index is older than half a second,
and when a request names a model nobody is known to serve (at most every 5 s). Resolution itself
is the pure `aigw.routing.resolve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aigw.access.keys import ApiKey
from aigw.config import AliasConfig
from aigw.domain import Capability, ModelInfo, Route, Target
from aigw.errors import (
    AigwError,
    ModelNotFound,
    PermissionDenied,
    UpstreamConnectError,
    UpstreamTimeout,
    quoted,
)
from aigw.providers.base import ConfiguredListing, KnowsContext, Provider
from aigw.routing.health import HealthBoard
from aigw.routing.resolve import matching_alias, resolve

log = logging.getLogger("aigw.gateway")

LIST_TIMEOUT_S = 5.0
MISS_REFRESH_INTERVAL_S = 5.0
LISTING_MAX_AGE_S = 0.5
LISTING_WAIT_S = 0.25
ALIAS_OWNER = "aigw"


@dataclass(frozen=True, slots=True)
class Listed:
    """A model as /v1/models lists it: `provider/model` or an alias, with what it can do."""

    id: str
    owned_by: str
    created: int
    capabilities: frozenset[Capability]
    context_length: int | None = None
    """The model's context in tokens, where its provider knows it (local models)."""


LATEST = ":latest"


class ModelIndex:
    def __init__(
        self,
        providers: Mapping[str, Provider],
        aliases: Mapping[str, AliasConfig],
        health: HealthBoard,
        *,
        patterns: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._providers = providers
        self._patterns = dict(patterns or {})
        self.aliases: dict[str, tuple[Target, ...]] = {
            name: tuple(Target(t.provider, t.model) for t in spec.targets) for name, spec in aliases.items()
        }
        self._health = health
        self._clock = clock
        self._models: dict[str, list[ModelInfo]] = {p: [] for p in providers}
        self._served_by: dict[str, list[str]] = {}
        self._last_refresh = float("-inf")
        self._refresh_lock = asyncio.Lock()
        self._bg_refresh: asyncio.Task[None] | None = None

    # -- listing -------------------------------------------------------------------------------

    async def _list_one(self, name: str, provider: Provider) -> None:
        try:
            async with asyncio.timeout(LIST_TIMEOUT_S):
                models = await provider.list_models()
        except TimeoutError:
            self._health.record_error(name, f"{name}: model listing timed out", unreachable=True)
            return
        except AigwError as e:
            unreachable = isinstance(e, UpstreamConnectError | UpstreamTimeout)
            self._health.record_error(name, e.message, unreachable=unreachable)
            return
        except Exception as e:  # one broken provider must not break the index of the others
            log.error("listing models of %s failed unexpectedly: %s: %s", name, type(e).__name__, e)
            self._health.record_error(name, f"{name}: model listing failed ({type(e).__name__})")
            return
        self._models[name] = models
        if not isinstance(provider, ConfiguredListing) or provider.listing_contacts_upstream():
            self._health.record_ok(name)

    async def refresh(self, max_age_s: float = 0.0) -> None:
        """List every provider's models (concurrently); skipped when the index is fresh enough."""
        async with self._refresh_lock:
            if self._clock() - self._last_refresh < max_age_s:
                return
            await asyncio.gather(*(self._list_one(n, p) for n, p in self._providers.items()))
            served: dict[str, list[str]] = {}
            for pname, models in self._models.items():
                for m in models:
                    served.setdefault(m.id, []).append(pname)
            self._served_by = served
            self._last_refresh = self._clock()

    def refresh_in_background(self) -> None:
        if self._bg_refresh is None or self._bg_refresh.done():
            self._bg_refresh = asyncio.create_task(self.refresh(LISTING_MAX_AGE_S))

    async def fresh(self) -> None:
        """Make the index fresh for a listing without letting a slow upstream hold the caller:
        the first listing waits for the first refresh; later ones wait at most LISTING_WAIT_S
        for a refresh (local models and healthy upstreams answer well within it) and otherwise
        get what is known while the refresh finishes in the background."""
        if self._last_refresh == float("-inf"):
            await self.refresh(LISTING_MAX_AGE_S)
        elif self._clock() - self._last_refresh >= LISTING_MAX_AGE_S:
            self.refresh_in_background()
            assert self._bg_refresh is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._bg_refresh), LISTING_WAIT_S)

    def served(self, provider: str) -> list[str]:
        """The models `provider` was last seen to serve."""
        return [m.id for m in self._models.get(provider, [])]

    def known_ids(self) -> list[str]:
        ids = list(self.aliases)
        for pname, models in self._models.items():
            ids.extend(f"{pname}/{m.id}" for m in models)
        return ids

    def listing(self, key: ApiKey | None = None) -> list[Listed]:
        """What `key` may ask for: without a model list, the aliases (what the first target can
        do) and then every provider's models; with one, each name on it that something serves,
        under the very id the key may send."""
        if key is not None and key.models is not None:
            return [m for m in map(self.describe, key.models) if m is not None]
        return self._everything()

    def describe(self, name: str, key: ApiKey | None = None) -> Listed | None:
        """The model a request's `model` names (an alias, `provider/model`, or a bare model some
        provider serves), as `key` may see it; None when nothing serves it or the key may not."""
        name = self.untagged(name)
        if key is not None and key.models is not None and name not in key.models:
            return None
        for m in self._everything():
            if m.id == name:
                return m
        if (alias := matching_alias(name, self._patterns)) is not None and alias in self.aliases:
            first = self.aliases[alias][0]
            return self._listed(name, ALIAS_OWNER, 0, first.provider, first.model)
        for pname in self._served_by.get(name, ()):
            info = next(i for i in self._models[pname] if i.id == name)
            return self._listed(name, pname, info.created, pname, name)
        return None

    def _listed(self, name: str, owner: str, created: int, pname: str, model: str) -> Listed:
        provider = self._providers[pname]
        context = provider.context_length(model) if isinstance(provider, KnowsContext) else None
        return Listed(name, owner, created, provider.capabilities_for(model), context)

    def _everything(self) -> list[Listed]:
        out = []
        for alias, targets in self.aliases.items():
            first = targets[0]
            out.append(self._listed(alias, ALIAS_OWNER, 0, first.provider, first.model))
        for pname, models in self._models.items():
            out.extend(self._listed(f"{pname}/{m.id}", pname, m.created, pname, m.id) for m in models)
        return out

    # -- resolution ----------------------------------------------------------------------------

    def untagged(self, model: str) -> str:
        """`name:latest` is `name` (Ollama's clients, and VS Code's, send the tag their listing
        showed), unless something is known by the whole name (an Ollama upstream's own ids)."""
        if not model.endswith(LATEST) or model in self.known_ids():
            return model
        return model[: -len(LATEST)]

    async def resolve(self, model: str, pinned: str | None) -> Route:
        """The route for a request's `model` (and optional pinned provider); ModelNotFound when
        nothing serves it, even after a fresh listing."""
        model = self.untagged(model)
        route = self._resolve(model, pinned)
        if route is None and self._clock() - self._last_refresh >= MISS_REFRESH_INTERVAL_S:
            await self.refresh(max_age_s=MISS_REFRESH_INTERVAL_S)
            route = self._resolve(model, pinned)
        if route is None:
            raise ModelNotFound(self._not_found_message(model), param="model")
        return route

    def _resolve(self, model: str, pinned: str | None) -> Route | None:
        return resolve(
            model,
            pinned,
            aliases=self.aliases,
            providers=self._providers,
            served_by=self._served_by,
            patterns=self._patterns,
        )

    def _not_found_message(self, model: str) -> str:
        if not any(Capability.CHAT in p.capabilities for p in self._providers.values()):
            return (
                f"The model {quoted(model)} does not exist: no providers are configured "
                "(set OPENAI_API_KEY or write a config.toml; see `aigw config path`)"
            )
        known = self.known_ids()
        shown = ", ".join(known[:20]) + (f", and {len(known) - 20} more" if len(known) > 20 else "")
        return f"The model {quoted(model)} does not exist. Known models: {shown or 'none listed'}"

    def targets_of(self, name: str) -> frozenset[Target]:
        """The targets a model name reaches when no provider is pinned: an alias's targets,
        `provider/model` itself, or a bare model at each provider known to serve it."""
        if name in self.aliases:
            return frozenset(self.aliases[name])
        head, sep, rest = name.partition("/")
        if sep and rest and head in self._providers:
            return frozenset({Target(head, rest)})
        if (alias := matching_alias(name, self._patterns)) is not None and alias in self.aliases:
            return frozenset(self.aliases[alias])
        return frozenset(Target(p, name) for p in self._served_by.get(name, ()))

    def check_allowed(self, key: ApiKey | None, route: Route) -> None:
        """PermissionDenied unless `key` may use `route`: a key limited to some models may use a
        name on its list, and a pinned provider may narrow that name's targets but not add one
        (`{"model": "mock-1", "provider": "other"}` is not `mock-1`)."""
        if key is None or key.models is None:
            return
        if route.requested in key.models:
            reach = self.targets_of(route.requested)
            if all(t in reach for t in route.targets):
                return
        where = ", ".join(f"{t.provider}/{t.model}" for t in route.targets)
        shown = "" if where == route.requested else f" ({quoted(where)})"
        raise PermissionDenied(
            f"API key {key.name!r} may not use model {quoted(route.requested)}{shown}; "
            f"it may use: {', '.join(key.models) or 'none'}",
            param="model",
        )

    def cache_names(self, model: str) -> list[str]:
        """The "provider/model" names whose cached answers a model name covers: an alias's
        targets, or the name itself (provider/model, or a bare model of any provider)."""
        targets = self.aliases.get(model)
        if targets is None:
            return [model]
        return [f"{t.provider}/{t.model}" for t in targets]

    def stop(self) -> None:
        if self._bg_refresh is not None:
            self._bg_refresh.cancel()
