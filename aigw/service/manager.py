"""Install, uninstall and query aigw as a login service: launchd on macOS, systemd on Linux.

Everything outside the process is injected: the command runner (`run(cmd) -> (status, output)`),
the home directory, the environment, the uid and the daemon's own start/stop functions, so tests
never touch the real launchd, systemd or ~. Decisions are made on exit statuses and on which tool
ran, never on the text a tool printed (that is only quoted back in error messages). A runner
reports a tool that is not installed with status 127, as a shell would.

A daemon already running for this AIGW_HOME (in a terminal, or from `aigw start`) is stopped
gracefully before the service starts: only one daemon can hold AIGW_HOME's run lock, and the
service's own would otherwise fail to start and be restarted in a loop (launchd) or given up on
(systemd), while the status said nothing useful.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aigw.daemon.process import RunInfo
from aigw.errors import AigwError
from aigw.paths import Paths
from aigw.service.render import RenderError, ServiceSpec, make_spec
from aigw.state.files import write_atomic

Runner = Callable[[Sequence[str]], tuple[int, str]]
NOT_FOUND = 127  # the shell's status for a command that does not exist


class ServiceError(AigwError):
    """Installing, removing or querying the login service failed."""


def run_command(cmd: Sequence[str]) -> tuple[int, str]:
    """The real runner: the command's exit status and its stdout and stderr together."""
    try:
        proc = subprocess.run(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=120,
            check=False,
        )
    except FileNotFoundError:
        return NOT_FOUND, f"{cmd[0]}: command not found"
    except PermissionError:
        return 126, f"{cmd[0]}: permission denied"
    except subprocess.TimeoutExpired:
        return 124, f"{cmd[0]}: no answer within 120 s"
    return proc.returncode, proc.stdout


@dataclass(frozen=True, slots=True)
class Host:
    """The machine and user the service is for."""

    system: str  # sys.platform
    home: Path
    environ: Mapping[str, str]
    uid: int
    python: str  # sys.executable
    cwd: Path  # relative AIGW_HOME / AIGW_CONFIG are taken from here


@dataclass(frozen=True, slots=True)
class DaemonControl:
    """The running daemon of this AIGW_HOME, if any, and a graceful stop (aigw.daemon's)."""

    running: Callable[[], RunInfo | None]
    stop: Callable[[], RunInfo | None]


@dataclass(frozen=True, slots=True)
class InstallResult:
    file: Path
    content: str
    commands: list[str]  # what install runs (conditional steps say so)
    log: Path
    updated: bool = False  # the file was there already
    stopped: RunInfo | None = None  # the daemon that was running (dry run: would be stopped)


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    platform: str
    file: Path
    installed: bool
    enabled: bool | None  # None: the service manager could not be asked
    active: bool | None
    log: Path

    def as_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "file": str(self.file),
            "installed": self.installed,
            "enabled": self.enabled,
            "active": self.active,
            "log": str(self.log),
        }


@dataclass(frozen=True)
class ServiceManager(ABC):
    """One platform's service: subclasses say which file and which commands."""

    host: Host
    paths: Paths
    run: Runner
    daemon: DaemonControl
    sleep: Callable[[float], None] = field(default=time.sleep)
    platform = "?"
    tool = "?"

    # -- what subclasses provide
    @property
    @abstractmethod
    def file(self) -> Path: ...

    @abstractmethod
    def render(self, spec: ServiceSpec) -> bytes: ...

    @abstractmethod
    def plan(self) -> list[str]: ...

    @abstractmethod
    def prepare(self) -> None:
        """Before any daemon is stopped: make sure the manager answers, unload an old copy."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def by_hand(self) -> str: ...

    @abstractmethod
    def remove(self) -> bool: ...

    @abstractmethod
    def query(self) -> tuple[bool | None, bool | None]: ...

    # -- shared
    def spec(self) -> ServiceSpec:
        try:
            return make_spec(self.host.python, self.host.environ, self.paths.log_dir, self.host.cwd)
        except RenderError as e:
            raise ServiceError(str(e)) from None

    def install(self, *, dry_run: bool = False) -> InstallResult:
        spec = self.spec()
        content = self.render(spec)
        result = InstallResult(self.file, content.decode(), self.plan(), spec.log_file)
        if dry_run:
            return replace(result, updated=self.file.exists(), stopped=self.daemon.running())
        updated = self.file.exists()
        try:
            spec.log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            _write(self.file, content)
        except OSError as e:
            raise ServiceError(f"cannot write {e.filename or self.file}: {e.strerror or e}") from None
        self.prepare()
        try:
            stopped = self.daemon.stop()
        except AigwError as e:
            raise ServiceError(f"{e.message}; {self.by_hand()}") from None
        try:
            self.start()
        except ServiceError as e:
            if stopped is not None:
                raise ServiceError(
                    f"{e.message} (the aigw that ran, pid {stopped.pid}, was stopped)"
                ) from None
            raise
        return replace(result, updated=updated, stopped=stopped)

    def uninstall(self) -> bool:
        """Stop and remove the service; False when it was not installed."""
        return self.remove()

    def status(self) -> ServiceStatus:
        enabled, active = self.query()
        log = self.spec().log_file
        return ServiceStatus(self.platform, self.file, self.file.exists(), enabled, active, log)

    # -- running commands
    def call(self, *args: str, then: str = "") -> tuple[int, str]:
        """Run a command that must succeed; its failure is one line saying what to do instead."""
        cmd = [self.tool, *args]
        code, out = self.run(cmd)
        if code == 0:
            return code, out
        if code == NOT_FOUND:
            what = f"{self.tool} not found"
        else:
            first = next((ln.strip() for ln in out.splitlines() if ln.strip()), "")
            what = f"`{shlex.join(cmd)}` failed (exit {code}{': ' + first if first else ''})"
        raise ServiceError(f"{what}; {then or self.by_hand()}")

    def ask(self, *args: str) -> tuple[int, str]:
        """Run a query whose status is the answer."""
        return self.run([self.tool, *args])


def _write(path: Path, content: bytes) -> None:
    """Atomically, mode 0644 (launchd refuses agents writable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, content, 0o644)
