"""POST /v1/rerank through a real daemon and plain httpx (no official SDK has rerank): a real tiny
cross-encoder on this machine, pass-through to an OpenAI-compatible upstream (the fake, speaking
vLLM/Jina's and Cohere v2's shapes), fallback, refusals, bad input, the cache, keys and limits."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aigw.access.keys import KeyStore
from aigw.state.db import open_db
from tests.fixtures.daemon import DaemonProcess, free_port, write_config
from tests.fixtures.fake_anthropic import FakeAnthropicServer
from tests.fixtures.fake_openai import FakeOpenAIServer
from tests.fixtures.tiny_cross_encoder import write_tiny_cross_encoder

pytestmark = pytest.mark.process

pytest.importorskip("sentence_transformers", reason="the 'rag' extra is not installed")

QUERY = "how do I rotate the API key"
DOCS: list[Any] = [
    "Rotate the API key with aigw keys create, then revoke the old one.",
    {"text": "Boil the pasta for nine minutes in salted water."},
    "Prune roses in late winter, just above an outward-facing bud.",
    {"text": "The API key is shown once."},
    "keys keys keys",
]
TEXTS = [d["text"] if isinstance(d, dict) else d for d in DOCS]


def config(port: int, upstream: str, anthropic: str, reranker: Path) -> str:
    return f"""
[server]
port = {port}
shutdown_grace_s = 5

[usage]
flush_interval_s = 0.1

[routing]
retries = 0

[providers.fake]
type = "openai"
base_url = "{upstream}"

[providers.claude]
type = "anthropic"
base_url = "{anthropic}"
api_key = "sk-ant-test"

[providers.rr]
type = "cross_encoder"
models = {{ tiny-rr = "{reranker}" }}

[models.rr-chain]
targets = [{{ provider = "fake", model = "fail-503" }}, {{ provider = "rr", model = "tiny-rr" }}]

