"""Keys, the admin token, Host and Origin checks, rate limits, budgets, usage rows and metrics,
against a real daemon process in front of the fake upstream, with the official openai SDK."""

from __future__ import annotations

import contextlib
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aigw.access.keys import KeyStore
from aigw.state.db import open_db
from tests.fixtures.daemon import DaemonProcess, fake_config, free_port, write_config
from tests.fixtures.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.process

MSG = [{"role": "user", "content": "hello gateway"}]
EXTRA = """
[limits]
rpm = 1000

[usage]
flush_interval_s = 0.1

[prices]
"gpt-test" = { input = 1000000, output = 1000000 }   # $1 per token: budgets run out fast
"""


def start(home: Path, upstream: FakeOpenAIServer, extra: str = "", server: str = "") -> DaemonProcess:
    port = free_port()
    text = fake_config(upstream.base_url, port, EXTRA + extra)
    write_config(home, text.replace("[server]\n", "[server]\n" + server, 1))
    return DaemonProcess(home, port).start()


@pytest.fixture(scope="module")
def keys_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("aigw-access")


@pytest.fixture(scope="module")
def created(keys_home: Path) -> dict[str, str]:
    """Keys made before the daemon starts: name -> plain key."""
    store = KeyStore(open_db(keys_home / "aigw.db"))
    out = {}
    for name, kw in {
        "app": {},
        "slow": {"rpm": 2},
        "thrifty": {"budget_usd": 25.0},
        "narrow": {"models": ["smart"]},
        "gone": {},
    }.items():
        _, plain = store.create(name, **kw)  # type: ignore[arg-type]
        out[name] = plain
    store.revoke("gone")
    return out


@pytest.fixture(scope="module")
def daemon(upstream: FakeOpenAIServer, keys_home: Path, created: dict[str, str]) -> Iterator[DaemonProcess]:
    d = start(keys_home, upstream, server='allowed_origins = ["http://localhost:3000"]\n')
    yield d
    assert d.terminate() == 0, d.log()


def sdk(d: DaemonProcess, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=d.url + "/v1", api_key=key, max_retries=0)


def admin_token(d: DaemonProcess) -> str:
    return (d.home / "admin_token").read_text().strip()


# -- keys optional (loopback default) ----------------------------------------------------------


def test_without_keys_the_sdk_works_and_a_bad_aigw_key_is_refused(
    daemon: DaemonProcess, created: dict[str, str]
) -> None:
    assert sdk(daemon).chat.completions.create(model="gpt-test", messages=MSG).choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        sdk(daemon, "aigw-not-a-real-key").chat.completions.create(model="gpt-test", messages=MSG)
    with pytest.raises(openai.AuthenticationError):
        sdk(daemon, created["gone"]).chat.completions.create(model="gpt-test", messages=MSG)
    assert sdk(daemon, created["app"]).chat.completions.create(model="gpt-test", messages=MSG).id


def test_admin_needs_the_admin_token_kept_0600(daemon: DaemonProcess, created: dict[str, str]) -> None:
    token_file = daemon.home / "admin_token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert daemon.get("/admin/local").status_code == 401
    assert (
        daemon.get("/admin/local", headers={"Authorization": f"Bearer {created['app']}"}).status_code == 401
    )
    ok = daemon.get("/admin/local", headers={"Authorization": f"Bearer {admin_token(daemon)}"})
    assert ok.status_code == 200 and "loaded" in ok.json()


def test_host_header_must_name_loopback(daemon: DaemonProcess) -> None:
    body = {"model": "gpt-test", "messages": MSG}
    evil = daemon.post("/v1/chat/completions", json=body, headers={"Host": f"evil.example:{daemon.port}"})
    assert evil.status_code == 403 and evil.json()["error"]["type"] == "permission_error"
    for host in (f"localhost:{daemon.port}", f"127.0.0.1:{daemon.port}", "localhost"):
        assert daemon.post("/v1/chat/completions", json=body, headers={"Host": host}).status_code == 200
    assert daemon.get("/health", headers={"Host": "rebound.example"}).status_code == 403


