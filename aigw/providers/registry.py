"""Provider types, discovered through the `aigw.providers` entry-point group.

Built-in providers are registered in aigw's own pyproject.toml through the same group a
third-party plugin would use; nothing here special-cases them.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points

from aigw.config import ProviderConfig
from aigw.errors import ConfigError
from aigw.providers.base import Provider, ProviderContext, ProviderFactory

GROUP = "aigw.providers"


class ProviderRegistry:
    def __init__(
        self,
        entry: Mapping[str, EntryPoint] | None = None,
        factories: Mapping[str, ProviderFactory] | None = None,
    ) -> None:
        self._entry = dict(entry or {})
        self._factories: dict[str, ProviderFactory] = dict(factories or {})

    @classmethod
    def from_entry_points(cls) -> ProviderRegistry:
        return cls(entry={ep.name: ep for ep in entry_points(group=GROUP)})

    def types(self) -> frozenset[str]:
        return frozenset(self._entry) | frozenset(self._factories)

    def factory(self, ptype: str) -> ProviderFactory:
        if ptype not in self._factories:
            ep = self._entry.get(ptype)
            if ep is None:
                raise ConfigError(
                    f"unknown provider type {ptype!r}; known: {', '.join(sorted(self.types()))}"
                )
            try:
                self._factories[ptype] = ep.load()
            except ImportError as e:
                raise ConfigError(
                    f"provider type {ptype!r} cannot be loaded ({e}); is its extra installed?"
                ) from None
        return self._factories[ptype]

    def create(self, name: str, config: ProviderConfig, ctx: ProviderContext) -> Provider:
        return self.factory(config.type or name)(name, config, ctx)
