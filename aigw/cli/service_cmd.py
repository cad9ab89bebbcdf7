"""aigw service install|uninstall|status: run the daemon at login (launchd or systemd user service)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from aigw.cli.common import JsonOption, paths, print_json

if TYPE_CHECKING:
    from aigw.service import ServiceManager

app = typer.Typer(
    help="Run aigw at login: a launchd LaunchAgent (macOS) or a systemd user service (Linux).",
    no_args_is_help=True,
)


def _manager() -> ServiceManager:
    from aigw.daemon import process as daemon
    from aigw.service import DaemonControl, Host, run_command, service_manager

    p = paths()
    host = Host(
        system=sys.platform,
        home=Path.home(),
        environ=dict(os.environ),
        uid=os.getuid() if hasattr(os, "getuid") else -1,
        python=sys.executable,
        cwd=Path.cwd(),
    )
    control = DaemonControl(running=lambda: daemon.running_daemon(p), stop=lambda: daemon.stop(p))
    return service_manager(host, p, run_command, control)


@app.command()
def install(
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the file and the commands install would use; change nothing."
    ),
) -> None:
    """Install and start the service; again later, rewrite it and restart the daemon."""
    manager = _manager()
    result = manager.install(dry_run=dry_run)
    if dry_run:
        verb = "would rewrite" if result.updated else "would write"
        typer.echo(f"# dry run, nothing is changed; {verb} {result.file}:")
        typer.echo(result.content, nl=not result.content.endswith("\n"))
        if result.stopped is not None:
            typer.echo(f"# would stop the running aigw (pid {result.stopped.pid}) for the service")
        typer.echo("# then run:")
        for cmd in result.commands:
            typer.echo(cmd)
        return
    if result.stopped is not None:
        typer.echo(f"stopped the running aigw (pid {result.stopped.pid}): the service runs it now")
    state = "already installed; updated" if result.updated else "installed"
    typer.echo(f"aigw service {state}: {result.file} (started at login; logs: {result.log})")


@app.command()
def uninstall() -> None:
    """Stop the service and remove its file (nothing to do when it is not installed)."""
    manager = _manager()
    if manager.uninstall():
        typer.echo(f"aigw service uninstalled: stopped, and removed {manager.file}")
    else:
        typer.echo(f"aigw service is not installed (no {manager.file})")


@app.command()
def status(json_out: bool = JsonOption) -> None:
    """Whether the service is installed, enabled and running."""
    manager = _manager()
    st = manager.status()
    if json_out:
        print_json(st.as_json())
        return

    def word(value: bool | None) -> str:
        return {True: "yes", False: "no", None: f"unknown ({manager.tool} not found)"}[value]

    kind = "launchd" if st.platform == "macos" else "systemd"
    typer.echo(f"aigw service ({kind}): {'installed' if st.installed else 'not installed'}")
    typer.echo(f"  file: {st.file}")
    typer.echo(f"  enabled: {word(st.enabled)}")
    typer.echo(f"  active: {word(st.active)}")
    typer.echo(f"  log: {st.log}")
