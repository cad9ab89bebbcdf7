"""The `mlx` provider type: MLX model directories through mlx-lm (native on Apple Silicon; `mlx[cpu]`
runs it on Linux)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aigw.engine.backend import Backend
from aigw.local.mlx.backend import CHAT_CAPS, EMBED_CAPS, MlxBackend, describe_dir, is_mlx_dir
from aigw.local.mlx.vision import load_vision
from aigw.local.presets import Preset, load_presets
from aigw.local.spec import LocalType
from aigw.providers.spec import ProviderContext


class MlxType(LocalType):
    name = "mlx"
    module = "mlx_lm"
    extra = "mlx"
    default_name = "mlx"
    format = "mlx"
    model_noun = "model directory"
    chat_caps = CHAT_CAPS
    embed_caps = EMBED_CAPS

    def backend(self, ctx: ProviderContext) -> Backend:
        return MlxBackend(
            load_presets(ctx.paths.models_dir),
            vision=load_vision,
            prompt_cache_bytes=ctx.local.prompt_cache_bytes(),
            memory_budget_bytes=ctx.local.budget_bytes(),
        )

    def discover(self, models_dir: Path) -> dict[str, Path]:
        return {p.name: p for p in sorted(models_dir.iterdir()) if p.is_dir() and is_mlx_dir(p)}

    def is_model(self, path: Path) -> bool:
        return path.is_dir() and is_mlx_dir(path)

    def pulled_path(self, models_dir: Path, name: str) -> Path:
        return models_dir / name

    def describe(self, path: Path, presets: Sequence[Preset] = ()) -> dict[str, Any]:
        return describe_dir(path, presets)


TYPE = MlxType()
