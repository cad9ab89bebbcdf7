"""The `aigw` command line. Heavy imports happen inside commands so `aigw --help` stays fast."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from aigw.cli import (
    cache_cmd,
    chat,
    config_cmd,
    daemon_cmds,
    doctor_cmd,
    keys_cmd,
    models,
    rag_cmd,
    service_cmd,
    tui_cmd,
    usage_cmd,
)


class AigwGroup(TyperGroup):
    """Turns every aigw error into one readable line on stderr and exit status 1."""

    def invoke(self, ctx: Any) -> Any:
        from aigw.errors import AigwError

        try:
            return super().invoke(ctx)
        except AigwError as e:
            typer.echo(f"aigw: {e.message}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo(err=True)
            raise typer.Exit(130) from None
        except OSError as e:  # the file system's refusal (a full disk, no permission): one line
            typer.echo(f"aigw: {os_error_line(e)}", err=True)
            raise typer.Exit(1) from None


def os_error_line(e: OSError) -> str:
    import errno

    what = f"{e.filename}: " if e.filename else ""
    line = f"{what}{e.strerror or e}"
    if e.errno == errno.ENOSPC:
        line += " (free some space and try again)"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        line += " (check the permissions of AIGW_HOME and its files)"
    return line


app = typer.Typer(
    name="aigw",
    cls=AigwGroup,
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
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(cache_cmd.app, name="cache")
app.add_typer(rag_cmd.app, name="rag")
app.add_typer(service_cmd.app, name="service")
usage_cmd.register(app)
doctor_cmd.register(app)
tui_cmd.register(app)


def main() -> None:
    app()
