"""`aigw tui`: the dashboard. Refreshes from GET /admin/stats every second.

Tabs: Overview (traffic, cache, providers and breakers, local models, keys, RAG), Requests (a
live tail), Chat (streams from any model, optionally grounded in a RAG collection). When the
daemon does not answer, a notice replaces the tabs until it does; `s` starts it.

Opening the chat tab puts the cursor in its prompt. While any input has the cursor, keys are text:
the dashboard's own keys are off (and out of the footer) until Escape leaves the input.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Input, Static, TabbedContent, TabPane

from aigw.tui import view
from aigw.tui.source import DaemonDown, Source, SourceError

PROVIDER_COLUMNS = ("provider", "type", "health", "breakers")
LOCAL_COLUMNS = (
    "local model", "state", "memory", "queue", "unloads in", "slots", "prompt cache", "prefill p50", "tok/s"
)  # fmt: skip
KEY_COLUMNS = ("key", "requests/min", "tokens/min", "spent today", "budget")
REQUEST_COLUMNS = (
    "time", "model", "provider", "status", "ms", "tokens", "cache", "fallbacks",
    "prompt", "cached", "prefill ms", "tok/s",
)  # fmt: skip


class Dashboard(App[None]):
    TITLE = "aigw"
    CSS = """
    #down { height: 1fr; content-align: center middle; text-style: bold; }
    .line { height: auto; padding: 0 1; }
    DataTable { height: auto; max-height: 8; margin: 0 0 1 0; }
    #tail { max-height: 100%; height: 1fr; }
    #chat-scroll { height: 1fr; border: round $primary; padding: 0 1; }
    #chat-log { height: auto; }
    #chat-opts Input { width: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "leave", "Quit"),
        Binding("r", "refresh", "Refresh"),
        Binding("s", "start", "Start daemon"),
        Binding("l", "load", "Load model"),
        Binding("u", "unload", "Unload model"),
        Binding("i", "type", "Type a question"),
        Binding("escape", "leave_input", "leave input"),
        Binding("1", "tab('overview')", "Overview", show=False),
        Binding("2", "tab('requests')", "Requests", show=False),
        Binding("3", "tab('chat')", "Chat", show=False),
    ]
    KEYS: ClassVar[frozenset[str]] = frozenset({"leave", "refresh", "start", "load", "unload", "type", "tab"})
    """The actions of the dashboard's own keys: off while an input has the cursor. (`q` leaves
    through its own action so that ctrl+q, Textual's `quit`, still quits from an input.)"""

    def __init__(self, source: Source, *, refresh_s: float = 1.0) -> None:
        super().__init__()
        self.source = source
        self.refresh_s = refresh_s
        self.stats: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        self.sub_title = source.url

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(
            f"aigw is not running at {self.source.url}.\n\nPress s to start it, q to quit.", id="down"
        )
        with TabbedContent(id="tabs", initial="overview"):
            with TabPane("Overview", id="overview"), VerticalScroll():
                yield Static("connecting…", id="traffic", classes="line", markup=False)
                yield Static("", id="cache", classes="line", markup=False)
                yield DataTable(id="providers", cursor_type="none", zebra_stripes=True)
                yield DataTable(id="local", cursor_type="row")
                yield DataTable(id="keys", cursor_type="none")
                yield Static("", id="rag", classes="line", markup=False)  # names are data
            with TabPane("Requests", id="requests"):
                yield DataTable(id="tail", cursor_type="none", zebra_stripes=True)
            with TabPane("Chat", id="chat"), Vertical():
                with Horizontal(id="chat-opts"):
                    yield Input(placeholder="model (e.g. smart)", id="chat-model")
                    yield Input(placeholder="RAG collection (optional)", id="chat-rag")
                with VerticalScroll(id="chat-scroll"):
                    yield Static("", id="chat-log", markup=False)  # answers are text, not markup
                yield Input(placeholder="Ask something; Enter sends", id="chat-prompt")
        yield Footer()

    def on_mount(self) -> None:
        for table_id, columns in (
            ("providers", PROVIDER_COLUMNS),
            ("local", LOCAL_COLUMNS),
            ("keys", KEY_COLUMNS),
            ("tail", REQUEST_COLUMNS),
        ):
            self.query_one(f"#{table_id}", DataTable).add_columns(*columns)
        self.query_one("#down").display = False
        self.query_one("#chat-scroll").anchor()  # follows the newest answer, unless scrolled up
        self.set_interval(self.refresh_s, self.action_refresh)
        self.call_later(self.action_refresh)

    # -- refresh ---------------------------------------------------------------------------------

    async def action_refresh(self) -> None:
        failed: SourceError | None = None
        try:
            stats = await self.source.stats()
        except SourceError as e:
            stats, failed = {}, e
        if not self.is_running:  # it closed while the snapshot was on its way: its widgets are gone
            return
        if isinstance(failed, DaemonDown):
            self._show_down(True)
            return
        if failed is not None:
            self.query_one("#traffic", Static).update(f"error: {failed}")
            return
        self._show_down(False)
        self.stats = stats
        self.render_stats(stats)

    def _show_down(self, down: bool) -> None:
        self.query_one("#down").display = down
        self.query_one("#tabs").display = not down

    def render_stats(self, s: dict[str, Any]) -> None:
        self.query_one("#traffic", Static).update(view.traffic_line(s))
        self.query_one("#cache", Static).update(view.cache_line(s))
        self.query_one("#rag", Static).update(view.rag_line(s))
        self._fill("providers", view.provider_rows(s))
        self._fill("local", view.local_rows(s))
        self._fill("keys", view.key_rows(s))
        self._fill("tail", view.request_rows(s))

    def _fill(self, table_id: str, rows: list[tuple[str, ...]]) -> None:
        table = self.query_one(f"#{table_id}", DataTable)
        cursor = table.cursor_row
        table.clear()
        table.add_rows(rows)
        if rows and table.cursor_type == "row":
            table.move_cursor(row=min(cursor, len(rows) - 1))

    # -- keys and focus --------------------------------------------------------------------------

    def _typing(self) -> bool:
        return isinstance(self.focused, Input)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "leave_input":
            return self._typing()
        if action in self.KEYS and self._typing():
            return False
        if action == "type":
            tabs = self.query_one("#tabs", TabbedContent)
            return bool(tabs.display) and tabs.active == "chat"
        return True

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "chat":
            self.query_one("#chat-prompt", Input).focus()
        self.refresh_bindings()

    def action_leave_input(self) -> None:
        self.set_focus(None)

    def action_type(self) -> None:
        self.query_one("#chat-prompt", Input).focus()

    async def action_leave(self) -> None:
        await self.action_quit()

    # -- actions ---------------------------------------------------------------------------------

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab
        if tab == "chat":
            self.action_type()

    async def action_start(self) -> None:
        if not self.query_one("#down").display:
            return
        self.notify("starting aigw…")
        try:
            await self.source.start_daemon()
        except (SourceError, OSError) as e:
            self.notify(f"could not start aigw: {e}", severity="error", markup=False)
            return
        await self.action_refresh()

    def _selected_local(self) -> str | None:
        table = self.query_one("#local", DataTable)
        if not table.row_count:
            return None
        return str(table.get_row_at(table.cursor_row)[0])

    async def _local(self, verb: str, model: str | None) -> None:
        if model is None:
            self.notify("no local model selected (type one in the chat model box to load it)")
            return
        try:
            await self.source.post(f"/admin/local/{verb}", {"model": model})
            self.notify(f"{verb}ed {model}", markup=False)
        except (SourceError, DaemonDown) as e:
            self.notify(f"{verb} {model}: {e}", severity="error", markup=False)
        await self.action_refresh()

    async def action_load(self) -> None:
        typed = self.query_one("#chat-model", Input).value.strip()
        await self._local("load", typed or self._selected_local())

    async def action_unload(self) -> None:
        await self._local("unload", self._selected_local())

    # -- chat ------------------------------------------------------------------------------------

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "chat-prompt" or not event.value.strip():
            return
        model = self.query_one("#chat-model", Input).value.strip()
        if not model:
            self.notify("type a model first (e.g. smart, or provider/model)", severity="warning")
            return
        rag = self.query_one("#chat-rag", Input).value.strip() or None
        prompt = event.value.strip()
        event.input.value = ""
        self.history.append({"role": "user", "content": prompt})
        self.query_one("#chat-scroll").scroll_end(animate=False)
        self.run_worker(self._stream(model, rag), exclusive=True, group="chat")

    async def _stream(self, model: str, rag: str | None) -> None:
        log = self.query_one("#chat-log", Static)
        turns = (f"{'you' if m['role'] == 'user' else model}: {m['content']}" for m in self.history)
        shown = "\n\n".join(turns)  # a blank line between turns
        answer = ""
        try:
            async for text in self.source.chat(model, list(self.history), rag):
                answer += text
                log.update(f"{shown}\n\n{model}: {answer}")
        except (SourceError, DaemonDown) as e:
            log.update(f"{shown}\n\nerror: {e}")
            self.history.pop()
            return
        self.history.append({"role": "assistant", "content": answer})
