"""aigw rag ...: index a folder, search it, ask it, its figures, remove a collection.

`index` walks the folder here and sends the files that changed to the daemon, which owns the
embedding model and the writes (started when needed, as `aigw chat` does); `--local` does it all
in this process instead, without a daemon.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from aigw.cli.common import JsonOption, connect, load_config, note, paths, print_json

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from aigw.daemon.client import DaemonClient
    from aigw.rag.walk import Candidate

app = typer.Typer(help="RAG over local folders: index, search, query, stats, rm.", no_args_is_help=True)

CollectionOption = typer.Option(
    None, "--collection", "-c", help="The collection (default: the folder's name)."
)
UsedCollectionOption = typer.Option(
    None,
    "--collection",
    "-c",
    help="The collection (default: the only one, else the one indexed last).",
)
RerankOption = typer.Option(
    None,
    "--rerank",
    help="Re-rank the retrieved chunks with this reranker (a model /v1/rerank serves).",
)
PathArgument = typer.Argument(..., help="The folder to index (again: only what changed is redone).")
GlobOption = typer.Option([], "--glob", "-g", help="Only files matching (gitignore syntax); repeat.")
BATCH_FILES = 32
BATCH_BYTES = 2 * 1024 * 1024


def _collection_for(root: Path, given: str | None) -> str:
    if given:
        return given
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", root.name).strip("-.") or "default"
    return name[:64]


def _progress() -> Progress:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]indexing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files · {task.fields[chunks]} chunks · {task.fields[rate]} chunks/s"),
        TimeElapsedColumn(),
        console=Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR"))),
        transient=False,
        disable=not sys.stderr.isatty(),
    )


class _Sender:
    """Batches documents to the daemon and keeps the figures for the summary."""

    def __init__(
        self, client: DaemonClient, collection: str, bar: Progress, task: TaskID, model: str | None
    ) -> None:
        self.client, self.collection, self.bar, self.task = client, collection, bar, task
        self.model = model
        self.batch: list[dict[str, Any]] = []
        self.size = 0
        self.started = time.perf_counter()
        self.figures = {"indexed": 0, "unchanged": 0, "removed": 0, "chunks": 0}
        self.notes: list[tuple[str, str]] = []

    def add(self, doc: dict[str, Any]) -> None:
        self.batch.append(doc)
        self.size += len(doc["text"])
        if len(self.batch) >= BATCH_FILES or self.size >= BATCH_BYTES:
            self.send()

    def send(self, remove: list[str] | None = None) -> None:
        if not self.batch and not remove:
            return
        out = self.client.rag_index(self.collection, self.batch, remove, self.model)
        for k in self.figures:
            self.figures[k] += int(out.get(k, 0))
        self.notes.extend((n["path"], n["note"]) for n in out.get("notes", []))
        self.bar.advance(self.task, len(self.batch))
        self.batch, self.size = [], 0
        self.refresh()

    def refresh(self) -> None:
        chunks = self.figures["chunks"]
        rate = chunks / max(time.perf_counter() - self.started, 1e-6)
        self.bar.update(self.task, chunks=chunks, rate=f"{rate:.0f}")


def _index_via_daemon(root: Path, collection: str, globs: list[str], model: str | None) -> dict[str, Any]:
    from aigw.rag.walk import scan

    found = scan(root, globs)
    notes = [(n.path, n.reason) for n in found.notes]
    if not found.files:
        notes.append((str(root), "no files of a supported kind to index here"))
    prefix = str(root).rstrip(os.sep) + os.sep
    with connect() as client:
        stored = {p: h for p, h in client.rag_files(collection).items() if p.startswith(prefix)}
        present = {str(c.path) for c in found.files}
        remove = [p for p in stored if p not in present]
        with _progress() as bar:
            task = bar.add_task("index", total=len(found.files), chunks=0, rate="0")
            sender = _Sender(client, collection, bar, task, model)
            unchanged = 0
            for cand in found.files:
                doc = _document(cand, stored, notes, remove)
                if isinstance(doc, dict):
                    sender.add(doc)
                    continue
                unchanged += doc
                bar.advance(task)
            sender.send(remove)
    return {
        "collection": collection,
        "root": str(root),
        **sender.figures,
        "unchanged": sender.figures["unchanged"] + unchanged,
        "seconds": round(time.perf_counter() - sender.started, 3),
        "skipped": [{"path": p, "note": n} for p, n in notes + sender.notes],
    }


def _document(
    cand: Candidate, stored: dict[str, str], notes: list[tuple[str, str]], remove: list[str]
) -> dict[str, Any] | int:
    """The document to send, read as `--local` reads it; else 1 when it is unchanged, 0 when it
    cannot be indexed (noted, and its earlier index removed)."""
    from aigw.rag.ingest import SkipFile, read_document

    key = str(cand.path)
    try:
        doc = read_document(cand, stored.get(key))
    except OSError as e:
        kept = " (its earlier index is kept)" if key in stored else ""
        notes.append((key, f"unreadable: {e.strerror or e}{kept}"))
        return 0
    except SkipFile as e:
        notes.append((key, str(e)))
        if key in stored:
            remove.append(key)
        return 0
    if doc is None:
        return 1
    return {
        "path": doc.path,
        "kind": doc.kind,
        "text": doc.text,
        "sha256": doc.sha256,
        "size": doc.size,
        "mtime": doc.mtime,
    }


def _index_local(root: Path, collection: str, globs: list[str]) -> dict[str, Any]:
    from aigw.rag.embed import LazyEmbedder
    from aigw.rag.ingest import index_folder
    from aigw.rag.store import RagStore, rag_database

    cfg = load_config()
    embedder = LazyEmbedder(cfg.rag.model)
    with RagStore.open(rag_database(paths())) as store, _progress() as bar:
        task = bar.add_task("index", total=None, chunks=0, rate="0")
        started = time.perf_counter()

        def progress(done: int, total: int, chunks: int) -> None:
            rate = chunks / max(time.perf_counter() - started, 1e-6)
            bar.update(task, completed=done, total=total, chunks=chunks, rate=f"{rate:.0f}")

        s = index_folder(store, collection, root, embedder, globs=globs, progress=progress)
    return {
        "collection": collection,
        "root": s.root,
        "indexed": s.indexed,
        "unchanged": s.unchanged,
        "removed": s.removed,
        "chunks": s.chunks,
        "seconds": round(s.seconds, 3),
        "skipped": [{"path": n.path, "note": n.reason} for n in s.skipped],
    }


@app.command()
def index(
    path: Path = PathArgument,
    *,
    collection: str | None = CollectionOption,
    glob: list[str] = GlobOption,
    local: bool = typer.Option(False, "--local", help="Index in this process, without the daemon."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="A new collection's embedding model, e.g. openai/text-embedding-3-small."
    ),
    json_out: bool = JsonOption,
) -> None:
    """Index a folder's documents into a collection, incrementally."""
    from aigw.errors import InvalidRequest
    from aigw.rag.errors import RagUnavailable
    from aigw.rag.service import WALK_NEEDS, missing_packages, rag_install_line

    missing = missing_packages() if local else missing_packages(WALK_NEEDS)
    if missing:
        raise RagUnavailable(rag_install_line(missing))
    root = path.expanduser()
    if not root.is_dir():
        raise InvalidRequest(f"{path} is not a folder", param="path")
    root = root.resolve()
    name = _collection_for(root, collection)
    if local and model is not None:
        raise InvalidRequest(
            "--local indexes with the bundled model only; a provider's model needs the daemon"
        )
    out = _index_local(root, name, glob) if local else _index_via_daemon(root, name, glob, model)
    if json_out:
        print_json(out)
        return
    for s in out["skipped"]:
        note(f"note: {s['path']}: {s['note']}")
    rate = out["chunks"] / out["seconds"] if out["seconds"] else 0.0
    typer.echo(
        f"{name}: indexed {out['indexed']} files ({out['chunks']} chunks, {rate:.0f} chunks/s), "
        f"{out['unchanged']} unchanged, {out['removed']} removed, {len(out['skipped'])} skipped "
        f"in {out['seconds']:.1f} s"
    )


