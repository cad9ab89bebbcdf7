"""RAG under keys: its embeddings are admitted and accounted like /v1/embeddings (allow-list,
rate limits, budget, usage rows), and each collection belongs to the key that made it."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aigw.access.keys import KeyStore
from aigw.state.db import open_db
from tests.fixtures.daemon import DaemonProcess, fake_config, free_port, write_config
from tests.fixtures.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.process

pytest.importorskip("sentence_transformers")

EXTRA = """
[usage]
flush_interval_s = 0.1

[prices]
"text-embed" = { input = 1000000, output = 0 }   # $1 a token
"""
KEYS: dict[str, dict[str, Any]] = {
    "owner": {},
    "other": {},
    "reader": {"collections": ["owned"]},
    "narrow": {"models": ["gpt-test"]},
    "slow": {"rpm": 2},
    "poor": {"budget_usd": 1.0},
    "once": {"rpm": 1},
}


def doc(path: str, text: str) -> dict[str, Any]:
    return {"path": path, "kind": "text", "text": text, "sha256": hashlib.sha256(text.encode()).hexdigest()}


@pytest.fixture(scope="module")
def rig(
    upstream: FakeOpenAIServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[DaemonProcess, dict[str, str]]]:
    home: Path = tmp_path_factory.mktemp("aigw-rag-keys")
    store = KeyStore(open_db(home / "aigw.db"))
    plain = {name: store.create(name, **kw)[1] for name, kw in KEYS.items()}
    port = free_port()
    write_config(home, fake_config(upstream.base_url, port, EXTRA))
    d = DaemonProcess(home, port)
    d.env["HF_HUB_OFFLINE"] = "1"
    d.start()
    yield d, plain
    assert d.terminate() == 0, d.log()


def call(d: DaemonProcess, key: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, d.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=120, **kw)


def usage_rows(d: DaemonProcess, key_name: str) -> list[dict[str, Any]]:
    db = open_db(d.home / "aigw.db")
    key_id = next(k.id for k in KeyStore(db).list() if k.name == key_name)
    time.sleep(0.4)  # two flush intervals
    return list(
        db.query("SELECT model, status, prompt_tokens, cost_usd FROM usage WHERE key_id = ?", [key_id])
    )


REMOTE = [doc(f"/r/{i}.txt", f"note number {i}") for i in range(300)]


def test_a_providers_embeddings_obey_the_keys_allow_list(rig: tuple[DaemonProcess, dict[str, str]]) -> None:
    d, keys = rig
    body = {"collection": "narrow", "model": "fake/text-embed", "documents": REMOTE[:3]}
    r = call(d, keys["narrow"], "POST", "/v1/rag/index", json=body)
    assert r.status_code == 403 and "may not use model 'fake/text-embed'" in r.json()["error"]["message"]


def test_a_providers_embeddings_obey_rate_limits(rig: tuple[DaemonProcess, dict[str, str]]) -> None:
    d, keys = rig
    body = {"collection": "slow", "model": "fake/text-embed", "documents": REMOTE}
    r = call(d, keys["slow"], "POST", "/v1/rag/index", json=body)  # 4 batches of 96: the third is over
    assert r.status_code == 429 and r.headers["retry-after"]
    rows = usage_rows(d, "slow")
    statuses = [row["status"] for row in rows]  # the next batch may be asked for while one is stored
    assert statuses[:3] == [200, 200, 429] and set(statuses[2:]) == {429}
    assert rows[0]["model"] == "text-embed" and rows[0]["prompt_tokens"] == 96


def test_a_providers_embeddings_are_charged_to_the_budget(rig: tuple[DaemonProcess, dict[str, str]]) -> None:
    d, keys = rig
    body = {"collection": "poor", "model": "fake/text-embed", "documents": REMOTE[:50]}
    r = call(d, keys["poor"], "POST", "/v1/rag/index", json=body)
    assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exhausted"
    embed = call(
        d, keys["poor"], "POST", "/v1/embeddings", json={"model": "fake/text-embed", "input": "x" * 8}
    )
    assert embed.status_code == 429


def test_the_daemons_own_model_is_accounted_too(rig: tuple[DaemonProcess, dict[str, str]]) -> None:
    d, keys = rig
    made = call(
        d, keys["once"], "POST", "/v1/rag/index", json={"collection": "once", "documents": REMOTE[:3]}
    )
    assert made.status_code == 200, made.text
    again = call(d, keys["once"], "POST", "/v1/rag/search", json={"collection": "once", "query": "note"})
    assert again.status_code == 429
    (row, refused) = usage_rows(d, "once")
    assert row["model"] == "all-MiniLM-L6-v2" and row["status"] == 200 and row["prompt_tokens"] > 3
    assert refused["status"] == 429


def test_collections_belong_to_the_key_that_made_them(rig: tuple[DaemonProcess, dict[str, str]]) -> None:
    d, keys = rig
    owner, other, reader = keys["owner"], keys["other"], keys["reader"]
    docs = {"collection": "owned", "documents": [doc("/secret/plan.txt", "the launch is on friday")]}
    assert call(d, owner, "POST", "/v1/rag/index", json=docs).status_code == 200
    assert call(d, other, "POST", "/v1/rag/index", json={**docs, "collection": "mine"}).status_code == 200

    names = [c["name"] for c in call(d, other, "GET", "/v1/rag/stats").json()["collections"]]
    assert names == ["mine"]
    search = call(d, other, "POST", "/v1/rag/search", json={"collection": "owned", "query": "launch"})
    assert search.status_code == 404 and "collections: mine" in search.json()["error"]["message"]
    assert call(d, other, "GET", "/v1/rag/collections/owned/files").status_code == 404
    assert call(d, other, "POST", "/v1/rag/index", json=docs).status_code == 404
    assert call(d, other, "DELETE", "/v1/rag/collections/owned").status_code == 404
    query = {"collection": "owned", "query": "when is the launch?", "model": "gpt-test"}
    assert call(d, other, "POST", "/v1/rag/query", json=query).status_code == 404

    found = call(d, reader, "POST", "/v1/rag/search", json={"collection": "owned", "query": "launch"})
    assert found.status_code == 200 and found.json()["data"][0]["path"] == "/secret/plan.txt"
    assert call(d, reader, "POST", "/v1/rag/index", json=docs).status_code == 403
    assert call(d, reader, "DELETE", "/v1/rag/collections/owned").status_code == 403

    admin = d.admin_headers()
    seen = httpx.get(d.url + "/v1/rag/stats", headers=admin, timeout=30).json()["collections"]
    assert {"owned", "mine"} <= {c["name"] for c in seen}
    assert call(d, owner, "DELETE", "/v1/rag/collections/owned").json()["deleted"] is True
