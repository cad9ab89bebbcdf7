"""The local engines under an agent's load, through a running daemon (bench/local.py starts it):
turn 2 of a long conversation, conversations interleaved, and concurrent streams in one batch.

Every request bypasses the response cache (Cache-Control: no-cache, no-store) and decodes greedily.
"""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time

NO_CACHE = {"Content-Type": "application/json", "Cache-Control": "no-cache, no-store"}


class Turn:
    """One streamed answer, as the client saw it."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.first = 0.0
        self.end = 0.0
        self.text = ""
        self.prompt = 0
        self.cached = 0
        self.tokens = 0

    @property
    def ttft(self) -> float:
        return self.first - self.start


def stream_turn(port: int, model: str, messages: list[dict[str, str]], tokens: int) -> Turn:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    body = {"model": model, "messages": messages, "max_tokens": tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    turn = Turn(time.perf_counter())
    conn.request("POST", "/v1/chat/completions", json.dumps(body), NO_CACHE)
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"{model}: HTTP {resp.status}: {resp.read().decode()[:300]}")
    for raw in resp:
        line = raw.decode()
        if not line.startswith("data: {"):
            continue
        event = json.loads(line[6:])
        if event["choices"] and event["choices"][0]["delta"].get("content"):
            turn.first = turn.first or time.perf_counter()
            turn.text += event["choices"][0]["delta"]["content"]
        if usage := event.get("usage"):
            turn.prompt, turn.tokens = usage["prompt_tokens"], usage["completion_tokens"]
            turn.cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    turn.end = time.perf_counter()
    conn.close()
    return turn


def history(tag: str, chars: int) -> list[dict[str, str]]:
    """A first message of about `chars` tokens (the bench model's vocabulary is bytes)."""
    return [{"role": "user", "content": f"{tag}: " + "tell me more about it " * max(1, chars // 22)}]


def go_on(messages: list[dict[str, str]], answer: str, n: int) -> list[dict[str, str]]:
    return [*messages, {"role": "assistant", "content": answer}, {"role": "user", "content": f"go on {n}"}]


def prompt_cache(name: str, *, port: int, model: str, chars: int, runs: int) -> None:
    """Turn 2 of a conversation against its turn 1 (each run a new conversation: turn 1 is cold)."""
    cold, warm, shares, sizes = [], [], [], []
    for i in range(runs):
        messages = history(f"{name} {i}", chars)
        t1 = stream_turn(port, model, messages, 8)
        t2 = stream_turn(port, model, go_on(messages, t1.text, 1), 8)
        cold.append(t1.ttft)
        warm.append(t2.ttft)
        shares.append(t2.cached / max(1, t1.prompt))  # turn 1's whole prompt is the shared prefix
        sizes.append(t1.prompt)
    c, w = statistics.median(cold) * 1000, statistics.median(warm) * 1000
    print(f"\n{name}: prompt cache, a {int(statistics.median(sizes))}-token history, median of {runs}")
    print(f"time to first token: turn 1 {c:.1f} ms, turn 2 {w:.1f} ms ({w / c:.2f} of turn 1, bar <= 0.20); "
          f"cached_tokens {min(shares):.2f} of the shared prefix at worst (bar >= 0.95)")  # fmt: skip


def interleaved(name: str, *, port: int, model: str, chars: int, rounds: int) -> None:
    """Two conversations taking turns (A, B, A, B ...): every warm turn against the cold ones."""
    convs = {tag: history(f"{name} {tag} {time.time_ns()}", chars) for tag in ("A", "B")}
    cold: list[float] = []
    warm: list[float] = []
    for r in range(rounds):
        for tag, messages in convs.items():
            t = stream_turn(port, model, messages, 8)
            (warm if r else cold).append(t.ttft)
            convs[tag] = go_on(messages, t.text, r)
    c, worst = statistics.median(cold) * 1000, max(warm) * 1000
    print(f"\n{name}: two conversations interleaved, {rounds} turns each, ~{chars}-token histories")
    print(f"time to first token: cold {c:.1f} ms; warm median {statistics.median(warm) * 1000:.1f} ms, "
          f"worst {worst:.1f} ms ({worst / c:.2f} of cold, bar <= 0.25)")  # fmt: skip


def parallel(name: str, *, port: int, model: str, streams: int, tokens: int, runs: int) -> None:
    """`streams` concurrent greedy streams against each run alone: combined decode tokens/s (all
    tokens after each stream's first, over the span from the first first token to the last end)
    and whether every stream answered exactly as alone."""
    prompts = [history(f"{name} stream {i}", 40 + 10 * i) for i in range(streams)]
    alone = [stream_turn(port, model, p, tokens) for p in prompts]
    one = statistics.median((t.tokens - 1) / (t.end - t.first) for t in alone)
    rates, same = [], True
    for _ in range(runs):
        out: list[Turn | None] = [None] * streams
        gate = threading.Barrier(streams)

        def run(i: int, out: list[Turn | None] = out, gate: threading.Barrier = gate) -> None:
            gate.wait()
            out[i] = stream_turn(port, model, prompts[i], tokens)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done = [t for t in out if t is not None]
        span = max(t.end for t in done) - min(t.first for t in done)
        rates.append(sum(t.tokens - 1 for t in done) / span)
        same = same and [t.text for t in done] == [t.text for t in alone]
    together = statistics.median(rates)
    print(f"\n{name}: {streams} concurrent streams of {tokens} tokens, median of {runs}")
    print(f"decode tokens/s: one stream {one:.1f}, {streams} together {together:.1f} "
          f"({together / one:.2f}x, bar >= 2); greedy output identical to alone: {same}")  # fmt: skip
