"""The config file and the port the daemon will listen on."""

from __future__ import annotations

import errno
from pathlib import Path
from urllib.parse import urlsplit

from aigw.config import Config
from aigw.config.checked import load_checked, readable_secrets
from aigw.doctor.checks import Check, fail, ok, warn
from aigw.doctor.facts import Facts
from aigw.errors import ConfigError
from aigw.providers.registry import ProviderRegistry


def config_file(f: Facts) -> Path:
    return f.config_path or f.paths.config_file


def check_config(f: Facts, registry: ProviderRegistry) -> tuple[Check, Config | None]:
    """Load the config as the daemon would; the check, and the config when it is valid."""
    path = config_file(f)
    try:
        cfg = load_checked(f.paths, f.config_path, f.environ, registry)
    except ConfigError as e:
        message = e.message if str(path) in e.message else f"{path}: {e.message}"
        return fail("config", message, f"correct that key in {path} (`aigw config show` re-checks it)"), None
    counts = f"{_plural(len(cfg.providers), 'provider')}, {_plural(len(cfg.models), 'alias', 'aliases')}"
    exposed = readable_secrets(path)
    if exposed is not None:
        return warn("config", exposed, f"chmod 600 {path}"), cfg
    if path.exists():
        return ok("config", f"{path}: valid; {counts}"), cfg
    return ok("config", f"no {path}: {counts} from the environment"), cfg


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _url_port(url: str) -> int | None:
    try:
        return urlsplit(url).port
    except ValueError:
        return None


def check_port(f: Facts, cfg: Config | None) -> Check:
    """Free, or held by this AIGW_HOME's daemon: OK. Held by anything else: FAIL, naming it."""
    name = "port"
    if cfg is None:
        return warn(name, "not checked: the config has errors", "correct the config first")
    host, port = cfg.server.host, cfg.server.port
    where = f"{host}:{port}"
    if port == 0:
        return ok(name, f"{host}:0: the daemon takes any free port")
    daemon = f.daemon()
    error = f.try_bind(host, port)
    if error is None:
        detail = f"{where} is free"
        if daemon is not None:
            detail += f"; aigw is running (pid {daemon.pid}) at {daemon.url}: restart it to use this port"
        return ok(name, detail)
    if error.errno != errno.EADDRINUSE:
        return fail(
            name,
            f"cannot listen on {where}: {error.strerror or error}",
            f"set [server] host to an address of this machine (127.0.0.1) in {config_file(f)}",
        )
    holder = f.port_holder(port)
    if daemon is not None and (
        _url_port(daemon.url) == port or (holder is not None and holder.pid == daemon.pid)
    ):
        return ok(name, f"{where}: aigw is running (pid {daemon.pid})")
    who = holder.describe() if holder is not None else "another process"
    spare = _spare_port(f, host, port)
    other = f"set `port = {spare}`" if spare is not None else "set another `port`"
    return fail(
        name,
        f"{where} is in use by {who}",
        f"stop it, or {other} under [server] in {config_file(f)}",
    )


def _spare_port(f: Facts, host: str, port: int) -> int | None:
    for candidate in range(port + 1, min(port + 20, 65535) + 1):
        if f.try_bind(host, candidate) is None:
            return candidate
    return None
