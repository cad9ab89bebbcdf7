"""aigw config show|path."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from aigw.cli.common import ConfigOption, JsonOption, config_path_arg, load_config, paths, print_json

app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)


@app.command()
def show(config: Path | None = ConfigOption, json_out: bool = JsonOption) -> None:
    """Print the effective configuration, secrets masked."""
    import tomli_w

    from aigw.config import masked_dump

    cfg = load_config(config_path_arg(config))
    data = masked_dump(cfg)
    if json_out:
        print_json(data)
    else:
        typer.echo(tomli_w.dumps(data), nl=False)


@app.command()
def path(json_out: bool = JsonOption) -> None:
    """Where aigw reads its config and keeps its state."""
    p = paths()
    data = {
        "config": str(p.config_file),
        "data": str(p.data_dir),
        "database": str(p.database),
        "models": str(p.models_dir),
        "cache": str(p.cache_dir),
        "logs": str(p.log_dir),
    }
    if json_out:
        print_json(data)
        return
    typer.echo(data["config"])
    for k, v in data.items():
        if k != "config":
            typer.echo(f"  {k}: {v}", err=True)
    if not p.config_file.exists():
        typer.echo(create_hint(p.config_file), err=True)


def create_hint(config_file: Path) -> str:
    """What to do when there is no config file yet: aigw runs without one."""
    return (
        f"{config_file} does not exist yet: aigw runs on its defaults and the environment. To change "
        f"them, create it (TOML; every key is optional, see README.md, Configuration), or start from "
        f"the effective config: mkdir -p {shlex.quote(str(config_file.parent))} && "
        f"aigw config show > {shlex.quote(str(config_file))}"
    )
