"""What aigw adds on top of calling the upstream directly.

Starts a fast fake upstream (its own process) and a real aigw daemon (its own process, one
worker), then measures each both directly and through aigw, in the same run:
  * latency: sequential keep-alive requests (plain http.client), alternating direct and via aigw, p50/p99;
  * throughput: wrk, 32 connections, 1 thread, for DURATION seconds;
  * streaming: time to the first SSE chunk with content, on a kept-alive connection and on a fresh
    connection per request, and whether later chunks are held back.
The daemon runs with everything on: API keys required (a key with generous limits), rate limits,
the usage log, metrics, the response cache (in its default mode these requests bypass it).
`--cache-hit` sends cacheable requests (temperature 0) answered from the cache after the first;
`--cache-miss` sends cacheable requests that all differ, so each is looked up, missed and stored.
`--soak S` then drives it with wrk for S more seconds (at least 100,000 requests on this machine
at 30 s) and reports how much its RSS grew. `--otlp` turns OpenTelemetry export on (`[telemetry]`),
to a stand-in collector in its own process (bench/otlp_sink.py), and says how many spans it got.
`--redis` runs the daemon on the Redis state backend (a redis-server of its own; the key made in
Redis): bench/state.py compares the two backends side by side in one run.
Prints a table and exits 0. Usage: python bench/overhead.py [--requests N] [--duration S]
[--soak S] [--plain] [--otlp] [--redis] [--cache-hit | --cache-miss] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.common import free_port, wait_port  # noqa: E402

KEY = [""]  # the API key the gateway requires (set in main)
MESSAGES = [{"role": "user", "content": "Say hello."}]
BODY = [json.dumps({"model": "bench", "messages": MESSAGES})]  # [0] is what every request sends
STREAM_BODY = [json.dumps({"model": "bench", "stream": True, "messages": MESSAGES})]
UNIQUE = [False]  # every request a different (cacheable) message: a cache miss each time


@contextmanager
def process(
    cmd: list[str], port: int, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield proc
    finally:
        proc.terminate()
        proc.wait(15)


def latency(ports: tuple[int, int], n: int) -> tuple[list[float], list[float]]:
    """Sequential keep-alive requests, alternating between the two ports so drift hits both alike."""
    conns = [http.client.HTTPConnection("127.0.0.1", p) for p in ports]
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY[0]}"}
    out: tuple[list[float], list[float]] = ([], [])
    for i in range(n + 200):
        body = BODY[0]
        if UNIQUE[0]:
            body = json.dumps(
                {"model": "bench", "temperature": 0, "messages": [{"role": "user", "content": f"Hello {i}."}]}
            )
        for conn, times in zip(conns, out, strict=True):
            t = time.perf_counter()
            conn.request("POST", "/v1/chat/completions", body, headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise SystemExit(f"HTTP {resp.status} from port {conn.port}")
            if i >= 200:  # warm-up excluded
                times.append(time.perf_counter() - t)
    for conn in conns:
        conn.close()
    return out


DIALECTS = {
    "anthropic": ("/v1/messages", {"model": "bench", "max_tokens": 256, "messages": MESSAGES}),
    "responses": (
        "/v1/responses",
        {"model": "bench", "max_output_tokens": 256, "input": "Say hello.", "store": False},
    ),
    "ollama": (
        "/api/chat",
        {"model": "bench", "messages": MESSAGES, "stream": False, "options": {"num_predict": 256}},
    ),
}


def dialect_latency(port: int, n: int, dialect: str) -> tuple[list[float], list[float]]:
    """Sequential keep-alive requests through aigw, alternating chat completions and the same
    request in another dialect, so the dialect's own cost is measured in the same minutes."""
    path, request = DIALECTS[dialect]
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY[0]}"}
    chat = json.dumps({"model": "bench", "max_tokens": 256, "messages": MESSAGES})
    other = json.dumps(request)
    out: tuple[list[float], list[float]] = ([], [])
    for i in range(n + 200):
        for url, body, times in (("/v1/chat/completions", chat, out[0]), (path, other, out[1])):
            t = time.perf_counter()
            conn.request("POST", url, body, headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise SystemExit(f"HTTP {resp.status} from {url}")
            if i >= 200:
                times.append(time.perf_counter() - t)
    conn.close()
    return out


def ttfb(port: int, n: int, *, fresh: bool = False) -> tuple[list[float], list[float]]:
    """Time to the first SSE chunk with content, and to the end of the stream; on one kept-alive
    connection, or (`fresh`) on a new connection per request, as SDK clients that do not pool
    connections make them (the connection's setup is then part of the time)."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY[0]}"}
    conn = http.client.HTTPConnection("127.0.0.1", port)
    firsts, totals = [], []
    for _ in range(n):
        if fresh:
            conn = http.client.HTTPConnection("127.0.0.1", port)
        t = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", STREAM_BODY[0], headers)
        resp = conn.getresponse()
        line = resp.readline()
        while not (line.startswith(b"data:") and b'"content"' in line):
            line = resp.readline()
        firsts.append(time.perf_counter() - t)
        resp.read()
        totals.append(time.perf_counter() - t)
        if fresh:
            conn.close()
    conn.close()
    return firsts, totals


def wrk(port: int, duration: int) -> float:
    return wrk_run(port, duration)[0]


def wrk_run(port: int, duration: int) -> tuple[float, int]:
    """(requests/s, requests) of a wrk run: 1 thread, 32 connections."""
    script = HERE / "post.lua"
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            "-c32",
            f"-d{duration}s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/v1/chat/completions",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={
            **os.environ,
            "AIGW_BENCH_KEY": KEY[0],
            "AIGW_BENCH_BODY": BODY[0],
            "AIGW_BENCH_UNIQUE": "1" if UNIQUE[0] else "0",
        },
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in", out)
    return (float(m.group(1)) if m else 0.0), (int(n.group(1)) if n else 0)


def rss_kib(pid: int) -> int:
    out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def create_key(home: str, redis_url: str | None) -> str:
    """An API key with limits no benchmark reaches, made the way `aigw keys create` makes one (in
    the daemon's store: its SQLite, or the Redis it shares)."""
    from aigw.config.model import StateConfig
    from aigw.state.backend import key_store, shared_state

    cfg = StateConfig.model_validate({"backend": "redis", "url": redis_url} if redis_url else {})
    state = shared_state(cfg)
    _, plain = key_store(state, Path(home) / "aigw.db").create("bench", rpm=10**9, tpm=10**12)
    if state is not None:
        state.close()
    return plain


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000


def run_soak(port: int, pid: int, seconds: int) -> str:
    """Drive the daemon with wrk twice for `seconds`; how much its RSS grew each time."""
    wrk_run(port, 10)  # warm: caches, pools, histograms, SQLite pages all populated
    before = rss_kib(pid)
    rps, n = wrk_run(port, seconds)
    middle = rss_kib(pid)
    _, n2 = wrk_run(port, seconds)
    grew, grew2 = (middle - before) / 1024, (rss_kib(pid) - middle) / 1024
    return (
        f"; soak: {n} requests at {rps:.0f} req/s grew RSS by {grew:.1f} MB (bar: < 10 MB), "
        f"the next {n2} by {grew2:.1f} MB"
    )


def cacheable(*, unique: bool) -> None:
    """Send cacheable requests (temperature 0); `unique`: each a different one."""
    BODY[0] = json.dumps({"model": "bench", "temperature": 0, "messages": MESSAGES})
    STREAM_BODY[0] = json.dumps({"model": "bench", "temperature": 0, "stream": True, "messages": MESSAGES})
    UNIQUE[0] = unique


def write_config(
    home: str, args: argparse.Namespace, up_port: int, gw_port: int, sink_port: int, *, redis_url: str | None
) -> None:
    features = (
        "require_keys = true\n[limits]\nrpm = 1000000000\ntpm = 1000000000000\n"
        '[prices]\n"bench" = { input = 0.15, output = 0.6 }\n'
    )
    Path(home, "config.toml").write_text(
        f'[server]\nport = {gw_port}\nlog_level = "warning"\n'
        + ("" if args.plain else features)
        + f'[providers.up]\ntype = "openai"\nbase_url = "http://127.0.0.1:{up_port}/v1"\n'
        + (f'[telemetry]\notlp_endpoint = "http://127.0.0.1:{sink_port}"\n' if args.otlp else "")
        + (f'[state]\nbackend = "redis"\nurl = "{redis_url}"\n' if redis_url else "")
    )


def exports(port: int, gw: subprocess.Popen[bytes]) -> str:
    """What the stand-in collector received, once the daemon stopped (a stop flushes the spans)."""
    gw.terminate()
    gw.wait(30)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/count")
    got = json.loads(conn.getresponse().read())
    return f"; OTLP: {got['spans']} spans and {got['metric_exports']} metric exports received"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--soak", type=int, default=0, help="seconds of wrk load for the RSS soak (0: none)")
    ap.add_argument("--plain", action="store_true", help="no keys, limits or prices (to see their cost)")
    ap.add_argument("--quick", action="store_true", help="a few requests and 1 s of wrk: does it still run?")
    ap.add_argument("--otlp", action="store_true", help="export spans and metrics to a stand-in collector")
    ap.add_argument("--redis", action="store_true", help="the Redis state backend (its own redis-server)")
    ap.add_argument(
        "--dialect",
        choices=sorted(DIALECTS),
        help="also time the same request in this dialect against chat completions (bar: <= +0.3 ms p50)",
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--cache-hit", action="store_true", help="cacheable requests, answered from the cache")
    mode.add_argument("--cache-miss", action="store_true", help="cacheable requests, each one different")
    args = ap.parse_args()
    if args.quick:
        args.requests, args.duration, args.streams, args.soak = 50, 1, 10, 0
    if args.cache_hit or args.cache_miss:
        cacheable(unique=args.cache_miss)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk; macOS: brew install wrk)")
    up_port, gw_port, sink_port, redis_port = free_port(), free_port(), free_port(), free_port()
    home = tempfile.mkdtemp(prefix="aigw-bench-")
    redis = redis_command(home, redis_port) if args.redis else None
    redis_url = f"redis://127.0.0.1:{redis_port}/0" if redis else None
    write_config(home, args, up_port, gw_port, sink_port, redis_url=redis_url)
    env = {**os.environ, "AIGW_HOME": home}
    sink = [sys.executable, str(HERE / "otlp_sink.py"), str(sink_port)] if args.otlp else None
    with (
        process([sys.executable, str(HERE / "fake_upstream.py"), str(up_port)], up_port),
        process(sink, sink_port) if sink else nullcontext(),
        process(redis, redis_port) if redis else nullcontext(),
    ):
        KEY[0] = "unused" if args.plain else create_key(home, redis_url)
        with process([sys.executable, "-m", "aigw", "serve"], gw_port, env) as gw:
            results = measure(args, up_port, gw_port, sink_port, gw)
    shutil.rmtree(home, ignore_errors=True)
    report(args, results)


def redis_command(home: str, port: int) -> list[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit(
            "redis-server is not installed (Debian: apt-get install redis-server; macOS: brew install redis)"
        )
    return [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", home]


def measure(
    args: argparse.Namespace, up_port: int, gw_port: int, sink_port: int, gw: subprocess.Popen[bytes]
) -> dict[str, Any]:
    """Every figure, direct (`d_*`) and through aigw (`g_*`)."""
    if args.cache_hit:  # store the answers every request below is served from
        latency((up_port, gw_port), 1)
        ttfb(gw_port, 1)
    r: dict[str, Any] = {}
    r["d_lat"], r["g_lat"] = latency((up_port, gw_port), args.requests)
    r["d_rps"], r["g_rps"] = wrk(up_port, args.duration), wrk(gw_port, args.duration)
    r["d_ft"], r["d_tot"] = ttfb(up_port, args.streams)
    r["g_ft"], r["g_tot"] = ttfb(gw_port, args.streams)
    r["d_fresh"], _ = ttfb(up_port, args.streams, fresh=True)
    r["g_fresh"], _ = ttfb(gw_port, args.streams, fresh=True)
    r["soak"] = run_soak(gw_port, gw.pid, args.soak) if args.soak else ""
    r["dialect"] = dialect_latency(gw_port, args.requests, args.dialect) if args.dialect else None
    r["exported"] = exports(sink_port, gw) if args.otlp else ""
    return r


def report(args: argparse.Namespace, r: dict[str, Any]) -> None:
    d_lat, g_lat, d_rps, g_rps = r["d_lat"], r["g_lat"], r["d_rps"], r["g_rps"]
    d_ft, g_ft, d_fresh, g_fresh = r["d_ft"], r["g_ft"], r["d_fresh"], r["g_fresh"]
    soak, dialect, exported = r["soak"], r["dialect"], r["exported"]
    rows = [
        ("latency p50 (ms)", pct(d_lat, 0.50), pct(g_lat, 0.50)),
        ("latency p99 (ms)", pct(d_lat, 0.99), pct(g_lat, 0.99)),
        ("throughput, 32 conns (req/s)", d_rps, g_rps),
        ("stream first content p50 (ms)", pct(d_ft, 0.5), pct(g_ft, 0.5)),
        ("  ... on a fresh connection", pct(d_fresh, 0.5), pct(g_fresh, 0.5)),
        ("stream complete p50 (ms)", pct(r["d_tot"], 0.5), pct(r["g_tot"], 0.5)),
    ]
    state = " (Redis state backend)" if args.redis else ""
    print(
        f"aigw overhead{state}: {args.requests} sequential requests, wrk -t1 -c32 -d{args.duration}s, "
        f"{args.streams} streams (upstream holds chunks 2.. for 10 ms)"
    )
    print(f"{'metric':32} {'direct':>10} {'via aigw':>10} {'added':>10} {'ratio':>7}")
    for name, d, g in rows:
        print(f"{name:32} {d:10.3f} {g:10.3f} {g - d:10.3f} {g / d if d else 0:7.2f}")
    if args.cache_hit:
        print(
            f"\ncache hit: p50 {pct(g_lat, 0.5):.3f} ms end to end (bar: <= 0.5 ms, and below the upstream "
            f"called directly: {pct(d_lat, 0.5):.3f} ms); throughput: {g_rps:.0f} req/s (bar: >= 5000){soak}"
        )
        return
    if dialect is not None:
        c50, o50 = pct(dialect[0], 0.5), pct(dialect[1], 0.5)
        print(
            f"{args.dialect} dialect: p50 {o50:.3f} ms against {c50:.3f} ms for chat completions "
            f"in the same run: added {o50 - c50:+.3f} ms (bar: <= 0.3 ms)"
        )
    what = "cache miss: " if args.cache_miss else ""
    print(
        f"\n{what}added latency p50: {pct(g_lat, 0.5) - pct(d_lat, 0.5):.3f} ms (bar: <= 0.5 ms); "
        f"throughput: {g_rps:.0f} req/s (bar: >= 3000); "
        f"first content added: {pct(g_ft, 0.5) - pct(d_ft, 0.5):.3f} ms kept-alive, "
        f"{pct(g_fresh, 0.5) - pct(d_fresh, 0.5):.3f} ms fresh (bar: <= 1 ms){soak}{exported}"
    )


if __name__ == "__main__":
    main()
