"""Index a folder into a collection, incrementally: walk it, read each file, and hand what changed
to the one indexer (`aigw.rag.index`).

    index_folder(store, collection, root, embedder, *, globs=(), max_file_bytes=2 MiB,
                 max_tokens=256, overlap_tokens=32, batch_chunks=256, progress=None) -> IndexSummary

Which files: see `aigw.rag.walk` (.gitignore honoured, symlinks never followed, kinds by extension).
A file is read once; its sha256 decides: unchanged files are skipped, changed ones re-chunked,
re-embedded and replaced, files gone from the folder (or now excluded) removed. Paths are stored
absolute, so one collection can hold several folders and indexing one leaves the others alone.
Reading and chunking the next files overlap embedding (see `aigw.rag.index`).

Skipped with a note each (`IndexSummary.skipped`): files over `max_file_bytes`, binaries (a NUL
byte in the first 8 KiB), text that is not UTF-8, unreadable files (whose earlier index, if any,
is kept), PDFs when pypdf is missing or cannot read them, an empty folder.

`read_document` is the same reading for the CLI, which sends the documents to the daemon.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Sequence
from pathlib import Path

from aigw.errors import InvalidRequest
from aigw.rag.embed import Embedder
from aigw.rag.index import Document, Indexer, IndexSummary, Progress
from aigw.rag.store import RagStore
from aigw.rag.walk import Candidate, FileKind, Note, scan

DEFAULT_MAX_FILE_BYTES = 2 * 1024 * 1024
BINARY_SNIFF_BYTES = 8192


class SkipFile(Exception):
    """A file this run cannot index; the message is the note."""


def read_document(
    cand: Candidate, stored_sha256: str | None = None, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> Document | None:
    """A candidate file as a document, or None when its bytes still hash to `stored_sha256` (its text
    is then not even extracted). Raises OSError when unreadable, SkipFile (with the note) when it
    is not indexable."""
    data = _read(cand, max_file_bytes)
    digest = hashlib.sha256(data).hexdigest()
    if digest == stored_sha256:
        return None
    return Document(str(cand.path), cand.kind, _extract(cand.kind, data), digest, len(data), cand.mtime)


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
    found = scan(folder, globs)
    summary = IndexSummary(collection, str(folder), skipped=list(found.notes))
    with Indexer(
        store, collection, embedder, summary, total=len(found.files), max_tokens=max_tokens,
        overlap_tokens=overlap_tokens, batch_chunks=batch_chunks, progress=progress,
    ) as indexer:  # fmt: skip
        if not found.files:
            summary.skipped.append(Note(str(folder), "no files of a supported kind to index here"))
        prefix = str(folder).rstrip(os.sep) + os.sep
        stored = {p: h for p, h in store.file_hashes(collection).items() if p.startswith(prefix)}
        for path in sorted(set(stored) - {str(c.path) for c in found.files}):
            if store.remove_file(collection, path):
                summary.removed += 1
        for cand in found.files:
            doc = _document(store, collection, cand, stored, summary, max_file_bytes=max_file_bytes)
            if doc is None:
                indexer.settled()
            else:
                indexer.add(doc)
    summary.seconds = time.perf_counter() - started
    return summary


def _document(
    store: RagStore,
    collection: str,
    cand: Candidate,
    stored: dict[str, str],
    summary: IndexSummary,
    *,
    max_file_bytes: int,
) -> Document | None:
    """The file as a document; None when it is unchanged or skipped (with a note, and an earlier
    index of a file that can no longer be indexed dropped)."""
    key = str(cand.path)
    try:
        doc = read_document(cand, stored.get(key), max_file_bytes)
    except OSError as exc:
        kept = " (its earlier index is kept)" if key in stored else ""
        summary.skipped.append(Note(key, f"unreadable: {exc.strerror or exc}{kept}"))
        return None
    except SkipFile as skip:
        summary.skipped.append(Note(key, str(skip)))
        if key in stored and store.remove_file(collection, key):
            summary.removed += 1
        return None
    if doc is None:
        summary.unchanged += 1
    return doc


def _read(cand: Candidate, limit: int) -> bytes:
    """The file's bytes, refusing to follow a symlink swapped in since the scan."""
    if cand.size > limit:
        raise SkipFile(f"larger than {_size(limit)} ({_size(cand.size)}): skipped")
    fd = os.open(cand.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise SkipFile(f"larger than {_size(limit)}: skipped")
    return data


def _extract(kind: FileKind, data: bytes) -> str:
    if kind == "pdf":
        return _pdf_text(data)
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        raise SkipFile("binary (a NUL byte in its first 8 KiB): skipped")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SkipFile(f"not UTF-8 text (byte {exc.start}): skipped") from None


def _pdf_text(data: bytes) -> str:
    try:
        import pypdf
    except ImportError:
        raise SkipFile("a PDF, and pypdf is not installed (pip install pypdf): skipped") from None
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except Exception as exc:  # pypdf raises many types for broken or encrypted files
        raise SkipFile(f"cannot read this PDF ({type(exc).__name__}: {exc}): skipped") from None
    return "\n\n".join(p.strip() for p in pages if p.strip())


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB".replace(".0 MiB", " MiB")
