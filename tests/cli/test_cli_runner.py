"""CLI through Typer's runner: config commands, errors as one line, no daemon needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigw.cli import app
from tests.fixtures.daemon import base_env, fake_config, write_config

runner = CliRunner()


def run(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    environ = base_env(home) | (env or {})
    result = runner.invoke(app, list(args), env=environ)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_help_lists_commands(home: Path) -> None:
    code, out, _ = run(home, "--help")
    assert code == 0
    for cmd in ("serve", "start", "stop", "status", "logs", "chat", "models", "config"):
        assert cmd in out


def test_config_show_masks_secrets(home: Path) -> None:
    write_config(home, fake_config("http://127.0.0.1:9/v1", 8080))
    code, out, _ = run(home, "config", "show")
    assert code == 0
    assert "sk-test-secret" not in out
    assert 'api_key = "**********"' in out
    code, out, _ = run(home, "config", "show", "--json")
    assert code == 0 and "sk-test-secret" not in out and '"port": 8080' in out


def test_config_show_from_environment_without_file(home: Path) -> None:
    code, out, _ = run(home, "config", "show", env={"OPENAI_API_KEY": "sk-env-secret"})
    assert code == 0
    assert "[providers.openai]" in out and 'api_key_env = "OPENAI_API_KEY"' in out
    assert "sk-env-secret" not in out


def test_config_path(home: Path) -> None:
    code, out, _ = run(home, "config", "path")
    assert code == 0 and out.strip() == str(home / "config.toml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[server]\nprot = 8080\n", "server.prot: unknown key"),
        ("[server]\nport = 'eighty'\n", "server.port: Input should be a valid integer"),
        ("[server]\nport = 99999\n", "server.port: Input should be less than or equal to 65535"),
        ("[providers.x]\nbase_url = 'http://h'\n", "providers.x: unknown provider type 'x' (set 'type')"),
        ("[providers.x]\ntype = 'nope'\n", "providers.x.type: unknown provider type 'nope'"),
        (
            "[providers.openai]\napi_key_env = 3\n",
            "providers.openai.api_key_env: Input should be a valid string",
        ),
        ("[models.smart]\ntargets = [{provider = 'ghost', model = 'm'}]\n", "unknown provider 'ghost'"),
        ("[models.smart]\ntargets = []\n", "models.smart.targets"),
        ("[server\nport = 1\n", "invalid TOML"),
        ("bogus = 1\n", "bogus: unknown key"),
    ],
)
def test_config_errors_are_one_line_naming_key_and_file(home: Path, text: str, expected: str) -> None:
    cfg = write_config(home, text)
    code, out, err = run(home, "config", "show")
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"aigw: {cfg}: ")
    assert expected in lines[0]
    assert "Traceback" not in err


def test_status_when_not_running(home: Path) -> None:
    code, out, _ = run(home, "status")
    assert code == 1 and "not running" in out
    code, out, _ = run(home, "status", "--json")
    assert code == 1 and '"running": false' in out


def test_stop_when_not_running(home: Path) -> None:
    code, out, _ = run(home, "stop")
    assert code == 0 and "not running" in out


def test_models_list_without_daemon_shows_the_catalog(home: Path) -> None:
    code, out, _ = run(home, "models", "list", env={"AIGW_URL": "http://127.0.0.1:1"})
    assert code == 0
    assert out.startswith("the daemon is not running") and "qwen2.5-0.5b" in out


def test_models_ps_without_daemon_is_one_line(home: Path) -> None:
    code, _, err = run(home, "models", "ps", env={"AIGW_URL": "http://127.0.0.1:1"})
    assert code == 1
    assert err.strip() == "aigw: aigw is not running at http://127.0.0.1:1 (start it with `aigw start`)"


def test_chat_against_non_default_url_does_not_autostart(home: Path) -> None:
    code, _, err = run(home, "chat", "hi", "-m", "x", env={"AIGW_URL": "http://127.0.0.1:1"})
    assert code == 1 and "not running" in err and len(err.strip().splitlines()) == 1
    assert not (home / "aigw.pid").exists()


def test_logs_without_log_file(home: Path) -> None:
    code, _, err = run(home, "logs")
    assert code == 0 and "no log yet" in err
