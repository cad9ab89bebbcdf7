"""Runs the daemon in the foreground: `aigw serve`.

Binds the socket itself (so a busy port is one clear message), writes the pidfile, serves with
uvicorn (uvloop + httptools) and exits 0 after a graceful SIGTERM/SIGINT shutdown.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from aigw.api.requestid import RequestIdFilter
from aigw.config import Config
from aigw.config.checked import load_checked, readable_secrets
from aigw.daemon.process import AlreadyRunning, PidFile, RunInfo, RunLock
from aigw.errors import AigwError
from aigw.paths import Paths
from aigw.providers.registry import ProviderRegistry

log = logging.getLogger("aigw")


class ServeError(AigwError):
    """The daemon cannot start (port busy, already running)."""


def check_exposure(cfg: Config, paths: Paths) -> None:
    """Refuse to listen beyond this machine unless every request must carry a key and one exists."""
    from aigw.access.net import is_loopback

    host = cfg.server.host
    if is_loopback(host):
        return
    if not cfg.server.require_keys:
        raise ServeError(
            f"refusing to listen on {host}, which other machines can reach, without API keys: "
            "set `require_keys = true` under [server] in config.toml and create a key with "
            "`aigw keys create NAME` (or listen on 127.0.0.1)"
        )
    from aigw.state.backend import key_store, shared_state

    state = shared_state(cfg.state)
    try:
        active = key_store(state, paths.database).count_active()
    finally:
        if state is not None:
            state.close()
    if active == 0:
        raise ServeError(
            f"refusing to listen on {host}: require_keys is on but no API key exists yet; "
            "create one with `aigw keys create NAME`"
        )


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ServeError(
                f"port {port} on {host} is already in use by another program "
                "(is aigw running? see `aigw status`; or choose another with --port)"
            ) from None
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    # uvicorn re-raises the signal that stopped it once it has shut down gracefully;
    # ending here makes that a clean exit 0 rather than death by signal.
    raise SystemExit(0)


def serve(
    paths: Paths,
    *,
    config_path: Path | None = None,
    host: str | None = None,
    port: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    env = dict(os.environ if environ is None else environ)
    registry = ProviderRegistry.from_entry_points()
    cfg = load_checked(paths, config_path, env, registry)
    host = host or cfg.server.host
    port = cfg.server.port if port is None else port
    cfg = cfg.model_copy(update={"server": cfg.server.model_copy(update={"host": host})})
    # Everything the daemon writes (databases, the cache, the RAG store, the admin token, logs)
    # is its user's alone: prompts, answers and keys' usage are nobody else's business.
    os.umask(0o077)
    paths.ensure()
    check_exposure(cfg, paths)
    lock = RunLock(paths.lock_file)
    pidfile = PidFile(paths.pid_file)
    if not lock.acquire():
        other = pidfile.read()
        raise AlreadyRunning(other or RunInfo(pid=0, url="starting"))
    sock = bind_socket(host, port)
    actual_port = sock.getsockname()[1]
    setup_logging(cfg.server.log_level)
    exposed = readable_secrets(config_path or paths.config_file)
    if exposed is not None:
        log.warning("%s", exposed)
    if not cfg.providers:
        log.warning(
            "no provider is configured: set OPENAI_API_KEY (or another provider's key) or write "
            "%s (see `aigw config path`); local models need a pull first (`aigw models pull`)",
            config_path or paths.config_file,
        )
    # Inference threads that hold the GIL in native code (mlx) would otherwise make the event
    # loop wait up to the default 5 ms for each hand-over, once per token.
    sys.setswitchinterval(0.0005)

    import uvicorn

    from aigw.api.app import create_asgi_app
    from aigw.daemon.http import guarded_protocol
    from aigw.gateway.gateway import Gateway

    app = create_asgi_app(cfg, paths, lambda: Gateway.build(cfg, paths, registry, env))
    uv_cfg = uvicorn.Config(
        app,
        loop="uvloop" if sys.platform != "win32" else "auto",
        http=guarded_protocol(cfg.server.max_header_bytes, cfg.server.header_timeout_s),
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=math.ceil(cfg.server.shutdown_grace_s),
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(uv_cfg)
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{actual_port}"
    pidfile.write(RunInfo(pid=os.getpid(), url=url, grace_s=cfg.server.shutdown_grace_s))
    signal.signal(signal.SIGTERM, _exit_quietly)
    signal.signal(signal.SIGINT, _exit_quietly)
    logging.getLogger("aigw").info(
        "aigw listening on http://%s:%d (pid %d)", url_host, actual_port, os.getpid()
    )
    try:
        server.run(sockets=[sock])
    finally:
        pidfile.remove()
        lock.release()
    code = 0 if server.started else 1
    if "mlx.core" in sys.modules:
        # mlx keeps native worker threads that abort the process (SIGABRT) when C++ tears them
        # down at interpreter exit. Everything is closed and flushed by now: leave directly.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
