"""Helpers shared by the CLI commands."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from aigw.paths import Paths

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


def daemon_target() -> tuple[str, bool]:
    """The daemon's URL, and whether aigw may start it itself (only when AIGW_URL is unset).

    AIGW_URL wins; else the running daemon's own URL; else where the config says it would listen.
    """
    explicit = os.environ.get("AIGW_URL")
    if explicit:
        return explicit.rstrip("/"), False
    from aigw.daemon.process import running_daemon

    info = running_daemon(paths())
    if info is not None:
        return info.url, True
    from aigw.daemon.serve import load_checked_config

    server = load_checked_config(paths(), env_config_path(), os.environ).server
    host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "") else server.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{server.port}", True
