"""The table of a local provider (`type = "llama_cpp"` or `"mlx"`): its models by name."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from aigw.config.model import ProviderConfig, Strict


class LocalModelConfig(Strict):
    """A local model given as a table: `tiny = { path = "tiny.gguf", embedding = true }`."""

    path: str = Field(min_length=1)
    embedding: bool = False
    context: int | None = Field(default=None, ge=64)
    mmproj: str | None = Field(default=None, min_length=1)
    """A GGUF model's vision projector (absolute, or relative to the models dir): it takes images."""
    parallel: int | None = Field(default=None, ge=1, le=64)
    """Requests this model decodes together (its slots); overrides the provider's `parallel`."""


class LocalProviderConfig(ProviderConfig):
    models: dict[str, str | LocalModelConfig] = Field(default_factory=dict)
    """name -> a GGUF file (llama_cpp) or an MLX model directory (mlx), absolute or relative to the
    models dir; the models dir's own models are served too unless discover_models is false."""
    parallel: int | None = Field(default=None, ge=1, le=64)
    """Requests each of its models decodes together, in one batch (llama.cpp); default: chosen
    from the memory budget (up to 4)."""


def under(models_dir: Path, raw: str) -> Path:
    """A configured path: absolute, or relative to the models dir."""
    path = Path(raw).expanduser()
    return path if path.is_absolute() else models_dir / path


def model_paths(config: LocalProviderConfig, models_dir: Path) -> dict[str, Path]:
    """Each model the table names, with its path (relative ones are under the models dir)."""
    out: dict[str, Path] = {}
    for model, entry in config.models.items():
        out[model] = under(models_dir, entry.path if isinstance(entry, LocalModelConfig) else entry)
    return out
