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
        from aigw.extras import install_hint

        raise AigwError(f"the dashboard needs Textual: {install_hint('tui')}") from None
    from aigw.daemon import process as daemon
    from aigw.daemon.client import AsyncDaemonClient

    url, may_start = daemon_target()

    def start() -> None:
        with contextlib.suppress(daemon.AlreadyRunning):  # started meanwhile: fine
            daemon.start(paths(), config_path=env_config_path())

    if may_start and daemon.running_daemon(paths()) is None:
        start()
    app = Dashboard(DaemonSource(AsyncDaemonClient(url), start if may_start else None))
    if light:
        app.theme = "textual-light"
    app.run()


def register(app: typer.Typer) -> None:
    app.command()(tui)
