"""The curated model catalog: models/catalog.toml in the wheel (the package `aigw.models`), with the
user's own `catalog.toml` in the models dir adding entries or replacing shipped ones by name."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aigw.errors import ConfigError
from aigw.local.presets import PACKAGE

GGUF = "gguf"
"""A catalog source of one GGUF file (llama.cpp)."""
MLX = "mlx"
"""A catalog source of a whole model repository (an MLX model directory)."""


@dataclass(frozen=True, slots=True)
class Source:
    repo: str
    file: str | None  # None: the whole repository (an MLX model directory)
    sha256: str | None = None
    size_mb: int | None = None
    mmproj: str | None = None
    """A GGUF model's vision projector, a file of the same repository (pulled beside it)."""


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
    return Source(d["repo"], d.get("file"), d.get("sha256"), d.get("size_mb"), d.get("mmproj"))


def _entries(raw: dict[str, Any]) -> dict[str, CatalogEntry]:
    return {
        name: CatalogEntry(
            name,
            m.get("description", ""),
            int(m.get("context", 0)),
            bool(m.get("embedding", False)),
            _source(m.get("gguf")),
            _source(m.get("mlx")),
        )
        for name, m in raw.get("models", {}).items()
    }


def parse_catalog(text: str, source: str = "the model catalog", default: str | None = None) -> Catalog:
    """A catalog from TOML; `default` stands in when the text names none (a user's additions)."""
    try:
        raw = tomllib.loads(text)
        return Catalog(str(raw.get("default") or default or raw["default"]), _entries(raw))
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{source} is invalid: {e}") from None


def load_catalog(models_dir: Path | None = None) -> Catalog:
    """The shipped catalog, with `models_dir/catalog.toml` (when there is one) on top."""
    shipped = parse_catalog(resources.files(PACKAGE).joinpath("catalog.toml").read_text(encoding="utf-8"))
    user_file = models_dir / "catalog.toml" if models_dir is not None else None
    if user_file is None or not user_file.is_file():
        return shipped
    try:
        text = user_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{user_file}: cannot read it: {e}") from None
    mine = parse_catalog(text, str(user_file), shipped.default)
    return Catalog(mine.default, {**shipped.entries, **mine.entries})
