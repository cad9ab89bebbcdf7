"""aigw usage: requests, tokens and cost from AIGW_HOME's usage log (no daemon needed)."""

from __future__ import annotations

import re
import time
from datetime import datetime
from types import MappingProxyType
from typing import Any

import typer

from aigw.cli.common import JsonOption, paths, print_json

_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*([mhdw])")
_SPAN_SECONDS = MappingProxyType({"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400})
_BY_OPTION = typer.Option(
    None, "--by", help="Group by key, model, day, alias or provider; repeat or comma-separate."
)


def parse_since(value: str, now: float) -> float:
    """'30m', '24h', '7d', '2w' before `now`, or a local date/time like 2025-01-31 or 2025-01-31T08:00."""
    from aigw.errors import InvalidRequest

    text = value.strip().lower()
    m = _SPAN.fullmatch(text)
    if m:
        return now - float(m.group(1)) * _SPAN_SECONDS[m.group(2)]
    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except ValueError:
        raise InvalidRequest(
            f"--since {value!r}: give a span like 30m, 24h, 7d, 2w or a date like 2025-01-31", param="since"
        ) from None


def _split_groups(values: list[str] | None) -> tuple[str, ...]:
    from aigw.usage.report import check_groups

    if not values:
        return ("key", "model", "day")
    return check_groups([g.strip() for v in values for g in v.split(",") if g.strip()])


def usage(
    by: list[str] | None = _BY_OPTION,
    since: str | None = typer.Option(None, "--since", help="Only since: 30m, 24h, 7d, 2w or a date."),
    json_out: bool = JsonOption,
) -> None:
    """Requests, errors, tokens and cost (default: by key, model and day)."""
    from aigw.state.db import open_db
    from aigw.usage.report import summarise, total

    groups = _split_groups(by)
    since_ts = parse_since(since, time.time()) if since else None
    with open_db(paths().database) as db:
        rows = summarise(db, since_ts=since_ts, by=groups)
    if json_out:
        print_json({"since_ts": since_ts, "by": list(groups), "rows": rows, "total": total(rows)})
        return
    if not rows:
        typer.echo("no usage recorded" + (f" since {since}" if since else " yet"))
        return
    _print_table(groups, rows, total(rows))


def _print_table(groups: tuple[str, ...], rows: list[dict[str, Any]], tot: dict[str, Any]) -> None:
    head = (*(g.upper() for g in groups), "REQUESTS", "ERRORS", "PROMPT", "COMPLETION", "CACHED", "COST")

    def cells(r: dict[str, Any], labels: tuple[str, ...]) -> tuple[str, ...]:
        return (
            *labels,
            f"{r['requests']:,}",
            f"{r['errors']:,}",
            f"{r['prompt_tokens']:,}",
            f"{r['completion_tokens']:,}",
            f"{r['cache_hits']:,}",
            f"${r['cost_usd']:,.4f}",
        )

    body = [cells(r, tuple("-" if r[g] is None else str(r[g]) for g in groups)) for r in rows]
    if groups:
        body.append(cells(tot, ("TOTAL", *("" for _ in groups[1:]))))
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    n = len(groups)
    for row in (head, *body):
        pairs = enumerate(zip(row, widths, strict=True))
        parts = [c.ljust(w) if i < n else c.rjust(w) for i, (c, w) in pairs]
        typer.echo("  ".join(parts).rstrip())


def register(app: typer.Typer) -> None:
    app.command()(usage)
