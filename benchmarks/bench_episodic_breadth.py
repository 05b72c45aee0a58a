"""Episodic search breadth: does Chroma's default HNSW ``ef_search`` (100) miss episodes an exact
search finds, and what does the wider search episodic memory shares with the knowledge base
(``memory._hnsw``) cost?

The knowledge base searches with ``ef_search`` 1000 because the default missed the best of many
near-identical chunks (``bench_kb_search.py``). Episodic memory's synthetic episodes
(``bench_memory.py``'s corpus: templates × vocabularies × unique ids, float32 MiniLM, its
embedding cache) are near-identical in the same way. One user's episodes are stored at 10k, then
100k, in three collections of the same local Chroma folder, one per HNSW configuration, each kept
as made (the widening of narrower collections is turned off for the run):

- **default**: what ``EpisodicMemory`` created before it shared the knowledge base's index
  (``{"space": "cosine"}``: ``ef_search`` 100, ``max_neighbors`` 16, ``ef_construction`` 100);
- **ef_search 1000**: the same graph searched wider, what such an existing collection gets from
  ``_hnsw.widen_search`` (set at creation here: Chroma applies a changed ``ef_search`` only when it
  next loads the index);
- **HNSW**: what a new collection gets now (``_hnsw.HNSW``: ``ef_search`` 1000,
  ``max_neighbors`` 32, ``ef_construction`` 200).

For each query (``bench_memory.make_queries``: 80 % name one episode, 20 % only a topic), in a
rotating order of the variants: the dense step of a search alone (``collection.query`` of the
query's int8 vector, ``n_results`` 20, the pool ``EpisodicMemory.search`` fuses, ids and distances)
and a whole ``EpisodicMemory.search`` (hybrid, query embedding included, caches cleared). recall@k:
the share of the exact top ``k`` cosine scores (brute force, numpy, same vectors) that the dense
step's top ``k`` reach (ties count: near-identical episodes can score the same). hit@5: the
episode a query names is among the hybrid search's 5 results.

    .venv/bin/python benchmarks/bench_episodic_breadth.py [--quick] [--sizes 10000,100000] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, scrub_environment, summary, table, write_json
from bench_memory import (
    DEFAULT_CACHE,
    DEFAULT_EMBEDDING_CACHE,
    ONE_USER,
    SEED,
    STORE_BATCH,
    TARGET_P50_10K_MS,
    TARGET_P95_100K_MS,
    corpus,
    forget,
    log,
    make_queries,
    ms_since,
)

SIZES = (10_000, 100_000)
POOL = 20
"""The dense candidates ``EpisodicMemory.search`` asks Chroma for at k=5 (``max(4 * k, 20)``)."""


def variants() -> dict[str, dict[str, Any]]:
    from brainstack.memory._hnsw import HNSW, SEARCH_BREADTH

    return {
        "default": {"space": "cosine"},
        f"ef_search {SEARCH_BREADTH}": {"space": "cosine", "ef_search": SEARCH_BREADTH},
        "HNSW (a new collection)": dict(HNSW),
    }


def recall_at(found: Sequence[float], truth: np.ndarray, k: int) -> float:
    """The share of the exact top ``k`` scores that the ``k`` best found scores reach (ties count)."""
    best = sorted(found, reverse=True)[:k]
    return sum(1 for rank in range(k) if rank < len(best) and best[rank] >= truth[rank] - 1e-5) / k


def load(memory: Any, episodes: Sequence[tuple[str, str, str]], vectors: Any, start: int, stop: int) -> float:
    """Add episodes ``start .. stop - 1`` for the one user; returns seconds spent in ``add_many``."""
    spent = 0.0
    for offset in range(start, stop, STORE_BATCH):
        chunk = list(range(offset, min(offset + STORE_BATCH, stop)))
        items = [(episodes[i][0], {"kind": episodes[i][1], "n": i}) for i in chunk]
        begin = time.perf_counter()
        memory.add_many(ONE_USER, items, embeddings=vectors[chunk])
        spent += time.perf_counter() - begin
    return spent


def measure(
    memories: dict[str, Any],
    collections: dict[str, Any],
    matrix: np.ndarray,
    queries: Sequence[tuple[str, int | None]],
) -> dict[str, dict[str, Any]]:
    """Per variant: recall@1/5/20 of the dense step against the exact search, its latency, and the
    hybrid search's latency and hit@5 (variants in a rotating order, query by query)."""
    from brainstack.memory.embeddings import query_embedding
    from brainstack.memory.pii import mask_pii

    labels = list(memories)
    out: dict[str, dict[str, list]] = {
        label: {"dense_ms": [], "hybrid_ms": [], "r1": [], "r5": [], "r20": [], "hit5": []}
        for label in labels
    }
    embedder = next(iter(memories.values())).embedder
    for n, (query, target) in enumerate(queries):
        forget(embedder)
        vector = query_embedding(embedder, mask_pii(query))
        truth = np.sort(matrix @ vector)[::-1][:POOL]
        for label in labels[n % len(labels) :] + labels[: n % len(labels)]:
            got = out[label]
            start = time.perf_counter()
            found = collections[label].query(
                query_embeddings=vector[None, :], n_results=POOL, include=["distances"]
            )
            got["dense_ms"].append(ms_since(start))
            scores = [1.0 - float(d) for d in found["distances"][0]]
            for k in (1, 5, 20):
                got[f"r{k}"].append(recall_at(scores, truth, k))
            forget(embedder)  # the search computes its query embedding
            start = time.perf_counter()
            result = memories[label].search(ONE_USER, query, 5)
            got["hybrid_ms"].append(ms_since(start))
            if target is not None:
                got["hit5"].append(target in [e.metadata.get("n") for e in result])
    return {
        label: {
            "dense_ms": summary(got["dense_ms"]),
            "hybrid_ms": summary(got["hybrid_ms"]),
            "recall@1": float(np.mean(got["r1"])),
            "recall@5": float(np.mean(got["r5"])),
            "recall@20": float(np.mean(got["r20"])),
            "queries_below_exact@5": int(sum(r < 1 for r in got["r5"])),
            "hit@5": float(np.mean(got["hit5"])) if got["hit5"] else None,
        }
        for label, got in out.items()
    }


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from brainstack.memory import episodic
    from brainstack.memory.embeddings import MiniLMEmbedder, QueryFastEmbedder, chroma_embedding_function
    from brainstack.memory.episodic import EpisodicMemory, open_chroma

    episodic.SEARCH_BREADTH = 0  # each variant keeps the configuration it was made with
    began = time.perf_counter()
    float32 = MiniLMEmbedder(args.cache_dir)
    embedder = QueryFastEmbedder(float32, MiniLMEmbedder(args.cache_dir, quantized=True))
    embedder.warm_up()
    episodes, vectors, info = corpus(args, float32)
    client = open_chroma(path=workdir / "chroma")
    function = chroma_embedding_function(embedder)
    memories, collections, configs = {}, {}, {}
    for number, (label, hnsw) in enumerate(variants().items()):
        memory = EpisodicMemory(client, embedder=embedder, namespace=f"breadth{number}")
        collections[label] = client.get_or_create_collection(
            memory.collection_name(ONE_USER),
            embedding_function=function,
            metadata={"brainstack": "episodes", "user_id": ONE_USER},
            configuration={"hnsw": hnsw},
        )
        configs[label] = dict((collections[label].configuration or {}).get("hnsw") or {})
        memories[label] = memory
    rows = []
    loaded = 0
    for size in args.sizes:
        load_s = {}
        for label, memory in memories.items():
            log(f"loading {label} to {size} episodes")
            load_s[label] = load(memory, episodes, vectors, loaded, size)
        loaded = size
        for label, memory in memories.items():  # the collection the search uses is the one made above
            assert memory._collection(ONE_USER, create=False).configuration["hnsw"] == configs[label]
        queries = make_queries(episodes, list(range(size)), args.queries + 5, seed=SEED + size + 7)
        warm, queries = queries[:5], queries[5:]
        for query, _ in warm:
            for memory in memories.values():
                memory.search(ONE_USER, query, 5)  # (builds each collection's keyword index)
        gc.collect()
        loadavg = [round(x, 2) for x in os.getloadavg()]
        log(f"{size} episodes: {len(queries)} queries, load average {loadavg}")
        measured = measure(memories, collections, vectors[:size], queries)
        for label, m in measured.items():
            log(
                f"  {label}: recall@5 {m['recall@5']:.3f}, dense p50 {m['dense_ms']['p50']:.2f} ms, "
                f"hybrid p50 {m['hybrid_ms']['p50']:.2f} / p95 {m['hybrid_ms']['p95']:.2f} ms"
            )
        rows.append(
            {
                "episodes": size,
                "queries": len(queries),
                "loadavg": loadavg,
                "load_rows_per_s": {
                    label: (size - (rows[-1]["episodes"] if rows else 0)) / s for label, s in load_s.items()
                },
                "variants": measured,
            }
        )
    return {
        "sizes": args.sizes,
        "configs": configs,
        "corpus": {k: v for k, v in info.items() if k != "examples"},
        "rows": rows,
        "total_seconds": time.perf_counter() - began,
    }


