"""Local inference through aigw vs the library called directly, and under an agent's load.

Writes a ~27M-parameter llama (width 512, 8 layers, 4,096 context) as a GGUF and as an MLX
directory (random weights, a byte vocabulary), then for the same chat prompt and greedy decoding
measures:
  * direct: llama-cpp-python's own create_chat_completion(stream=True) (which reuses its own
    prompt state) / mlx-lm's stream_generate with a prompt cache kept between calls, in this
    process;
  * via aigw: a real daemon (its own process) with the model preloaded, streamed over HTTP.
Time to first token (TTFT) and decode tokens/s (after the first token) are the medians of RUNS
runs, alternating direct and via aigw; the TTFT overhead is the median of the back-to-back pairs.
Then constrained decoding (a response_format JSON schema held by llguidance) against the same
request unconstrained, both through aigw, alternating: decode tokens/s of each and their ratio.
Then, per engine (bench/local_turns.py): turn 2 of a conversation with a long history against its
turn 1 (llama.cpp ~2,000 tokens, MLX ~300: mlx on this CPU prefills ~35 tokens/s), two
conversations interleaved (also on a one-slot llama.cpp model: saved states only), and 4
concurrent streams against each alone.
Every request through aigw bypasses the response cache (Cache-Control: no-cache, no-store): the same
greedy request repeats, and a cached answer would measure nothing.
Prints a table and exits 0.
Usage: python bench/local.py [--tokens N] [--runs N] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import local_turns
from bench.common import admin_headers, free_port, wait_healthy
from tests.fixtures.tiny_gguf import write_tiny_llama

BENCH_MODEL = {"n_embd": 512, "n_layer": 8, "n_ff": 1536, "n_head": 8, "n_ctx": 4096}
QUICK_MODEL = {"n_embd": 64, "n_layer": 2, "n_ff": 128, "n_head": 4, "n_ctx": 256}
NO_CACHE = {"Content-Type": "application/json", "Cache-Control": "no-cache, no-store"}
MESSAGES = [{"role": "user", "content": "Hi."}]


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


def direct_mlx_run(loaded: tuple[object, object], tokens: int, held: list[object]) -> tuple[float, float]:
    """mlx-lm's stream_generate as a careful caller uses it: with a prompt cache kept between
    calls (in `held`) and trimmed to the prompt, less its last token (as aigw does)."""
    from mlx_lm import stream_generate
    from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache
    from mlx_lm.sample_utils import make_sampler

    model, tok = loaded
    t0 = time.perf_counter()  # templating and tokenizing count, as in create_chat_completion
    prompt = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)  # type: ignore[attr-defined]
    ids = tok.encode(prompt, add_special_tokens=False)  # type: ignore[attr-defined]
    if not held:
        held.extend([make_prompt_cache(model), 0])
    cache, size = held[0], int(held[1])  # type: ignore[call-overload]
    feed = ids
    if size:  # the same prompt as last time: read its last token again
        trim_prompt_cache(cache, size - (len(ids) - 1))  # type: ignore[arg-type]
        feed = ids[-1:]
    first = last = 0.0
    n = 0
    for _ in stream_generate(
        model, tok, feed, max_tokens=tokens, sampler=make_sampler(temp=0.0), prompt_cache=cache
    ):
        now = time.perf_counter()  # one step per token (its text may come words later)
        first = first or now
        last = now
        n += 1
    held[1] = int(cache[0].offset)  # type: ignore[index]
    return first - t0, (n - 1) / (last - first)


def constrained(tokens: int) -> dict[str, object]:
    """A response_format whose string must outlast max_tokens: every step is a constrained one."""
    string = {"type": "string", "minLength": tokens * 2}
    schema = {"type": "object", "properties": {"t": string}, "required": ["t"]}
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "b", "schema": schema}}}


def aigw_run(
    port: int, tokens: int, model: str = "bench", extra: dict[str, object] | None = None
) -> tuple[float, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    body = json.dumps(
        {"model": model, "messages": MESSAGES, "max_tokens": tokens, "temperature": 0, "stream": True}
        | (extra or {})
    )
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, NO_CACHE)
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


def measure(
    name: str, direct: Callable[[int], tuple[float, float]], *, port: int, model: str, tokens: int, runs: int
) -> None:
    direct(8), aigw_run(port, 8, model)  # warm both
    d, g = [], []
    for _ in range(runs):
        d.append(direct(tokens))
        g.append(aigw_run(port, tokens, model))
    d_ttft, g_ttft = (statistics.median(x[0] for x in r) * 1000 for r in (d, g))
    d_tps, g_tps = (statistics.median(x[1] for x in r) for r in (d, g))
    # Overhead as the median of back-to-back pairs: drift between runs cancels out.
    added = statistics.median((gi[0] - di[0]) * 1000 for di, gi in zip(d, g, strict=True))
    print(f"\n{name}: {tokens} tokens greedy, median of {runs} runs")
    print(f"{'metric':28} {'direct':>10} {'via aigw':>10} {'aigw/direct':>12}")
    print(f"{'time to first token (ms)':28} {d_ttft:10.2f} {g_ttft:10.2f} {added:+11.2f}ms")
    print(f"{'decode (tokens/s)':28} {d_tps:10.2f} {g_tps:10.2f} {g_tps / d_tps:12.3f}")
    print(
        f"TTFT overhead (median of pairs): {added:.2f} ms (bar: <= 5 ms); decode ratio {g_tps / d_tps:.3f} "
        f"(bar: >= 0.97); ms/token direct: {1000 / d_tps:.1f}"
    )


def measure_constrained(name: str, *, port: int, model: str, tokens: int, runs: int) -> None:
    extra = constrained(tokens)
    aigw_run(port, 8, model, extra)  # warm: the grammar's tokenizer is built once per model
    free, held = [], []
    for _ in range(runs):
        free.append(aigw_run(port, tokens, model)[1])
        held.append(aigw_run(port, tokens, model, extra)[1])
    f, h = statistics.median(free), statistics.median(held)
    print(f"\n{name}: constrained decoding (response_format json_schema), {tokens} tokens, median of {runs}")
    print(f"decode tokens/s: unconstrained {f:.2f}, constrained {h:.2f}; ratio {h / f:.3f} (bar: >= 0.85)")


def turns(name: str, *, port: int, model: str, chars: int, quick: bool, runs: int) -> None:
    """An agent's load: turn 2 of a long history, two conversations interleaved, 4 streams at once."""
    local_turns.prompt_cache(name, port=port, model=model, chars=chars, runs=runs)
    local_turns.interleaved(name, port=port, model=model, chars=chars, rounds=2 if quick else 4)
    tokens = 8 if quick else 128
    local_turns.parallel(name, port=port, model=model, streams=4, tokens=tokens, runs=1 if quick else 3)


