"""Provider types, discovered through the `aigw.providers` entry-point group.

Each entry point names a `ProviderType` instance (`openai = "aigw.providers.openai:TYPE"`).
Built-in types are registered in aigw's own pyproject.toml through the same group a third-party
plugin would use; nothing here special-cases them. A type's module is imported when the type is
first needed; one that cannot be imported is an error where it is configured, and is skipped (with
a warning) where aigw only looks around, such as when it sets up providers from the environment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from aigw.config.model import ProviderConfig
from aigw.domain import Price
from aigw.errors import ConfigError
from aigw.providers.base import Provider
from aigw.providers.spec import ProviderContext, ProviderType

GROUP = "aigw.providers"
log = logging.getLogger("aigw.providers")


class ProviderRegistry:
    def __init__(
        self,
        entry: Mapping[str, EntryPoint] | None = None,
        types: Mapping[str, ProviderType[Any]] | None = None,
    ) -> None:
        self._entry = dict(entry or {})
        self._types: dict[str, ProviderType[Any]] = dict(types or {})
        self._broken: set[str] = set()

    @classmethod
    def from_entry_points(cls) -> ProviderRegistry:
        return cls(entry={ep.name: ep for ep in entry_points(group=GROUP)})

    def names(self) -> frozenset[str]:
        return frozenset(self._entry) | frozenset(self._types)

    def get(self, ptype: str) -> ProviderType[Any]:
        """The type named `ptype`; ConfigError when it is unknown or cannot be loaded."""
        found = self._types.get(ptype)
        if found is not None:
            return found
        ep = self._entry.get(ptype)
        if ep is None:
            raise ConfigError(f"unknown provider type {ptype!r}; known: {', '.join(sorted(self.names()))}")
        try:
            loaded = ep.load()
        except ImportError as e:
            raise ConfigError(
                f"provider type {ptype!r} cannot be loaded ({e}); is its extra installed?"
            ) from None
        if not isinstance(loaded, ProviderType):
            raise ConfigError(
                f"provider type {ptype!r} ({ep.value}) is not an aigw ProviderType "
                f"but {type(loaded).__name__}"
            )
        self._types[ptype] = loaded
        return loaded

    def loadable(self) -> list[ProviderType[Any]]:
        """Every type that loads, in registration order; broken ones are logged once and skipped."""
        out: list[ProviderType[Any]] = []
        for name in [*self._entry, *(n for n in self._types if n not in self._entry)]:
            try:
                out.append(self.get(name))
            except ConfigError as e:
                if name not in self._broken:
                    self._broken.add(name)
                    log.warning("%s", e.message)
        return out

    # -- what config loading asks (aigw.config.load.TypeSource) --------------------------------

    def config_model(self, ptype: str) -> type[ProviderConfig]:
        model: type[ProviderConfig] = self.get(ptype).config_model
        return model

    def environment_providers(self, environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for t in self.loadable():
            for name, table in t.from_environment(environ).items():
                out.setdefault(name, table)
        return out

    def check(self, name: str, config: ProviderConfig, environ: Mapping[str, str]) -> None:
        self.of(name, config).check(config, environ)

    # -- the rest of aigw ----------------------------------------------------------------------

    def of(self, name: str, config: ProviderConfig) -> ProviderType[Any]:
        """The type of the provider `name` configured by `config`."""
        return self.get(config.type or name)

    def create(self, name: str, config: ProviderConfig, ctx: ProviderContext) -> Provider:
        ptype = self.of(name, config)
        if not isinstance(config, ptype.config_model):
            config = ptype.config_model.model_validate(config.model_dump())
        return ptype.create(name, config, ctx)

    def prices(self) -> dict[str, Price]:
        """Every loadable type's published prices, by model name (first registered wins)."""
        out: dict[str, Price] = {}
        for t in self.loadable():
            for model, price in t.prices().items():
                out.setdefault(model.lower(), price)
        return out
