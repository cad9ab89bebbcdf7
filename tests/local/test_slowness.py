"""Explaining a slow local answer, through a real daemon on both engines: each usage row and
/admin/stats hold its prompt and cached tokens, its prefill time and its decode rate, whole or
streamed; a cloud answer's row keeps the cached tokens its upstream reported and no timing; and
`aigw models ps` shows slots in use and the prompt cache's size."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.fixtures.daemon import DaemonProcess, serving
from tests.fixtures.fake_anthropic import API_KEY, FakeAnthropicServer

pytestmark = pytest.mark.process

pytest.importorskip("llama_cpp", reason="the 'local' extra is not installed")
pytest.importorskip("mlx_lm", reason="the 'mlx' extra is not installed")

ENGINES = ["gguf/tiny", "mlx/tiny-mlx"]
HISTORY = [{"role": "user", "content": "The story so far: " + "once upon a time " * 12}]
MAX_TOKENS = 8  # the tiny models never end early: every answer is this long


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    from tests.fixtures.tiny_gguf import write_tiny_llama
    from tests.fixtures.tiny_mlx import write_tiny_mlx

    claude = FakeAnthropicServer().start()
    home: Path = tmp_path_factory.mktemp("slowness")
    write_tiny_llama(home / "tiny.gguf")
    write_tiny_mlx(home / "models" / "tiny-mlx")
    config = f"""
[cache]
mode = "off"

[usage]
flush_interval_s = 0.05

[providers.gguf]
type = "llama_cpp"
discover_models = false
parallel = 2
models = {{ tiny = "{home}/tiny.gguf" }}

[providers.mlx]
type = "mlx"
parallel = 2

