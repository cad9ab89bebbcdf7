"""A third-party provider type, installed as its own package (tests/fixtures/plugin, with an
`aigw.providers` entry point) and never edited into aigw: its keys validate, its secret is masked,
doctor runs its probe, chats go through it, and its prices apply."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.fixtures.daemon import DaemonProcess, base_env, free_port, write_config

pytest.importorskip("aigw_echo_plugin", reason="the test plugin is installed by scripts/test")
pytestmark = pytest.mark.process

AIGW = shutil.which("aigw", path=os.path.dirname(sys.executable)) or "aigw"
SECRET = "echo-s3cret-value-123"


def table(port: int, extra: str = "") -> str:
    return f"""
[server]
port = {port}

[providers.e]
type = "echo"
greeting = "hey"
token = "{SECRET}"
{extra}

[prices."e/echo-1"]
input = 1000.0
output = 1000.0
"""


def aigw(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = base_env(home)
    return subprocess.run([AIGW, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_its_keys_validate_and_its_secret_is_masked(home: Path) -> None:
    write_config(home, table(free_port()))
    shown = aigw(home, "config", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    e = json.loads(shown.stdout)["providers"]["e"]
    assert (e["type"], e["greeting"], e["shout"]) == ("echo", "hey", False)
    assert SECRET not in shown.stdout + shown.stderr
    write_config(home, table(free_port(), 'colour = "red"'))
    bad = aigw(home, "config", "show")
    assert bad.returncode == 1 and bad.stderr.strip().endswith("providers.e.colour: unknown key")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_doctor_runs_its_probe(home: Path) -> None:
    write_config(home, table(free_port()))
    out = aigw(home, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert checks["provider e"]["status"] == "OK"
    assert checks["provider e"]["detail"] == "echo: token looks right; answers with 'hey'"
    write_config(home, table(free_port()).replace(SECRET, "wrong-token"))
    checks = {c["name"]: c for c in json.loads(aigw(home, "doctor", "--json").stdout)["checks"]}
    assert checks["provider e"]["status"] == "FAIL" and "[providers.e]" in checks["provider e"]["fix"]


@pytest.fixture
def daemon(home: Path) -> Iterator[DaemonProcess]:
    port = free_port()
    write_config(home, table(port, "shout = true"))
    d = DaemonProcess(home, port).start()
    yield d
    assert d.terminate() == 0


def test_chat_goes_through_it(daemon: DaemonProcess) -> None:
    client = openai.OpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0)
    out = client.chat.completions.create(model="e/echo-1", messages=[{"role": "user", "content": "hello"}])
    assert out.choices[0].message.content == "HEY: HELLO"
    stream = client.chat.completions.create(
        model="echo-1", messages=[{"role": "user", "content": "a b c"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "HEY: A B C"
    models = {m.id: m for m in client.models.list()}
    assert "e/echo-1" in models
    detail = daemon.get("/health/detailed").json()["providers"]["e"]
    assert detail["type"] == "echo" and detail["models"] == ["echo-1"]
    assert SECRET not in daemon.get("/health/detailed").text


def test_its_requests_are_priced(daemon: DaemonProcess) -> None:
    client = openai.OpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0)
    client.chat.completions.create(model="e/echo-1", messages=[{"role": "user", "content": "x"}])
    assert daemon.terminate() == 0
    usage = aigw(daemon.home, "usage", "--by", "model", "--json")
    rows = {r["model"]: r for r in json.loads(usage.stdout)["rows"]}
    assert rows["e/echo-1"]["cost_usd"] == pytest.approx((3 + 2) * 1000.0 / 1e6)
    daemon.start()
