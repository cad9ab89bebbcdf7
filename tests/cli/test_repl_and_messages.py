"""The REPL's commands, the start refusal's wording, and `aigw config path` without a config."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aigw.cli import app
from aigw.cli.chat import REPL_COMMANDS, _repl
from aigw.daemon.process import AlreadyRunning, RunInfo
from tests.fixtures.daemon import base_env

runner = CliRunner()


class FakeClient:
    def __init__(self) -> None:
        self.asked: list[list[dict[str, Any]]] = []

    def chat_stream(self, messages: list[dict[str, Any]], **_: Any) -> Iterator[str]:
        self.asked.append(list(messages))
        yield "ok"


def _type(monkeypatch: pytest.MonkeyPatch, lines: list[str]) -> None:
    typed = iter(lines)

    def fake_input(prompt: str = "") -> str:
        try:
            return next(typed)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr(builtins, "input", fake_input)


def test_repl_help_lists_the_commands_and_is_not_sent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIGW_HOME", str(tmp_path))
    client = FakeClient()
    _type(monkeypatch, ["/help", "/nosuch", "hello", "/exit"])
    _repl(client, "m", None)  # type: ignore[arg-type]
    err = capsys.readouterr().err
    for command, _ in REPL_COMMANDS:
        assert command in err
    assert {"/help", "/reset", "/exit"} <= {c for c, _ in REPL_COMMANDS}
    assert "unknown command /nosuch" in err
    assert [m[-1]["content"] for m in client.asked] == ["hello"]  # only the real message went out


def test_already_running_has_one_aigw_prefix() -> None:
    line = f"aigw: {AlreadyRunning(RunInfo(pid=42, url='http://127.0.0.1:8080')).message}"
    assert not line.startswith("aigw: aigw") and "already running" in line and "aigw stop" in line


def test_config_path_tells_how_to_create_a_missing_config(home: Path) -> None:
    result = runner.invoke(app, ["config", "path"], env=base_env(home))
    assert result.exit_code == 0
    assert result.stdout.strip() == str(home / "config.toml")
    assert "does not exist yet" in result.stderr and "aigw config show >" in result.stderr
    (home / "config.toml").write_text("[server]\nport = 8080\n")
    again = runner.invoke(app, ["config", "path"], env=base_env(home))
    assert again.exit_code == 0 and "does not exist" not in again.stderr