[providers.claude]
type = "anthropic"
base_url = "{claude.base_url}"
api_key = "{API_KEY}"
discover_models = false
"""
    try:
        with serving(home, config) as d:
            yield d
    finally:
        claude.stop()


@pytest.fixture
def client(daemon: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0)


def usage_rows(daemon: DaemonProcess, request_ids: list[str]) -> list[dict[str, Any]]:
    """The usage rows of these requests, in their order, once the daemon has written them all."""
    deadline = time.monotonic() + 10
    while True:
        with contextlib.closing(sqlite3.connect(daemon.home / "aigw.db")) as conn:
            conn.row_factory = sqlite3.Row
            marks = ", ".join("?" * len(request_ids))
            found = conn.execute(f"SELECT * FROM usage WHERE request_id IN ({marks})", request_ids).fetchall()
        by_id = {r["request_id"]: dict(r) for r in found}
        if len(by_id) == len(request_ids):
            return [by_id[i] for i in request_ids]
        assert time.monotonic() < deadline, f"usage rows not written: {sorted(by_id)} of {request_ids}"
        time.sleep(0.05)


def ask(client: openai.OpenAI, model: str, messages: list[Any], *, stream: bool = False) -> tuple[str, str]:
    """(the answer's text, its x-request-id)."""
    kw: Any = {"model": model, "messages": messages, "max_tokens": MAX_TOKENS, "temperature": 0}
    if not stream:
        raw = client.chat.completions.with_raw_response.create(**kw)
        return raw.parse().choices[0].message.content or "", raw.headers["x-request-id"]
    with client.chat.completions.with_streaming_response.create(stream=True, **kw) as resp:
        text = "".join(chunk.choices[0].delta.content or "" for chunk in resp.parse() if chunk.choices)
        return text, resp.headers["x-request-id"]


def check_timing(row: dict[str, Any]) -> None:
    """A local answer's figures: positive, and within the time the request took."""
    assert row["completion_tokens"] == MAX_TOKENS
    assert row["prefill_ms"] > 0 and row["decode_tps"] > 0
    decode_ms = (MAX_TOKENS - 1) / row["decode_tps"] * 1000
    assert row["prefill_ms"] + decode_ms <= row["latency_ms"]


@pytest.mark.parametrize("model", ENGINES)
def test_a_local_answers_usage_row_explains_its_time(
    client: openai.OpenAI, daemon: DaemonProcess, model: str
) -> None:
    ask(client, model, [{"role": "user", "content": "something else entirely"}])  # another conversation
    first, first_id = ask(client, model, HISTORY)
    follow = [*HISTORY, {"role": "assistant", "content": first}, {"role": "user", "content": "go on"}]
    _, second_id = ask(client, model, follow, stream=True)  # the stream's usage row too
    cold, warm = usage_rows(daemon, [first_id, second_id])
    provider, name = model.split("/")
    assert (cold["provider"], cold["model"]) == (provider, name)
    assert cold["prompt_tokens"] > 50 and cold["cached_tokens"] < cold["prompt_tokens"] // 2
    assert warm["prompt_tokens"] > cold["prompt_tokens"]
    assert warm["cached_tokens"] >= 0.95 * cold["prompt_tokens"]  # the whole first prompt
    check_timing(cold)
    check_timing(warm)


def test_a_cloud_answers_row_keeps_its_cached_tokens_and_no_timing(
    client: openai.OpenAI, daemon: DaemonProcess
) -> None:
    _, rid = ask(client, "claude/cached", [{"role": "user", "content": "hello"}])
    (row,) = usage_rows(daemon, [rid])
    assert row["provider"] == "claude" and row["cached_tokens"] == 5  # cache_read_input_tokens
    assert row["prefill_ms"] is None and row["decode_tps"] is None


def test_admin_stats_shows_each_local_models_figures(client: openai.OpenAI, daemon: DaemonProcess) -> None:
    for model in ENGINES:
        first, _ = ask(client, model, HISTORY)
        again = [*HISTORY, {"role": "assistant", "content": first}, {"role": "user", "content": "so"}]
        ask(client, model, again)
    ask(client, "claude/cached", [{"role": "user", "content": "hello"}])
    stats = daemon.aget("/admin/stats").json()
    local = {m["model"]: m for m in stats["local_requests"]}
    assert set(local) == set(ENGINES)  # the cloud model is none of them
    for model in ENGINES:
        m = local[model]
        assert m["requests"] >= 2 and m["prompt_tokens"] > 100
        assert m["cached_tokens"] > 50 and m["cached_tokens"] < m["prompt_tokens"]
        assert 0 < m["prefill_p50_ms"] <= m["prefill_p95_ms"] and m["decode_tps"] > 0
    recent = stats["recent"]
    cloud = next(r for r in reversed(recent) if r["provider"] == "claude")
    assert cloud["cached_tokens"] == 5 and cloud["prefill_ms"] is None and cloud["decode_tps"] is None
    for model in ENGINES:
        mine = next(r for r in reversed(recent) if r["model"] == model)
        assert mine["prompt_tokens"] > 50 and mine["cached_tokens"] > 50
        assert mine["prefill_ms"] > 0 and mine["decode_tps"] > 0


def test_models_ps_shows_slots_in_use_and_the_cache_size(
    client: openai.OpenAI, daemon: DaemonProcess
) -> None:
    for model in ENGINES:  # three conversations on two slots: one is saved
        for n in range(3):
            ask(client, model, [{"role": "user", "content": f"conversation {n}: " + "tell me " * 20}])

    def aigw(*args: str) -> str:
        r = subprocess.run(
            [sys.executable, "-m", "aigw", "models", "ps", *args],
            env=daemon.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        return r.stdout

    loaded = {m["model"]: m for m in json.loads(aigw("--json"))["loaded"]}
    for model in ENGINES:
        m = loaded[model]
        assert (m["parallel"], m["active"]) == (2, 0) and m["cache_bytes"] > 0
    header, *lines = aigw().splitlines()[1:]
    assert header.split() == ["MODEL", "STATE", "MEMORY", "QUEUE", "SLOTS", "CACHE", "UNLOADS", "IN"]
    shown = {line.split()[0]: line.split() for line in lines}
    for model in ENGINES:
        assert shown[model][1] == "idle" and shown[model][5] == "0/2" and shown[model][7] == "MiB"
        assert float(shown[model][6]) > 0
