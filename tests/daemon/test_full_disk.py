"""`aigw serve` on a full disk: one line, exit 1, and no temporary files left behind. Needs a
small tmpfs (root and mount permission); skipped where it cannot be made."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.daemon import base_env

pytestmark = pytest.mark.process

AIGW = shutil.which("aigw", path=os.path.dirname(sys.executable)) or "aigw"


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if made.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        (mount / "home").mkdir()
        with open(mount / "filler", "wb", buffering=0) as f, pytest.raises(OSError):
            while True:
                f.write(b"\0" * 4096)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_serve_on_a_full_disk_is_one_line(full_disk: Path) -> None:
    home = full_disk / "home"
    env = base_env(home)
    r = subprocess.run(
        [AIGW, "serve", "--port", "0"], check=False, env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1
    assert r.stderr.startswith("aigw: ") and "No space left on device" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    leftovers = [
        p.name for p in home.rglob("*") if p.is_file() and (".tmp" in p.name or p.name.startswith("."))
    ]
    assert leftovers == []
