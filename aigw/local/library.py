"""The local model files of this machine as the local provider types see them: which are pulled,
where a pull puts a model of a given format, which provider serves it, what a file is.

The CLI's `aigw models list|pull|rm|show` and `aigw chat`'s offer to pull ask this; it asks each
local type (`LocalType`), so a new local backend is one type, not edits across the CLI.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path

from aigw.config.model import Config
from aigw.errors import InvalidRequest
from aigw.local.spec import LocalType, local_types
from aigw.providers.registry import ProviderRegistry


@dataclass(frozen=True, slots=True)
class Pulled:
    """A pulled model: its files, the type that runs them, and the provider that serves them."""

    name: str
    path: Path
    kind: LocalType
    provider: str

    @property
    def model(self) -> str:
        """The name a request uses: provider/model."""
        return f"{self.provider}/{self.name}"


def checked_name(name: str) -> str:
    """`name` when it can name an entry of the models dir; a one-line refusal for a path."""
    if not name or name in {".", ".."} or any(c in name for c in "/\\\0") or name.startswith("."):
        raise InvalidRequest(
            f"{name[:200]!r} is not a model name: give the name of a pulled model "
            "(see `aigw models list`), not a path"
        )
    return name


class ModelLibrary:
    def __init__(self, models_dir: Path, cfg: Config, registry: ProviderRegistry) -> None:
        self.models_dir = models_dir
        self._cfg = cfg
        self._registry = registry
        self.kinds = local_types(registry.loadable())

    def _provider(self, kind: LocalType) -> str:
        for name, pcfg in self._cfg.providers.items():
            if self._registry.of(name, pcfg) is kind:
                return name
        return kind.default_name

    def kind_for(self, fmt: str) -> LocalType:
        """The local type whose models come in format `fmt` (gguf, mlx)."""
        for kind in self.kinds:
            if kind.format == fmt:
                return kind
        known = ", ".join(k.format for k in self.kinds) or "none installed"
        raise InvalidRequest(f"no local provider type runs {fmt} models (formats: {known})")

    def destination(self, kind: LocalType, name: str) -> Pulled:
        """Where a pull of `name` in `kind`'s format lands, and who will serve it.

        `name` is a model's name, never a path: whatever it is, the result is an entry directly
        inside the models dir, so a pull cannot write and `rm` cannot delete anywhere else."""
        path = kind.pulled_path(self.models_dir, checked_name(name))
        if path.parent != self.models_dir:
            raise InvalidRequest(f"{name!r} is not a model name")
        return Pulled(name, path, kind, self._provider(kind))

    def pulled(self, name: str) -> list[Pulled]:
        """The pulled forms of `name` (a GGUF, an MLX directory, or both)."""
        out = []
        for kind in self.kinds:
            found = self.destination(kind, name)
            if found.path.exists():
                out.append(found)
        return out

    @staticmethod
    def missing_for(kind: LocalType) -> list[str]:
        """The modules this machine lacks to pull `kind`'s models and run them (none: it can)."""
        return [m for m in (kind.module, "huggingface_hub") if importlib.util.find_spec(m) is None]

    def kind_of(self, path: Path) -> LocalType | None:
        """The local type a model file or directory belongs to."""
        return next((k for k in self.kinds if k.is_model(path)), None)

    @staticmethod
    def remove(pulled: Pulled) -> int:
        """Delete a pulled model's files (a GGUF's projector beside it too); the bytes freed."""
        if pulled.path.is_dir() and not pulled.path.is_symlink():
            size = sum(p.stat().st_size for p in pulled.path.rglob("*") if p.is_file())
            shutil.rmtree(pulled.path)
            return size
        size = pulled.path.stat().st_size
        pulled.path.unlink()
        if (projector := pulled.kind.companion(pulled.path)) is not None:
            size += projector.stat().st_size
            projector.unlink()
        return size
