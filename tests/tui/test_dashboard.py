"""The dashboard driven with Textual's Pilot against a real daemon and a fake upstream, plus
snapshots of its main screens rendered from canned data."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("textual")

from textual.widgets import DataTable, Input, Static
from textual.widgets._footer import FooterKey

from aigw.daemon.client import AsyncDaemonClient
from aigw.tui.app import Dashboard
from aigw.tui.source import DaemonDown, DaemonSource
from tests.fixtures.daemon import DaemonProcess, fake_config, free_port, serving, write_config
from tests.fixtures.fake_openai import FakeOpenAIServer

SIZE = (80, 24)


@pytest.fixture(scope="module")
def up() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(up: FakeOpenAIServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    home = tmp_path_factory.mktemp("aigw-tui-home")
    port = free_port()
    write_config(
        home, fake_config(up.base_url, port, '[prices."fake/gpt-test"]\ninput = 1000.0\noutput = 2000.0\n')
    )
    d = DaemonProcess(home, port).start()
    yield d
    assert d.terminate() == 0


def text(app: Dashboard, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def rows(app: Dashboard, selector: str) -> list[list[str]]:
    table = app.query_one(selector, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def until(pilot: Any, check: Any, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "the dashboard did not show it in time"
        await pilot.pause(0.1)


def client(d: DaemonProcess) -> AsyncDaemonClient:
    """A client of `d` as this machine's user would have: the admin token from d's AIGW_HOME."""
    return AsyncDaemonClient(d.url, environ={"AIGW_HOME": str(d.home)})


@pytest.mark.process
def test_panels_show_the_figures_after_requests(gw: DaemonProcess) -> None:
    body = {"model": "smart", "temperature": 0, "messages": [{"role": "user", "content": "tui figures"}]}
    for _ in range(3):
        assert gw.post("/v1/chat/completions", json=body).status_code == 200
    assert gw.post("/v1/chat/completions", json={**body, "model": "fake/fail-400"}).status_code == 400

    async def run() -> None:
        app = Dashboard(DaemonSource(client(gw)), refresh_s=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.stats is not None)
            assert "errors / 4 requests" in text(app, "#traffic") and " 1 errors" in text(app, "#traffic")
            assert "2 hits, 1 misses" in text(app, "#cache")
            providers = {r[0]: r for r in rows(app, "#providers")}
            assert providers["fake"][2] == "ok" and "fake/gpt-test: closed" in providers["fake"][3]
            tail = rows(app, "#tail")
            assert [r[3] for r in tail[:4]] == ["400", "200", "200", "200"]
            assert [r[6] for r in tail[1:4]] == ["hit", "hit", "miss"]
            await pilot.press("2")
            assert app.query_one("#tabs").active == "requests"  # type: ignore[attr-defined]

    asyncio.run(run())


@pytest.mark.process
def test_a_local_models_figures_show_in_the_panels(tmp_path: Path) -> None:
    """A real llama.cpp model's answers: the request tail shows each one's prompt and cached
    tokens, prefill time and decode rate; the local table its slots, prompt cache and last minute."""
    pytest.importorskip("llama_cpp", reason="the 'local' extra is not installed")
    from tests.fixtures.tiny_gguf import write_tiny_llama

    write_tiny_llama(tmp_path / "tiny.gguf")
    history = [{"role": "user", "content": "The story so far: " + "once upon a time " * 12}]
    models = f'models = {{ tiny = "{tmp_path}/tiny.gguf" }}'
    config = f'[providers.gguf]\ntype = "llama_cpp"\nparallel = 3\n{models}\n'
    with serving(tmp_path / "home", config) as d:
        body = {"model": "gguf/tiny", "max_tokens": 6, "temperature": 0, "messages": history}
        first = d.post("/v1/chat/completions", json=body).json()
        answer = first["choices"][0]["message"]
        again = [*history, answer, {"role": "user", "content": "go on"}]
        second = d.post("/v1/chat/completions", json={**body, "messages": again}).json()
        cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]

        async def run() -> None:
            app = Dashboard(DaemonSource(client(d)), refresh_s=0.2)
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: len(rows(app, "#tail")) == 2)
                newest = rows(app, "#tail")[0]
                assert newest[1:4] == ["gguf/tiny", "gguf", "200"]
                prompt, shown_cached, prefill, rate = newest[8:]
                assert int(prompt) == second["usage"]["prompt_tokens"] and int(shown_cached) == cached > 50
                assert float(prefill) > 0 and float(rate) > 0
                (local,) = rows(app, "#local")
                assert local[0] == "gguf/tiny" and local[5:7] == ["0/3", "0 B"]  # nothing saved yet
                assert local[7].endswith(" ms") and float(local[7].removesuffix(" ms")) > 0
                assert float(local[8]) > 0

        asyncio.run(run())


@pytest.mark.process
def test_the_chat_tab_streams_an_answer(gw: DaemonProcess) -> None:
    async def run() -> None:
        app = Dashboard(DaemonSource(client(gw)), refresh_s=0.5)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("3")
            app.query_one("#chat-model", Input).value = "smart"
            prompt = app.query_one("#chat-prompt", Input)
            prompt.focus()
            prompt.value = "stream to the dashboard"
            await pilot.press("enter")
            await until(pilot, lambda: "smart: echo: stream to the dashboard" in text(app, "#chat-log"))
            assert app.history[-1] == {"role": "assistant", "content": "echo: stream to the dashboard"}

    asyncio.run(run())


@pytest.mark.process
def test_the_daemon_down_screen_appears_and_recovers(up: FakeOpenAIServer, tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    write_config(home, fake_config(up.base_url, port))
    d = DaemonProcess(home, port)

    async def run() -> None:
        app = Dashboard(DaemonSource(client(d), start=d.start), refresh_s=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: bool(app.query_one("#down").display))
            assert "is not running" in text(app, "#down") and not app.query_one("#tabs").display
            await pilot.press("s")
            await until(pilot, lambda: app.stats is not None and not app.query_one("#down").display, 30)
            assert app.query_one("#tabs").display

    try:
        asyncio.run(run())
    finally:
        if d.proc is not None:
            assert d.terminate() == 0


# -- snapshots of canned data (deterministic) ----------------------------------------------------

CANNED: dict[str, Any] = {
    "version": "0.1.0",
    "uptime_s": 3725.0,
    "traffic": {"requests_per_s": 4.2, "requests_1m": 250, "errors_1m": 3, "p50_ms": 412.5, "p95_ms": 1830.0},
    "providers": {
        "openai": {"type": "openai", "reachable": True, "last_error": None, "models": []},
        "local": {"type": "llama_cpp", "reachable": True, "last_error": None, "models": []},
        "anthropic": {"type": "anthropic", "reachable": False, "last_error": "timeout", "models": []},
    },
    "breakers": {"anthropic/claude-haiku": {"state": "open"}, "openai/gpt-4o-mini": {"state": "closed"}},
    "routing": {},
    "local": {
        "budget_bytes": 8e9,
        "used_bytes": 7e8,
        "loaded": [
            {
                "model": "local/qwen",
                "state": "idle",
                "memory_bytes": 7e8,
                "queue_depth": 1,
                "parallel": 4,
                "active": 1,
                "cache_bytes": 1.5e8,
                "unloads_in_s": 241.0,
            }
        ],
    },
    "local_requests": [
        {
            "model": "local/qwen",
            "requests": 3,
            "prompt_tokens": 12000,
            "cached_tokens": 10000,
            "prefill_p50_ms": 180.0,
            "prefill_p95_ms": 950.0,
            "decode_tps": 42.5,
        }
    ],
    "cache": {
        "mode": "deterministic",
        "hits": 120,
        "misses": 40,
        "hit_ratio": 0.75,
        "entries": 160,
        "size_bytes": 2.5e6,
    },
    "keys": [
        {
            "name": "notebook",
            "id": "key_1",
            "requests": {"limit": 60, "remaining": 48, "reset_s": 12.0},
            "tokens": {"limit": 100000, "remaining": 91000, "reset_s": 5.4},
            "spent_today_usd": 0.1234,
            "spent_usd": 2.5,
            "budget_usd": 10.0,
        }
    ],
    "rag": [
        {"name": "docs", "files": 120, "chunks": 2048, "model": "sentence-transformers/all-MiniLM-L6-v2"}
    ],
    "recent": [
        {
            "ts": 1_800_000_000.0 + i,
            "key": "notebook",
            "model": "smart",
            "provider": "openai",
            "status": 200,
            "latency_ms": 400.0 + i,
            "tokens": 120,
            "cache": "miss" if i % 3 else "hit",
            "fallbacks": 0,
            "prompt_tokens": 100,
            "cached_tokens": None if i % 3 else 64,
            "prefill_ms": None,
            "decode_tps": None,
        }
        for i in range(11)
    ]
    + [
        {
            "ts": 1_800_000_011.0,
            "key": None,
            "model": "qwen",
            "provider": "local",
            "status": 200,
            "latency_ms": 1210.0,
            "tokens": 4040,
            "cache": "miss",
            "fallbacks": 0,
            "prompt_tokens": 4000,
            "cached_tokens": 3900,
            "prefill_ms": 240.5,
            "decode_tps": 41.27,
        }
    ],
}


class Canned:
    url = "http://127.0.0.1:8080"

    def __init__(self, stats: dict[str, Any] | None, answer: tuple[str, ...] = ("canned",)) -> None:
        self._stats = stats
        self.answer = answer
        self.posted: list[str] = []

    async def stats(self) -> dict[str, Any]:
        if self._stats is None:
            raise DaemonDown(self.url)
        return self._stats

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.posted.append(path)
        return {}

    async def chat(self, model: str, messages: list[dict[str, Any]], rag: str | None) -> AsyncIterator[str]:
        for text in self.answer:
            yield text

    async def start_daemon(self) -> None:
        return None


@pytest.fixture(autouse=False)
def utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ")
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_snapshot_overview(snap_compare: Any, utc: None) -> None:
    assert snap_compare(Dashboard(Canned(CANNED), refresh_s=60), terminal_size=SIZE)


def test_snapshot_requests(snap_compare: Any, utc: None) -> None:
    assert snap_compare(Dashboard(Canned(CANNED), refresh_s=60), press=["2"], terminal_size=SIZE)


def test_snapshot_daemon_down(snap_compare: Any) -> None:
    assert snap_compare(Dashboard(Canned(None), refresh_s=60), terminal_size=SIZE)


def test_canned_figures_in_the_view() -> None:
    from aigw.tui import view

    assert view.key_rows(CANNED) == [("notebook", "12/60", "9000/100000", "$0.1234", "$10.00")]
    assert view.provider_rows(CANNED)[0] == (
        "anthropic",
        "anthropic",
        "unreachable",
        "anthropic/claude-haiku: open",
    )
    assert "hit ratio 75% (120 hits, 40 misses) · 160 entries, 2.5 MB" in view.cache_line(CANNED)
    # a local model: slots in use, its prompt cache, and its last minute's prefill and decode rate
    assert view.local_rows(CANNED)[0][3:] == ("1", "241 s", "1/4", "150.0 MB", "180 ms", "42")
    local, cloud, cached = view.request_rows(CANNED)[:3]
    assert local[1:3] == ("qwen", "local") and local[8:] == ("4000", "3900", "240", "41")
    assert cloud[8:] == ("100", "-", "-", "-") and cached[8:] == ("100", "64", "-", "-")
    assert httpx  # the module is the dashboard's HTTP client too


def test_the_tails_figures_past_the_right_edge_scroll_into_view() -> None:
    """At 80 columns the local figures lie right of the fallbacks: Tab and the arrow keys reach them."""

    async def run() -> None:
        app = Dashboard(Canned(CANNED), refresh_s=60)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("2", "tab")
            tail = app.query_one("#tail", DataTable)
            assert app.focused is tail and tail.max_scroll_x > 0 and tail.scroll_x == 0
            await pilot.press(*["right"] * tail.max_scroll_x)
            await pilot.pause()
            assert tail.scroll_x == tail.max_scroll_x

    asyncio.run(run())


def test_latencies_keep_two_significant_digits() -> None:
    from aigw.tui import view

    shown = [view.latency(v) for v in (0.042, 0.42, 4.2, 42.0, 420.0, 1234.0)]
    assert shown == ["0.042 ms", "0.42 ms", "4.2 ms", "42 ms", "420 ms", "1234 ms"]
    edges = [view.latency(v) for v in (None, 0, 0.0996, 9.96, 412.5)]
    assert edges == ["-", "0 ms", "0.10 ms", "10 ms", "412 ms"]
    traffic = {**CANNED["traffic"], "p50_ms": 0.042, "p95_ms": 1234.5}
    assert "p50 0.042 ms · p95 1234 ms" in view.traffic_line({**CANNED, "traffic": traffic})
    hit = {**CANNED["recent"][0], "latency_ms": 0.042}
    assert view.request_rows({**CANNED, "recent": [hit]})[0][4] == "0.042"


def type_text(keys: str) -> list[str]:
    return ["space" if c == " " else c for c in keys]


def footer(app: Dashboard) -> list[str]:
    return [str(k.description) for k in app.query(FooterKey)]


def test_typing_in_the_chat_tab_goes_into_the_input() -> None:
    async def run() -> None:
        source = Canned(CANNED)
        app = Dashboard(source, refresh_s=60)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("3")
            await pilot.pause()
            prompt = app.query_one("#chat-prompt", Input)
            assert app.focused is prompt
            await pilot.press(*type_text("hello, quick question 123"))
            await pilot.pause()
            assert app.return_code is None, "a letter quit the dashboard"
            assert prompt.value == "hello, quick question 123"
            assert source.posted == [] and app.query_one("#tabs").active == "chat"  # type: ignore[attr-defined]
            assert "leave input" in footer(app) and "Quit" not in footer(app)
            await pilot.press("ctrl+q")  # Textual's own quit key still works from the input
            assert app.return_code == 0

    asyncio.run(run())


def test_escape_leaves_the_chat_input_and_the_keys_work_again() -> None:
    async def run() -> None:
        app = Dashboard(Canned(CANNED), refresh_s=60)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("3", "x", "escape")
            await pilot.pause()
            assert not isinstance(app.focused, Input)
            assert app.query_one("#chat-prompt", Input).value == "x"
            assert "Quit" in footer(app) and "leave input" not in footer(app)
            assert "Type a question" in footer(app)
            await pilot.press("i")
            assert app.focused is app.query_one("#chat-prompt", Input)
            await pilot.press("escape", "2")
            assert app.query_one("#tabs").active == "requests"  # type: ignore[attr-defined]
            await pilot.press("3")
            await pilot.pause()
            assert app.focused is app.query_one("#chat-prompt", Input)

    asyncio.run(run())


def test_the_daemon_going_down_takes_the_cursor_out_of_the_chat_input() -> None:
    async def run() -> None:
        source = Canned(CANNED)
        app = Dashboard(source, refresh_s=60)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("3", "x")
            source._stats = None
            await app.action_refresh()
            await pilot.pause()
            assert app.query_one("#down").display and not isinstance(app.focused, Input)
            await pilot.press("q")
            assert app.return_code == 0

    asyncio.run(run())


def test_the_transcript_scrolls_to_the_newest_answer() -> None:
    lines = tuple(f"line {i}\n" for i in range(60))

    async def run() -> None:
        app = Dashboard(Canned(CANNED, answer=(*lines, "the end")), refresh_s=60)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("3")
            app.query_one("#chat-model", Input).value = "smart"
            await pilot.press(*type_text("long one"), "enter")
            await until(pilot, lambda: "the end" in text(app, "#chat-log"))
            await pilot.pause()
            assert text(app, "#chat-log").startswith("you: long one\n\nsmart: line 0\nline 1\n")
            scroll = app.query_one("#chat-scroll")
            assert scroll.max_scroll_y > 0 and scroll.scroll_y == scroll.max_scroll_y

    asyncio.run(run())


def test_rag_sources_are_set_apart_from_the_answer() -> None:
    from aigw.daemon.client import StreamInfo

    class FakeClient:
        url = "http://127.0.0.1:8080"

        async def chat_stream(
            self, messages: list[dict[str, Any]], *, model: str, info: StreamInfo, rag: str | None = None
        ) -> AsyncIterator[str]:
            info.sources = [{"n": 1, "path": "a.md"}, {"n": 2, "path": "b.md"}]
            yield "The answer"
            yield " [1]."

    async def run() -> str:
        source = DaemonSource(FakeClient())  # type: ignore[arg-type]
        return "".join([t async for t in source.chat("smart", [], "docs")])

    assert asyncio.run(run()) == "\n[1] a.md\n[2] b.md\n\nThe answer [1]."


def test_brackets_in_a_question_or_an_answer_are_shown_as_typed() -> None:
    answer = "use [/b] and [bold]x[/bold] [1]"

    async def run() -> None:
        app = Dashboard(Canned(CANNED, answer=(answer,)), refresh_s=60)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("3")
            app.query_one("#chat-model", Input).value = "smart"
            await pilot.press(*type_text("why [red]"), "enter")
            await until(pilot, lambda: bool(app.history) and app.history[-1]["role"] == "assistant")
            assert text(app, "#chat-log") == f"you: why [red]\n\nsmart: {answer}"

    asyncio.run(run())
