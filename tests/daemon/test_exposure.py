"""aigw refuses to listen beyond loopback unless keys are required and one exists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aigw.access.keys import KeyStore
from aigw.config import Config
from aigw.daemon.serve import ServeError, check_exposure
from aigw.paths import Paths
from aigw.state.db import open_db
from tests.fixtures.daemon import base_env, free_port, write_config


def serve(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aigw", "serve", *args],
        env=base_env(home),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_non_loopback_address_without_keys_is_refused_in_one_line(tmp_path: Path) -> None:
    write_config(tmp_path, f"[server]\nport = {free_port()}\n")
    out = serve(tmp_path, "--host", "0.0.0.0")
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "require_keys = true" in out.stderr
    assert "Traceback" not in out.stderr


def test_required_keys_but_none_created_is_refused(tmp_path: Path) -> None:
    write_config(tmp_path, f"[server]\nport = {free_port()}\nrequire_keys = true\n")
    out = serve(tmp_path, "--host", "0.0.0.0")
    assert out.returncode == 1 and "aigw keys create" in out.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_exposure_is_allowed_once_keys_are_required_and_one_exists(tmp_path: Path, host: str) -> None:
    paths = Paths.from_env({"AIGW_HOME": str(tmp_path)})
    cfg = Config.model_validate({"server": {"host": host, "require_keys": True}})
    with pytest.raises(ServeError):
        check_exposure(cfg, paths)
    KeyStore(open_db(paths.database)).create("laptop")
    check_exposure(cfg, paths)  # no error
    loose = Config.model_validate({"server": {"host": host}})
    with pytest.raises(ServeError):
        check_exposure(loose, paths)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_nothing(tmp_path: Path, host: str) -> None:
    paths = Paths.from_env({"AIGW_HOME": str(tmp_path)})
    check_exposure(Config.model_validate({"server": {"host": host}}), paths)