def test_origins_are_an_allow_list(daemon: DaemonProcess) -> None:
    body = {"model": "gpt-test", "messages": MSG}
    bad = daemon.post("/v1/chat/completions", json=body, headers={"Origin": "https://evil.example"})
    assert bad.status_code == 403 and "allowed_origins" in bad.json()["error"]["message"]
    good = daemon.post("/v1/chat/completions", json=body, headers={"Origin": "http://localhost:3000"})
    assert good.status_code == 200
    assert good.headers["access-control-allow-origin"] == "http://localhost:3000"
    pre = httpx.options(
        daemon.url + "/v1/chat/completions",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status_code == 204 and "authorization" in pre.headers["access-control-allow-headers"]
    assert "*" not in good.headers.get("access-control-allow-origin", "")


# -- limits, budgets, model allow-lists ----------------------------------------------------------


def test_rate_limit_per_key_with_openai_headers(daemon: DaemonProcess, created: dict[str, str]) -> None:
    client = sdk(daemon, created["slow"])
    first = client.chat.completions.with_raw_response.create(model="gpt-test", messages=MSG)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    client.chat.completions.create(model="gpt-test", messages=MSG)
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="gpt-test", messages=MSG)
    assert int(e.value.response.headers["retry-after"]) >= 1
    assert e.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    admin = {"Authorization": f"Bearer {admin_token(daemon)}"}
    seen = daemon.get("/admin/ratelimit/slow", headers=admin).json()
    assert seen["key"] == "slow" and seen["requests"]["remaining"] == 0
    assert daemon.delete("/admin/ratelimit/slow", headers=admin).status_code == 200
    assert client.chat.completions.create(model="gpt-test", messages=MSG).id  # reset: admitted again


def test_a_spent_budget_is_a_429_that_says_so(daemon: DaemonProcess, created: dict[str, str]) -> None:
    client = sdk(daemon, created["thrifty"])
    # $1 a token: a 7-token prompt estimate and an answer of at most 18 tokens fit $25; it costs $5
    client.chat.completions.create(model="gpt-test", messages=MSG)
    with pytest.raises(openai.RateLimitError) as e:  # $20 left: the prompt and 16 tokens cost $23
        client.chat.completions.create(model="gpt-test", messages=MSG)
    assert "$20.0000 of its budget left" in e.value.message and e.value.code == "budget_exhausted"


def test_a_key_may_be_limited_to_some_models(daemon: DaemonProcess, created: dict[str, str]) -> None:
    client = sdk(daemon, created["narrow"])
    assert client.chat.completions.create(model="smart", messages=MSG).id
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-test", messages=MSG)


# -- usage, metrics, secrets -----------------------------------------------------------------------


def test_usage_rows_for_success_and_failure(daemon: DaemonProcess, created: dict[str, str]) -> None:
    client = sdk(daemon, created["app"])
    client.chat.completions.create(model="gpt-test", messages=MSG)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="fake/fail-503", messages=MSG)
    stream = client.chat.completions.create(model="gpt-test", messages=MSG, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    db = open_db(daemon.home / "aigw.db")
    key_id = next(k.id for k in KeyStore(db).list() if k.name == "app")
    rows: list[dict[str, object]] = []
    for _ in range(50):
        rows = list(db.query("SELECT * FROM usage WHERE key_id = ? ORDER BY id", [key_id]))
        if len(rows) >= 4:
            break
        time.sleep(0.1)
    ok = [r for r in rows if r["status"] == 200]
    failed = [r for r in rows if r["status"] != 200]
    assert len(ok) >= 3 and all(r["prompt_tokens"] and r["cost_usd"] for r in ok)
    assert {(r["provider"], r["model"]) for r in ok} == {("fake", "gpt-test")}
    assert failed and failed[-1]["status"] == 502 and failed[-1]["error_kind"] == "UpstreamStatusError"
    assert all(r["content"] is None for r in rows)  # log_content is off


def test_metrics_parse_with_prometheus_own_parser(daemon: DaemonProcess) -> None:
    sdk(daemon).chat.completions.create(model="gpt-test", messages=MSG)
    text = daemon.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "ai_provider_requests",
        "ai_provider_latency_seconds",
        "ai_routing_fallback",
        "ai_cache_hits",
        "ai_cache_misses",
        "ai_ratelimit_exceeded",
        "ai_tokens",
        "ai_inflight_requests",
        "ai_local_models_loaded",
        "ai_gateway_overhead_seconds",
    ):
        assert name in families, name
    ok = [
        s.value
        for s in families["ai_provider_requests"].samples
        if s.name.endswith("_total")
        and s.labels == {"provider": "fake", "model": "gpt-test", "status": "200"}
    ]
    assert ok and ok[0] >= 1
    tokens = {
        s.labels["direction"]: s.value for s in families["ai_tokens"].samples if s.name.endswith("_total")
    }
    assert tokens["prompt"] > 0 and tokens["completion"] > 0


