"""What the Redis state backend adds over the embedded one, in the same run.

Starts a fake upstream, a redis-server (its own, on loopback) and two aigw daemons that differ only
in `[state] backend`: SQLite (embedded) and Redis. Both require an API key (made in each one's
store) with an rpm limit (`--every-limit`: a token limit and a budget too), so every request's
admission takes from the key's shared state: the hot path the backend changes. Sequential
keep-alive requests go in turn to the upstream directly, the SQLite daemon and the Redis daemon;
their p50s are compared.
Bar: the Redis backend adds at most 0.3 ms p50 over SQLite.

Usage: python bench/state.py [--requests N] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.common import free_port, wait_healthy, wait_port  # noqa: E402

BODY = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "Say hello."}]})


def make_key(home: Path, redis_url: str | None, every_limit: bool) -> str:
    """A key with limits (and a budget) no benchmark reaches, in the daemon's own store."""
    from aigw.config.model import StateConfig
    from aigw.state.backend import key_store, shared_state

    cfg = StateConfig.model_validate({"backend": "redis", "url": redis_url} if redis_url else {})
    state = shared_state(cfg)
    limits = {"tpm": 10**12, "budget_usd": 10**6} if every_limit else {}
    _, plain = key_store(state, home / "aigw.db").create("bench", rpm=10**9, **limits)  # type: ignore[arg-type]
    if state is not None:
        state.close()
    return plain


def config(port: int, up: int, redis_url: str | None) -> str:
    state = f'[state]\nbackend = "redis"\nurl = "{redis_url}"\n' if redis_url else ""
    return (
        f'[server]\nport = {port}\nlog_level = "warning"\nrequire_keys = true\n{state}'
        "[limits]\nrpm = 1000000000\ntpm = 1000000000000\n"
        '[prices]\n"bench" = { input = 0.15, output = 0.6 }\n'
        f'[providers.up]\ntype = "openai"\nbase_url = "http://127.0.0.1:{up}/v1"\n'
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--quick", action="store_true", help="a few requests: does it still run?")
    ap.add_argument(
        "--every-limit",
        action="store_true",
        help="the key has a token limit and a budget too (default: rpm only)",
    )
    args = ap.parse_args()
    n = 50 if args.quick else args.requests
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit(
            "redis-server is not installed (Debian: apt-get install redis-server; macOS: brew install redis)"
        )
    up, rport = free_port(), free_port()
    root = Path(tempfile.mkdtemp(prefix="aigw-bench-state-"))
    redis_args = [exe, "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--dir", str(root)]
    procs = [
        subprocess.Popen([sys.executable, str(HERE / "fake_upstream.py"), str(up)]),
        subprocess.Popen(redis_args, stdout=subprocess.DEVNULL),
    ]
    ports, keys = [], []
    try:
        wait_port(up)
        wait_port(rport)
        for name, url in (("sqlite", None), ("redis", f"redis://127.0.0.1:{rport}/0")):
            home, port = root / name, free_port()
            home.mkdir()
            (home / "config.toml").write_text(config(port, up, url))
            keys.append(make_key(home, url, args.every_limit))
            env = {**os.environ, "AIGW_HOME": str(home)}
            procs.append(subprocess.Popen([sys.executable, "-m", "aigw", "serve"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
            ports.append(port)
        for p in ports:
            wait_healthy(p)
        conns = [http.client.HTTPConnection("127.0.0.1", p) for p in (up, *ports)]
        heads = [{"Content-Type": "application/json", "Authorization": f"Bearer {k}"} for k in ("x", *keys)]
        times: list[list[float]] = [[], [], []]
        for i in range(n + n // 10):  # the first tenth warms up
            for j, c in enumerate(conns):
                t = time.perf_counter()
                c.request("POST", "/v1/chat/completions", BODY, heads[j])
                r = c.getresponse()
                r.read()
                assert r.status == 200, (j, r.status)
                if i >= n // 10:
                    times[j].append(time.perf_counter() - t)
        direct, sqlite, redis = (statistics.median(t) * 1000 for t in times)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(15)
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"state backends: {n} sequential requests each, in turn (keys, limits and a budget on every request)"
    )
    print(f"{'backend':10} {'p50 (ms)':>10} {'added':>10}")
    print(f"{'direct':10} {direct:10.3f}")
    print(f"{'sqlite':10} {sqlite:10.3f} {sqlite - direct:10.3f}")
    print(f"{'redis':10} {redis:10.3f} {redis - direct:10.3f}")
    print(f"\nredis over sqlite: {redis - sqlite:+.3f} ms p50 (bar: <= 0.3 ms)")


if __name__ == "__main__":
    main()
