"""aigw tui: the dashboard (Textual). Starts the daemon when needed and AIGW_URL is unset."""

from __future__ import annotations

import contextlib

import typer

from aigw.cli.common import daemon_target, env_config_path, paths


def tui(
    light: bool = typer.Option(False, "--light", help="Colours for a light terminal background."),
) -> None:
    """Live dashboard: traffic, providers, local models, cache, keys, RAG, requests, chat."""
    from aigw.errors import AigwError

    try:
        from aigw.tui.app import Dashboard
        from aigw.tui.source import DaemonSource
    except ImportError:
        raise AigwError("the dashboard needs Textual: pip install 'aigw[tui]'") from None
    from aigw.daemon import process as daemon

    url, may_start = daemon_target()

    def start() -> None:
        with contextlib.suppress(daemon.AlreadyRunning):  # started meanwhile: fine
            daemon.start(paths(), config_path=env_config_path())

    # The admin token only ever goes to this machine's own daemon (as with the CLI).
    token = paths().admin_token_file if may_start or url == _own_url() else None
    if may_start and daemon.running_daemon(paths()) is None:
        start()
    app = Dashboard(DaemonSource(url, token, start if may_start else None))
    if light:
        app.theme = "textual-light"
    app.run()


def _own_url() -> str | None:
    from aigw.daemon import process as daemon

    info = daemon.running_daemon(paths())
    return info.url if info is not None else None


def register(app: typer.Typer) -> None:
    app.command()(tui)
