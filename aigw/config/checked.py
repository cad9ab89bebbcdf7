"""The configuration as the daemon and the CLI load it: the file (or the environment when there is
none), each provider table validated by its type's own model, and each type's own checks of the
environment (a key variable with a stray newline, say). The provider types come in as a
`TypeSource` (the registry), so the configuration depends on no provider."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path

from aigw.config.load import TypeSource, load_config
from aigw.config.model import Config
from aigw.errors import ConfigError
from aigw.paths import Paths


def load_checked(
    paths: Paths, config_path: Path | None, environ: Mapping[str, str], types: TypeSource
) -> Config:
    """The config at `config_path` (default: AIGW_HOME's config.toml, or the environment when there
    is none; a `config_path` that does not exist is an error), with every provider's type
    loadable and satisfied with the environment (e.g. a key variable without stray characters).
    `types` is the registry of provider types (`ProviderRegistry.from_entry_points()`)."""
    if config_path is not None and not config_path.exists():
        raise ConfigError(
            f"{config_path}: no such file (named by --config or AIGW_CONFIG): create it, "
            "or drop the option to use AIGW_HOME's config.toml"
        )
    cfg = load_config(config_path or paths.config_file, types=types, environ=environ)
    for name, pcfg in cfg.providers.items():
        try:
            types.check(name, pcfg, environ)
        except ConfigError as e:
            raise ConfigError(f"providers.{name}: {e.message}") from None
    return cfg


def readable_secrets(path: Path) -> str | None:
    """A warning when the config file holds a provider's `api_key` inline and users other than its
    owner may read it; None when it is private, holds none, or is absent."""
    try:
        mode = path.stat().st_mode & 0o777
        if not mode & 0o077:
            return None
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    tables = raw.get("providers")
    tables = tables if isinstance(tables, dict) else {}
    names = sorted(n for n, t in tables.items() if isinstance(t, dict) and "api_key" in t)
    if not names:
        return None
    return (
        f"{path} holds the api_key of {', '.join(names)} and other users may read it (mode {mode:o}): "
        f"chmod 600 {path}, or name an environment variable with api_key_env instead"
    )
