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