def test_the_plain_key_is_nowhere_on_disk_or_in_logs(
    daemon: DaemonProcess, created: dict[str, str], keys_home: Path
) -> None:
    for name in ("app", "gone"):
        with contextlib.suppress(openai.APIError):
            sdk(daemon, created[name]).chat.completions.create(model="fake/fail-401", messages=MSG)
    time.sleep(0.3)  # the usage log flushes
    for path in keys_home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for plain in created.values():
                assert plain.encode() not in data, f"a key in {path}"
    assert admin_token(daemon) not in daemon.log()


# -- keys required --------------------------------------------------------------------------------


def test_require_keys_refuses_anonymous_requests(upstream: FakeOpenAIServer, tmp_path: Path) -> None:
    _, plain = KeyStore(open_db(tmp_path / "aigw.db")).create("only")
    d = start(tmp_path, upstream, server="require_keys = true\n")
    try:
        with pytest.raises(openai.AuthenticationError) as e:
            sdk(d).chat.completions.create(model="gpt-test", messages=MSG)
        assert "aigw keys create" in e.value.message
        assert sdk(d, plain).chat.completions.create(model="gpt-test", messages=MSG).id
        assert d.get("/health").status_code == 200
        assert d.get("/health/detailed").status_code == 401
        assert d.get("/metrics").status_code == 401
    finally:
        assert d.terminate() == 0, d.log()


def test_a_stream_without_usage_is_still_charged(daemon: DaemonProcess, created: dict[str, str]) -> None:
    """An upstream that sends no usage (stream_usage = false here) must not make requests free."""
    client = sdk(daemon, created["app"])
    stream = client.chat.completions.create(model="nousage/gpt-test", messages=MSG, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text
    db = open_db(daemon.home / "aigw.db")
    row: dict[str, object] = {}
    for _ in range(50):
        rows = list(db.query("SELECT * FROM usage WHERE provider = 'nousage' ORDER BY id DESC LIMIT 1"))
        if rows:
            row = rows[0]
            break
        time.sleep(0.1)
    assert row["status"] == 200
    assert row["prompt_tokens"] and row["completion_tokens"] == -(-len(text) // 4)
    assert row["cost_usd"] and float(str(row["cost_usd"])) > 0


def test_refused_requests_are_logged_and_in_the_dashboards_tail(
    daemon: DaemonProcess, created: dict[str, str]
) -> None:
    with pytest.raises(openai.AuthenticationError):
        sdk(daemon, "aigw-not-a-real-key").chat.completions.create(model="gpt-test", messages=MSG)
    with pytest.raises(openai.PermissionDeniedError):
        sdk(daemon, created["narrow"]).chat.completions.create(model="gpt-test", messages=MSG)
    with pytest.raises(openai.NotFoundError):
        sdk(daemon, created["app"]).chat.completions.create(model="no-such-model-x", messages=MSG)
    db = open_db(daemon.home / "aigw.db")
    narrow = next(k.id for k in KeyStore(db).list() if k.name == "narrow")
    rows: list[dict[str, object]] = []
    for _ in range(50):
        rows = list(
            db.query("SELECT key_id, model, status, error_kind FROM usage WHERE status IN (401, 403, 404)")
        )
        if {r["status"] for r in rows} == {401, 403, 404}:
            break
        time.sleep(0.1)
    by_status = {r["status"]: r for r in rows}
    assert by_status[401]["error_kind"] == "AuthenticationError" and by_status[401]["key_id"] is None
    assert by_status[403]["key_id"] == narrow and by_status[403]["model"] == "gpt-test"
    assert by_status[404]["model"] == "no-such-model-x" and by_status[404]["error_kind"] == "ModelNotFound"
    tail = daemon.get("/admin/stats", headers={"Authorization": f"Bearer {admin_token(daemon)}"}).json()[
        "recent"
    ]
    assert {401, 403, 404} <= {r["status"] for r in tail}
    metrics = daemon.get("/metrics").text
    assert 'model="unresolved",provider="none",status="404"' in metrics