[prices]
"rr/tiny-rr" = {{ input = 1000000, output = 0 }}   # $1 a token: a local model priced, so spend shows
"""


@pytest.fixture(scope="module")
def reranker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_cross_encoder(tmp_path_factory.mktemp("rerankers") / "tiny-rr")


@pytest.fixture(scope="module")
def reference(reranker: Path) -> Any:
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(reranker), device="cpu")


@pytest.fixture(scope="module")
def up() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(
    up: FakeOpenAIServer, reranker: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[DaemonProcess, dict[str, str]]]:
    anthropic = FakeAnthropicServer().start()
    home = tmp_path_factory.mktemp("aigw-rerank-home")
    store = KeyStore(open_db(home / "aigw.db"))
    keys = {
        "narrow": store.create("narrow", models=["rr-chain"])[1],
        "once": store.create("once", rpm=1)[1],
        "spender": store.create("spender", budget_usd=1000.0)[1],
    }
    port = free_port()
    write_config(home, config(port, up.base_url, anthropic.base_url, reranker))
    d = DaemonProcess(home, port)
    d.env["HF_HUB_OFFLINE"] = "1"
    d.start()
    yield d, keys
    code = d.terminate()
    anthropic.stop()
    assert code == 0, d.log()
    assert "Traceback" not in d.log(), d.log()


def post(d: DaemonProcess, path: str = "/v1/rerank", key: str | None = None, **body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(d.url + path, json=body, headers=headers, timeout=60)


def test_a_local_cross_encoder_ranks_the_documents(
    gw: tuple[DaemonProcess, dict[str, str]], reference: Any
) -> None:
    d, _ = gw
    r = post(d, model="rr/tiny-rr", query=QUERY, documents=DOCS, top_n=3)
    assert r.status_code == 200, r.text
    assert (r.headers["x-aigw-provider"], r.headers["x-aigw-model"]) == ("rr", "tiny-rr")
    out = r.json()
    assert out["id"].startswith("rerank-") and out["model"] == "tiny-rr"
    assert out["usage"]["total_tokens"] > 0
    results = out["results"]
    expected = reference.predict([(QUERY, t) for t in TEXTS], show_progress_bar=False)
    scores = [x["relevance_score"] for x in results]
    assert len(results) == 3 and scores == sorted(scores, reverse=True)
    indexes = [x["index"] for x in results]
    assert len(set(indexes)) == 3 and set(indexes) <= set(range(len(DOCS)))
    assert indexes == sorted(range(len(DOCS)), key=lambda i: -float(expected[i]))[:3]
    for x in results:
        assert x["relevance_score"] == pytest.approx(float(expected[x["index"]]), abs=1e-5)
        assert x["document"] == {"text": TEXTS[x["index"]]}

    bare = post(d, model="tiny-rr", query=QUERY, documents=DOCS, return_documents=False).json()
    assert [x["index"] for x in bare["results"]] == sorted(
        range(len(DOCS)), key=lambda i: -float(expected[i])
    )
    assert all(set(x) == {"index", "relevance_score"} for x in bare["results"])
    for path in ("/rerank", "/v2/rerank", "/v1/rerank/"):  # the same endpoint
        again = post(d, path, model="tiny-rr", query=QUERY, documents=DOCS, return_documents=False)
        assert again.status_code == 200 and again.json()["results"] == bare["results"], path

    listed = {m["id"]: m for m in d.get("/v1/models").json()["data"]}
    assert listed["rr/tiny-rr"]["capabilities"] == ["rerank"]
    metrics = d.get("/metrics").text
    assert 'ai_provider_requests_total{model="tiny-rr",provider="rr",status="200"}' in metrics


def test_an_upstream_with_a_rerank_endpoint_is_passed_through(
    gw: tuple[DaemonProcess, dict[str, str]], up: FakeOpenAIServer
) -> None:
    d, _ = gw
    r = post(
        d, model="fake/jina-reranker-v2", query="api key", documents=DOCS, top_n=2, max_tokens_per_doc=64
    )
    assert r.status_code == 200, r.text
    sent = up.fake.last_body
    assert sent is not None and sent["model"] == "jina-reranker-v2" and sent["documents"] == TEXTS
    assert sent["top_n"] == 2 and sent["max_tokens_per_doc"] == 64  # unknown fields pass through
    out = r.json()
    assert [x["index"] for x in out["results"]] == [3, 0]
    assert out["results"][0] == {
        "index": 3,
        "relevance_score": pytest.approx(0.285714),
        "document": {"text": TEXTS[3]},
    }
    assert out["id"] == "rerank-fake" and out["usage"]["total_tokens"] > 0
    assert r.headers["x-aigw-provider"] == "fake"

    cohere = post(d, "/v2/rerank", model="fake/cohere-style", query="api key", documents=TEXTS).json()
    assert [x["index"] for x in cohere["results"]][:2] == [3, 0]
    assert cohere["results"][0]["document"] == {"text": TEXTS[3]}  # filled in: return_documents defaults true
    assert cohere["usage"]["total_tokens"] == sum(len(t.split()) + 2 for t in TEXTS)


@pytest.mark.parametrize(
    ("model", "status"),
    [("fake/fail-400", 400), ("fake/fail-401", 502), ("fake/bad-index", 502), ("fake/garbage", 502)],
)
def test_upstream_failures_map_as_for_every_call(
    gw: tuple[DaemonProcess, dict[str, str]], model: str, status: int
) -> None:
    r = post(gw[0], model=model, query="q", documents=["a", "b"])
    assert r.status_code == status, r.text
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_an_alias_falls_back_to_the_local_reranker(gw: tuple[DaemonProcess, dict[str, str]]) -> None:
    r = post(gw[0], model="rr-chain", query="fallback", documents=["a", "b"])
    assert r.status_code == 200, r.text
    assert (r.headers["x-aigw-provider"], r.headers["x-aigw-fallbacks"]) == ("rr", "1")


def test_what_cannot_rerank_is_refused_naming_it(gw: tuple[DaemonProcess, dict[str, str]]) -> None:
    d, _ = gw
    r = post(d, model="claude/claude-3-5-haiku-latest", query="q", documents=["a"])
    err = r.json()["error"]
    assert r.status_code == 400 and err["param"] == "model", r.text
    assert "does not support rerank" in err["message"]
    chat = {"model": "rr/tiny-rr", "messages": [{"role": "user", "content": "hi"}]}
    r = d.post("/v1/chat/completions", json=chat)
    assert r.status_code == 400 and "does not support chat" in r.json()["error"]["message"], r.text
    r = post(d, model="rr/tiny-rr", query="q", documents=["a"], max_tokens_per_doc=64)
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens_per_doc", r.text


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"documents": []}, "documents"),
        ({"documents": "one"}, "documents"),
        ({"documents": ["x"] * 1001}, "documents"),
        ({"documents": ["a", 3]}, "documents[1]"),
        ({"documents": ["a", {"title": "b"}]}, "documents[1].text"),
        ({"documents": [{"text": "b", "title": "t"}]}, "documents[0]"),
        ({"query": 3}, "query"),
        ({"query": ""}, "query"),
        ({"query": None}, "query"),
        ({"top_n": 0}, "top_n"),
        ({"top_n": -1}, "top_n"),
        ({"top_n": 1.5}, "top_n"),
        ({"top_n": "2"}, "top_n"),
        ({"top_n": True}, "top_n"),
        ({"return_documents": "yes"}, "return_documents"),
        ({"model": ""}, "model"),
        ({"model": None}, "model"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    gw: tuple[DaemonProcess, dict[str, str]], patch: dict[str, Any], param: str
) -> None:
    body = {"model": "rr/tiny-rr", "query": "q", "documents": ["a", "b"], **patch}
    r = post(gw[0], **{k: v for k, v in body.items() if v is not None})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["param"] == param, err
    assert param.split("[", maxsplit=1)[0] in err["message"]


def test_a_repeated_rerank_is_answered_from_the_cache(gw: tuple[DaemonProcess, dict[str, str]]) -> None:
    body = {"model": "rr/tiny-rr", "query": "cached?", "documents": ["a", "b", "c"]}
    first, again = post(gw[0], **body), post(gw[0], **body)
    assert (first.headers["x-aigw-cache"], again.headers["x-aigw-cache"]) == ("miss", "hit")
    assert again.json() == first.json()


def usage_rows(d: DaemonProcess, key_name: str) -> list[dict[str, Any]]:
    db = open_db(d.home / "aigw.db")
    key_id = next(k.id for k in KeyStore(db).list() if k.name == key_name)
    time.sleep(0.4)  # a few flush intervals
    return list(
        db.query("SELECT model, status, prompt_tokens, cost_usd FROM usage WHERE key_id = ?", [key_id])
    )


def test_keys_limits_and_spend_apply(gw: tuple[DaemonProcess, dict[str, str]]) -> None:
    d, keys = gw
    body = {"model": "rr/tiny-rr", "query": "keys", "documents": ["a", "b"]}
    assert post(d, key=keys["narrow"], **body).status_code == 403
    assert post(d, key=keys["narrow"], **{**body, "model": "rr-chain"}).status_code == 200
    assert post(d, key=keys["once"], **body).status_code == 200
    limited = post(d, key=keys["once"], **{**body, "query": "again"})
    assert limited.status_code == 429 and "retry-after" in limited.headers
    r = post(d, key=keys["spender"], **{**body, "query": "spend"})
    tokens = r.json()["usage"]["total_tokens"]
    rows = usage_rows(d, "spender")
    assert [(x["model"], x["status"], x["prompt_tokens"]) for x in rows] == [("tiny-rr", 200, tokens)]
    assert rows[0]["cost_usd"] == pytest.approx(tokens)


def note(path: str, text: str) -> dict[str, Any]:
    return {
        "path": path,
        "kind": "markdown",
        "text": text,
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


def test_rag_answers_from_re_ranked_chunks(gw: tuple[DaemonProcess, dict[str, str]], reference: Any) -> None:
    d, _ = gw
    topics = ["keys", "pasta", "roses", "trains", "clouds", "tea", "chess"]
    notes = [
        note(f"/n/{t}{i}.md", f"# {t} {i}\n\nAbout {t}: " + f"{t} " * (i + 1))
        for t in topics
        for i in range(4)
    ]
    r = d.post("/v1/rag/index", json={"collection": "notes", "documents": notes}, timeout=120)
    assert r.status_code == 200, r.text
    question = "rotating keys"
    pool = d.post("/v1/rag/search", json={"collection": "notes", "query": question, "k": 20}).json()["data"]
    texts = [f"{h['heading']}\n\n{h['content']}" if h["heading"] else h["content"] for h in pool]
    scores = reference.predict([(question, t) for t in texts], show_progress_bar=False)
    best = [pool[i]["path"] for i in sorted(range(len(pool)), key=lambda i: -float(scores[i]))[:3]]

    body = {
        "collection": "notes",
        "query": question,
        "k": 3,
        "rerank": "rr/tiny-rr",
        "model": "fake/gpt-test",
    }
    answer = d.post("/v1/rag/query", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    sources = answer.json()["sources"]
    assert [s["path"] for s in sources] == best and all(0 < s["rerank_score"] < 1 for s in sources)
    search = {k: v for k, v in body.items() if k != "model"}
    searched = d.post("/v1/rag/search", json=search).json()["data"]
    assert [h["path"] for h in searched] == best and "rerank_score" in searched[0]
    assert "rerank_score" not in pool[0]
    bad = d.post("/v1/rag/query", json={**body, "rerank": "claude/claude-3-5-haiku-latest"})
    assert bad.status_code == 400 and "does not support rerank" in bad.json()["error"]["message"]

    out = cli(d, "rag", "query", "--rerank", "rr/tiny-rr", "-m", "fake/gpt-test", "-c", "notes", question)
    assert out.returncode == 0, out.stderr
    assert "echo: " in out.stdout and f"[1] {best[0]}" in out.stdout and "(rerank 0." in out.stdout
    out = cli(d, "rag", "search", "--rerank", "rr/tiny-rr", "-k", "3", "--json", "-c", "notes", question)
    assert out.returncode == 0, out.stderr
    assert [h["path"] for h in json.loads(out.stdout)] == best


def cli(d: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aigw", *args],
        check=False,
        env=d.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
