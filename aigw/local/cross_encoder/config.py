"""The table of a `cross_encoder` provider: its models (directories) by name."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from aigw.config.model import ProviderConfig
from aigw.local.config import under


class CrossEncoderConfig(ProviderConfig):
    models: dict[str, str] = Field(default_factory=dict)
    """name -> a cross-encoder model directory (config.json, weights, tokenizer), absolute or
    relative to the models dir."""
    batch_size: int = Field(default=32, ge=1, le=1024)
    """(query, document) pairs scored together."""


def model_dirs(config: CrossEncoderConfig, models_dir: Path) -> dict[str, Path]:
    return {name: under(models_dir, raw) for name, raw in config.models.items()}


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()
