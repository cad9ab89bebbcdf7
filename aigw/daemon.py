"""The background daemon's process management: pidfile, start, stop, status.

`start` launches `python -m aigw serve` detached, logging to AIGW_HOME/logs/aigw.log, and
returns once /health answers; `stop` sends SIGTERM and waits for the process to go.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from aigw.errors import AigwError
from aigw.paths import Paths


class DaemonError(AigwError):
    """Starting or stopping the background daemon failed."""


@dataclass(frozen=True, slots=True)
class RunInfo:
    pid: int
    url: str
    started_at: float = 0.0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) still answers kill(0); it is not running.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class PidFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> RunInfo | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return RunInfo(int(data["pid"]), str(data["url"]), float(data.get("started_at", 0.0)))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, info: RunInfo) -> None:
        info = RunInfo(info.pid, info.url, info.started_at or time.time())
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(info)), encoding="utf-8")
        os.replace(tmp, self.path)

    def remove_if_ours(self, pid: int) -> None:
        info = self.read()
        if info is not None and info.pid == pid:
            self.path.unlink(missing_ok=True)


def running_daemon(paths: Paths) -> RunInfo | None:
    """The daemon recorded in the pidfile, if its process is alive; a stale pidfile is removed."""
    pf = PidFile(paths.pid_file)
    info = pf.read()
    if info is None:
        return None
    if not pid_alive(info.pid):
        paths.pid_file.unlink(missing_ok=True)
        return None
    return info


def _health_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url + "/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start(
    paths: Paths,
    *,
    config_path: Path | None = None,
    host: str | None = None,
    port: int | None = None,
    timeout_s: float = 30.0,
) -> RunInfo:
    existing = running_daemon(paths)
    if existing is not None:
        raise DaemonError(f"aigw is already running (pid {existing.pid}, {existing.url})")
    paths.ensure()
    cmd = [sys.executable, "-m", "aigw", "serve"]
    if config_path is not None:
        cmd += ["--config", str(config_path)]
    if host is not None:
        cmd += ["--host", host]
    if port is not None:
        cmd += ["--port", str(port)]
    log_offset = paths.log_file.stat().st_size if paths.log_file.exists() else 0
    with open(paths.log_file, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise DaemonError(_startup_failure(paths.log_file, log_offset, code))
        info = PidFile(paths.pid_file).read()
        if info is not None and info.pid == proc.pid and _health_ok(info.url):
            return info
        time.sleep(0.05)
    proc.terminate()
    raise DaemonError(f"aigw did not answer within {timeout_s:g} s; see {paths.log_file}")


def _startup_failure(log_file: Path, offset: int, code: int) -> str:
    try:
        with open(log_file, "rb") as f:
            f.seek(offset)
            new = f.read().decode("utf-8", errors="replace").strip().splitlines()
    except OSError:
        new = []
    reason = next((ln for ln in reversed(new) if ln.startswith("aigw:")), new[-1] if new else "")
    reason = reason.removeprefix("aigw: ").removeprefix("error: ")
    return f"aigw exited during startup (code {code}): {reason or 'see ' + str(log_file)}"


def stop(paths: Paths, *, timeout_s: float = 30.0) -> RunInfo | None:
    """SIGTERM the daemon and wait; None when none was running."""
    info = running_daemon(paths)
    if info is None:
        return None
    try:
        os.kill(info.pid, signal.SIGTERM)
    except ProcessLookupError:
        return info
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(info.pid):
            paths.pid_file.unlink(missing_ok=True)
            return info
        time.sleep(0.05)
    raise DaemonError(f"aigw (pid {info.pid}) did not stop within {timeout_s:g} s")
