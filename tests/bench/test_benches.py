"""Every benchmark still runs: each in its quick mode (tiny sizes, seconds), as a user would run it,
checked for exit 0 and its figures. Speed itself is never asserted here: the numbers are the
benchmarks' to print and README's to record."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process
BENCH = Path(__file__).resolve().parents[2] / "bench"


def run(script: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "AIGW_HOME"}
    out = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout


MODES = [[], ["--cache-hit"], ["--cache-miss"], ["--plain"]]
MODES += [["--dialect", "anthropic"], ["--dialect", "responses"], ["--otlp"]]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (.ci/run installs it)")
@pytest.mark.parametrize("mode", MODES)
def test_overhead(mode: list[str]) -> None:
    out = run("overhead.py", "--quick", *mode)
    assert "latency p50 (ms)" in out and "  ... on a fresh connection" in out
    assert ("cache hit: p50" if mode == ["--cache-hit"] else "added latency p50:") in out
    if "--dialect" in mode:
        assert f"{mode[1]} dialect: p50" in out
    if mode == ["--otlp"]:
        assert "; OTLP: " in out and "; OTLP: 0 spans" not in out


def test_local() -> None:
    pytest.importorskip("llama_cpp", reason="the 'local' extra is not installed")
    out = run("local.py", "--quick")
    assert "llama.cpp" in out and "TTFT overhead (median of pairs)" in out
    if importlib.util.find_spec("mlx_lm") is not None:
        assert "MLX (mlx-lm)" in out


def test_rag() -> None:
    pytest.importorskip("sentence_transformers", reason="the 'rag' extra is not installed")
    out = run("rag.py", "--quick")
    assert "aigw index pipeline" in out and "search k=10 at   1,000 chunks" in out


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_state() -> None:
    pytest.importorskip("redis", reason="the 'team' extra is not installed")
    out = run("state.py", "--quick")
    assert "redis over sqlite:" in out and "sqlite" in out
    out = run("state.py", "--quick", "--every-limit")
    assert "redis over sqlite:" in out
    out = run("overhead.py", "--quick", "--redis")  # the whole overhead table on the Redis backend
    assert "(Redis state backend)" in out and "added latency p50:" in out
