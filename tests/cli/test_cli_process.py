"""The real `aigw` executable as a subprocess: start / status / chat / models / stop."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.fixtures.daemon import base_env, fake_config, free_port, write_config
from tests.fixtures.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.process

AIGW = shutil.which("aigw", path=os.path.dirname(sys.executable)) or "aigw"


def aigw(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AIGW, *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        cwd=cwd,
    )


@pytest.fixture
def started(upstream: FakeOpenAIServer, home: Path) -> tuple[dict[str, str], int]:
    port = free_port()
    write_config(home, fake_config(upstream.base_url, port))
    env = base_env(home) | {"AIGW_URL": f"http://127.0.0.1:{port}"}
    yield env, port
    aigw(env, "stop")


def test_start_status_chat_stop(started: tuple[dict[str, str], int], home: Path) -> None:
    env, port = started
    r = aigw(env, "start")
    assert r.returncode == 0, r.stderr
    assert f"http://127.0.0.1:{port}" in r.stdout
    pid = json.loads((home / "aigw.pid").read_text())["pid"]

    again = aigw(env, "start")
    assert again.returncode == 1 and "already running" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

    st = aigw(env, "status", "--json")
    assert st.returncode == 0
    data = json.loads(st.stdout)
    assert data["running"] is True and data["pid"] == pid
    assert data["providers"]["fake"]["reachable"] is True
    assert "sk-test-secret" not in st.stdout
    human = aigw(env, "status")
    assert "fake (openai): reachable" in human.stdout and "alias smart" in human.stdout

    chat = aigw(env, "chat", "-m", "smart", "hello there")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout == "echo: hello there\n"
    assert "fake/gpt-test" in chat.stderr

    sys_chat = aigw(env, "chat", "-m", "gpt-test", "-s", "be brief", "again")
    assert sys_chat.stdout == "echo: again\n"

    models = aigw(env, "models", "list", "--json")
    assert "smart" in {m["id"] for m in json.loads(models.stdout)["served"]}
    assert "fake/gpt-test" in aigw(env, "models", "list").stdout

    bad = aigw(env, "chat", "-m", "no-such-model", "hi")
    assert bad.returncode == 1
    assert bad.stderr.startswith("aigw: The model 'no-such-model' does not exist")
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1

    logs = aigw(env, "logs", "-n", "5")
    assert logs.returncode == 0 and "aigw" in logs.stdout

    stop = aigw(env, "stop")
    assert stop.returncode == 0 and f"pid {pid}" in stop.stdout
    assert not (home / "aigw.pid").exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    assert aigw(env, "status").returncode == 1
    log_text = (home / "logs" / "aigw.log").read_text()
    assert "Traceback" not in log_text and "sk-test-secret" not in log_text


def test_start_ignores_an_aigw_folder_in_the_working_directory(
    started: tuple[dict[str, str], int], tmp_path: Path
) -> None:
    env, port = started
    trap = tmp_path / "work"
    (trap / "aigw").mkdir(parents=True)
    marker = tmp_path / "ran"
    (trap / "aigw" / "__init__.py").write_text("")
    (trap / "aigw" / "__main__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    r = aigw(env, "start", cwd=trap)
    assert r.returncode == 0, r.stderr
    assert not marker.exists()
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200


def test_interactive_chat_keeps_the_conversation(started: tuple[dict[str, str], int]) -> None:
    env, _ = started
    assert aigw(env, "start").returncode == 0
    r = aigw(env, "chat", "-m", "gpt-test", stdin="first\n/reset\nsecond\n/exit\n")
    assert r.returncode == 0, r.stderr
    assert "echo: first" in r.stdout and "echo: second" in r.stdout


def test_start_on_busy_port_is_one_clear_line(upstream: FakeOpenAIServer, home: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        write_config(home, fake_config(upstream.base_url, port))
        r = aigw(base_env(home), "start")
    assert r.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_bad_config_fails_start_in_the_terminal(home: Path) -> None:
    write_config(home, "[server]\nport = 'x'\n")
    r = aigw(base_env(home), "start")
    assert r.returncode == 1
    assert "server.port" in r.stderr and "config.toml" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_chat_autostarts_the_default_daemon_only_for_the_default_url(home: Path) -> None:
    # Starting on 8080 is only safe when nothing listens there; skip rather than fight a real daemon.
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8080)) == 0:
            pytest.skip("port 8080 is in use on this machine")
    write_config(home, "[server]\nport = 8080\n")
    env = base_env(home)
    env.pop("AIGW_URL")
    try:
        r = aigw(env, "chat", "-m", "anything", "hi")
        assert "started aigw" in r.stderr
        assert r.returncode == 1  # no provider is configured, so nothing can answer
        assert "does not exist: no providers are configured" in r.stderr
        assert (home / "aigw.pid").exists()
    finally:
        aigw(env, "stop")


def test_cli_import_stays_light(home: Path) -> None:
    heavy = "{'httpx', 'fastapi', 'aiohttp', 'pydantic', 'uvicorn'}"
    code = (
        "import sys; from aigw.cli import app; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, env=base_env(home)
    )
    assert r.stdout.strip() == "[]", r.stdout


def test_stale_pidfile_naming_a_live_stranger_is_ignored(
    started: tuple[dict[str, str], int], home: Path
) -> None:
    env, _ = started
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        (home / "aigw.pid").write_text(json.dumps({"pid": stranger.pid, "url": "http://127.0.0.1:1"}))
        assert aigw(env, "status").returncode == 1
        assert "not running" in aigw(env, "stop").stdout
        assert stranger.poll() is None  # not signalled
        assert aigw(env, "start").returncode == 0
    finally:
        stranger.kill()
        stranger.wait()


def test_concurrent_starts_leave_exactly_one_daemon(started: tuple[dict[str, str], int]) -> None:
    env, port = started
    procs = [
        subprocess.Popen([AIGW, "start"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(60), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, _, err in results if code == 1)
    assert "already running" in loser
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200


def test_chat_autostarts_on_the_configured_port(upstream: FakeOpenAIServer, home: Path) -> None:
    port = free_port()
    write_config(home, fake_config(upstream.base_url, port) + '\n[chat]\ndefault_model = "smart"\n')
    env = base_env(home)
    env.pop("AIGW_URL")
    try:
        r = aigw(env, "chat", "hello")
        assert r.returncode == 0, r.stderr
        assert "started aigw" in r.stderr and f":{port}" in r.stderr
        assert r.stdout == "echo: hello\n"
        again = aigw(env, "chat", "again")  # finds the running daemon; starts nothing
        assert again.returncode == 0 and "started" not in again.stderr
        assert "smart" in aigw(env, "models", "list").stdout
    finally:
        aigw(env, "stop")


def test_what_aigw_writes_is_private_and_a_readable_key_is_warned_about(
    started: tuple[dict[str, str], int], home: Path
) -> None:
    env, port = started
    (home / "config.toml").chmod(0o644)  # it holds an inline api_key
    assert aigw(env, "start").returncode == 0
    body = {"model": "gpt-test", "temperature": 0, "messages": [{"role": "user", "content": "cache me"}]}
    for _ in range(2):
        assert (
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=10).status_code
            == 200
        )
    assert aigw(env, "stop").returncode == 0
    log = (home / "logs" / "aigw.log").read_text()
    assert "holds the api_key of fake and other users may read it (mode 644)" in log
    exposed = [
        f"{p.relative_to(home)} {stat.S_IMODE(p.stat().st_mode):o}"
        for p in home.rglob("*")
        if p.name != "config.toml" and stat.S_IMODE(p.stat().st_mode) & 0o077
    ]
    assert exposed == []
    assert any((home / "cache").rglob("cache.db")) and (home / "logs" / "aigw.log").exists()
    doctor = aigw(env, "doctor")
    assert "other users may read it" in doctor.stdout and "chmod 600" in doctor.stdout


def test_a_missing_config_named_by_the_user_is_an_error(home: Path) -> None:
    env = base_env(home) | {"AIGW_CONFIG": str(home / "nope.toml")}
    for args in (("config", "show"), ("doctor",), ("start",)):
        r = aigw(env, *args)
        assert r.returncode == 1, (args, r.stdout)
        assert "nope.toml: no such file" in r.stdout + r.stderr and "Traceback" not in r.stderr
