"""aigw keys ...: API keys, made and revoked directly in AIGW_HOME's database (no daemon needed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from aigw.access.keys import Keys

from aigw.cli.common import JsonOption, load_config, note, own_daemon, paths, print_json

app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)


@contextmanager
def _keys() -> Iterator[Keys]:
    """Where keys live by the config: this machine's database, or the Redis a team shares."""
    from aigw.state.backend import key_store, shared_state

    state = shared_state(load_config().state)
    try:
        yield key_store(state, paths().database)
    finally:
        if state is not None:
            state.close()


def _notify_daemon() -> None:
    """Best effort: tell a daemon serving this AIGW_HOME to re-read its keys now. It re-reads
    them on its own within seconds anyway, so any failure here is ignored."""
    from aigw.errors import AigwError

    try:
        client = own_daemon(timeout=2.0)
        if client is None:
            return
        with client:
            if client.admin:
                client.reload_keys()
    except (AigwError, OSError, ValueError):
        pass


def _parse_models(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [m.strip() for m in value.split(",") if m.strip()]


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


@app.command()
def create(
    name: str = typer.Argument(..., help="A unique name (letters, digits, ._@-)."),
    *,
    rpm: int = typer.Option(0, "--rpm", min=0, help="Requests per minute (0: unlimited)."),
    tpm: int = typer.Option(0, "--tpm", min=0, help="Tokens per minute (0: unlimited)."),
    budget_usd: float | None = typer.Option(None, "--budget-usd", min=0, help="Total spend allowed, USD."),
    models: str | None = typer.Option(None, "--models", help="Comma-separated models or aliases allowed."),
    collections: str | None = typer.Option(
        None, "--collections", help="Comma-separated RAG collections of others it may read."
    ),
    json_out: bool = JsonOption,
) -> None:
    """Make a key. It is printed once: store it now, it cannot be shown again."""
    with _keys() as store:
        key, plain = store.create(
            name,
            rpm=rpm,
            tpm=tpm,
            budget_usd=budget_usd,
            models=_parse_models(models),
            collections=_parse_models(collections) or (),
        )
    _notify_daemon()
    if json_out:
        print_json({**key.to_dict(), "key": plain})
    else:
        typer.echo(plain)
    note(f"created key {key.name!r} ({key.id}); this is the only time it is shown: store it now")


@app.command("list")
def list_keys(
    json_out: bool = JsonOption,
    active: bool = typer.Option(False, "--active", help="Hide revoked keys."),
) -> None:
    """Keys with their prefix, limits, budget and spend (never the key itself)."""
    from aigw.state.db import open_db
    from aigw.usage.report import spend_by_key

    with _keys() as store:
        keys = store.list(include_revoked=not active)
    with open_db(paths().database) as db:
        spent = spend_by_key(db)
    rows = [{**k.to_dict(), "spent_usd": spent.get(k.id, 0.0)} for k in keys]
    if json_out:
        print_json(rows)
        return
    if not rows:
        typer.echo("no API keys yet: make one with `aigw keys create NAME`")
        return
    table = [
        (
            r["name"],
            r["id"],
            r["prefix"] + "...",
            str(r["rpm"] or "-"),
            str(r["tpm"] or "-"),
            "-" if r["budget_usd"] is None else f"${r['budget_usd']:.2f}",
            f"${r['spent_usd']:.4f}",
            ",".join(r["models"]) if r["models"] is not None else "all",
            _when(r["created_at"]),
            _when(r["revoked_at"]),
        )
        for r in rows
    ]
    head = ("NAME", "ID", "PREFIX", "RPM", "TPM", "BUDGET", "SPENT", "MODELS", "CREATED", "REVOKED")
    widths = [max(len(row[i]) for row in (head, *table)) for i in range(len(head))]
    for row in (head, *table):
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@app.command()
def revoke(name_or_id: str = typer.Argument(..., help="The key's name or id (key_...).")) -> None:
    """Revoke a key: requests with it are refused from now on."""
    with _keys() as store:
        before = store.get(name_or_id)
        key = store.revoke(name_or_id)
    _notify_daemon()
    if before is not None and before.revoked_at is not None:
        typer.echo(f"key {key.name!r} ({key.id}) was already revoked")
    else:
        typer.echo(f"revoked key {key.name!r} ({key.id})")
