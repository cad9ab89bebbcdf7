"""Indexing folders: incremental runs, which files, bad input, PDFs, progress."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aigw.errors import InvalidRequest
from aigw.rag.embed import Embedder, LazyEmbedder, SentenceTransformerEmbedder
from aigw.rag.errors import EmbeddingModelMismatch
from aigw.rag.index import IndexSummary, index_documents
from aigw.rag.ingest import index_folder, read_document
from aigw.rag.query import search_text
from aigw.rag.store import RagStore
from aigw.rag.walk import scan

FILES = {
    "README.md": "# Widget\n\nThe widget frobnicates teal gears.\n\n## Install\n\nRun the installer twice.\n",
    "notes.txt": "Plain notes about the pelican migration season.\n",
    "guide.rst": "Guide\n=====\n\nThe guide covers harbour tides.\n",
    "page.html": "<html><body><h1>Page</h1><p>An HTML page about volcano soup.</p></body></html>",
    "src/tool.py": "def tool():\n    '''Sharpen the obsidian knives.'''\n    return 1\n",
    "docs/deep/faq.md": "# FAQ\n\nQ: Why do walruses hum? A: Because of the acoustics.\n",
}


def make_tree(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def never_loads(name: str) -> Embedder:
    raise AssertionError("this run must not load a model")


def indexed_at(store: RagStore) -> dict[str, float]:
    return {str(p): float(t) for p, t in store._conn.execute("SELECT path, indexed_at FROM rag_files")}


def notes(summary: IndexSummary) -> dict[str, str]:
    return {Path(n.path).name: n.reason for n in summary.skipped}


def test_incremental_reindex_touches_only_changes(
    tmp_path: Path, store: RagStore, embedder: SentenceTransformerEmbedder
) -> None:
    root = tmp_path / "docs"
    make_tree(root, dict(FILES))
    first = index_folder(store, "docs", root, embedder)
    assert (first.indexed, first.unchanged, first.removed, first.skipped) == (6, 0, 0, [])
    assert first.chunks == store.stats("docs")[0].chunks >= 6
    before = indexed_at(store)

    (root / "notes.txt").write_text("Plain notes about the flamingo migration season.\n")
    (root / "src/tool.py").write_text("def tool():\n    '''Polish the jade spoons.'''\n    return 2\n")
    (root / "guide.rst").unlink()
    (root / "new.md").write_text("# New\n\nA new page about comet dust.\n")
    second = index_folder(store, "docs", root, embedder)
    assert (second.indexed, second.unchanged, second.removed) == (3, 3, 1)
    after = indexed_at(store)
    changed = {p for p in after if after[p] != before.get(p)}
    resolved = root.resolve()
    assert changed == {str(resolved / n) for n in ("notes.txt", "src/tool.py", "new.md")}
    assert str(resolved / "guide.rst") not in after

    top = search_text(store, "docs", "flamingo migration", embedder, k=1)[0]
    assert top.path == str(resolved / "notes.txt") and "flamingo" in top.content
    texts = [h.content for h in search_text(store, "docs", "harbour tides guide", embedder, k=10)]
    assert not any("harbour" in t for t in texts)

    third = index_folder(store, "docs", root, LazyEmbedder(embedder.name, never_loads))
    assert (third.indexed, third.unchanged, third.removed) == (0, 6, 0)
    assert store.integrity_check() == "ok"


def test_gitignore_skip_dirs_and_globs(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_tree(
        root,
        {
            ".gitignore": "*.txt\nbuild/\n!keep.txt\n/top-only.md\n",
            "a.md": "a", "top-only.md": "x", "keep.txt": "kept", "drop.txt": "dropped",
            "build/out.md": "built", "lib/build/gen.md": "generated",
            "lib/.gitignore": "secret.md\n!drop.txt\n", "lib/secret.md": "s", "lib/drop.txt": "re-included",
            "lib/top-only.md": "only the root one is ignored",
            "node_modules/pkg/readme.md": "n", ".git/HEAD.md": "g", ".venv/lib/x.py": "v",
            "myenv/pyvenv.cfg": "home = /usr", "myenv/lib/site.py": "v",
            "image.png": b"\x89PNG\r\n", "Makefile": "all:\n\techo hi\n",
        },
    )  # fmt: skip
    found = scan(root)
    assert sorted(c.relpath for c in found.files) == [
        "Makefile", "a.md", "keep.txt", "lib/drop.txt", "lib/top-only.md"
    ]  # fmt: skip
    kinds = {c.relpath: c.kind for c in found.files}
    assert (kinds["Makefile"], kinds["a.md"], kinds["keep.txt"]) == ("code", "markdown", "text")
    assert found.notes == []
    assert [c.relpath for c in scan(root, ["*.png"]).files] == ["image.png"]  # named by a glob: read as text
    assert [c.relpath for c in scan(root, ["*.md"]).files] == ["a.md", "lib/top-only.md"]
    assert [c.relpath for c in scan(root, ["lib/**"]).files] == ["lib/drop.txt", "lib/top-only.md"]


def test_bad_input_gets_a_note_each_and_nothing_else_changes(
    tmp_path: Path, store: RagStore, embedder: SentenceTransformerEmbedder
) -> None:
    outside = tmp_path / "outside"
    make_tree(outside, {"secret.md": "# Secret\n\nThe launch code is 0000.\n"})
    root = tmp_path / "docs"
    make_tree(
        root,
        {
            "good.md": "# Good\n\nA good page about otters.\n",
            "blob.txt": b"binary\x00\x01\x02 data",
            "latin1.md": "caf\xe9 cr\xe8me".encode("latin-1"),
            "big.txt": "word " * 400,
            "zz-swapped.md": "# Swapped\n\nReplaced by a symlink during the run.\n",
        },
    )
    (root / "escape.md").symlink_to(outside / "secret.md")
    (root / "escape-dir").symlink_to(outside)
    (root / "inside.md").symlink_to(root / "good.md")

    def swap(done: int, total: int, chunks: int) -> None:  # a file replaced by a symlink after the scan
        target = root / "zz-swapped.md"
        if not target.is_symlink():
            target.unlink()
            target.symlink_to(outside / "secret.md")

    summary = index_folder(store, "docs", root, embedder, max_file_bytes=1000, progress=swap)
    reasons = notes(summary)
    assert "outside" in reasons["escape.md"] and "not followed" in reasons["escape.md"]
    assert "outside" in reasons["escape-dir"]
    assert "inside the folder" in reasons["inside.md"]
    assert "binary" in reasons["blob.txt"]
    assert "not UTF-8" in reasons["latin1.md"]
    assert "larger than 1000 bytes" in reasons["big.txt"]
    assert "unreadable" in reasons["zz-swapped.md"]
    assert len(summary.skipped) == 7
    assert summary.indexed == 1
    assert list(store.file_hashes("docs")) == [str(root.resolve() / "good.md")]
    assert all("launch code" not in h.content for h in search_text(store, "docs", "launch code", embedder))

    # a file indexed earlier that turns binary is dropped from the index
    (root / "good.md").write_bytes(b"\x00now binary")
    again = index_folder(store, "docs", root, embedder, max_file_bytes=1000)
    assert again.removed == 1 and store.file_hashes("docs") == {}
    assert store.integrity_check() == "ok"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_keeps_its_earlier_index(
    tmp_path: Path, store: RagStore, embedder: SentenceTransformerEmbedder
) -> None:
    root = tmp_path / "docs"
    make_tree(root, {"a.md": "# A\n\nAlpha.\n", "b.md": "# B\n\nBravo.\n"})
    index_folder(store, "docs", root, embedder)
    (root / "a.md").write_text("# A\n\nAlpha changed.\n")
    (root / "a.md").chmod(0)
    try:
        summary = index_folder(store, "docs", root, embedder)
    finally:
        (root / "a.md").chmod(0o644)
    assert "unreadable" in notes(summary)["a.md"] and "earlier index is kept" in notes(summary)["a.md"]
    assert len(store.file_hashes("docs")) == 2


def test_empty_folder_mismatch_and_not_a_folder(
    tmp_path: Path, store: RagStore, embedder: SentenceTransformerEmbedder
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    summary = index_folder(store, "docs", empty, LazyEmbedder(embedder.name, never_loads))
    assert [n.reason for n in summary.skipped] == ["no files of a supported kind to index here"]
    assert store.stats() == []  # no collection made for nothing

    store.ensure_collection("docs", "acme/other-model", 768)
    with pytest.raises(EmbeddingModelMismatch, match="acme/other-model"):
        index_folder(store, "docs", empty, LazyEmbedder(embedder.name, never_loads))
    with pytest.raises(InvalidRequest, match="not a folder"):
        index_folder(store, "docs", tmp_path / "missing", embedder)


def test_progress_and_several_folders_in_one_collection(
    tmp_path: Path, store: RagStore, embedder: SentenceTransformerEmbedder
) -> None:
    make_tree(tmp_path / "a", {f"{i}.md": f"# A{i}\n\nFirst folder page {i}.\n" for i in range(5)})
    make_tree(tmp_path / "b", {"x.txt": "Second folder.\n"})
    calls: list[tuple[int, int, int]] = []
    index_folder(store, "mixed", tmp_path / "a", embedder, batch_chunks=2,
                 progress=lambda *args: calls.append(args))  # fmt: skip
    assert [c[0] for c in calls] == [1, 2, 3, 4, 5] and {c[1] for c in calls} == {5}
    assert calls[-1][2] == 5
    index_folder(store, "mixed", tmp_path / "b", embedder)
    assert len(store.file_hashes("mixed")) == 6  # indexing b left a's files alone


def tiny_pdf(text: str) -> bytes:
    """A one-page PDF showing `text` in Helvetica, with a correct cross-reference table."""
    stream = f"BT /F1 18 Tf 20 100 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 400 144] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_pdf_text_is_indexed(tmp_path: Path, store: RagStore, embedder: SentenceTransformerEmbedder) -> None:
    pdfs: dict[str, str | bytes] = {"paper.pdf": tiny_pdf("Quokkas enjoy lemon tarts."), "bad.pdf": b"%PDF"}
    make_tree(tmp_path / "p", pdfs)
    summary = index_folder(store, "pdfs", tmp_path / "p", embedder)
    assert summary.indexed == 1
    assert "cannot read this PDF" in notes(summary)["bad.pdf"]
    hit = search_text(store, "pdfs", "what do quokkas like?", embedder, k=1)[0]
    assert hit.path.endswith("paper.pdf") and "Quokkas enjoy lemon tarts." in hit.content


def test_the_daemon_and_local_runs_index_the_same_way(
    tmp_path: Path, store: RagStore, embedder: SentenceTransformerEmbedder
) -> None:
    """`aigw rag index --local` and the daemon (documents sent by the CLI) are one indexer: the same
    files give the same chunks, metadata and vectors, and a re-run of either sees nothing changed."""
    root = tmp_path / "docs"
    make_tree(root, dict(FILES))
    local = index_folder(store, "local", root, embedder, batch_chunks=3)
    docs = [doc for cand in scan(root.resolve()).files if (doc := read_document(cand)) is not None]
    sent = index_documents(store, "sent", docs, embedder, batch_chunks=3)
    assert (local.indexed, local.chunks) == (sent.indexed, sent.chunks) == (6, local.chunks)

    def rows(collection: str) -> list[tuple[object, ...]]:
        return sorted(
            store._conn.execute(
                "SELECT f.path, f.content_hash, f.size, k.position, k.heading, k.content, k.metadata "
                "FROM rag_chunks k JOIN rag_files f ON f.id = k.file_id JOIN rag_collections c "
                "ON c.id = f.collection_id WHERE c.name = ?",
                (collection,),
            )
        )

    assert rows("local") == rows("sent") and all('"kind"' in str(r[-1]) for r in rows("sent"))
    query = "why do walruses hum"
    assert [h.content for h in search_text(store, "local", query, embedder, k=3)] == [
        h.content for h in search_text(store, "sent", query, embedder, k=3)
    ]
    again = index_documents(store, "sent", docs, LazyEmbedder(embedder.name, never_loads))
    assert (again.indexed, again.unchanged) == (0, 6)
