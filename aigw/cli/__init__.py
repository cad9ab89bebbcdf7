"""The `aigw` command line. Heavy imports happen inside commands so `aigw --help` stays fast."""

from __future__ import annotations

import sys

import typer

from aigw.cli import chat, config_cmd, daemon_cmds, models

app = typer.Typer(
    name="aigw",
    help="aigw: a local AI gateway serving the OpenAI API on 127.0.0.1:8080.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
daemon_cmds.register(app)
chat.register(app)
app.add_typer(models.app, name="models")
app.add_typer(config_cmd.app, name="config")


def main() -> None:
    from aigw.errors import AigwError

    try:
        app()
    except AigwError as e:
        print(f"aigw: {e.message}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        sys.exit(130)
