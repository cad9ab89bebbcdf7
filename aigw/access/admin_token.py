"""The admin token: created at the daemon's first start in AIGW_HOME, mode 0600, read by the
CLI and the TUI. It guards /admin/*."""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger("aigw.security")


def ensure_admin_token(path: Path) -> str:
    """The token in `path`, created (atomically, 0600) when missing. A file others can read is
    tightened to 0600 with a warning; an empty or unreadable one is replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    token = read_admin_token(path)
    if token is not None:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("%s was readable by others (mode %o); set to 0600", path, mode)
            path.chmod(0o600)
        return token
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, token.encode())
        os.fsync(fd)
    except OSError as e:  # a full disk, say: no half-made file is left behind
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OSError(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    try:
        if path.exists():
            os.replace(tmp, path)  # empty or unreadable: replace it
        else:
            os.link(tmp, path)  # never replaces a token another process just created
    except FileExistsError:
        token = read_admin_token(path) or token
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return token


def read_admin_token(path: Path) -> str | None:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token or None


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
