"""The configuration as the daemon and the CLI load it: the file (or the environment when there is
none), each provider table validated by its type's own model, and each type's own checks of the
environment (a key variable with a stray newline, say). The provider types come in as a
`TypeSource` (the registry), so the configuration depends on no provider."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aigw.config.load import TypeSource, load_config
from aigw.config.model import Config
from aigw.errors import ConfigError
from aigw.paths import Paths


def load_checked(
    paths: Paths, config_path: Path | None, environ: Mapping[str, str], types: TypeSource
) -> Config:
    """The config at `config_path` (default: AIGW_HOME's config.toml), with every provider's type
    loadable and satisfied with the environment (e.g. a key variable without stray characters).
    `types` is the registry of provider types (`ProviderRegistry.from_entry_points()`)."""
    cfg = load_config(config_path or paths.config_file, types=types, environ=environ)
    for name, pcfg in cfg.providers.items():
        try:
            types.check(name, pcfg, environ)
        except ConfigError as e:
            raise ConfigError(f"providers.{name}: {e.message}") from None
    return cfg
