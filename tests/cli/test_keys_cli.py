"""aigw keys / aigw usage through Typer's runner, on AIGW_HOME's database (no daemon needed)."""

from __future__ import annotations

import http.server
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aigw.cli import app
from aigw.daemon.process import PidFile, RunInfo, RunLock
from aigw.paths import Paths
from aigw.usage.recorder import UsageRecorder, UsageRow
from tests.fixtures.daemon import base_env

runner = CliRunner()
KEY = re.compile(r"aigw-[A-Za-z0-9_-]{40}")


def run(home: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=base_env(home))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def db_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.glob("aigw.db*"))


def test_create_prints_the_key_once(home: Path) -> None:
    code, out, err = run(
        home, "keys", "create", "ci", "--rpm", "60", "--budget-usd", "2.5", "--models", "a, b"
    )
    assert code == 0, err
    plain = out.strip()
    assert KEY.fullmatch(plain), out
    assert "only time it is shown" in err and plain not in err
    code, out, _ = run(home, "keys", "list", "--json")
    assert code == 0 and plain not in out
    (row,) = json.loads(out)
    assert row["name"] == "ci" and row["prefix"] == plain[:12] and "key" not in row
    assert (row["rpm"], row["tpm"], row["budget_usd"], row["models"]) == (60, 0, 2.5, ["a", "b"])
    assert row["revoked_at"] is None and row["spent_usd"] == 0.0
    code, out, _ = run(home, "keys", "list")
    assert code == 0 and plain not in out and "ci" in out and "$2.50" in out
    assert plain.encode() not in db_bytes(home)
    assert (Paths.from_env({"AIGW_HOME": str(home)}).database.stat().st_mode & 0o777) == 0o600


def test_create_json_carries_the_key(home: Path) -> None:
    code, out, _ = run(home, "keys", "create", "bot", "--json")
    assert code == 0
    data = json.loads(out)
    assert KEY.fullmatch(data["key"]) and data["name"] == "bot" and data["models"] is None


def test_revoke_and_list(home: Path) -> None:
    run(home, "keys", "create", "a")
    run(home, "keys", "create", "b")
    code, out, _ = run(home, "keys", "revoke", "a")
    assert code == 0 and "revoked key 'a'" in out
    code, out, _ = run(home, "keys", "revoke", "a")
    assert code == 0 and "already revoked" in out
    rows = {r["name"]: r for r in json.loads(run(home, "keys", "list", "--json")[1])}
    assert rows["a"]["revoked_at"] is not None and rows["b"]["revoked_at"] is None
    active = json.loads(run(home, "keys", "list", "--json", "--active")[1])
    assert [r["name"] for r in active] == ["b"]
    code, out, _ = run(home, "keys", "revoke", rows["b"]["id"])
    assert code == 0 and "revoked key 'b'" in out


def test_errors_are_one_line(home: Path) -> None:
    assert run(home, "keys", "create", "ci")[0] == 0
    code, out, err = run(home, "keys", "create", "ci")
    assert code == 1 and out == ""
    assert err == "aigw: a key named 'ci' already exists\n"
    code, _, err = run(home, "keys", "revoke", "ghost")
    assert code == 1 and err == "aigw: no key named 'ghost'\n"
    code, _, err = run(home, "keys", "create", "bad name")
    assert code == 1 and err.count("\n") == 1 and err.startswith("aigw: key name")
    code, _, err = run(home, "usage", "--since", "soon")
    assert code == 1 and err.count("\n") == 1 and "--since 'soon'" in err
    code, _, err = run(home, "usage", "--by", "week")
    assert code == 1 and err.count("\n") == 1 and "cannot group usage by 'week'" in err


def test_list_empty(home: Path) -> None:
    assert run(home, "keys", "list", "--json")[1].strip() == "[]"
    assert "no API keys yet" in run(home, "keys", "list")[1]


