"""aigw models ..."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from aigw.cli.common import JsonOption, daemon_target, model_library, note, print_json

app = typer.Typer(help="Models: what the daemon serves; local models in memory.", no_args_is_help=True)


@app.command("list")
def list_models(json_out: bool = JsonOption) -> None:
    """What the daemon serves, and the catalog of local models (pulled or not)."""
    from aigw.daemon.client import DaemonClient, DaemonNotRunning
    from aigw.local.catalog import load_catalog

    served: list[dict[str, Any]] | None
    try:
        with DaemonClient(daemon_target()[0]) as client:
            served = client.list_models()
    except DaemonNotRunning:
        served = None
    library = model_library()
    catalog = load_catalog(library.models_dir)
    rows: list[dict[str, Any]] = [
        {
            "name": e.name,
            "description": e.description,
            "context": e.context,
            "size_mb": e.gguf.size_mb if e.gguf else None,
            "embedding": e.embedding,
            "pulled": bool(library.pulled(e.name)),
            "default": e.name == catalog.default,
        }
        for e in catalog.entries.values()
    ]
    if json_out:
        print_json({"served": served, "catalog": rows})
        return
    if served is None:
        typer.echo("the daemon is not running (start it with `aigw start`); catalog only")
    elif not served:
        typer.echo("the daemon serves no models yet: configure a provider or `aigw models pull NAME`")
    else:
        width = max(len(m["id"]) for m in served)
        typer.echo(f"{'MODEL'.ljust(width)}  OWNED BY")
        for m in served:
            typer.echo(f"{m['id'].ljust(width)}  {m['owned_by']}")
    typer.echo("\nCATALOG (aigw models pull NAME)")
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        mark = "pulled" if r["pulled"] else f"{r['size_mb']} MB"
        default = " (default)" if r["default"] else ""
        typer.echo(f"  {r['name'].ljust(width)}  {mark:>8}  {r['description']}{default}")


@app.command()
def load(model: str = typer.Argument(..., help="A local model (or an alias whose target is one).")) -> None:
    """Load a local model now instead of on first use."""
    from aigw.daemon.client import DaemonClient

    with DaemonClient(daemon_target()[0]) as client:
        out = client.load_model(model)
    st = out.get("status") or {}
    typer.echo(f"loaded {out['model']} ({_gib(st.get('memory_bytes', 0))})")


@app.command()
def unload(model: str = typer.Argument(..., help="A loaded local model.")) -> None:
    """Free a local model's memory now."""
    from aigw.daemon.client import DaemonClient

    with DaemonClient(daemon_target()[0]) as client:
        out = client.unload_model(model)
    typer.echo(f"unloaded {out['model']}" if out["was_loaded"] else f"{out['model']} was not loaded")


@app.command()
def ps(json_out: bool = JsonOption) -> None:
    """Local models in memory: size, queue, slots in use, prompt-cache size, when each unloads."""
    from aigw.daemon.client import DaemonClient

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
    typer.echo(
        f"{'MODEL'.ljust(width)}  {'STATE':8} {'MEMORY':>10}  QUEUE  SLOTS  {'CACHE':>10}  UNLOADS IN"
    )
    for m in loaded:
        until = (
            "never"
            if m["keep_alive_s"] is None
            else ("-" if m["unloads_in_s"] is None else f"{m['unloads_in_s']:.0f} s")
        )
        slots = f"{m.get('active', 0)}/{m.get('parallel', 1)}"
        typer.echo(
            f"{m['model'].ljust(width)}  {m['state']:8} {_gib(m['memory_bytes']):>10}  "
            f"{m['queue_depth']:5}  {slots:>5}  {_gib(m.get('cache_bytes', 0)):>10}  {until}"
        )


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MiB"


@app.command()
def pull(
    name: str = typer.Argument(
        ..., help="A catalog name (see `aigw models list`), HF_REPO/FILE.gguf, or an MLX HF_REPO."
    ),
    fmt: str | None = typer.Option(
        None,
        "--format",
        help="gguf or mlx (default: mlx on Apple Silicon when the catalog has it, else gguf).",
    ),
) -> None:
    """Download a model into the models dir (resumable, checksum-verified)."""
    from aigw.local.catalog import load_catalog
    from aigw.local.pull import PullError, hub_missing, resolve
    from aigw.local.pull import pull as do_pull

    refusal = hub_missing()
    if refusal is not None:
        raise PullError(refusal)
    library = model_library()
    if fmt is not None:
        library.kind_for(fmt)  # a format some installed local type runs, or a clear error
    target = resolve(name, load_catalog(library.models_dir), fmt)
    where = library.destination(library.kind_for(target.format), target.name)
    typer.echo(f"pulling {target.repo}" + (f"/{target.file}" if target.file else " (MLX)"), err=True)
    dest = do_pull(target, where.path.parent)
    typer.echo(f"{target.name}: {dest} ({_gib(_size(dest))}); serve it as {where.model}")
    if missing := library.missing_for(where.kind):
        missing_line = ", ".join(missing)
        note(f"note: {missing_line} is not installed, so nothing here runs it yet: {where.kind.install}")


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


@app.command()
def rm(name: str = typer.Argument(..., help="A pulled model (a file in the models dir).")) -> None:
    """Delete a pulled model (unloading it first when the daemon has it loaded)."""
    from aigw.daemon.client import ClientError, DaemonClient
    from aigw.errors import InvalidRequest

    library = model_library()
    found = library.pulled(name)
    if not found:
        raise InvalidRequest(f"no pulled model {name!r} in {library.models_dir}")
    for pulled in found:
        try:
            with DaemonClient(daemon_target()[0], timeout=30) as client:
                client.unload_model(pulled.model)
        except ClientError:
            pass  # not running, or not a model it serves: nothing is holding the files
        size = library.remove(pulled)
        typer.echo(f"removed {name} ({pulled.path.name}, {_gib(size)})")


@app.command()
def show(
    name: str = typer.Argument(..., help="A pulled model, or a path to a GGUF file."),
    json_out: bool = JsonOption,
) -> None:
    """Format, size, quantization, context, chat template and capabilities of a local model."""
    from aigw.errors import InvalidRequest
    from aigw.local.presets import load_presets

    library = model_library()
    path = Path(name).expanduser()
    candidates = [path] if path.exists() else [p.path for p in library.pulled(name)]
    kind = next((k for c in candidates if (k := library.kind_of(c)) is not None), None)
    if kind is None:
        raise InvalidRequest(f"no local model {name!r} (pulled models live in {library.models_dir})")
    info = kind.describe(next(c for c in candidates if kind.is_model(c)), load_presets(library.models_dir))
    if json_out:
        print_json(info)
        return
    for key, value in info.items():
        if key != "template_text":  # the whole template: in --json only
            typer.echo(f"{key:>14}: {', '.join(value) if isinstance(value, list) else value}")
