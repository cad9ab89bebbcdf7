"""The background daemon's process management: the run lock, pidfile, start, stop, status.

Whether aigw runs is decided by a lock, not by a pid: the serving process holds an exclusive
`flock` on AIGW_HOME/aigw.lock for its whole life, and the OS releases it when the process ends
(even by kill -9). So a stale pidfile or a reused pid can never make aigw signal a stranger, and
two daemons can never share one AIGW_HOME. The pidfile only says where the holder listens.
"""

from __future__ import annotations

import fcntl
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
from aigw.state.files import write_atomic

STOP_MARGIN_S = 15.0


class DaemonError(AigwError):
    """Starting or stopping the background daemon failed."""


class AlreadyRunning(DaemonError):
    def __init__(self, info: RunInfo) -> None:
        super().__init__(
            f"a daemon is already running for this AIGW_HOME (pid {info.pid}, {info.url}); "
            "stop it with `aigw stop`"
        )
        self.info = info


@dataclass(frozen=True, slots=True)
class RunInfo:
    pid: int
    url: str
    started_at: float = 0.0
    grace_s: float = 10.0


class RunLock:
    """The exclusive lock a serving daemon holds for its lifetime."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lock_held(path: Path) -> bool:
    """True while some process holds the run lock (a running daemon)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class PidFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> RunInfo | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return RunInfo(
                int(data["pid"]),
                str(data["url"]),
                float(data.get("started_at", 0.0)),
                float(data.get("grace_s", 10.0)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, info: RunInfo) -> None:
        info = RunInfo(info.pid, info.url, info.started_at or time.time(), info.grace_s)
        write_atomic(self.path, json.dumps(asdict(info)).encode(), 0o644)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def running_daemon(paths: Paths) -> RunInfo | None:
    """The running daemon's pid and URL, or None when none holds the run lock."""
    if not lock_held(paths.lock_file):
        return None
    return PidFile(paths.pid_file).read()


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
    """Launch `aigw serve` detached and wait until it answers. Raises AlreadyRunning if one runs."""
    existing = running_daemon(paths)
    if existing is not None:
        raise AlreadyRunning(existing)
    paths.ensure()
    # -P: the working directory is not put first on sys.path, so a folder named aigw there cannot
    # stand in for the installed package.
    cmd = [sys.executable, "-P", "-m", "aigw", "serve"]
    if config_path is not None:
        cmd += ["--config", str(config_path)]
    if host is not None:
        cmd += ["--host", host]
    if port is not None:
        cmd += ["--port", str(port)]
    log_offset = paths.log_file.stat().st_size if paths.log_file.exists() else 0
    fd = os.open(paths.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)  # one made by an earlier version may be readable by others
    with open(fd, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            other = running_daemon(paths)
            if other is not None:  # another start won the race
                raise AlreadyRunning(other)
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
    reason = reason.removeprefix("aigw: ")
    return f"aigw exited during startup (code {code}): {reason or 'see ' + str(log_file)}"


def stop(paths: Paths) -> RunInfo | None:
    """SIGTERM the daemon and wait until it has let go of the run lock; None when none runs."""
    info = running_daemon(paths)
    if info is None:
        return None
    try:
        os.kill(info.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # it ended between the check and the signal
    except PermissionError:
        raise DaemonError(f"not allowed to stop aigw (pid {info.pid}): it belongs to another user") from None
    timeout_s = info.grace_s + STOP_MARGIN_S
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not lock_held(paths.lock_file):
            return info
        time.sleep(0.05)
    raise DaemonError(f"aigw (pid {info.pid}) did not stop within {timeout_s:g} s")
