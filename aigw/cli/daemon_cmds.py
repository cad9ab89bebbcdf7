"""serve, start, stop, status, logs."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import typer

from aigw.cli.common import ConfigOption, JsonOption, config_path_arg, load_config, note, paths, print_json

HostOption = typer.Option(None, "--host", help="Address to bind (default from config: 127.0.0.1).")
PortOption = typer.Option(None, "--port", "-p", help="Port to listen on (default from config: 8080).")


def serve(
    config: Path | None = ConfigOption, host: str | None = HostOption, port: int | None = PortOption
) -> None:
    """Run the daemon in the foreground (Ctrl-C or SIGTERM stops it gracefully)."""
    from aigw.daemon.serve import serve as run

    raise typer.Exit(run(paths(), config_path=config_path_arg(config), host=host, port=port))


def start(
    config: Path | None = ConfigOption, host: str | None = HostOption, port: int | None = PortOption
) -> None:
    """Start the daemon in the background; returns once it answers."""
    from aigw.daemon import process as daemon

    p = paths()
    load_config(config_path_arg(config))  # fail fast, in this terminal
    info = daemon.start(p, config_path=config_path_arg(config), host=host, port=port)
    typer.echo(f"aigw started (pid {info.pid}) at {info.url}; logs: {p.log_file}")


def stop() -> None:
    """Stop the background daemon (SIGTERM; in-flight requests finish first)."""
    from aigw.daemon import process as daemon

    info = daemon.stop(paths())
    if info is None:
        typer.echo("aigw is not running")
        return
    typer.echo(f"aigw stopped (pid {info.pid})")


def _status_data() -> dict[str, Any]:
    from aigw.daemon.client import ClientError, DaemonClient
    from aigw.daemon.process import running_daemon

    info = running_daemon(paths())
    if info is None:
        return {"running": False}
    data: dict[str, Any] = {"running": True, "pid": info.pid, "url": info.url}
    with DaemonClient(info.url, timeout=10.0) as client:
        try:
            data.update(client.health_detailed())
        except ClientError as e:
            data["status"] = "unreachable"
            data["error"] = e.message
    return data


def _retry(breaker: dict[str, Any]) -> str:
    """When an open breaker lets a request try its target again (rounded up: never "in 0 s")."""
    wait = float(breaker.get("retry_in_s") or 0)
    return f", retry in {math.ceil(wait)} s" if wait > 0 else ", the next request probes it"


def status(json_out: bool = JsonOption) -> None:
    """Show whether the daemon runs, and each provider's health."""
    data = _status_data()
    if json_out:
        print_json(data)
    elif not data["running"]:
        typer.echo("aigw is not running (start it with `aigw start`)")
    else:
        up = data.get("uptime_s")
        typer.echo(
            f"aigw {data.get('version', '?')} running (pid {data['pid']}) at {data['url']}"
            + (f", up {up:.0f} s" if isinstance(up, int | float) else "")
        )
        if data.get("error"):
            typer.echo(f"  not answering: {data['error']}")
        for name, p in (data.get("providers") or {}).items():
            reach = {True: "reachable", False: "unreachable", None: "not yet contacted"}[p.get("reachable")]
            line = f"  {name} ({p.get('type')}): {reach}, {len(p.get('models') or [])} models"
            err_at, ok_at = p.get("last_error_at"), p.get("last_ok_at")
            if p.get("last_error") and (ok_at is None or (err_at or 0) > ok_at):
                line += f"; failing: {p['last_error']}"
            typer.echo(line)
        strategies = data.get("strategies") or {}
        for alias, targets in (data.get("aliases") or {}).items():
            how = strategies.get(alias, "ordered")
            typer.echo(f"  alias {alias} -> {', '.join(targets)}" + ("" if how == "ordered" else f" ({how})"))
        for target, b in (data.get("breakers") or {}).items():
            if b.get("state") != "closed":
                wait = _retry(b) if b.get("state") == "open" else ""
                typer.echo(f"  breaker {target}: {b.get('state')}{wait}")
        routing = data.get("routing") or {}
        if any(routing.values()):
            typer.echo(
                f"  routing: {routing.get('fallbacks', 0)} fallbacks, {routing.get('retries', 0)} retries, "
                f"{routing.get('broken_streams', 0)} streams broken after content"
            )
        local = data.get("local") or {}
        if local.get("loaded"):
            used, budget = local["used_bytes"] / 1024**3, local["budget_bytes"] / 1024**3
            names = ", ".join(f"{m['model']} ({m['state']})" for m in local["loaded"])
            typer.echo(f"  local models: {names}; {used:.2f} of {budget:.1f} GiB")
    if not data["running"]:
        raise typer.Exit(1)


def logs(
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int = typer.Option(50, "--lines", "-n", help="How many lines from the end."),
) -> None:
    """Print the daemon's log."""
    log_file = paths().log_file
    if not log_file.exists():
        note(f"no log yet at {log_file}")
        if not follow:
            return
    while not log_file.exists():
        time.sleep(0.2)
    with open(log_file, encoding="utf-8", errors="replace") as f:
        tail = f.readlines()[-lines:] if lines > 0 else []
        typer.echo("".join(tail), nl=False)
        while follow:
            line = f.readline()
            if line:
                typer.echo(line, nl=False)
            else:
                time.sleep(0.2)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(start)
    app.command()(stop)
    app.command()(status)
    app.command()(logs)