def _client() -> DaemonClient:
    return connect()


@app.command()
def search(
    query: str = typer.Argument(..., help="What to look for."),
    k: int = typer.Option(5, "-k", min=1, max=100, help="How many chunks."),
    collection: str | None = UsedCollectionOption,
    rerank: str | None = RerankOption,
    json_out: bool = JsonOption,
) -> None:
    """The chunks nearest a query, best first, with path, heading and score (the reranker's, with
    --rerank)."""
    with _client() as client:
        hits = client.rag_search(collection, query, k, rerank)
    if json_out:
        print_json(hits)
        return
    if not hits:
        typer.echo("no matches")
    for i, h in enumerate(hits, 1):
        where = h["path"] + (f" — {h['heading']}" if h.get("heading") else "")
        lines = f":{h['start_line']}-{h['end_line']}" if h.get("start_line") else ""
        score = h["score"] if h.get("rerank_score") is None else h["rerank_score"]
        typer.echo(f"{i}. {score:.3f}  {where}{lines}")
        snippet = " ".join(h["content"].split())
        typer.echo(f"   {snippet[:200]}{'…' if len(snippet) > 200 else ''}")


@app.command()
def query(
    question: str = typer.Argument(..., help="The question."),
    model: str | None = typer.Option(None, "--model", "-m", help="The chat model that answers."),
    collection: str | None = UsedCollectionOption,
    rerank: str | None = RerankOption,
) -> None:
    """Answer a question from a collection, streaming, with numbered citations to file paths."""
    from aigw.cli.chat import _answer, _pick_model

    with _client() as client:
        chosen = _pick_model(client, model)
        _answer(client, [{"role": "user", "content": question}], chosen, collection or "", rerank)


@app.command()
def stats(json_out: bool = JsonOption) -> None:
    """Each collection's model, files, chunks and size."""
    with _client() as client:
        data = client.rag_stats()
    if json_out:
        print_json(data)
        return
    loaded = "loaded" if data["model_loaded"] else "not loaded yet"
    typer.echo(f"embedding model: {data['model']} ({loaded})")
    if not data["collections"]:
        typer.echo("no collections yet: `aigw rag index ./docs`")
    for c in data["collections"]:
        typer.echo(
            f"{c['name']}: {c['files']} files, {c['chunks']} chunks, {c['stored_bytes'] / 1e6:.1f} MB, "
            f"{c['model']} ({c['dimension']} dims)"
        )


@app.command()
def rm(
    collection: str = typer.Argument(..., help="The collection to remove."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
) -> None:
    """Remove a collection and everything indexed in it (the files themselves are untouched)."""
    from aigw.errors import InvalidRequest

    if not yes:
        if not sys.stdin.isatty():
            raise InvalidRequest(f"removing {collection!r} needs --yes when not run interactively")
        if not typer.confirm(f"Remove the collection {collection!r}?", default=False):
            raise typer.Exit(1)
    with _client() as client:
        deleted = client.rag_remove(collection)
    typer.echo(f"removed {collection}" if deleted else f"no collection named {collection!r}")
