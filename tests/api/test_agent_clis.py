"""The real agent CLIs from npm (`@anthropic-ai/claude-code` and `@openai/codex`, installed into
tests/node by scripts/test) through a real daemon that requires keys: `claude -p "hello"` (the
Messages API) and `codex exec "hello"` (the Responses API) print the upstream's answer, on the
caller's key. Offline: the agent's only server is aigw, whose only upstream is the fake on
loopback. Skipped only where node is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aigw.access.keys import KeyStore
from aigw.state.db import open_db
from tests.fixtures.daemon import DaemonProcess, free_port, write_config
from tests.fixtures.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.process

NODE_BIN = Path(__file__).parent.parent / "node" / "node_modules" / ".bin"


@pytest.fixture(scope="module")
def agent_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """AIGW_HOME with one key; the key's id and plain text."""
    home = tmp_path_factory.mktemp("aigw-agents")
    key, plain = KeyStore(open_db(home / "aigw.db")).create("claude-code")
    return home, key.id, plain


@pytest.fixture(scope="module")
def gateway(upstream: FakeOpenAIServer, agent_home: tuple[Path, str, str]) -> Iterator[DaemonProcess]:
    home, _, _ = agent_home
    port = free_port()
    write_config(
        home,
        f"""
[server]
port = {port}
require_keys = true

[usage]
flush_interval_s = 0.1

[providers.fake]
type = "openai"
base_url = "{upstream.base_url}"
api_key = "sk-test"
discover_models = false
models = ["gpt-test"]

[models.local-small]
targets = [{{ provider = "fake", model = "gpt-test" }}]

[model_patterns]
"claude-*" = "local-small"
""",
    )
    (home / "config.toml").chmod(0o600)
    d = DaemonProcess(home, port).start()
    yield d
    assert d.terminate() == 0, d.log()


def agent_env(tmp: Path, **extra: str) -> dict[str, str]:
    user_home = tmp / "user"
    user_home.mkdir(exist_ok=True)
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        HOME=str(user_home),
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        **extra,
    )
    return env


def agent(name: str) -> Path:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    exe = NODE_BIN / name
    assert exe.exists(), f"{name} is not installed: run bash scripts/test (npm ci --prefix tests/node)"
    return exe


def run_agent(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """One non-interactive run of an agent CLI, which must succeed."""
    done = subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def served(gateway: DaemonProcess, key_id: str, alias: str | None) -> bool:
    """Whether a 200 row of `key_id` served by gpt-test (under `alias`) reaches the usage log."""
    db = open_db(gateway.home / "aigw.db")
    for _ in range(50):
        rows = db.query("SELECT alias, model FROM usage WHERE key_id = ? AND status = 200", [key_id])
        if any(r["model"] == "gpt-test" and r["alias"] == alias for r in rows):
            return True
        time.sleep(0.1)
    return False


def test_codex_prints_the_upstreams_answer(
    gateway: DaemonProcess, agent_home: tuple[Path, str, str], tmp_path: Path
) -> None:
    codex = agent("codex")
    _, key_id, plain = agent_home
    codex_home = tmp_path / "codex"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(
        'model = "gpt-test"\nmodel_provider = "aigw"\n\n[model_providers.aigw]\nname = "aigw"\n'
        f'base_url = "{gateway.url}/v1"\nenv_key = "AIGW_TEST_KEY"\nwire_api = "responses"\n'
    )
    env = agent_env(tmp_path, CODEX_HOME=str(codex_home), AIGW_TEST_KEY=plain)
    done = run_agent([str(codex), "exec", "--skip-git-repo-check", "hello from codex"], env, tmp_path)
    assert "echo: hello from codex" in done.stdout
    assert served(gateway, key_id, None)


def test_claude_code_prints_the_upstreams_answer(
    gateway: DaemonProcess, agent_home: tuple[Path, str, str], tmp_path: Path
) -> None:
    claude = agent("claude")
    _, key_id, plain = agent_home
    env = agent_env(tmp_path, ANTHROPIC_BASE_URL=gateway.url, ANTHROPIC_API_KEY=plain)
    done = run_agent([str(claude), "-p", "hello from the test"], env, tmp_path)
    assert "echo:" in done.stdout and "hello from the test" in done.stdout
    assert served(gateway, key_id, "local-small")
