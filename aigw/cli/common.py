"""Helpers shared by the CLI commands."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from aigw.paths import Paths

if TYPE_CHECKING:
    from aigw.config import Config
    from aigw.daemon.client import DaemonClient
    from aigw.local.library import ModelLibrary

ConfigOption = typer.Option(
    None, "--config", "-c", envvar="AIGW_CONFIG", help="Config file (default: config.toml in AIGW_HOME)."
)
JsonOption = typer.Option(False, "--json", help="Print JSON for scripts.")


def paths() -> Paths:
    return Paths.from_env()


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=False))


def use_color() -> bool:
    return sys.stderr.isatty() and not os.environ.get("NO_COLOR")


def note(message: str) -> None:
    """A status line for people, on stderr so stdout stays clean for answers and JSON."""
    if use_color():
        message = f"\x1b[2m{message}\x1b[0m"
    typer.echo(message, err=True)


def config_path_arg(value: Path | None) -> Path | None:
    return value.expanduser() if value is not None else None


def env_config_path() -> Path | None:
    value = os.environ.get("AIGW_CONFIG")
    return Path(value).expanduser() if value else None


def load_config(config_path: Path | None = None) -> Config:
    """The config as the daemon would load it: `config_path`, else $AIGW_CONFIG, else AIGW_HOME's."""
    from aigw.config.checked import load_checked
    from aigw.providers.registry import ProviderRegistry

    return load_checked(
        paths(), config_path or env_config_path(), os.environ, ProviderRegistry.from_entry_points()
    )


def model_library(cfg: Config | None = None) -> ModelLibrary:
    """The local model files and the local provider types that serve them."""
    from aigw.local.library import ModelLibrary
    from aigw.providers.registry import ProviderRegistry

    registry = ProviderRegistry.from_entry_points()
    if cfg is None:
        from aigw.config.checked import load_checked

        cfg = load_checked(paths(), env_config_path(), os.environ, registry)
    return ModelLibrary(paths().models_dir, cfg, registry)


def daemon_target() -> tuple[str, bool]:
    """The daemon's URL, and whether aigw may start it itself (see `aigw.daemon.connect.target`)."""
    from aigw.daemon.connect import target

    return target(paths(), os.environ, env_config_path())


def connect() -> DaemonClient:
    """A client of the daemon, starting this AIGW_HOME's daemon when it is the target and none runs."""
    from aigw.daemon import connect as daemon

    return daemon.connect(
        paths(),
        os.environ,
        config_path=env_config_path(),
        on_start=lambda info: note(f"started aigw (pid {info.pid}) at {info.url}"),
    )


def own_daemon(timeout: float = 60.0) -> DaemonClient | None:
    """A client of this AIGW_HOME's daemon when it runs (for admin calls), else None."""
    from aigw.daemon.connect import own_daemon as own

    return own(paths(), os.environ, timeout=timeout)
