"""aigw doctor: is this machine ready? One line per check (OK / WARN / FAIL) with a fix."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from aigw.cli.common import ConfigOption, JsonOption, config_path_arg, paths, print_json

if TYPE_CHECKING:
    from aigw.doctor import Check

_COLORS = {"OK": "\x1b[32m", "WARN": "\x1b[33m", "FAIL": "\x1b[31m"}
_DIM = "\x1b[2m"
_RESET = "\x1b[0m"
_STATUS_WIDTH = 6


def render(checks: list[Check], *, color: bool) -> str:
    """Aligned columns for people: status, name, detail; the fix indented underneath."""
    width = max((len(c.name) for c in checks), default=0) + 2
    indent = " " * (_STATUS_WIDTH + width)
    lines: list[str] = []
    for c in checks:
        status = c.status.ljust(_STATUS_WIDTH)
        if color:
            status = f"{_COLORS[c.status]}{status}{_RESET}"
        lines.append(f"{status}{c.name.ljust(width)}{c.detail}")
        if c.fix:
            fix = f"fix: {c.fix}"
            lines.append(f"{indent}{_DIM}{fix}{_RESET}" if color else f"{indent}{fix}")
    failures = sum(c.status == "FAIL" for c in checks)
    warnings = sum(c.status == "WARN" for c in checks)
    if failures or warnings:
        parts = [
            f"{n} {word}{'' if n == 1 else 's'}"
            for n, word in ((failures, "failure"), (warnings, "warning"))
            if n
        ]
        summary = ", ".join(parts)
    else:
        summary = "everything is ready"
    lines += ["", summary]
    return "\n".join(lines)


def doctor(config: Path | None = ConfigOption, json_out: bool = JsonOption) -> None:
    """Check this machine: platform, engines, SQLite, port, config, providers, disk, RAG. Exit 1 on FAIL."""
    from aigw.doctor import all_ok, real_facts, run_checks

    checks = run_checks(real_facts(paths(), config_path_arg(config), os.environ))
    ready = all_ok(checks)
    if json_out:
        print_json({"checks": [c.as_dict() for c in checks], "ok": ready})
    else:
        typer.echo(render(checks, color=sys.stdout.isatty() and not os.environ.get("NO_COLOR")))
    if not ready:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(doctor)
