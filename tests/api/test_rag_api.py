"""RAG through a real daemon: the real MiniLM model and sqlite-vec, the openai SDK, the CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fixtures.daemon import DaemonProcess, fake_config, free_port, write_config
from tests.fixtures.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.process

pytest.importorskip("sentence_transformers")

DOCS = {
    "install.md": "# Install\n\nRun `brew install zorblax` to install Zorblax on macOS.\n\n"
    "## Linux\n\nOn Debian, `apt install zorblax` installs it.\n",
    "cooking.txt": "Boil the pasta for nine minutes in plenty of salted water, then drain it.\n",
    "garden.md": "# Roses\n\nPrune roses in late winter, just above an outward-facing bud.\n",
}


def doc(path: str, text: str, kind: str = "markdown") -> dict[str, Any]:
    return {"path": path, "kind": kind, "text": text, "sha256": hashlib.sha256(text.encode()).hexdigest()}


@pytest.fixture(scope="module")
def up() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(up: FakeOpenAIServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    home = tmp_path_factory.mktemp("aigw-rag-home")
    port = free_port()
    write_config(home, fake_config(up.base_url, port, '[rag]\nchat_model = "fake/gpt-test"\n'))
    d = DaemonProcess(home, port)
    d.env["HF_HUB_OFFLINE"] = "1"
    d.start()
    yield d
    assert d.terminate() == 0
    assert "Traceback" not in d.log(), d.log()


def test_index_search_reindex_remove(gw: DaemonProcess) -> None:
    docs = [
        doc(f"/corpus/{name}", text, "text" if name.endswith(".txt") else "markdown")
        for name, text in DOCS.items()
    ]
    r = gw.post("/v1/rag/index", json={"collection": "api", "documents": docs}, timeout=120)
    assert r.status_code == 200, r.text
    assert (r.json()["indexed"], r.json()["unchanged"]) == (3, 0) and r.json()["chunks"] >= 3
    again = gw.post("/v1/rag/index", json={"collection": "api", "documents": docs}, timeout=60).json()
    assert (again["indexed"], again["unchanged"], again["chunks"]) == (0, 3, 0)

    hits = gw.post(
        "/v1/rag/search", json={"collection": "api", "query": "how long should pasta cook?", "k": 2}
    ).json()
    assert hits["data"][0]["path"] == "/corpus/cooking.txt"
    assert hits["data"][0]["score"] > hits["data"][1]["score"]
    linux = gw.post(
        "/v1/rag/search", json={"collection": "api", "query": "installing on Debian", "k": 1}
    ).json()
    assert linux["data"][0]["path"] == "/corpus/install.md" and "Linux" in linux["data"][0]["heading"]

    files = gw.get("/v1/rag/collections/api/files").json()["files"]
    assert set(files) == {d["path"] for d in docs} and files["/corpus/garden.md"] == docs[2]["sha256"]
    out = gw.post("/v1/rag/index", json={"collection": "api", "remove": ["/corpus/garden.md"]}).json()
    assert out["removed"] == 1
    assert set(gw.get("/v1/rag/collections/api/files").json()["files"]) == {d["path"] for d in docs[:2]}
    stats = {c["name"]: c for c in gw.get("/v1/rag/stats").json()["collections"]}
    assert stats["api"]["files"] == 2 and stats["api"]["dimension"] == 384
    assert gw.delete("/v1/rag/collections/api").json()["deleted"] is True
    assert gw.post("/v1/rag/search", json={"collection": "api", "query": "x"}).status_code == 404


def test_the_embedding_model_is_served_on_v1_embeddings(gw: DaemonProcess) -> None:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    raw = client.embeddings.with_raw_response.create(
        model="all-MiniLM-L6-v2", input=["a cat sat on the mat", "a kitten sat on a rug", "tax law"]
    )
    res = raw.parse()
    assert raw.headers["x-aigw-provider"] == "embed"
    vecs = [d.embedding for d in res.data]
    assert [len(v) for v in vecs] == [384, 384, 384]

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vecs[0], vecs[1]) > cos(vecs[0], vecs[2]) + 0.2
    assert res.usage.prompt_tokens > 0
    again = client.embeddings.with_raw_response.create(
        model="all-MiniLM-L6-v2", input=["a cat sat on the mat", "a kitten sat on a rug", "tax law"]
    )
    assert again.headers["x-aigw-cache"] == "hit"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="all-MiniLM-L6-v2", messages=[{"role": "user", "content": "hi"}])


def test_query_grounds_the_answer_and_returns_sources(gw: DaemonProcess, up: FakeOpenAIServer) -> None:
    docs = [doc(f"/q/{name}", text) for name, text in DOCS.items()]
    gw.post("/v1/rag/index", json={"collection": "q", "documents": docs}, timeout=120)
    r = gw.post(
        "/v1/rag/query", json={"collection": "q", "query": "When do I prune roses?", "k": 2}, timeout=60
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
    assert body["sources"][0] == {**body["sources"][0], "n": 1, "path": "/q/garden.md"}
    seen = httpx.get(f"http://127.0.0.1:{up.port}/_last").json()["body"]
    system = seen["messages"][0]
    assert (
        system["role"] == "system"
        and "[1] /q/garden.md" in system["content"]
        and "Prune roses" in system["content"]
    )
    assert seen["messages"][-1] == {"role": "user", "content": "When do I prune roses?"}

    events = []
    with httpx.stream(
        "POST",
        gw.url + "/v1/rag/query",
        json={"collection": "q", "query": "pasta?", "stream": True},
        timeout=60,
    ) as resp:
        assert resp.status_code == 200
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    first = json.loads(events[0])
    assert first["choices"] == [] and first["sources"][0]["path"] == "/q/cooking.txt"
    text = "".join(c["delta"].get("content") or "" for e in events[1:-1] for c in json.loads(e)["choices"])
    assert text == "echo: pasta?"


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        (
            "/v1/rag/index",
            {"collection": "x", "documents": [{**doc("/a", "t"), "sha256": "nothex"}]},
            400,
            None,
        ),
        ("/v1/rag/index", {"collection": "x", "documents": [doc("/a", "t", "spreadsheet")]}, 400, None),
        ("/v1/rag/index", {"collection": "../etc", "documents": []}, 400, None),
        ("/v1/rag/index", {"collection": "x", "documents": [], "surprise": 1}, 400, None),
        ("/v1/rag/search", {"collection": "missing", "query": "x"}, 404, "collection"),
        ("/v1/rag/search", {"collection": "x", "query": ""}, 400, None),
        (
            "/v1/rag/query",
            {"collection": "x", "query": "a", "messages": [{"role": "user", "content": "b"}]},
            400,
            "query",
        ),
        ("/v1/rag/query", {"collection": "x"}, 400, "query"),
    ],
)
def test_bad_input_is_a_clear_openai_error(
    gw: DaemonProcess, path: str, body: dict[str, Any], status: int, param: str | None
) -> None:
    before = gw.get("/v1/rag/stats").json()["collections"]
    r = gw.post(path, json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"]
    if param is not None:
        assert err["param"] == param
    assert gw.get("/v1/rag/stats").json()["collections"] == before


def cli(gw: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aigw", *args],
        check=False,
        env=gw.env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_cli_index_search_and_chat_with_citations(gw: DaemonProcess, tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    (folder / "photo.md").write_bytes(b"\x89PNG\x00\x00binary")
    out = cli(gw, "rag", "index", str(folder), "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["collection"] == "notes" and summary["indexed"] == 3
    assert [s["path"] for s in summary["skipped"]] == [str(folder / "photo.md")]
    (folder / "cooking.txt").write_text("Boil the pasta for eleven minutes.\n")
    (folder / "garden.md").unlink()
    summary = json.loads(cli(gw, "rag", "index", str(folder), "--json").stdout)
    assert (summary["indexed"], summary["unchanged"], summary["removed"]) == (1, 1, 1)

    hits = json.loads(cli(gw, "rag", "search", "pasta cooking time", "-c", "notes", "--json").stdout)
    assert hits[0]["path"] == str(folder / "cooking.txt") and "eleven" in hits[0]["content"]
    answer = cli(gw, "chat", "--rag", "notes", "-m", "fake/gpt-test", "how long for pasta?")
    assert answer.returncode == 0, answer.stderr
    assert "echo: how long for pasta?" in answer.stdout and f"[1] {folder / 'cooking.txt'}" in answer.stdout
    bad = cli(gw, "rag", "index", str(tmp_path / "nope"))
    assert bad.returncode == 1 and bad.stderr.strip().startswith("aigw: ") and "Traceback" not in bad.stderr


def test_a_collection_can_use_a_providers_embedding_model(gw: DaemonProcess) -> None:
    docs = [doc(f"/p/{name}", text) for name, text in DOCS.items()]
    r = gw.post(
        "/v1/rag/index",
        json={"collection": "remote", "model": "fake/text-embed", "documents": docs},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    stats = {c["name"]: c for c in gw.get("/v1/rag/stats").json()["collections"]}
    assert stats["remote"]["model"] == "fake/text-embed" and stats["remote"]["dimension"] == 8
    hits = gw.post("/v1/rag/search", json={"collection": "remote", "query": "pasta", "k": 3}).json()["data"]
    assert len(hits) == 3 and {h["path"] for h in hits} <= {d["path"] for d in docs}
    mixed = gw.post(
        "/v1/rag/index",
        json={"collection": "remote", "model": "all-MiniLM-L6-v2", "documents": [doc("/p/new.md", "new")]},
    )
    assert mixed.status_code == 409 and "fake/text-embed" in mixed.json()["error"]["message"]
    assert set(gw.get("/v1/rag/collections/remote/files").json()["files"]) == {d["path"] for d in docs}
