"""Index a folder into a collection, incrementally.

    index_folder(store, collection, root, embedder, *, globs=(), max_file_bytes=2 MiB,
                 max_tokens=256, overlap_tokens=32, batch_chunks=256, progress=None) -> IndexSummary

Which files: see `aigw.rag.walk` (.gitignore honoured, symlinks never followed, kinds by extension).
A file is read once; its sha256 decides: unchanged files are skipped, changed ones re-chunked,
re-embedded and replaced, files gone from the folder (or now excluded) removed. Paths are stored
absolute, so one collection can hold several folders and indexing one leaves the others alone.

Skipped with a note each (`IndexSummary.skipped`): files over `max_file_bytes`, binaries (a NUL
byte in the first 8 KiB), text that is not UTF-8, unreadable files (whose earlier index, if any,
is kept), PDFs when pypdf is missing or cannot read them, an empty folder.

Throughput: chunks of several files are embedded in one call of about `batch_chunks` texts (the
model sorts them by length and pads less) on an embedding thread, while this thread reads and
chunks the next files and commits the batch embedded before. Each file is committed in its own
transaction, so a run killed at any point leaves every file either fully old or fully new, and
the next run picks up where it stopped. The embedder is first touched when a file needs embedding: with a
`LazyEmbedder`, re-indexing an unchanged folder never loads a model.

`progress(files_done, files_total, chunks_done)` is called as files are settled; an exception
raised from it stops the run (files committed so far stay committed).
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aigw.errors import InvalidRequest
from aigw.rag.chunk import Chunk, chunk_text
from aigw.rag.embed import Embedder
from aigw.rag.errors import EmbeddingModelMismatch
from aigw.rag.store import RagStore
from aigw.rag.walk import Candidate, FileKind, Note, scan

if TYPE_CHECKING:
    from aigw.rag.embed import FloatArray

DEFAULT_MAX_FILE_BYTES = 2 * 1024 * 1024
BINARY_SNIFF_BYTES = 8192

Progress = Callable[[int, int, int], None]


@dataclass(slots=True)
class IndexSummary:
    collection: str
    root: str
    indexed: int = 0  # files (re)written
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0  # chunks written by this run
    skipped: list[Note] = field(default_factory=list)
    seconds: float = 0.0


class _Skip(Exception):
    """A file this run cannot index; the message is the note."""


@dataclass(slots=True)
class _Pending:
    key: str
    digest: str
    size: int
    mtime: float
    kind: FileKind
    chunks: list[Chunk]


class _Run:
    def __init__(
        self,
        *,
        store: RagStore,
        collection: str,
        embedder: Embedder,
        summary: IndexSummary,
        total: int,
        stored: dict[str, str],
        max_file_bytes: int,
        max_tokens: int,
        overlap_tokens: int,
        batch_chunks: int,
        progress: Progress | None,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.store = store
        self.collection = collection
        self.embedder = embedder
        self.summary = summary
        self.total = total
        self.stored = stored
        self.max_file_bytes = max_file_bytes
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.batch_chunks = batch_chunks
        self.progress = progress
        self.done = 0
        self.pending: list[_Pending] = []
        self.pending_chunks = 0
        self.ready = False
        self.pool = pool
        self.inflight: tuple[list[_Pending], Future[FloatArray]] | None = None

    def settled(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, self.summary.chunks)

    def index(self, files: list[Candidate]) -> None:
        for cand in files:
            item = self._prepare(cand)
            if item is None:
                self.settled()
            else:
                self.add(item)
        self.flush(final=True)

    def _prepare(self, cand: Candidate) -> _Pending | None:
        """Read, hash and chunk one file; None when it is unchanged or skipped (with a note)."""
        key = str(cand.path)
        stale = key in self.stored
        try:
            data = _read(cand, self.max_file_bytes)
        except OSError as exc:
            kept = " (its earlier index is kept)" if stale else ""
            self.summary.skipped.append(Note(key, f"unreadable: {exc.strerror or exc}{kept}"))
            return None
        except _Skip as skip:
            self._skip(key, str(skip), stale)
            return None
        digest = hashlib.sha256(data).hexdigest()
        if self.stored.get(key) == digest:
            self.summary.unchanged += 1
            return None
        try:
            text = _extract(cand.kind, data)
        except _Skip as skip:
            self._skip(key, str(skip), stale)
            return None
        chunks = chunk_text(
            text,
            "text" if cand.kind == "pdf" else cand.kind,
            max_tokens=min(self.max_tokens, self.embedder.max_tokens),
            overlap_tokens=self.overlap_tokens,
            count_tokens=self.embedder.count_tokens,
        )
        return _Pending(key, digest, len(data), cand.mtime, cand.kind, chunks)

    def _skip(self, key: str, note: str, stale: bool) -> None:
        """Note a file that cannot be indexed now; drop what an earlier run indexed of it."""
        self.summary.skipped.append(Note(key, note))
        if stale and self.store.remove_file(self.collection, key):
            self.summary.removed += 1

    def add(self, item: _Pending) -> None:
        self.pending.append(item)
        self.pending_chunks += len(item.chunks)
        if self.pending_chunks >= self.batch_chunks:
            self.flush()

    def flush(self, *, final: bool = False) -> None:
        """Start embedding the pending files on the embedding thread, then commit the batch that
        was embedding before (its writes overlap this batch's inference)."""
        submitted = None
        if self.pending:
            if not self.ready:
                self.store.ensure_collection(self.collection, self.embedder.name, self.embedder.dimension)
                self.ready = True
            texts = [c.embedding_text for p in self.pending for c in p.chunks]
            submitted = (self.pending, self.pool.submit(self.embedder.embed, texts))
            self.pending, self.pending_chunks = [], 0
        previous, self.inflight = self.inflight, submitted
        if previous is not None:
            self._commit(*previous)
        if final and self.inflight is not None:
            last, self.inflight = self.inflight, None
            self._commit(*last)

    def _commit(self, batch: list[_Pending], future: Future[FloatArray]) -> None:
        vectors = future.result()
        offset = 0
        for p in batch:
            n = len(p.chunks)
            self.store.replace_file(
                self.collection, p.key, p.digest, p.chunks, vectors[offset : offset + n],
                size=p.size, mtime=p.mtime, metadata={"kind": p.kind},
            )  # fmt: skip
            offset += n
            self.summary.indexed += 1
            self.summary.chunks += n
            self.settled()


def index_folder(
    store: RagStore,
    collection: str,
    root: Path | str,
    embedder: Embedder,
    *,
    globs: Sequence[str] = (),
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_tokens: int = 256,
    overlap_tokens: int = 32,
    batch_chunks: int = 256,
    progress: Progress | None = None,
) -> IndexSummary:
    """Bring `collection` up to date with the files under `root` (see the module docstring)."""
    started = time.perf_counter()
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise InvalidRequest(f"{root} is not a folder", param="path")
    folder = folder.resolve()
    info = store.collection(collection)
    if info is not None and info.model != embedder.name:
        raise EmbeddingModelMismatch(collection, info.model, info.dimension, embedder.name, None)

    found = scan(folder, globs)
    summary = IndexSummary(collection, str(folder), skipped=list(found.notes))
    if not found.files:
        summary.skipped.append(Note(str(folder), "no files of a supported kind to index here"))
    prefix = str(folder).rstrip(os.sep) + os.sep
    stored = {p: h for p, h in store.file_hashes(collection).items() if p.startswith(prefix)}
    candidates = {str(c.path) for c in found.files}
    for path in sorted(set(stored) - candidates):
        if store.remove_file(collection, path):
            summary.removed += 1

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aigw-rag-embed")
    try:
        run = _Run(
            store=store, collection=collection, embedder=embedder, summary=summary,
            total=len(found.files), stored=stored, max_file_bytes=max_file_bytes, max_tokens=max_tokens,
            overlap_tokens=overlap_tokens, batch_chunks=batch_chunks, progress=progress, pool=pool,
        )  # fmt: skip
        run.index(found.files)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    summary.seconds = time.perf_counter() - started
    return summary


def _read(cand: Candidate, limit: int) -> bytes:
    """The file's bytes, refusing to follow a symlink swapped in since the scan."""
    if cand.size > limit:
        raise _Skip(f"larger than {_size(limit)} ({_size(cand.size)}): skipped")
    fd = os.open(cand.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise _Skip(f"larger than {_size(limit)}: skipped")
    return data


def _extract(kind: FileKind, data: bytes) -> str:
    if kind == "pdf":
        return _pdf_text(data)
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        raise _Skip("binary (a NUL byte in its first 8 KiB): skipped")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Skip(f"not UTF-8 text (byte {exc.start}): skipped") from None


def _pdf_text(data: bytes) -> str:
    try:
        import pypdf
    except ImportError:
        raise _Skip("a PDF, and pypdf is not installed (pip install pypdf): skipped") from None
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except Exception as exc:  # pypdf raises many types for broken or encrypted files
        raise _Skip(f"cannot read this PDF ({type(exc).__name__}: {exc}): skipped") from None
    return "\n\n".join(p.strip() for p in pages if p.strip())


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB".replace(".0 MiB", " MiB")


SkipFile = _Skip
"""Raised by `load_file` with the note saying why a file is not indexed."""


def load_file(cand: Candidate, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> tuple[bytes, str]:
    """A candidate's bytes and text, for indexing elsewhere (the CLI sending documents to the
    daemon): the same reading, size limit and binary/UTF-8/PDF rules as `index_folder`. Raises
    OSError when unreadable, `SkipFile` (with the note) when it is not indexable."""
    data = _read(cand, max_file_bytes)
    return data, _extract(cand.kind, data)
