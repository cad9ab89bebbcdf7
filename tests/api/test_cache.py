"""The response cache end to end: a real daemon, the openai SDK, a fake upstream counting calls."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.daemon import DaemonProcess, fake_config, free_port, write_config
from tests.fixtures.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.process

PRICES = """
[prices."fake/gpt-test"]
input = 1000.0
output = 2000.0
"""


@pytest.fixture(scope="module")
def up() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(up: FakeOpenAIServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    home = tmp_path_factory.mktemp("aigw-cache-home")
    port = free_port()
    write_config(home, fake_config(up.base_url, port, PRICES))
    d = DaemonProcess(home, port).start()
    yield d
    assert d.terminate() == 0
    assert "Traceback" not in d.log(), d.log()


@pytest.fixture
def client(gw: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)


def calls(up: FakeOpenAIServer) -> int:
    return int(httpx.get(f"http://127.0.0.1:{up.port}/_last").json()["requests"])


def msg(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def test_a_hit_returns_the_same_content_and_usage_without_an_upstream_call(
    client: openai.OpenAI, up: FakeOpenAIServer
) -> None:
    before = calls(up)
    first = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=msg("hit me"), temperature=0
    )
    second = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=msg("hit me"), temperature=0
    )
    assert calls(up) == before + 1
    assert first.headers["x-aigw-cache"] == "miss"
    assert second.headers["x-aigw-cache"] == "hit"
    assert second.headers["x-aigw-provider"] == "fake" and second.headers["x-aigw-model"] == "gpt-test"
    a, b = first.parse(), second.parse()
    assert b.choices[0].message.content == a.choices[0].message.content == "echo: hit me"
    assert b.usage == a.usage and b.usage is not None and b.usage.total_tokens > 0
    assert b.choices[0].finish_reason == "stop"


def test_nondeterministic_requests_bypass_by_default(client: openai.OpenAI, up: FakeOpenAIServer) -> None:
    before = calls(up)
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=msg("creative"))
        assert raw.headers["x-aigw-cache"] == "bypass"
    assert calls(up) == before + 2


def test_a_seed_makes_a_request_cacheable_and_other_fields_split_entries(
    client: openai.OpenAI, up: FakeOpenAIServer
) -> None:
    before = calls(up)
    client.chat.completions.create(model="gpt-test", messages=msg("seeded"), seed=7)
    client.chat.completions.create(model="gpt-test", messages=msg("seeded"), seed=7)
    client.chat.completions.create(model="gpt-test", messages=msg("seeded"), seed=8)
    client.chat.completions.create(model="gpt-test", messages=msg("seeded"), seed=7, max_tokens=5)
    client.chat.completions.create(
        model="gpt-test", messages=msg("seeded"), seed=7, extra_body={"reasoning_effort": "high"}
    )
    assert calls(up) == before + 4


def collect(stream: Any) -> tuple[str, str | None, Any]:
    text, finish, usage = "", None, None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    return text, finish, usage


def test_stream_replay_equals_the_original_stream(client: openai.OpenAI, up: FakeOpenAIServer) -> None:
    before = calls(up)
    kw: dict[str, Any] = {
        "model": "gpt-test",
        "messages": msg("stream once"),
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    raw = client.chat.completions.with_raw_response.create(**kw)
    assert raw.headers["x-aigw-cache"] == "miss"
    original = collect(raw.parse())
    raw = client.chat.completions.with_raw_response.create(**kw)
    assert raw.headers["x-aigw-cache"] == "hit"
    assert raw.headers["content-type"].startswith("text/event-stream")
    replayed = collect(raw.parse())
    assert calls(up) == before + 1
    assert replayed == original
    assert original[0] == "echo: stream once" and original[1] == "stop" and original[2] is not None
    # Without include_usage the replay carries no usage chunk.
    kw.pop("stream_options")
    no_usage = collect(client.chat.completions.create(**kw))
    assert no_usage[:2] == original[:2] and no_usage[2] is None
    assert calls(up) == before + 1


def test_non_stream_and_stream_serve_each_other(client: openai.OpenAI, up: FakeOpenAIServer) -> None:
    before = calls(up)
    plain = client.chat.completions.create(model="gpt-test", messages=msg("cross one"), temperature=0)
    text, finish, usage = collect(
        client.chat.completions.create(
            model="gpt-test",
            messages=msg("cross one"),
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert (text, finish) == (plain.choices[0].message.content, plain.choices[0].finish_reason)
    assert usage == plain.usage
    assert calls(up) == before + 1

    streamed = collect(
        client.chat.completions.create(
            model="gpt-test",
            messages=msg("cross two"),
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=msg("cross two"), temperature=0
    )
    assert raw.headers["x-aigw-cache"] == "hit"
    again = raw.parse()
    assert again.choices[0].message.content == streamed[0]
    assert again.choices[0].finish_reason == streamed[1]
    assert again.usage == streamed[2]
    assert calls(up) == before + 2


def test_identical_requests_in_flight_make_one_upstream_call(gw: DaemonProcess, up: FakeOpenAIServer) -> None:
    async def run() -> list[Any]:
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
        async with client:
            return await asyncio.gather(
                *(
                    client.chat.completions.with_raw_response.create(
                        model="fake/slow-400", messages=msg("together"), temperature=0
                    )
                    for _ in range(5)
                )
            )

    before = calls(up)
    raws = asyncio.run(run())
    assert calls(up) == before + 1
    assert sorted(r.headers["x-aigw-cache"] for r in raws) == ["hit", "hit", "hit", "hit", "miss"]
    assert {r.parse().choices[0].message.content for r in raws} == {"echo: together"}


def test_errors_and_cut_streams_are_never_cached(client: openai.OpenAI, up: FakeOpenAIServer) -> None:
    before = calls(up)
    for _ in range(2):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="fake/fail-400", messages=msg("nope"), temperature=0)
    assert calls(up) == before + 2
    for _ in range(2):
        with pytest.raises(openai.APIError):
            collect(
                client.chat.completions.create(
                    model="fake/break-stream", messages=msg("cut"), temperature=0, stream=True
                )
            )
    assert calls(up) == before + 4


def test_cache_control_skips_the_lookup_or_the_write(client: openai.OpenAI, up: FakeOpenAIServer) -> None:
    before = calls(up)
    kw: dict[str, Any] = {"model": "gpt-test", "messages": msg("control"), "temperature": 0}
    r = client.chat.completions.with_raw_response.create(**kw, extra_headers={"Cache-Control": "no-store"})
    assert r.headers["x-aigw-cache"] == "miss"
    r = client.chat.completions.with_raw_response.create(**kw)
    assert r.headers["x-aigw-cache"] == "miss"  # the no-store answer was not kept
    r = client.chat.completions.with_raw_response.create(**kw, extra_headers={"Cache-Control": "no-cache"})
    assert r.headers["x-aigw-cache"] == "bypass"
    r = client.chat.completions.with_raw_response.create(**kw)
    assert r.headers["x-aigw-cache"] == "hit"
    assert calls(up) == before + 3


def test_embeddings_are_cached(client: openai.OpenAI, up: FakeOpenAIServer) -> None:
    before = calls(up)
    first = client.embeddings.with_raw_response.create(model="text-embed", input=["a", "b"])
    second = client.embeddings.with_raw_response.create(model="text-embed", input=["a", "b"])
    other = client.embeddings.with_raw_response.create(model="text-embed", input=["a", "c"])
    assert [r.headers["x-aigw-cache"] for r in (first, second, other)] == ["miss", "hit", "miss"]
    assert [d.embedding for d in second.parse().data] == [d.embedding for d in first.parse().data]
    assert calls(up) == before + 2


def usage_rows(gw: DaemonProcess, text: str) -> list[dict[str, Any]]:
    import sqlite3

    stats = gw.aget("/admin/cache")  # flushes the usage log first
    assert stats.status_code == 200
    with sqlite3.connect(gw.home / "aigw.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM usage ORDER BY id")]


def test_usage_rows_and_metrics_record_hits_and_savings(gw: DaemonProcess, client: openai.OpenAI) -> None:
    n = len(usage_rows(gw, ""))
    for _ in range(3):
        client.chat.completions.create(model="gpt-test", messages=msg("priced"), temperature=0)
    rows = usage_rows(gw, "")[n:]
    assert [r["cache"] for r in rows] == ["miss", "hit", "hit"]
    miss, hit = rows[0], rows[1]
    assert miss["cost_usd"] > 0 and miss["saved_usd"] == 0 and miss["cache_hit"] == 0
    assert (
        hit["cost_usd"] == 0 and hit["saved_usd"] == pytest.approx(miss["cost_usd"]) and hit["cache_hit"] == 1
    )
    assert (hit["prompt_tokens"], hit["completion_tokens"]) == (
        miss["prompt_tokens"],
        miss["completion_tokens"],
    )
    assert hit["provider"] == "fake" and hit["model"] == "gpt-test" and hit["status"] == 200
    stats = gw.aget("/admin/cache").json()
    assert stats["hits"] >= 2 and stats["misses"] >= 1 and stats["entries"] >= 1
    assert stats["cost_saved_usd"] >= 2 * miss["cost_usd"] - 1e-9
    metrics = {
        s.name: s.value
        for fam in text_string_to_metric_families(gw.get("/metrics").text)
        for s in fam.samples
        if s.name.startswith("ai_cache_")
    }
    assert metrics["ai_cache_hits_total"] >= 2 and metrics["ai_cache_misses_total"] >= 1


def cli(gw: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aigw", *args],
        check=False,
        env=gw.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_stats_and_clear_by_model_through_the_daemon(gw: DaemonProcess, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="gpt-test", messages=msg("to clear"), temperature=0)
    client.chat.completions.create(model="other/shared-model", messages=msg("to keep"), temperature=0)
    out = cli(gw, "cache", "stats", "--json")
    assert out.returncode == 0, out.stderr
    assert '"hit_ratio"' in out.stdout and '"entries"' in out.stdout
    out = cli(gw, "cache", "clear", "--model", "fake/gpt-test")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("removed ") and not out.stdout.startswith("removed 0 ")
    r = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=msg("to clear"), temperature=0
    )
    assert r.headers["x-aigw-cache"] == "miss"
    r = client.chat.completions.with_raw_response.create(
        model="other/shared-model", messages=msg("to keep"), temperature=0
    )
    assert r.headers["x-aigw-cache"] == "hit"
    assert gw.delete("/admin/cache").status_code == 401  # the admin token is required
    assert gw.delete("/admin/cache", headers=gw.admin_headers()).json()["removed"] >= 1
    r = client.chat.completions.with_raw_response.create(
        model="other/shared-model", messages=msg("to keep"), temperature=0
    )
    assert r.headers["x-aigw-cache"] == "miss"


def test_a_corrupt_cache_file_is_moved_aside_and_the_daemon_serves(
    up: FakeOpenAIServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    responses = home / "cache" / "responses"
    responses.mkdir(parents=True)
    (responses / "cache.db").write_bytes(b"this is not a SQLite database" * 100)
    port = free_port()
    write_config(home, fake_config(up.base_url, port))
    d = DaemonProcess(home, port).start()
    try:
        client = openai.OpenAI(base_url=d.url + "/v1", api_key="unused", max_retries=0)
        kw: dict[str, Any] = {"model": "gpt-test", "messages": msg("after corruption"), "temperature": 0}
        assert client.chat.completions.with_raw_response.create(**kw).headers["x-aigw-cache"] == "miss"
        assert client.chat.completions.with_raw_response.create(**kw).headers["x-aigw-cache"] == "hit"
        aside = [p for p in (home / "cache").iterdir() if p.name.startswith("responses.corrupt-")]
        assert len(aside) == 1 and (aside[0] / "cache.db").read_bytes().startswith(b"this is not")
    finally:
        assert d.terminate() == 0
    log = d.log()
    assert "damaged" in log and "Traceback" not in log
