"""The two service managers: launchd (a LaunchAgent) on macOS, systemd (a user unit) on Linux."""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path

from aigw.paths import Paths
from aigw.service.manager import (
    NOT_FOUND,
    DaemonControl,
    Host,
    Runner,
    ServiceError,
    ServiceManager,
)
from aigw.service.render import LABEL, UNIT_NAME, ServiceSpec, render_plist, render_unit

BOOTOUT_WAIT_S = 10.0


class Launchd(ServiceManager):
    platform = "macos"
    tool = "launchctl"

    @property
    def file(self) -> Path:
        return self.host.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"

    @property
    def domain(self) -> str:
        return f"gui/{self.host.uid}"

    @property
    def target(self) -> str:
        return f"{self.domain}/{LABEL}"

    def render(self, spec: ServiceSpec) -> bytes:
        return render_plist(spec)

    def plan(self) -> list[str]:
        return [
            f"launchctl bootout {self.target}    # only when already loaded",
            f"launchctl enable {self.target}",
            shlex.join(["launchctl", "bootstrap", self.domain, str(self.file)]),
        ]

    def by_hand(self) -> str:
        load = shlex.join(["launchctl", "bootstrap", self.domain, str(self.file)])
        return f"{self.file} is written: load it with `{load}`, or run `aigw start`"

    def loaded(self) -> bool:
        code, _ = self.ask("print", self.target)
        if code == NOT_FOUND:
            self.call("print", self.target)  # raises: launchctl not found
        return code == 0

    def bootout(self, then: str = "") -> None:
        """Unload the job (launchd stops its process), and wait until launchd has let go of it:
        a bootstrap right after a bootout can otherwise fail."""
        self.call("bootout", self.target, then=then)
        waited = 0.0
        while self.loaded() and waited < BOOTOUT_WAIT_S:
            self.sleep(0.25)
            waited += 0.25

    def prepare(self) -> None:
        if self.loaded():
            self.bootout()

    def start(self) -> None:
        self.call("enable", self.target)  # undoes an earlier `launchctl disable`
        self.call("bootstrap", self.domain, str(self.file))

    def remove(self) -> bool:
        code, _ = self.ask("print", self.target)
        if code == NOT_FOUND and self.file.exists():
            self.call("print", self.target)  # raises: launchctl not found
        if code != 0 and not self.file.exists():
            return False
        if code == 0:
            self.bootout(then=f"{self.file} is left in place")
        self.file.unlink(missing_ok=True)
        return True

    def query(self) -> tuple[bool | None, bool | None]:
        code, out = self.ask("print", self.target)
        if code == NOT_FOUND:
            return None, None
        if code != 0:
            return False, False
        return True, re.search(r"^\s*state = running\s*$", out, re.MULTILINE) is not None


class Systemd(ServiceManager):
    platform = "linux"
    tool = "systemctl"

    @property
    def file(self) -> Path:
        xdg = self.host.environ.get("XDG_CONFIG_HOME", "")
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else self.host.home / ".config"
        return base / "systemd" / "user" / UNIT_NAME

    def render(self, spec: ServiceSpec) -> bytes:
        return render_unit(spec).encode()

    def plan(self) -> list[str]:
        return [
            "systemctl --user daemon-reload",
            f"systemctl --user reset-failed {UNIT_NAME}    # its status is not checked",
            f"systemctl --user enable --now {UNIT_NAME}",
        ]

    def by_hand(self) -> str:
        return (
            f"{self.file} is written: run `aigw start` now, or `systemctl --user enable --now {UNIT_NAME}`"
            " in a session with a systemd user manager"
        )

    def prepare(self) -> None:
        self.call("--user", "daemon-reload")

    def start(self) -> None:
        # After StartLimitBurst failed starts systemd refuses to start the unit until this runs;
        # it fails harmlessly when there is nothing to reset.
        self.ask("--user", "reset-failed", UNIT_NAME)
        self.call("--user", "enable", "--now", UNIT_NAME)

    def remove(self) -> bool:
        if not self.file.exists():
            return False
        kept = f"{self.file} is left in place (delete it by hand if no systemd user manager runs here)"
        self.call("--user", "disable", "--now", UNIT_NAME, then=kept)
        self.file.unlink()
        self.call("--user", "daemon-reload", then=f"{self.file} is removed")
        return True

    def query(self) -> tuple[bool | None, bool | None]:
        enabled, _ = self.ask("--user", "is-enabled", UNIT_NAME)
        active, _ = self.ask("--user", "is-active", UNIT_NAME)
        if NOT_FOUND in (enabled, active):
            return None, None
        return enabled == 0, active == 0


def service_manager(
    host: Host,
    paths: Paths,
    run: Runner,
    daemon: DaemonControl,
    sleep: Callable[[float], None] = time.sleep,
) -> ServiceManager:
    """The service of this platform; a ServiceError elsewhere."""
    if host.system == "darwin":
        return Launchd(host, paths, run, daemon, sleep)
    if host.system.startswith("linux"):
        return Systemd(host, paths, run, daemon, sleep)
    raise ServiceError(
        f"`aigw service` supports macOS (launchd) and Linux (systemd), not {host.system}; "
        "run `aigw start` at login instead"
    )
