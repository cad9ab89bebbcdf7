"""aigw models ..."""

from __future__ import annotations

import typer

from aigw.cli.common import JsonOption, daemon_target, print_json

app = typer.Typer(help="List the models the daemon can serve.", no_args_is_help=True)


@app.command("list")
def list_models(json_out: bool = JsonOption) -> None:
    """Models and aliases the running daemon serves."""
    from aigw.client import DaemonClient

    with DaemonClient(daemon_target()[0]) as client:
        models = client.list_models()
    if json_out:
        print_json(models)
        return
    if not models:
        typer.echo("no models: configure a provider (see `aigw config path`)")
        return
    width = max(len(m["id"]) for m in models)
    typer.echo(f"{'MODEL'.ljust(width)}  OWNED BY")
    for m in models:
        typer.echo(f"{m['id'].ljust(width)}  {m['owned_by']}")
