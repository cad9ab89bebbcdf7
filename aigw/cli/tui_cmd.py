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
    from aigw import daemon

    url, may_start = daemon_target()
    token_file = paths().admin_token_file
    token = token_file.read_text(encoding="utf-8").strip() if token_file.exists() else None

    def start() -> None:
        with contextlib.suppress(daemon.AlreadyRunning):  # started meanwhile: fine
            daemon.start(paths(), config_path=env_config_path())

    source = DaemonSource(url, token, start if may_start else None)
    if may_start and daemon.running_daemon(paths()) is None:
        start()
        if token is None and token_file.exists():  # made by the daemon's first start
            source = DaemonSource(url, token_file.read_text(encoding="utf-8").strip(), start)
    app = Dashboard(source)
    if light:
        app.theme = "textual-light"
    app.run()


def register(app: typer.Typer) -> None:
    app.command()(tui)
