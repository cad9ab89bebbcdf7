"""aigw cache ...: the response cache's figures, and clearing it.

With the daemon of this AIGW_HOME running, both go through it (it holds recent answers in memory
too); without it, they work on AIGW_HOME's files directly.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from aigw.cli.common import (
    ConfigOption,
    JsonOption,
    config_path_arg,
    load_config,
    own_daemon,
    paths,
    print_json,
)

if TYPE_CHECKING:
    from aigw.config import Config

app = typer.Typer(help="The response cache: stats, clear.", no_args_is_help=True)


def _config(config: Path | None) -> Config:
    return load_config(config_path_arg(config))


def _offline_stats(cfg: Config) -> dict[str, Any]:
    from aigw.cache.stats import cache_stats
    from aigw.cache.store import open_store
    from aigw.state.db import open_db

    with contextlib.ExitStack() as stack:
        store = open_store(paths().cache_dir / "responses", cfg.cache)
        stack.callback(store.close)
        db = stack.enter_context(open_db(paths().database))
        return cache_stats(store, db.conn, cfg.cache.mode)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@app.command()
def stats(config: Path | None = ConfigOption, json_out: bool = JsonOption) -> None:
    """Entries, size, hit ratio, and the tokens and cost hits saved."""
    client = own_daemon()
    if client is not None:
        with client:
            data: dict[str, Any] = client.cache_stats()
    else:
        data = _offline_stats(_config(config))
    if json_out:
        print_json(data)
        return
    ratio = "-" if data["hit_ratio"] is None else f"{data['hit_ratio']:.1%}"
    lines = [
        ("mode", data["mode"] + ("" if data["available"] else " (cache unavailable: see `aigw logs`)")),
        ("entries", f"{data.get('entries', 0):,}"),
        ("size", f"{_size(data.get('size_bytes', 0))} of {_size(data.get('max_size_bytes', 0))}"),
        ("hits", f"{data['hits']:,} of {data['hits'] + data['misses']:,} lookups ({ratio})"),
        ("bypassed", f"{data['bypassed']:,} requests (not cacheable, or Cache-Control)"),
        ("tokens saved", f"{data['tokens_saved']:,}"),
        ("cost saved", f"${data['cost_saved_usd']:,.4f}"),
    ]
    for label, value in lines:
        typer.echo(f"{label:<13} {value}")


@app.command()
def clear(
    model: str | None = typer.Option(
        None, "--model", "-m", help="Only this model's answers (alias, provider/model)."
    ),
    config: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """Remove cached answers: all of them, or one model's."""
    client = own_daemon()
    if client is not None:
        with client:
            removed = int(client.cache_clear(model)["removed"])
    else:
        from aigw.cache.store import open_store

        cfg = _config(config)
        names = None
        if model is not None:
            alias = cfg.models.get(model)
            names = [f"{t.provider}/{t.model}" for t in alias.targets] if alias else [model]
        store = open_store(paths().cache_dir / "responses", cfg.cache)
        try:
            removed = store.clear(names)
        finally:
            store.close()
    if json_out:
        print_json({"removed": removed, "model": model})
        return
    what = f" of {model}" if model else ""
    typer.echo(f"removed {removed:,} cached answer{'s' if removed != 1 else ''}{what}")
