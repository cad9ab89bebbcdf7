"""aigw as a login service: a launchd LaunchAgent on macOS, a systemd user unit on Linux.

`render` makes the files from plain inputs; `manager` writes them and drives launchctl or
systemctl through an injected command runner.
"""

from aigw.service.manager import (
    DaemonControl,
    Host,
    InstallResult,
    Runner,
    ServiceError,
    ServiceManager,
    ServiceStatus,
    run_command,
)
from aigw.service.platforms import Launchd, Systemd, service_manager

__all__ = [
    "DaemonControl",
    "Host",
    "InstallResult",
    "Launchd",
    "Runner",
    "ServiceError",
    "ServiceManager",
    "ServiceStatus",
    "Systemd",
    "run_command",
    "service_manager",
]
