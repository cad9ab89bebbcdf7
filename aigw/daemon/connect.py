"""Which daemon the CLI talks to, and a client of it.

    target(paths, environ)       AIGW_URL; else the running daemon's own URL; else where the
                                 config says it would listen (and then aigw may start it)
    connect(paths, environ)      a client, starting this AIGW_HOME's daemon first when it is the
                                 target and none runs
    own_daemon(paths, environ)   a client of this AIGW_HOME's daemon if it runs, else None
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from aigw.daemon.client import DaemonClient, DaemonNotRunning
from aigw.daemon.process import AlreadyRunning, RunInfo, running_daemon, start
from aigw.paths import Paths


def target(paths: Paths, environ: Mapping[str, str], config_path: Path | None = None) -> tuple[str, bool]:
    """The daemon's URL, and whether aigw may start it itself (only when AIGW_URL is unset)."""
    explicit = environ.get("AIGW_URL")
    if explicit:
        return explicit.rstrip("/"), False
    info = running_daemon(paths)
    if info is not None:
        return info.url, True
    from aigw.config.checked import load_checked
    from aigw.providers.registry import ProviderRegistry

    server = load_checked(paths, config_path, environ, ProviderRegistry.from_entry_points()).server
    host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "") else server.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{server.port}", True


def connect(
    paths: Paths,
    environ: Mapping[str, str],
    *,
    config_path: Path | None = None,
    timeout: float = 600.0,
    on_start: Callable[[RunInfo], None] | None = None,
) -> DaemonClient:
    """A client of the target daemon, which is started first when aigw may start it and none runs.
    `on_start(info)` is told when this call started it."""
    url, may_start = target(paths, environ, config_path)
    client = DaemonClient(url, timeout=timeout, environ=environ)
    try:
        client.health()
        return client
    except DaemonNotRunning:
        client.close()
        if not may_start:
            raise
    try:
        info = start(paths, config_path=config_path)
        if on_start is not None:
            on_start(info)
    except AlreadyRunning as e:  # started by someone else meanwhile: fine
        info = e.info
    return DaemonClient(info.url, timeout=timeout, environ=environ)


def own_daemon(paths: Paths, environ: Mapping[str, str], *, timeout: float = 60.0) -> DaemonClient | None:
    """A client of this AIGW_HOME's daemon when it runs (for admin calls), else None."""
    info = running_daemon(paths)
    if info is None:
        return None
    return DaemonClient(info.url, timeout=timeout, environ=environ)
