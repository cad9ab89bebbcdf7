"""`aigw rag index` through the daemon: every skipped file, binaries included, is in the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import aigw.cli.rag_cmd
from aigw.cli import app
from tests.fixtures.daemon import base_env

pytest.importorskip("pathspec", reason="the 'rag' extra is not installed")


class FakeDaemon:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def __enter__(self) -> FakeDaemon:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def rag_files(self, collection: str) -> dict[str, str]:
        return {}

    def rag_index(
        self, collection: str, documents: list[dict[str, Any]], remove: Any = None, model: Any = None
    ) -> dict[str, Any]:
        self.sent.extend(documents)
        return {"indexed": len(documents), "chunks": len(documents), "notes": []}


def test_a_binary_file_is_noted_in_the_report(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nhello\n")
    (docs / "blob.txt").write_bytes(b"abc\0def")
    daemon = FakeDaemon()
    monkeypatch.setattr(aigw.cli.rag_cmd, "connect", lambda: daemon)
    result = CliRunner().invoke(app, ["rag", "index", str(docs), "--json"], env=base_env(home))
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [d["path"] for d in daemon.sent] == [str(docs.resolve() / "a.md")]
    notes = {s["path"]: s["note"] for s in out["skipped"]}
    assert "binary" in notes[str(docs.resolve() / "blob.txt")]
    human = CliRunner().invoke(app, ["rag", "index", str(docs)], env=base_env(home))
    assert "blob.txt: binary" in human.stderr and "1 skipped" in human.stdout
