"""aigw chat: one-shot or an interactive REPL, streaming tokens as they arrive."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from aigw.cli.common import connect, load_config, model_library, note, paths

if TYPE_CHECKING:
    from aigw.daemon.client import DaemonClient

REPL_HELP = "Type a message; /help lists the commands, /exit or Ctrl-D quits."
REPL_COMMANDS = (
    ("/help", "list these commands"),
    ("/reset", "forget the conversation (the system prompt stays)"),
    ("/exit", "quit (also /quit, or Ctrl-D; Ctrl-C clears the line or stops an answer)"),
)
_COMMAND = re.compile(r"^/[a-z]+$")


def _offer_pull(assume_yes: bool) -> str:
    """Nothing can answer: offer the catalog's default small model, then serve it locally."""
    from aigw.errors import InvalidRequest
    from aigw.local.catalog import load_catalog
    from aigw.local.pull import pull, resolve

    catalog = load_catalog(paths().models_dir)
    entry = catalog.entries[catalog.default]
    target = resolve(entry.name, catalog)
    library = model_library()
    kind = library.kind_for(target.format)
    missing = library.missing_for(kind)
    if missing:  # a pull would fetch a model nothing here can download or run: say what comes first
        raise InvalidRequest(
            f"no model is available: configure a provider (see `aigw config path`), or install a local "
            f"engine first ({', '.join(missing)} missing: {kind.install}); then `aigw chat` offers to "
            f"pull {entry.name}"
        )
    source = entry.gguf if target.file else entry.mlx
    size = f"{source.size_mb} MB" if source and source.size_mb else "a small download"
    if not assume_yes:
        if not sys.stdin.isatty():
            raise InvalidRequest(
                f"no model is available: configure a provider, or `aigw models pull {entry.name}` "
                "(or rerun with --yes to pull it now)"
            )
        if not typer.confirm(f"No model is available. Pull {entry.name} ({size}) now?", default=False):
            raise InvalidRequest(f"no model is available (`aigw models pull {entry.name}` when you want one)")
    where = library.destination(library.kind_for(target.format), entry.name)
    note(f"pulling {target.repo}" + (f"/{target.file}" if target.file else " (MLX)"))
    pull(target, where.path.parent)
    return where.model


def _pick_model(client: DaemonClient, model: str | None, assume_yes: bool = False) -> str:
    from aigw.errors import InvalidRequest

    if model:
        return model
    if os.environ.get("AIGW_MODEL"):
        return os.environ["AIGW_MODEL"]
    configured = load_config().chat.default_model
    if configured:
        return configured
    # Embedding models are served too, but they cannot chat.
    ids = [m["id"] for m in client.list_models() if "chat" in m.get("capabilities", ["chat"])]
    if len(ids) == 1:
        return str(ids[0])
    if not ids:
        return _offer_pull(assume_yes)
    hint = "none are configured (see `aigw config path`)" if not ids else "see `aigw models list`"
    raise InvalidRequest(
        f"choose a model with -m/--model, AIGW_MODEL or [chat] default_model in config.toml; {hint}"
    )


def _answer(
    client: DaemonClient,
    messages: list[dict[str, Any]],
    model: str,
    rag: str | None = None,
    rerank: str | None = None,
) -> str:
    from aigw.daemon.client import StreamInfo

    info = StreamInfo()
    parts: list[str] = []
    for text in client.chat_stream(messages, model=model, info=info, rag=rag, rerank=rerank):
        parts.append(text)
        sys.stdout.write(text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    tail = f"{info.provider}/{info.model}" if info.provider else model
    if info.usage:
        tail += f" · {info.usage.get('prompt_tokens', 0)}+{info.usage.get('completion_tokens', 0)} tokens"
    if info.finish_reason == "length":
        tail += " · cut at max tokens"
    for src in info.sources:
        where = src["path"] + (f" — {src['heading']}" if src.get("heading") else "")
        ranked = f"  (rerank {src['rerank_score']:.3f})" if src.get("rerank_score") is not None else ""
        typer.echo(f"[{src['n']}] {where}{ranked}")
    note(f"[{tail}]")
    return "".join(parts)


def _line_history(history_file: Path) -> Any:
    """readline with the history of earlier chats loaded, or None where there is none."""
    try:
        import readline

        history_file.parent.mkdir(parents=True, exist_ok=True)
        if history_file.exists():
            readline.read_history_file(str(history_file))
    except (ImportError, OSError):
        return None
    return readline


def _repl_command(line: str) -> bool:
    """Whether `line` is a REPL command other than /exit and /reset (then it is done here)."""
    if line in ("/help", "/?"):
        for command, what in REPL_COMMANDS:
            note(f"{command:8} {what}")
        return True
    if _COMMAND.match(line):
        note(f"unknown command {line} (/help lists them)")
        return True
    return False


def _repl(client: DaemonClient, model: str, system: str | None, rag: str | None = None) -> None:
    from aigw.daemon.client import ClientError

    history_file = paths().chat_history_file
    readline = _line_history(history_file)
    base = [{"role": "system", "content": system}] if system else []
    messages = list(base)
    note(f"chatting with {model}. {REPL_HELP}")
    try:
        while True:
            try:
                line = input("> ").strip()
            except EOFError:
                typer.echo()
                return
            except KeyboardInterrupt:  # like a shell: Ctrl-C clears the line, Ctrl-D quits
                typer.echo()
                continue
            if not line:
                continue
            if line in ("/exit", "/quit"):
                return
            if line == "/reset":
                messages = list(base)
                note("conversation reset")
                continue
            if _repl_command(line):
                continue
            messages.append({"role": "user", "content": line})
            try:
                reply = _answer(client, messages, model, rag)
            except KeyboardInterrupt:
                typer.echo()
                note("(interrupted)")
                messages.pop()
                continue
            except ClientError as e:
                note(f"error: {e.message}")
                messages.pop()
                continue
            messages.append({"role": "assistant", "content": reply})
    finally:
        if readline is not None:
            with contextlib.suppress(OSError):
                readline.write_history_file(str(history_file))


def chat(
    prompt: str | None = typer.Argument(None, help="Ask once and exit; without it, an interactive chat."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model or alias (see `aigw models list`)."),
    system: str | None = typer.Option(None, "--system", "-s", help="A system prompt."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Pull the default local model without asking."),
    rag: str | None = typer.Option(
        None, "--rag", help="Ground answers in this RAG collection, with citations."
    ),
) -> None:
    """Chat with a model through the daemon (starting it when needed)."""
    with connect() as client:
        chosen = _pick_model(client, model, yes)
        if prompt is None:
            _repl(client, chosen, system, rag)
            return
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        _answer(client, messages, chosen, rag)


def register(app: typer.Typer) -> None:
    app.command()(chat)