def test_usage_on_an_empty_database(home: Path) -> None:
    code, out, _ = run(home, "usage", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["rows"] == [] and data["total"]["requests"] == 0 and data["by"] == ["key", "model", "day"]
    code, out, _ = run(home, "usage", "--since", "7d")
    assert code == 0 and "no usage recorded since 7d" in out


def test_usage_on_a_filled_database(home: Path) -> None:
    plain = run(home, "keys", "create", "alice")[1].strip()
    key_id = json.loads(run(home, "keys", "list", "--json")[1])[0]["id"]
    db_path = Paths.from_env({"AIGW_HOME": str(home)}).database
    with UsageRecorder(db_path) as rec:
        for i in range(3):
            rec.record(
                UsageRow(
                    ts=1_700_000_000.0 + i,
                    status=200 if i else 500,
                    key_id=key_id,
                    provider="openai",
                    model="gpt-4o-mini",
                    prompt_tokens=100,
                    completion_tokens=50,
                    cost_usd=0.001,
                )
            )
        rec.record(UsageRow(ts=1_700_000_000.0, status=200, provider="local", model="tiny", cache_hit=True))
    code, out, _ = run(home, "usage", "--json", "--by", "key,model")
    assert code == 0
    data = json.loads(out)
    rows = {(r["key"], r["model"]): r for r in data["rows"]}
    assert set(rows) == {("alice", "openai/gpt-4o-mini"), (None, "local/tiny")}
    alice = rows["alice", "openai/gpt-4o-mini"]
    assert (alice["requests"], alice["errors"], alice["prompt_tokens"], alice["completion_tokens"]) == (
        3,
        1,
        300,
        150,
    )
    assert alice["cost_usd"] == pytest.approx(0.003)
    assert data["total"]["requests"] == 4 and data["total"]["cache_hits"] == 1
    code, out, _ = run(home, "usage", "--by", "key", "--by", "model")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["KEY", "MODEL", "REQUESTS"]
    assert any(line.startswith("alice") and "$0.0030" in line for line in lines)
    assert lines[-1].startswith("TOTAL")
    code, out, _ = run(home, "usage", "--json", "--since", "1d")
    assert code == 0 and json.loads(out)["rows"] == []  # all rows are from 2023
    assert plain not in out
    code, out, _ = run(home, "keys", "list", "--json")
    assert json.loads(out)[0]["spent_usd"] == pytest.approx(0.003)


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, Any]]
    status = 200

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        type(self).seen.append({"path": self.path, "auth": self.headers.get("authorization")})
        body = b'{"reloaded": true}' if self.status == 200 else b'{"error": {"message": "nope"}}'
        self.send_response(self.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def fake_daemon(home: Path) -> Iterator[type[_Recorder]]:
    """Looks like a daemon serving `home`: holds its run lock and answers at its pidfile's URL."""
    handler = type("Handler", (_Recorder,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    paths = Paths.from_env({"AIGW_HOME": str(home)})
    lock = RunLock(paths.lock_file)
    assert lock.acquire()
    PidFile(paths.pid_file).write(RunInfo(os.getpid(), f"http://127.0.0.1:{server.server_address[1]}"))
    paths.admin_token_file.write_text("admin-secret\n", encoding="utf-8")
    yield handler
    lock.release()
    server.shutdown()
    server.server_close()


def test_create_and_revoke_ask_a_running_daemon_to_reload(home: Path, fake_daemon: type[_Recorder]) -> None:
    assert run(home, "keys", "create", "ci")[0] == 0
    assert run(home, "keys", "revoke", "ci")[0] == 0
    assert fake_daemon.seen == [
        {"path": "/admin/keys/reload", "auth": "Bearer admin-secret"},
        {"path": "/admin/keys/reload", "auth": "Bearer admin-secret"},
    ]


def test_a_failing_reload_is_ignored(home: Path, fake_daemon: type[_Recorder]) -> None:
    fake_daemon.status = 500
    code, out, err = run(home, "keys", "create", "ci")
    assert code == 0 and KEY.fullmatch(out.strip()) and "nope" not in err
    assert len(fake_daemon.seen) == 1


def test_no_admin_token_no_reload(home: Path, fake_daemon: type[_Recorder]) -> None:
    Paths.from_env({"AIGW_HOME": str(home)}).admin_token_file.unlink()
    assert run(home, "keys", "create", "ci")[0] == 0
    assert fake_daemon.seen == []
