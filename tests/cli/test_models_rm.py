"""`aigw models rm` takes the name of a pulled model, never a path: nothing outside the models dir goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_cli_runner import run


@pytest.mark.parametrize("name", ["..", ".", "../models", "/ABS", "sub/dir", "..\\x", ".hidden"])
def test_rm_refuses_paths(home: Path, tmp_path: Path, name: str) -> None:
    models = home / "models"
    (models / "mlx-model").mkdir(parents=True)
    (models / "mlx-model" / "config.json").write_text("{}")
    (models / "tiny.gguf").write_bytes(b"GGUF")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("data")
    arg = str(victim) if name == "/ABS" else name
    code, _, err = run(home, "models", "rm", arg)
    assert code == 1
    assert err.startswith("aigw: ") and "is not a model name" in err and len(err.strip().splitlines()) == 1
    assert (victim / "keep.txt").read_text() == "data"
    assert (models / "tiny.gguf").exists() and (models / "mlx-model" / "config.json").exists()
    assert home.exists()


def test_rm_removes_a_named_model_only(home: Path) -> None:
    models = home / "models"
    models.mkdir(parents=True)
    (models / "tiny.gguf").write_bytes(b"GGUF")
    (models / "other.gguf").write_bytes(b"GGUF")
    code, out, _ = run(home, "models", "rm", "tiny")
    assert code == 0 and "removed tiny" in out
    assert not (models / "tiny.gguf").exists() and (models / "other.gguf").exists()


def test_pull_refuses_a_repo_whose_name_is_a_path(home: Path) -> None:
    code, _, err = run(home, "models", "pull", "someone/..")
    assert code == 1 and "is not a model name" in err
