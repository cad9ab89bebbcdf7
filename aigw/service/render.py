"""The service files, rendered from plain inputs: no I/O, no global state.

`ServiceSpec` holds what both files say (the interpreter, the environment aigw needs, the log
file); `render_plist` and `render_unit` turn it into a launchd LaunchAgent and a systemd user
unit. The daemon runs as `<python> -m aigw serve` with absolute paths, since neither launchd
nor systemd starts it from the user's shell, its working directory or its PATH.
"""

from __future__ import annotations

import os
import plistlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

LABEL = "dev.aigw.daemon"
UNIT_NAME = "aigw.service"
# The variables that select aigw's state and config; passed on to the service when set.
PASSED_ENV = ("AIGW_HOME", "AIGW_CONFIG")
# launchd: the fastest a job that keeps failing is started again (seconds; launchd's default,
# made explicit). A daemon that ran longer than this is restarted at once.
THROTTLE_INTERVAL_S = 10
# systemd: wait between restarts, and give up after this many starts within the interval
# (a daemon that cannot start, say with a broken config, would otherwise loop forever).
RESTART_SEC = 2
START_LIMIT_BURST = 5
START_LIMIT_INTERVAL_S = 60


class RenderError(ValueError):
    """A value that cannot be written into a service file (a control character in a path)."""


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    python: str  # absolute path of the interpreter, symlinks kept (a venv's python is one)
    log_file: Path  # absolute; stdout and stderr of the daemon
    env: tuple[tuple[str, str], ...]  # AIGW_HOME / AIGW_CONFIG, absolute, when set
    path: str | None  # PATH for launchd, which otherwise gives jobs a minimal one

    @property
    def arguments(self) -> list[str]:
        return [self.python, "-P", "-m", "aigw", "serve"]


def make_spec(python: str, environ: Mapping[str, str], log_dir: Path, cwd: Path) -> ServiceSpec:
    """The spec for this interpreter and environment; relative paths are made absolute from cwd.

    `python` is made absolute but not resolved: resolving a venv's `bin/python` symlink would
    leave the venv and lose its packages.
    """

    def absolute(value: str) -> str:
        return os.path.normpath(cwd / Path(value).expanduser())

    env = tuple((name, absolute(environ[name])) for name in PASSED_ENV if environ.get(name))
    spec = ServiceSpec(
        python=absolute(python),
        log_file=Path(absolute(str(log_dir))) / "service.log",
        env=env,
        path=environ.get("PATH") or None,
    )
    for value in [spec.python, str(spec.log_file), spec.path or "", *(v for _, v in env)]:
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise RenderError(f"cannot write {value!r} into a service file: it has a control character")
    return spec


def plist_dict(spec: ServiceSpec) -> dict[str, object]:
    env = dict(spec.env)
    if spec.path:
        env["PATH"] = spec.path
    data: dict[str, object] = {
        "Label": LABEL,
        "ProgramArguments": spec.arguments,
        "RunAtLoad": True,
        # Restarted after a crash or kill -9 (exit status not 0, or death by signal), not after
        # `aigw stop` or a clean SIGTERM: the daemon exits 0 from those, and stays stopped.
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": THROTTLE_INTERVAL_S,
        # Interactive: no CPU or I/O throttling. Background would confine the daemon to the
        # efficiency cores with throttled I/O, on the request path of the user's editor or chat.
        "ProcessType": "Interactive",
        "StandardOutPath": str(spec.log_file),
        "StandardErrorPath": str(spec.log_file),
        "Umask": 0o077,  # the log, like everything aigw writes, readable by its user only
    }
    if env:
        data["EnvironmentVariables"] = env
    return data


def render_plist(spec: ServiceSpec) -> bytes:
    """The LaunchAgent ~/Library/LaunchAgents/dev.aigw.daemon.plist (XML)."""
    return plistlib.dumps(plist_dict(spec), fmt=plistlib.FMT_XML, sort_keys=False)


def _specifiers(value: str) -> str:
    # systemd expands %-specifiers in these settings; a literal % is written %%.
    return value.replace("%", "%%")


def quote_exec_arg(arg: str) -> str:
    """One ExecStart= word: $ and % literal, quoted when it has spaces or quote characters."""
    arg = _specifiers(arg).replace("$", "$$")
    if arg and not any(c in arg for c in " \t\"'\\;"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_environment(name: str, value: str) -> str:
    """One Environment= assignment, quoted whole (systemd unquotes and C-unescapes it)."""
    text = _specifiers(f"{name}={value}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(spec: ServiceSpec) -> str:
    """The systemd user unit ~/.config/systemd/user/aigw.service."""
    log = _specifiers(str(spec.log_file))  # append: takes the rest of the line, spaces included
    lines = [
        "# Written by `aigw service install`; `aigw service uninstall` removes it.",
        "[Unit]",
        "Description=aigw local AI gateway (OpenAI API on 127.0.0.1)",
        "After=network-online.target",
        f"StartLimitIntervalSec={START_LIMIT_INTERVAL_S}",
        f"StartLimitBurst={START_LIMIT_BURST}",
        "",
        "[Service]",
        # exec: `systemctl start` fails when the interpreter cannot be executed (a deleted venv).
        "Type=exec",
        "ExecStart=" + " ".join(quote_exec_arg(a) for a in spec.arguments),
        *(f"Environment={quote_environment(name, value)}" for name, value in spec.env),
        # Restarted after a crash (exit status not 0, or SIGKILL/SIGSEGV); a clean `aigw stop`
        # (SIGTERM, exit 0) leaves it stopped.
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
        "UMask=0077",  # the log, like everything aigw writes, readable by its user only
        f"StandardOutput=append:{log}",
        f"StandardError=append:{log}",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)
