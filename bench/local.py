"""Local inference through aigw vs the library called directly: time to first token and decode speed.

Writes a ~57M-parameter llama GGUF (random weights; one token takes well over 5 ms on a laptop
CPU), then for the same chat prompt and greedy decoding measures:
  * direct: llama-cpp-python's own create_chat_completion(stream=True), in this process;
  * via aigw: a real daemon (its own process) with the model preloaded, streamed over HTTP.
Time to first token (TTFT) and decode tokens/s (after the first token) are the medians of RUNS
runs, alternating direct and via aigw. Prints a table and exits 0.
Usage: python bench/local.py [--tokens N] [--runs N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.overhead import free_port, wait_port
from tests.fixtures.tiny_gguf import write_tiny_llama

BENCH_MODEL = {"n_embd": 768, "n_layer": 8, "n_ff": 2048, "n_head": 12, "n_ctx": 1024}
MESSAGES = [{"role": "user", "content": "Tell me about the weather today in some detail."}]


def direct_run(llm: object, tokens: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    first = last = 0.0
    n = 0
    stream = llm.create_chat_completion(  # type: ignore[attr-defined]
        messages=MESSAGES, max_tokens=tokens, temperature=0, stream=True
    )
    for chunk in stream:
        if chunk["choices"][0]["delta"].get("content"):
            now = time.perf_counter()
            first = first or now
            last = now
            n += 1
    return first - t0, (n - 1) / (last - first)


def aigw_run(port: int, tokens: int) -> tuple[float, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    body = json.dumps(
        {"model": "bench", "messages": MESSAGES, "max_tokens": tokens, "temperature": 0, "stream": True}
    )
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    first = last = 0.0
    n = 0
    for raw in resp:
        line = raw.decode()
        if not line.startswith("data: {"):
            continue
        event = json.loads(line[6:])
        if event["choices"] and event["choices"][0]["delta"].get("content"):
            now = time.perf_counter()
            first = first or now
            last = now
            n += 1
    conn.close()
    return first - t0, (n - 1) / (last - first)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    import llama_cpp

    home = Path(tempfile.mkdtemp(prefix="aigw-bench-local-"))
    model = write_tiny_llama(home / "bench.gguf", seed=3, **BENCH_MODEL)
    params = sum(os.path.getsize(model) for _ in [0]) // 4
    port = free_port()
    (home / "config.toml").write_text(
        f'[server]\nport = {port}\nlog_level = "warning"\n[local]\nkeep_alive_s = -1\n'
        f'[providers.local]\ntype = "llama_cpp"\nmodels = {{ bench = "{model}" }}\n'
    )
    env = {**os.environ, "AIGW_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aigw", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request(
            "POST", "/admin/local/load", json.dumps({"model": "bench"}), {"Content-Type": "application/json"}
        )
        assert conn.getresponse().status == 200
        llm = llama_cpp.Llama(str(model), n_ctx=BENCH_MODEL["n_ctx"], verbose=False)
        direct_run(llm, 8), aigw_run(port, 8)  # warm both
        d, g = [], []
        for _ in range(args.runs):
            d.append(direct_run(llm, args.tokens))
            g.append(aigw_run(port, args.tokens))
    finally:
        proc.terminate()
        proc.wait(30)
    d_ttft, g_ttft = (statistics.median(x[0] for x in r) * 1000 for r in (d, g))
    d_tps, g_tps = (statistics.median(x[1] for x in r) for r in (d, g))
    print(
        f"llama.cpp, {params / 1e6:.0f}M-parameter f32 GGUF, {args.tokens} tokens greedy, "
        f"median of {args.runs} runs"
    )
    print(f"{'metric':28} {'direct':>10} {'via aigw':>10} {'aigw/direct':>12}")
    print(f"{'time to first token (ms)':28} {d_ttft:10.2f} {g_ttft:10.2f} {g_ttft - d_ttft:+11.2f}ms")
    print(f"{'decode (tokens/s)':28} {d_tps:10.2f} {g_tps:10.2f} {g_tps / d_tps:12.3f}")
    print(
        f"\nTTFT overhead: {g_ttft - d_ttft:.2f} ms (bar: <= 5 ms); decode ratio {g_tps / d_tps:.3f} "
        f"(bar: >= 0.97); ms/token direct: {1000 / d_tps:.1f}"
    )


if __name__ == "__main__":
    main()
