"""What the benchmarks share: free ports, waiting for a daemon, its admin token."""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def wait_healthy(port: int, timeout: float = 60.0) -> None:
    """Until aigw answers /health (it binds its port before its admin token and services exist)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"aigw on port {port} did not become healthy")


def admin_headers(home: Path) -> dict[str, str]:
    """The admin token's header for the daemon of AIGW_HOME `home` (for /admin/*)."""
    token = (home / "admin_token").read_text(encoding="utf-8").strip()
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