def admin_call(port: int, path: str, model: str, headers: dict[str, str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("POST", path, json.dumps({"model": model}), headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"{path} {model}: HTTP {resp.status}: {resp.read().decode()[:300]}")


def measure_llama(
    gguf: Path, model: dict[str, int], *, port: int, admin: dict[str, str], args: argparse.Namespace
) -> None:
    import llama_cpp

    llm = llama_cpp.Llama(str(gguf), n_ctx=model["n_ctx"], verbose=False)
    params = gguf.stat().st_size / 4 / 1e6
    measure(
        f"llama.cpp, {params:.0f}M-parameter f32 GGUF",
        lambda n: direct_run(llm, n),
        port=port,
        model="bench",
        tokens=args.tokens,
        runs=args.runs,
    )
    llm.close()
    measure_constrained("llama.cpp", port=port, model="bench", tokens=args.tokens, runs=args.runs)
    chars = 40 if args.quick else 1380  # ~2,000 tokens: bytes, and a space is 3 (U+2581)
    turns("llama.cpp", port=port, model="bench", chars=chars, quick=args.quick, runs=args.runs)
    local_turns.interleaved(
        "llama.cpp, one slot (saved states only)",
        port=port,
        model="bench1",
        chars=chars,
        rounds=2 if args.quick else 4,
    )
    admin_call(port, "/admin/local/unload", "bench1", admin)
    admin_call(port, "/admin/local/unload", "bench", admin)  # each engine measured alone


def measure_mlx(mlx_dir: Path, *, port: int, args: argparse.Namespace) -> None:
    import mlx_lm

    loaded = mlx_lm.load(str(mlx_dir))[:2]
    held: list[object] = []
    measure(
        "MLX (mlx-lm), the same model as an MLX directory",
        lambda n: direct_mlx_run(loaded, n, held),
        port=port,
        model="bench-mlx",
        tokens=args.tokens,
        runs=args.runs,
    )
    measure_constrained("MLX", port=port, model="bench-mlx", tokens=args.tokens, runs=args.runs)
    chars = 40 if args.quick else 300  # MLX on this CPU prefills ~35 tokens/s
    turns("MLX", port=port, model="bench-mlx", chars=chars, quick=args.quick, runs=args.runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--quick", action="store_true", help="a tiny model, 8 tokens, one run: does it run?")
    ap.add_argument("--only", choices=["llama", "mlx"], help="measure one engine")
    args = ap.parse_args()
    model = QUICK_MODEL if args.quick else BENCH_MODEL
    if args.quick:
        args.tokens, args.runs = 8, 1

    home = Path(tempfile.mkdtemp(prefix="aigw-bench-local-"))
    gguf = write_tiny_llama(home / "bench.gguf", seed=3, **model)
    has_mlx = importlib.util.find_spec("mlx_lm") is not None
    mlx_dir = home / "bench-mlx"
    if has_mlx:
        from tests.fixtures.tiny_mlx import write_tiny_mlx

        write_tiny_mlx(
            mlx_dir,
            hidden=model["n_embd"],
            layers=model["n_layer"],
            ff=model["n_ff"],
            heads=model["n_head"],
            seed=3,
        )
    port = free_port()
    mlx_table = f'[providers.mlx]\ntype = "mlx"\nmodels = {{ bench-mlx = "{mlx_dir}" }}\n' if has_mlx else ""
    (home / "config.toml").write_text(
        f'[server]\nport = {port}\nlog_level = "warning"\n[local]\nkeep_alive_s = -1\n'
        f'[providers.local]\ntype = "llama_cpp"\nparallel = 4\n'
        f'models = {{ bench = "{gguf}", bench1 = {{ path = "{gguf}", parallel = 1 }} }}\n' + mlx_table
    )
    env = {**os.environ, "AIGW_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aigw", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_healthy(port)  # the admin token exists from then on
        admin = admin_headers(home)
        llama = args.only != "mlx"
        mlx = has_mlx and args.only != "llama"
        for name in (["bench"] if llama else []) + (["bench-mlx"] if mlx else []):
            admin_call(port, "/admin/local/load", name, admin)
        if llama:
            measure_llama(gguf, model, port=port, admin=admin, args=args)
        if mlx:
            measure_mlx(mlx_dir, port=port, args=args)
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(home, ignore_errors=True)  # its models are tens of MB each


if __name__ == "__main__":
    main()
