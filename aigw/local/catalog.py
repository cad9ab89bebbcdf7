"""The curated model catalog shipped with aigw (catalog.toml beside this module)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aigw.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Source:
    repo: str
    file: str | None  # None: the whole repository (an MLX model directory)
    sha256: str | None = None
    size_mb: int | None = None


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    name: str
    description: str
    context: int
    embedding: bool
    gguf: Source | None
    mlx: Source | None


@dataclass(frozen=True, slots=True)
class Catalog:
    default: str
    entries: dict[str, CatalogEntry]

    def get(self, name: str) -> CatalogEntry | None:
        return self.entries.get(name)


def _source(d: Any) -> Source | None:
    if d is None:
        return None
    return Source(d["repo"], d.get("file"), d.get("sha256"), d.get("size_mb"))


def parse_catalog(text: str) -> Catalog:
    try:
        raw = tomllib.loads(text)
        entries = {
            name: CatalogEntry(
                name,
                m.get("description", ""),
                int(m.get("context", 0)),
                bool(m.get("embedding", False)),
                _source(m.get("gguf")),
                _source(m.get("mlx")),
            )
            for name, m in raw["models"].items()
        }
        return Catalog(raw["default"], entries)
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"the model catalog is invalid: {e}") from None


def load_catalog() -> Catalog:
    return parse_catalog(resources.files("aigw.local").joinpath("catalog.toml").read_text(encoding="utf-8"))