def report(result: dict[str, Any]) -> str:
    out = ["## Episodic search breadth (one user; dense step against an exact search)\n"]
    out.append(
        table(
            [
                "episodes",
                "variant",
                "queries",
                "recall@1",
                "recall@5",
                "recall@20 (the fused pool)",
                "queries below exact @5",
                "dense step p50 ms",
                "dense step p95 ms",
                "hybrid p50 ms",
                "hybrid p95 ms",
                "hybrid p50 ÷ default",
                "hybrid p95 ÷ default",
                "hit@5 hybrid",
                "bulk load rows/s",
            ],
            [
                (
                    f"{r['episodes']:,}",
                    label,
                    r["queries"],
                    f"{m['recall@1']:.3f}",
                    f"{m['recall@5']:.3f}",
                    f"{m['recall@20']:.3f}",
                    m["queries_below_exact@5"],
                    m["dense_ms"]["p50"],
                    m["dense_ms"]["p95"],
                    m["hybrid_ms"]["p50"],
                    m["hybrid_ms"]["p95"],
                    f"{m['hybrid_ms']['p50'] / r['variants']['default']['hybrid_ms']['p50']:.2f}×",
                    f"{m['hybrid_ms']['p95'] / r['variants']['default']['hybrid_ms']['p95']:.2f}×",
                    f"{m['hit@5']:.0%}" if m["hit@5"] is not None else "n/a",
                    f"{r['load_rows_per_s'][label]:.0f}",
                )
                for r in result["rows"]
                for label, m in r["variants"].items()
            ],
        )
    )
    # (episodes, statistic, limit, as the issue words it)
    goals = (
        (10_000, "p50", TARGET_P50_10K_MS, "p50 ≤ 10 ms at 10k"),
        (100_000, "p95", TARGET_P95_100K_MS, "p95 ≤ 25 ms at 100k"),
    )
    targets = [
        (label, words, f"{m['hybrid_ms'][stat]:.1f} ms", m["hybrid_ms"][stat] <= limit)
        for r in result["rows"]
        for label, m in r["variants"].items()
        for episodes, stat, limit, words in goals
        if r["episodes"] == episodes
    ]
    if targets:
        out.append("\nTargets (hybrid):\n")
        out.append(
            table(
                ["variant", "target", "measured", "met"],
                [(*t[:3], "yes" if t[3] else "**no**") for t in targets],
            )
        )
    out.append(
        "\nLoad average when each size was measured: "
        + ", ".join(f"{r['episodes']:,}: {r['loadavg']}" for r in result["rows"])
        + f". Whole benchmark: {result['total_seconds'] / 60:.1f} min."
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", help="comma-separated corpus sizes (default 10000,100000)")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per size")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="MiniLM ONNX cache folder")
    parser.add_argument(
        "--embedding-cache",
        type=Path,
        default=DEFAULT_EMBEDDING_CACHE,
        help=f"corpus embeddings, shared with bench_memory.py (default {DEFAULT_EMBEDDING_CACHE})",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 2000 episodes, 30 queries")
    parser.add_argument("--json", metavar="PATH", help="write the raw numbers here")
    args = parser.parse_args(argv)
    args.no_embedding_cache = False
    if args.quick:
        args.sizes = args.sizes or "2000"
        args.queries = min(args.queries, 30)
    args.sizes = sorted(int(s) for s in (args.sizes or ",".join(map(str, SIZES))).split(","))
    scrub_environment()
    with tempfile.TemporaryDirectory(prefix="brainstack-bench-breadth-") as tmp:
        result = run(args, Path(tmp))
    print(f"Machine: {machine_line(machine())}\n")
    print(report(result))
    with contextlib.redirect_stdout(sys.stderr):
        write_json(args.json, {"benchmark": "episodic_breadth", **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
