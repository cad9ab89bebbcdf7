"""What aigw adds on top of calling the upstream directly.

Starts a fast fake upstream (its own process) and a real aigw daemon (its own process, one
worker), then measures each both directly and through aigw, in the same run:
  * latency: sequential keep-alive requests (plain http.client), alternating direct and via aigw, p50/p99;
  * throughput: wrk, 32 connections, 1 thread, for DURATION seconds;
  * streaming: time to the first SSE chunk, and whether later chunks are held back.
Prints a table and exits 0. Usage: python bench/overhead.py [--requests N] [--duration S]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
BODY = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "Say hello."}]})
STREAM_BODY = json.dumps(
    {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "Say hello."}]}
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


@contextmanager
def process(cmd: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield
    finally:
        proc.terminate()
        proc.wait(15)


def latency(ports: tuple[int, int], n: int) -> tuple[list[float], list[float]]:
    """Sequential keep-alive requests, alternating between the two ports so drift hits both alike."""
    conns = [http.client.HTTPConnection("127.0.0.1", p) for p in ports]
    headers = {"Content-Type": "application/json"}
    out: tuple[list[float], list[float]] = ([], [])
    for i in range(n + 200):
        for conn, times in zip(conns, out, strict=True):
            t = time.perf_counter()
            conn.request("POST", "/v1/chat/completions", BODY, headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise SystemExit(f"HTTP {resp.status} from port {conn.port}")
            if i >= 200:  # warm-up excluded
                times.append(time.perf_counter() - t)
    for conn in conns:
        conn.close()
    return out


def ttfb(port: int, n: int) -> tuple[list[float], list[float]]:
    """Time to the first SSE chunk, and to the end of the stream."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "application/json"}
    firsts, totals = [], []
    for _ in range(n):
        t = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", STREAM_BODY, headers)
        resp = conn.getresponse()
        line = resp.readline()
        while not line.startswith(b"data:"):
            line = resp.readline()
        firsts.append(time.perf_counter() - t)
        resp.read()
        totals.append(time.perf_counter() - t)
    conn.close()
    return firsts, totals


def wrk(port: int, duration: int) -> float:
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
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else 0.0


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--streams", type=int, default=100)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk; macOS: brew install wrk)")
    up_port, gw_port = free_port(), free_port()
    home = tempfile.mkdtemp(prefix="aigw-bench-")
    Path(home, "config.toml").write_text(
        f'[server]\nport = {gw_port}\nlog_level = "warning"\n'
        f'[providers.up]\ntype = "openai"\nbase_url = "http://127.0.0.1:{up_port}/v1"\n'
    )
    env = {**os.environ, "AIGW_HOME": home}
    with (
        process([sys.executable, str(HERE / "fake_upstream.py"), str(up_port)], up_port),
        process([sys.executable, "-m", "aigw", "serve"], gw_port, env),
    ):
        rows = []
        d_lat, g_lat = latency((up_port, gw_port), args.requests)
        d_rps, g_rps = wrk(up_port, args.duration), wrk(gw_port, args.duration)
        d_ft, d_tot = ttfb(up_port, args.streams)
        g_ft, g_tot = ttfb(gw_port, args.streams)
    shutil.rmtree(home, ignore_errors=True)
    rows = [
        ("latency p50 (ms)", pct(d_lat, 0.50), pct(g_lat, 0.50)),
        ("latency p99 (ms)", pct(d_lat, 0.99), pct(g_lat, 0.99)),
        ("throughput, 32 conns (req/s)", d_rps, g_rps),
        ("stream first chunk p50 (ms)", pct(d_ft, 0.5), pct(g_ft, 0.5)),
        ("stream complete p50 (ms)", pct(d_tot, 0.5), pct(g_tot, 0.5)),
    ]
    print(
        f"aigw overhead: {args.requests} sequential requests, wrk -t1 -c32 -d{args.duration}s, "
        f"{args.streams} streams (upstream holds chunks 2.. for 10 ms)"
    )
    print(f"{'metric':32} {'direct':>10} {'via aigw':>10} {'added':>10} {'ratio':>7}")
    for name, d, g in rows:
        print(f"{name:32} {d:10.3f} {g:10.3f} {g - d:10.3f} {g / d if d else 0:7.2f}")
    print(
        f"\nadded latency p50: {pct(g_lat, 0.5) - pct(d_lat, 0.5):.3f} ms (bar: <= 0.5 ms); "
        f"throughput: {g_rps:.0f} req/s (bar: >= 3000); "
        f"first chunk added: {pct(g_ft, 0.5) - pct(d_ft, 0.5):.3f} ms (bar: <= 1 ms)"
    )


if __name__ == "__main__":
    main()
