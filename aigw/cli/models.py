"""aigw models ..."""

from __future__ import annotations

import typer

from aigw.cli.common import JsonOption, daemon_target, print_json

app = typer.Typer(help="Models: what the daemon serves; local models in memory.", no_args_is_help=True)


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


@app.command()
def load(model: str = typer.Argument(..., help="A local model (or an alias whose target is one).")) -> None:
    """Load a local model now instead of on first use."""
    from aigw.client import DaemonClient

    with DaemonClient(daemon_target()[0]) as client:
        out = client.load_model(model)
    st = out.get("status") or {}
    typer.echo(f"loaded {out['model']} ({_gib(st.get('memory_bytes', 0))})")


@app.command()
def unload(model: str = typer.Argument(..., help="A loaded local model.")) -> None:
    """Free a local model's memory now."""
    from aigw.client import DaemonClient

    with DaemonClient(daemon_target()[0]) as client:
        out = client.unload_model(model)
    typer.echo(f"unloaded {out['model']}" if out["was_loaded"] else f"{out['model']} was not loaded")


@app.command()
def ps(json_out: bool = JsonOption) -> None:
    """Local models in memory: size, queue, when each unloads."""
    from aigw.client import DaemonClient

    with DaemonClient(daemon_target()[0]) as client:
        data = client.local_status()
    if json_out:
        print_json(data)
        return
    loaded = data["loaded"]
    typer.echo(f"memory: {_gib(data['used_bytes'])} of {_gib(data['budget_bytes'])} budget")
    if not loaded:
        typer.echo("no local model is loaded")
        return
    width = max(len(m["model"]) for m in loaded)
    typer.echo(f"{'MODEL'.ljust(width)}  {'STATE':8} {'MEMORY':>10}  QUEUE  UNLOADS IN")
    for m in loaded:
        until = (
            "never"
            if m["keep_alive_s"] is None
            else ("-" if m["unloads_in_s"] is None else f"{m['unloads_in_s']:.0f} s")
        )
        typer.echo(
            f"{m['model'].ljust(width)}  {m['state']:8} {_gib(m['memory_bytes']):>10}  "
            f"{m['queue_depth']:5}  {until}"
        )


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MiB"


@app.command()
def pull(
    name: str = typer.Argument(..., help="A catalog name (see `aigw models list`) or HF_REPO/FILE.gguf."),
) -> None:
    """Download a model into the models dir (resumable, checksum-verified)."""
    from aigw.cli.common import paths
    from aigw.local.catalog import load_catalog
    from aigw.local.pull import pull as do_pull
    from aigw.local.pull import resolve

    target = resolve(name, load_catalog())
    typer.echo(f"pulling {target.repo}/{target.file}", err=True)
    dest = do_pull(target, paths().models_dir)
    typer.echo(f"{target.name}: {dest} ({_gib(dest.stat().st_size)})")
