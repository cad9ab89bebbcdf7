"""The `llama_cpp` provider type: GGUF models through llama-cpp-python (Metal on Apple Silicon)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aigw.engine.backend import Backend
from aigw.local.llama_cpp.backend import (
    CHAT_CAPS,
    EMBED_CAPS,
    MMPROJ_SUFFIX,
    LlamaCppBackend,
    describe_file,
    is_projector,
)
from aigw.local.presets import Preset, load_presets
from aigw.local.spec import LocalType
from aigw.providers.spec import ProviderContext


class LlamaCppType(LocalType):
    name = "llama_cpp"
    module = "llama_cpp"
    extra = "local"
    default_name = "local"
    format = "gguf"
    model_noun = "model file"
    chat_caps = CHAT_CAPS
    embed_caps = EMBED_CAPS

    def backend(self, ctx: ProviderContext) -> Backend:
        return LlamaCppBackend(
            gpu_layers=ctx.local.gpu_layers,
            threads=ctx.local.threads,
            presets=load_presets(ctx.paths.models_dir),
            memory_budget_bytes=ctx.local.budget_bytes(),
            prompt_cache_bytes=ctx.local.prompt_cache_bytes(),
        )

    def discover(self, models_dir: Path) -> dict[str, Path]:
        return {p.stem: p for p in sorted(models_dir.glob("*.gguf")) if not is_projector(p)}

    def companion(self, path: Path) -> Path | None:
        found = path.with_name(path.name.removesuffix(".gguf") + MMPROJ_SUFFIX)
        return found if found.is_file() else None

    def is_model(self, path: Path) -> bool:
        return path.is_file()

    def pulled_path(self, models_dir: Path, name: str) -> Path:
        return models_dir / f"{name}.gguf"

    def describe(self, path: Path, presets: Sequence[Preset] = ()) -> dict[str, Any]:
        info = describe_file(path, presets)
        if (projector := self.companion(path)) is not None:
            info["mmproj"] = str(projector)
            info["capabilities"] = sorted({*info["capabilities"], "vision"})
        return info


TYPE = LlamaCppType()
