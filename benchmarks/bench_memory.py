"""Memory benchmark: episodic search latency at scale, ingestion throughput, retrieval quality, recall tokens.

All in one process on a temp local Chroma folder (``open_chroma(path=...)``), MiniLM on onnxruntime:

1. Episodic search latency (p50/p95, query embedding included, ``mode="hybrid"``) at 1k, 10k and 100k
   synthetic episodes, (a) all for one user and (b) spread over 100 users (one user's collection is
   queried), against a plain ``collection.query(query_embeddings=..., n_results=5)`` on the same
   collection in the same run, interleaved query by query. Episodes are stored with float32 MiniLM;
   queries are embedded as memory does by default (``BRAINSTACK_QUERY_EMBEDDINGS=int8``: its int8
   copy), and every search is also run with float32 queries (the previous default) for comparison.
   The single-text embedding caches are cleared before every call, so every call computes its query
   embedding. The first search after opening (the BM25 keyword index is built lazily, once per
   process and collection) is reported apart, both in-process (a new ``EpisodicMemory`` on the open
   client) and in a fresh Python process. A breakdown times the parts of a hybrid search separately
   (PII masking, query embedding, ``count()``, the dense Chroma query for ids and distances, the one
   ``get`` of the results' documents and metadata, BM25).
2. Ingestion: episodes/s of ``EpisodicMemory.add_many`` with embeddings (2k episodes, batches of 256),
   and chunks/s of ``KnowledgeBase.add`` on a generated folder of Markdown files.
3. Retrieval quality: recall@1/5/10 of hybrid vs dense-only (and keyword-only) on
   ``tests/data/episodic_eval.yaml``, with int8 and with float32 query embeddings.
4. Tokens the memory context adds per run: ``MemoryGateway.recall`` over a set of tasks for a user seeded
   with episodes, knowledge-base documents, preferences and the built-in skills.

Synthetic episodes come from templates × vocabularies × unique ids (incidents, renewals, decisions,
purchase orders, tickets, experiments, meetings, releases), seeded, so every run stores the same texts.
Their embeddings are computed once (batches through ``MiniLMEmbedder.embed``), cached as .npy keyed by
the texts and the model (``--embedding-cache``), and handed to ``add_many(..., embeddings=...)`` for both
layouts. On 2 cores MiniLM embeds these ~30-piece texts at roughly 50-150/s, so the first full run spends
10-30 minutes on them; ``--embed-only`` fills the cache ahead of time, later runs load it in a second.

    .venv/bin/python benchmarks/bench_memory.py --embed-only           # optional: fill the embedding cache
    .venv/bin/python benchmarks/bench_memory.py [--quick] [--sizes 1000,10000] [--queries N] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine, machine_line, scrub_environment, summary, table, write_json

EVAL_FILE = ROOT / "tests" / "data" / "episodic_eval.yaml"
DEFAULT_CACHE = Path("/tmp/bscache")
DEFAULT_EMBEDDING_CACHE = Path(tempfile.gettempdir()) / "brainstack-bench-memory-cache"
"""Corpus embeddings (.npy, ~150 MB for 100k), kept apart from the model cache, which others may clear."""
SIZES = (1_000, 10_000, 100_000)
USERS = 100
TARGET_P50_10K_MS = 10.0
TARGET_P95_100K_MS = 25.0
SEED = 20240611
ONE_USER = "bench-single-user"
STORE_BATCH = 5000
"""Rows per ``add_many`` call when bulk-loading (Chroma's local batch limit is 5461)."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def models(embedder: Any) -> list[Any]:
    """The MiniLM models behind ``embedder`` (a :class:`QueryFastEmbedder` has two)."""
    return [embedder.queries, embedder.documents] if hasattr(embedder, "queries") else [embedder]


def forget(embedder: Any) -> None:
    """Clear the single-text caches, so the next call computes its query embedding."""
    for model in models(embedder):
        model._recent.clear()


def many_user(index: int) -> str:
    return f"bench-user-{index:03d}"


# -- synthetic episodes --------------------------------------------------------------------------------

# fmt: off
SERVICES = [
    "checkout", "payments", "billing", "search", "login", "export", "notification", "inventory", "shipping",
    "reporting", "webhook", "analytics",
]
SYMPTOMS = [
    "returned 502 errors", "timed out", "returned stale results", "dropped requests", "ran out of memory",
    "queued messages without delivering them", "served 500 errors", "slowed to multi-second responses",
]
CAUSES = [
    "a deploy", "a config change", "an expired certificate", "a traffic spike", "a database lock",
    "a full disk", "a bad feature flag", "an expired API key", "a DNS change", "a dependency upgrade",
]
FIXES = [
    "rolled back", "fixed forward", "autoscaled the pool", "renewed the certificate",
    "killed the blocking query", "freed disk space", "turned the flag off", "rotated the key",
    "reverted the DNS record", "pinned the old version",
]
PREFIXES = [
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Vandelay", "Wonka", "Soylent",
    "Tyrell", "Cyberdyne", "Gringotts", "Oscorp", "Massive", "Aperture", "Blue Sun", "Dunder", "Pied Piper",
    "Monarch", "Nakatomi", "Virtucon", "Zorg", "Duff",
]
SUFFIXES = [
    "Corp", "Labs", "Foods", "Systems", "Health", "Logistics", "Bank", "Retail", "Energy", "Media",
]
ASKS = [
    "a 10 percent discount", "quarterly billing", "SSO", "an audit log", "a dedicated account manager",
    "annual billing", "usage-based pricing", "an on-premise option", "a longer trial",
    "data residency in the EU", "a 99.9 percent SLA", "custom contract terms",
]
DECISIONS = [
    "launch a freemium tier with strict usage limits", "postpone the European expansion",
    "buy a payment provider instead of building one", "open-source the SDK under Apache 2.0",
    "raise prices for new customers only", "hire two more support agents",
    "move the data warehouse to a managed service", "drop the legacy desktop app",
    "add usage limits to the free plan", "sponsor the regional developer conference",
    "switch the email vendor", "offer a nonprofit discount",
]
TEAMS = [
    "growth", "platform", "sales", "support", "finance", "mobile", "data", "marketing",
]
ITEMS = [
    "laptops", "monitors", "standing desks", "laptop docks", "headsets", "office chairs", "server racks",
    "test phones", "whiteboards", "webcams",
]
PO_STATUS = [
    "approved by finance", "rejected because the budget was exhausted", "waiting for a second quote",
    "approved after negotiation", "put on hold until next quarter", "sent back for a cheaper supplier",
]
PROBLEMS = [
    "exports are missing the last row", "the dashboard shows the wrong time zone",
    "invoices are sent twice", "password reset mails arrive late", "the mobile app logs users out",
    "CSV imports fail on accented names", "charts do not load in Safari", "webhooks retry forever",
]
FEATURES = [
    "reporting module", "billing page", "admin console", "mobile app", "public API", "import wizard",
    "analytics dashboard", "notification settings",
]
RESOLUTIONS = [
    "fixed in the next release", "workaround sent by email", "escalated to engineering",
    "closed as expected behaviour", "refund issued", "duplicate of a known bug",
]
PAGES = [
    "pricing page", "signup form", "onboarding checklist", "checkout page", "landing page",
    "trial reminder email", "upgrade dialog",
]
VARIANTS = [
    "a shorter form", "a customer quote above the button", "annual pricing shown first", "a progress bar",
    "a free-trial badge", "a simpler headline", "social login",
]
ROLES = [
    "the CFO", "the head of IT", "the procurement lead", "the VP of sales", "the security officer",
    "the operations manager",
]
TOPICS = [
    "the renewal timeline", "the security questionnaire", "a pilot of the analytics product",
    "the migration plan", "pricing for extra seats", "the integration roadmap",
]
NEXT_STEPS = [
    "send a proposal", "schedule a demo for their team", "share the SOC 2 report", "draft the contract",
    "set up a sandbox", "follow up in two weeks",
]
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
]
OUTCOMES = [
    "no incidents after the rollout", "error rates rose and it was rolled back",
    "customers reported faster page loads", "a feature flag kept it dark for a week",
    "support tickets about it dropped by half",
]
SHIPPED = [
    "bulk export", "dark mode", "SAML login", "usage alerts", "a new onboarding flow", "faster search",
    "audit log filters", "webhook signing",
]
# fmt: on

KINDS = ("INC", "ACC", "DEC", "PO", "TCK", "EXP", "MTG", "REL")


def company(rng: random.Random) -> str:
    return f"{rng.choice(PREFIXES)} {rng.choice(SUFFIXES)}"


def episode_text(kind: str, ref: str, rng: random.Random) -> str:
    """One synthetic episode of ``kind`` whose unique identifier is ``ref`` (numbers never touch: no PII)."""
    pick = rng.choice
    if kind == "INC":
        if rng.random() < 0.5:
            return (
                f"Incident {ref}: the {pick(SERVICES)} service {pick(SYMPTOMS)} for {rng.randint(3, 90)} "
                f"minutes after {pick(CAUSES)}; {pick(FIXES)}."
            )
        return (
            f"Postmortem of {ref}: {pick(CAUSES)} made the {pick(SERVICES)} service {pick(SYMPTOMS)}; "
            f"the on-call engineer {pick(FIXES)} within {rng.randint(3, 90)} minutes."
        )
    if kind == "ACC":
        return (
            f"Renewal call with {company(rng)} (account {ref}): they asked for {pick(ASKS)} and {pick(ASKS)}."
        )
    if kind == "DEC":
        return (
            f"Group chat decision {ref}: the {pick(TEAMS)} team will {pick(DECISIONS)}; "
            f"review again after {rng.randint(2, 12)} weeks."
        )
    if kind == "PO":
        return (
            f"Purchase order {ref} for {rng.randint(2, 400)} {pick(ITEMS)} was {pick(PO_STATUS)} "
            f"on {pick(MONTHS)} {rng.randint(1, 28)}."
        )
    if kind == "TCK":
        return (
            f"Support ticket {ref} from {company(rng)}: {pick(PROBLEMS)} in the {pick(FEATURES)}; "
            f"{pick(RESOLUTIONS)}."
        )
    if kind == "EXP":
        return (
            f"Experiment {ref} on the {pick(PAGES)}: {pick(VARIANTS)} changed conversion by "
            f"{rng.randint(1, 25)} percent over {rng.randint(7, 30)} days."
        )
    if kind == "MTG":
        return (
            f"Meeting {ref} with {pick(ROLES)} at {company(rng)}: discussed {pick(TOPICS)}; "
            f"next step is to {pick(NEXT_STEPS)}."
        )
    return f"Release {ref} of the {pick(SERVICES)} service shipped {pick(SHIPPED)}; {pick(OUTCOMES)}."


def make_episodes(count: int, *, start: int = 0, seed: int = SEED) -> list[tuple[str, str, str]]:
    """``(text, kind, ref)`` for episode numbers ``start .. start + count - 1`` (deterministic)."""
    out = []
    for n in range(start, start + count):
        rng = random.Random(seed * 1_000_003 + n)
        kind = KINDS[rng.randrange(len(KINDS))]
        ref = f"{kind}-{10_000 + n}"
        out.append((episode_text(kind, ref, rng), kind, ref))
    return out


QUERY_TEMPLATES = {
    "INC": ["What happened in {ref}?", "how long did {ref} last?", "root cause of {ref}", "{ref}"],
    "ACC": ["What did account {ref} ask for at renewal?", "renewal requests of {ref}", "{ref} renewal"],
    "DEC": ["what did we decide in {ref}?", "{ref} decision", "when do we review {ref} again?"],
    "PO": ["status of {ref}", "was {ref} approved?", "{ref}"],
    "TCK": ["how was ticket {ref} resolved?", "{ref} customer problem", "{ref}"],
    "EXP": ["result of experiment {ref}", "did {ref} improve conversion?"],
    "MTG": ["next step after meeting {ref}", "what did we discuss in {ref}?"],
    "REL": ["what shipped in {ref}?", "{ref} outcome"],
}
SEMANTIC_TEMPLATES = [
    lambda r: f"{r.choice(SERVICES)} outages caused by {r.choice(CAUSES)}",
    lambda r: f"which customers asked for {r.choice(ASKS)} at renewal?",
    lambda r: f"purchase orders for {r.choice(ITEMS)} that were {r.choice(PO_STATUS)}",
    lambda r: f"did we decide to {r.choice(DECISIONS)}?",
    lambda r: f"experiments on the {r.choice(PAGES)} that improved conversion",
    lambda r: f"support tickets where {r.choice(PROBLEMS)}",
    lambda r: f"meetings with {r.choice(ROLES)} about {r.choice(TOPICS)}",
    lambda r: f"when did we ship {r.choice(SHIPPED)}?",
]


def make_queries(
    episodes: Sequence[tuple[str, str, str]], candidates: Sequence[int], count: int, seed: int
) -> list[tuple[str, int | None]]:
    """``(query, target episode number or None)``: 80 % name one episode's id, 20 % only a topic."""
    rng = random.Random(seed)
    queries: list[tuple[str, int | None]] = []
    seen: set[str] = set()
    attempts = 0
    while len(queries) < count:
        attempts += 1
        if rng.random() < 0.2:
            text, target = rng.choice(SEMANTIC_TEMPLATES)(rng), None
        else:
            target = rng.choice(candidates)
            _, kind, ref = episodes[target]
            text = rng.choice(QUERY_TEMPLATES[kind]).format(ref=ref)
        if text in seen and attempts < 50 * count:  # distinct texts while there are enough to draw from
            continue
        seen.add(text)
        queries.append((text, target))
    return queries


# -- embeddings ----------------------------------------------------------------------------------------


def stored_text(text: str) -> str:
    """The text ``add_many`` stores (and must be embedded): stripped, PII-masked, clipped."""
    from brainstack.memory.episodic import MAX_TEXT_CHARS
    from brainstack.memory.pii import mask_pii

    return mask_pii(text.strip())[:MAX_TEXT_CHARS]


def bulk_embeddings(
    embedder: Any, texts: Sequence[str], cache_dir: Path, use_cache: bool
) -> tuple[Any, dict]:
    """Embeddings of ``texts`` in batches (progress to stderr), cached as .npy keyed by texts and model."""
    digest = hashlib.sha256()
    digest.update(f"{embedder.name}|{embedder.onnx_path().name}|{len(texts)}\n".encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    path = cache_dir / f"bench-memory-embeddings-{digest.hexdigest()[:16]}.npy"
    meta_path = path.with_suffix(".json")
    if use_cache and path.is_file():
        vectors = np.load(path)
        log(f"embeddings: {len(texts)} loaded from {path}")
        try:
            computed = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            computed = {}
        return vectors, {"source": "cache", "path": str(path), "computed": computed}
    vectors = np.empty((len(texts), embedder.dim), dtype=np.float32)
    step = 4096
    start = time.perf_counter()
    for offset in range(0, len(texts), step):
        vectors[offset : offset + step] = embedder.embed(list(texts[offset : offset + step]))
        done = min(offset + step, len(texts))
        rate = done / (time.perf_counter() - start)
        log(f"embeddings: {done}/{len(texts)} ({rate:.0f}/s, ~{(len(texts) - done) / rate:.0f} s left)")
    seconds = time.perf_counter() - start
    origin = {
        "source": "computed",
        "seconds": seconds,
        "per_s": len(texts) / seconds,
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    if use_cache:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(path)
        meta_path.write_text(json.dumps(origin))
    return vectors, origin


# -- 1. search latency ---------------------------------------------------------------------------------

COLD_PROCESS = """
import json, sys, time
from brainstack.memory.embeddings import MiniLMEmbedder, QueryFastEmbedder
from brainstack.memory.episodic import EpisodicMemory, open_chroma
embedder = QueryFastEmbedder(MiniLMEmbedder(sys.argv[1]), MiniLMEmbedder(sys.argv[1], quantized=True))
embedder.warm_up()
start = time.perf_counter()
client = open_chroma(path=sys.argv[2])
memory = EpisodicMemory(client, embedder=embedder, index_dir=sys.argv[6] if len(sys.argv) > 6 else None)
opened = time.perf_counter()
memory.search(sys.argv[3], sys.argv[4], 5)
first = time.perf_counter()
memory.search(sys.argv[3], sys.argv[5], 5)
second = time.perf_counter()
print(json.dumps({"open_ms": (opened - start) * 1000, "first_ms": (first - opened) * 1000,
                  "second_ms": (second - first) * 1000}))
"""
"""Open a Chroma folder in a new process and time the first two hybrid searches (model already loaded)."""


def load_layout(
    memory: Any, layout: str, episodes: Sequence[tuple[str, str, str]], vectors: Any, start: int, stop: int
) -> float:
    """Add episodes ``start .. stop - 1`` to the layout; returns seconds spent in ``add_many``."""
    spent = 0.0
    if layout == "one":
        groups = [(ONE_USER, list(range(start, stop)))]
    else:
        groups = [(many_user(u), [i for i in range(start, stop) if i % USERS == u]) for u in range(USERS)]
    for user, numbers in groups:
        for offset in range(0, len(numbers), STORE_BATCH):
            chunk = numbers[offset : offset + STORE_BATCH]
            items = [(episodes[i][0], {"kind": episodes[i][1], "n": i}) for i in chunk]
            begin = time.perf_counter()
            memory.add_many(user, items, embeddings=vectors[chunk])
            spent += time.perf_counter() - begin
    return spent


def timed_search_round(
    memories: dict[str, Any], collection: Any, user: str, queries: Sequence[tuple[str, int | None]]
) -> dict[str, Any]:
    """Every query through hybrid, dense and plain Chroma, with int8 queries (memory's default) and
    float32 queries, in a rotating order; ms and hit@5 each. ``memories``: ``int8`` and ``float32``
    EpisodicMemory on the same collection, differing only in their query model."""
    variants = ("hybrid", "plain", "dense", "hybrid_f32", "plain_f32")
    times: dict[str, list[float]] = {v: [] for v in variants}
    hits: dict[str, list[bool]] = {v: [] for v in variants}
    keyword_only = 0
    for index, (query, target) in enumerate(queries):
        shift = index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            memory = memories["float32" if variant.endswith("_f32") else "int8"]
            forget(memory.embedder)  # the query embedding is computed on every call
            if variant.startswith("plain"):
                start = time.perf_counter()
                vector = memory.embedder.embed_query(query)[None, :]
                found = collection.query(query_embeddings=vector, n_results=5)
                elapsed = ms_since(start)
                numbers = [m.get("n") for m in found["metadatas"][0]]
            else:
                start = time.perf_counter()
                result = memory.search(user, query, 5, mode=variant.removesuffix("_f32"))
                elapsed = ms_since(start)
                numbers = [e.metadata.get("n") for e in result]
                # Hybrid results the dense pool alone would not have found (keyword-only hits).
                keyword_only += variant == "hybrid" and any(e.dense_score is None for e in result)
            times[variant].append(elapsed)
            if target is not None:
                hits[variant].append(target in numbers)
    return {
        "ms": {v: summary(t) for v, t in times.items()},
        "raw_ms": times,
        "hit_at_5": {v: (sum(h) / len(h) if h else None) for v, h in hits.items()},
        "id_queries": len(hits["hybrid"]),
        "hybrid_keyword_only_share": keyword_only / len(queries),
    }


def breakdown(memory: Any, collection: Any, queries: Sequence[tuple[str, int | None]]) -> dict[str, dict]:
    """The parts of a hybrid search, timed one by one on the same queries (p50/p95 ms each)."""
    from brainstack.memory.pii import mask_pii

    index = memory.keywords.index(collection, {})  # {}: no dense hits, so it counts and (re)builds
    parts: dict[str, list[float]] = {
        k: []
        for k in (
            "mask_pii",
            "embed",
            "embed_f32",
            "count",
            "chroma_query_20",
            "chroma_get_5",
            "chroma_query_5",
            "bm25",
        )
    }
    embedder = memory.embedder
    for query, _ in queries:
        start = time.perf_counter()
        masked = mask_pii(query)
        parts["mask_pii"].append(ms_since(start))
        forget(embedder)
        start = time.perf_counter()
        vector = embedder.embed_query(masked)[None, :]
        parts["embed"].append(ms_since(start))
        start = time.perf_counter()
        embedder.embed_one(masked)  # the stored vectors' model (float32): memory's previous query model
        parts["embed_f32"].append(ms_since(start))
        start = time.perf_counter()
        collection.count()
        parts["count"].append(ms_since(start))
        start = time.perf_counter()
        found = collection.query(query_embeddings=vector, n_results=20, include=["distances"])
        parts["chroma_query_20"].append(ms_since(start))
        start = time.perf_counter()
        collection.get(ids=found["ids"][0][:5], include=["documents", "metadatas"])
        parts["chroma_get_5"].append(ms_since(start))
        start = time.perf_counter()
        collection.query(query_embeddings=vector, n_results=5)
        parts["chroma_query_5"].append(ms_since(start))
        start = time.perf_counter()
        index.search(masked, 20)
        parts["bm25"].append(ms_since(start))
    return {k: summary(v) for k, v in parts.items()}


def search_latency(
    args: argparse.Namespace,
    workdir: Path,
    embedder: Any,
    episodes: Sequence[tuple[str, str, str]],
    vectors: Any,
) -> dict[str, Any]:
    from brainstack.memory.embeddings import chroma_embedding_function
    from brainstack.memory.episodic import EpisodicMemory, open_chroma

    path = workdir / "chroma-latency"
    client = open_chroma(path=path)
    loader = EpisodicMemory(client, embedder=embedder)  # writes only: it never builds a keyword index
    function = chroma_embedding_function(embedder)
    float32 = embedder.documents  # what the episodes are stored with
    rows: list[dict[str, Any]] = []
    loaded = {"one": 0, "many": 0}
    load_seconds = {"one": 0.0, "many": 0.0}
    for size in args.sizes:
        for layout in ("one", "many"):
            log(f"search: loading {layout} layout to {size} episodes")
            step_seconds = load_layout(loader, layout, episodes, vectors, loaded[layout], size)
            load_seconds[layout] += step_seconds
            rows_added = size - loaded[layout]
            loaded[layout] = size
            user = ONE_USER if layout == "one" else many_user(0)
            candidates = list(range(size)) if layout == "one" else list(range(0, size, USERS))
            queries = make_queries(episodes, candidates, args.queries + 6, seed=SEED + size + len(layout))
            warm, queries = queries[:5], queries[5:]
            cold_query = queries.pop()[0]
            collection = client.get_collection(loader.collection_name(user), embedding_function=function)
            in_collection = int(collection.count())

            gc.collect()
            # First search of a new EpisodicMemory on the open client: builds the BM25 index.
            memory = EpisodicMemory(client, embedder=embedder)
            forget(embedder)
            start = time.perf_counter()
            memory.search(user, cold_query, 5)
            first_ms = ms_since(start)
            probe = EpisodicMemory(client, embedder=embedder)
            start = time.perf_counter()
            probe.keywords.index(collection, {})
            bm25_build_ms = ms_since(start)
            del probe

            cold = cold_process(args.cache_dir, path, user, queries[0][0], queries[1][0])
            saved_dir = workdir / f"keyword-index-{layout}-{size}"
            cold_process(args.cache_dir, path, user, queries[0][0], queries[1][0], saved_dir)  # saves it
            cold_saved = cold_process(args.cache_dir, path, user, queries[0][0], queries[1][0], saved_dir)
            memories = {"int8": memory, "float32": EpisodicMemory(client, embedder=float32)}
            for query, _ in warm:
                for warmed in memories.values():
                    warmed.search(user, query, 5)
                    vector = warmed.embedder.embed_query(query)[None, :]
                    collection.query(query_embeddings=vector, n_results=5)
            log(
                f"search: {layout} layout, {size} episodes ({in_collection} in the collection): "
                f"{len(queries)} queries"
            )
            gc.collect()
            measured = timed_search_round(memories, collection, user, queries)
            parts = breakdown(memory, collection, queries[: min(len(queries), 100)])
            ms = measured["ms"]
            log(
                f"search: hybrid p50 {ms['hybrid']['p50']:.1f} / p95 {ms['hybrid']['p95']:.1f} ms, "
                f"plain p50 {ms['plain']['p50']:.1f} ms, bm25 p50 {parts['bm25']['p50']:.1f} ms, "
                f"first {first_ms:.0f} ms"
            )
            rows.append(
                {
                    "layout": layout,
                    "episodes": size,
                    "in_collection": in_collection,
                    "queries": len(queries),
                    "first_search_ms": first_ms,
                    "bm25_build_ms": bm25_build_ms,
                    "cold_process": cold,
                    "cold_process_saved_index": cold_saved,
                    "breakdown": parts,
                    "store_rows_per_s": rows_added / step_seconds if step_seconds else None,
                    **{k: v for k, v in measured.items() if k != "raw_ms"},
                }
            )
            del memory, memories
    return {
        "rows": rows,
        "bulk_store_rows_per_s": {k: loaded[k] / v for k, v in load_seconds.items() if v},
    }


def cold_process(
    cache_dir: Path, chroma_path: Path, user: str, first: str, second: str, index_dir: Path | None = None
) -> dict | None:
    command = [sys.executable, "-c", COLD_PROCESS, str(cache_dir), str(chroma_path), user, first, second]
    if index_dir is not None:  # the keyword index saved by an earlier process (brainstack's default)
        command.append(str(index_dir))
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        log(f"cold process failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- 2. ingestion --------------------------------------------------------------------------------------

PARAGRAPH_WORDS = tuple(
    " ".join(
        [
            "customer churn revenue pricing onboarding incident deploy rollback latency invoice discount",
            "renewal contract security audit compliance dashboard export import webhook retention cohort",
            "conversion funnel campaign budget forecast hiring roadmap release migration database cache",
            "queue worker region backup policy escalation refund subscription seat license trial partner",
            "reseller margin warehouse shipping",
        ]
    ).split()
)


def markdown_file(number: int, rng: random.Random) -> str:
    kind = rng.choice(["policy", "runbook", "guide", "faq"])
    title = f"# Handbook page {number}: {rng.choice(SERVICES)} {kind}"
    paragraphs = []
    for _ in range(rng.randint(3, 5)):
        sentences = []
        for _ in range(rng.randint(4, 7)):
            words = [rng.choice(PARAGRAPH_WORDS) for _ in range(rng.randint(8, 16))]
            sentences.append(" ".join(words).capitalize() + ".")
        paragraphs.append(" ".join(sentences))
    return title + "\n\n" + "\n\n".join(paragraphs) + "\n"


def ingestion(args: argparse.Namespace, workdir: Path, embedder: Any) -> dict[str, Any]:
    from brainstack.memory.episodic import EpisodicMemory, open_chroma
    from brainstack.memory.knowledge import KnowledgeBase

    client = open_chroma(path=workdir / "chroma-ingest")
    memory = EpisodicMemory(client, embedder=embedder)
    # Episode numbers far past the latency corpus: new texts, never embedded before.
    texts = [text for text, _, _ in make_episodes(args.ingest_episodes, start=500_000)]
    batch = 256
    log(f"ingestion: {len(texts)} episodes through add_many in batches of {batch}")
    start = time.perf_counter()
    for offset in range(0, len(texts), batch):
        memory.add_many(
            "bench-ingest", [(t, {"n": offset + i}) for i, t in enumerate(texts[offset : offset + batch])]
        )
    episode_s = time.perf_counter() - start
    start = time.perf_counter()
    for offset in range(0, len(texts), batch):
        embedder.embed(texts[offset : offset + batch])
    embed_s = time.perf_counter() - start

    folder = workdir / "kb-docs"
    folder.mkdir()
    rng = random.Random(SEED)
    for number in range(args.kb_files):
        (folder / f"page-{number:04d}.md").write_text(markdown_file(number, rng), encoding="utf-8")
    size = sum(p.stat().st_size for p in folder.iterdir())
    log(f"ingestion: KnowledgeBase.add on {args.kb_files} Markdown files ({size / 1024:.0f} KiB)")
    kb = KnowledgeBase(client, embedder=embedder)
    kb.index  # noqa: B018 - LlamaIndex imports and index construction, timed apart
    start = time.perf_counter()
    report = kb.add(folder)
    kb_s = time.perf_counter() - start
    start = time.perf_counter()
    again = kb.add(folder)
    kb_again_s = time.perf_counter() - start
    # How much of each chunk MiniLM sees: it truncates at ``max_tokens`` word pieces.
    from tokenizers import Tokenizer

    from brainstack.memory.embeddings import MiniLMEmbedder

    tokenizer = Tokenizer.from_file(str(MiniLMEmbedder.model_dir() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    documents = kb.collection.get(include=["documents"])["documents"] or []
    chunk_tokens = [len(tokenizer.encode(d).ids) for d in documents]
    kb_search = []
    for i in range(50):
        forget(embedder)
        start = time.perf_counter()
        topic = f"{SERVICES[i % len(SERVICES)]} {PARAGRAPH_WORDS[i % len(PARAGRAPH_WORDS)]}"
        kb.search(f"how do we handle a {topic} problem?", k=3)
        kb_search.append(ms_since(start))
    return {
        "episodes": len(texts),
        "episode_batch": batch,
        "episode_seconds": episode_s,
        "episodes_per_s": len(texts) / episode_s,
        "embed_only_per_s": len(texts) / embed_s,
        "kb_files": args.kb_files,
        "kb_bytes": size,
        "kb_chunks": report.chunks,
        "kb_seconds": kb_s,
        "kb_chunks_per_s": report.chunks / kb_s,
        "kb_files_per_s": args.kb_files / kb_s,
        "kb_readd_unchanged_s": kb_again_s,
        "kb_readd_unchanged": len(again.unchanged),
        "kb_search_ms": summary(kb_search),
        "kb_chunk_tokens": summary(chunk_tokens),
        "kb_chunks_over_window": sum(1 for n in chunk_tokens if n > MiniLMEmbedder.max_tokens),
        "embedder_max_tokens": MiniLMEmbedder.max_tokens,
    }


# -- 3. retrieval quality ------------------------------------------------------------------------------


def quality(workdir: Path, embedder: Any) -> dict[str, Any]:
    from brainstack.memory.episodic import EpisodicMemory, open_chroma

    data = yaml.safe_load(EVAL_FILE.read_text("utf-8"))
    memory = EpisodicMemory(open_chroma(path=workdir / "chroma-quality"), embedder=embedder)
    memory.add_many("eval", [(text, {"label": label}) for label, text in data["episodes"].items()])
    out: dict[str, Any] = {"episodes": len(data["episodes"]), "queries": len(data["queries"]), "recall": {}}
    misses: dict[str, list[str]] = {}
    for mode in ("hybrid", "dense", "keyword"):
        for k in (1, 5, 10):
            hits = 0
            for query in data["queries"]:
                labels = [
                    e.metadata.get("label") for e in memory.search("eval", query["query"], k, mode=mode)
                ]
                if query["relevant"] in labels:
                    hits += 1
                elif k == 5:
                    misses.setdefault(mode, []).append(query["query"])
            out["recall"][f"{mode}@{k}"] = hits / len(data["queries"])
    out["misses_at_5"] = misses
    return out


# -- 4. gateway recall tokens --------------------------------------------------------------------------

KB_DOCS = {
    "refund-policy.md": [
        "# Refund policy",
        "Customers on monthly plans can cancel at any time; we refund the unused part of the current month "
        "only when the service was unavailable for more than four hours.",
        "Annual plans are refunded pro rata within the first 30 days. After 30 days we offer a credit "
        "instead of a refund.",
        "Refunds above 500 euros need approval from the finance lead.",
    ],
    "incident-runbook.md": [
        "# Incident runbook",
        "Declare an incident when a customer-facing service is down or error rates exceed 2 percent for five "
        "minutes. The on-call engineer is incident commander until handing over.",
        "First mitigate (roll back the last deploy, fail over, scale out), then investigate. Post a status "
        "page update every 30 minutes.",
        "Within five working days write a blameless postmortem with the timeline, root cause and follow-up "
        "actions with owners.",
    ],
    "pricing.md": [
        "# Pricing",
        "Starter costs 19 euros per seat per month, Pro 49 euros and Enterprise is quoted. Annual billing "
        "gets two months free.",
        "Discounts above 15 percent need the VP of sales. Usage-based pricing is only offered to Enterprise "
        "customers with more than 200 seats.",
        "Price changes are announced 60 days ahead; existing customers keep their price until renewal.",
    ],
    "security.md": [
        "# Security practices",
        "All customer data is encrypted at rest with AES-256 and in transit with TLS 1.2 or newer. SSO (SAML "
        "and OIDC) is part of the Enterprise plan.",
        "We complete security questionnaires within ten working days and share the SOC 2 Type II report "
        "under NDA.",
    ],
    "onboarding.md": [
        "# Customer onboarding",
        "Every new Enterprise customer gets a kickoff call in the first week, a sandbox, and a named "
        "onboarding manager for 60 days.",
        "The goal is the first report in production within 14 days; the Q3 target is five days. Track "
        "progress in the onboarding checklist.",
    ],
    "hiring.md": [
        "# Hiring process",
        "Every role has a scorecard before the first interview. Candidates meet the hiring manager, do a "
        "paid work sample and meet two future peers.",
        "Offers are approved by the department head and finance; we aim to decide within one week of the "
        "last interview.",
    ],
}

TASKS = [
    "What happened in INC-3391 and is it fixed?",
    "Write a postmortem for yesterday's checkout outage.",
    "Should we raise prices by 20 percent for new customers?",
    "Should we launch a freemium tier next quarter?",
    "How long will our cash last at the current burn?",
    "What did Globex need before they sign?",
    "Prepare the board meeting deck outline.",
    "What is our refund policy for annual plans?",
    "Can we offer Acme a 15 percent discount?",
    "Which container platform did we pick, and why?",
    "Draft a reply to a security questionnaire from a bank.",
    "How do we onboard a new enterprise customer?",
    "Summarise the status of purchase order PO-55187.",
    "Write a tagline for our analytics product.",
    "Plan the Black Friday campaign for this year.",
    "What is the margin on SKU-TR7?",
    "Should we expand into the European market next year?",
    "What went wrong in INC-8147 and how do we prevent it?",
    "Who is our ideal customer?",
    "Make the CI tests less flaky.",
    "Compute the LTV with 45 dollars ARPU and 2 percent churn.",
    "Write a haiku about autumn leaves.",
    "Translate 'good morning' into Spanish.",
    "What is the capital of Australia?",
    "Explain the difference between TCP and UDP.",
    "Should we build our own payment system?",
    "Hiring plan for the backend team in Q2?",
    "What did Wonka Foods ask for at renewal?",
    "Is our pricing too low for enterprise customers?",
    "Summarise the root cause of the downtime last Tuesday.",
    "Recommend a caching strategy for the product search endpoint.",
    "What should the webinar follow-up email say?",
]


def record(recall: Any, task: str, wall_ms: float, model_calls: int) -> dict[str, Any]:
    from brainstack.memory.gateway import estimate_tokens, render_memory

    if recall.degraded:
        log(f"gateway: degraded {recall.degraded}")
    assert recall.tokens == estimate_tokens(render_memory(recall))
    return {
        "task": task,
        "tokens": recall.tokens,
        "episodes": len(recall.episodes),
        "passages": len(recall.passages),
        "skills": [s.name for s in recall.skills],
        "timings": recall.timings,
        "wall_ms": wall_ms,
        "model_calls": model_calls,
        "degraded": recall.degraded,
    }


async def gateway_recall(args: argparse.Namespace, workdir: Path, embedder: Any) -> dict[str, Any]:
    from brainstack.config import Settings
    from brainstack.memory.gateway import PREFERENCES_KEY, MemoryGateway

    settings = Settings(home=workdir / "gateway-home", cache_dir=args.cache_dir, provider="offline")
    gateway = MemoryGateway(settings, embedder=embedder)
    user, thread = "bench-gateway-user", "bench-thread-1"
    data = yaml.safe_load(EVAL_FILE.read_text("utf-8"))
    routes = ["specialist_technical", "specialist_marketing", "specialist_finance", "group_chat"]
    gateway.episodes.add_many(
        user,
        [
            (text, {"thread_id": f"thread-{i % 9}", "route": routes[i % len(routes)], "label": label})
            for i, (label, text) in enumerate(data["episodes"].items())
        ],
    )
    docs = workdir / "gateway-docs"
    docs.mkdir()
    for name, text in KB_DOCS.items():
        (docs / name).write_text("\n\n".join(text) + "\n", encoding="utf-8")
    kb_report = gateway.knowledge.add(docs)
    gateway.working.set("user", user, PREFERENCES_KEY, ["short, formal answers with numbers first"])
    gateway.working.set("session", thread, "last_task", "Summarise last week's incidents")
    gateway.working.set("session", thread, "last_route", "specialist_technical")
    skills = len(gateway.skills.all())
    log(f"gateway: {len(data['episodes'])} episodes, {kb_report.chunks} KB chunks, {skills} skills; recall")

    forget(embedder)
    start = time.perf_counter()
    first = await gateway.recall(user, thread, "Give me a quick status of open incidents.")
    first_ms = ms_since(start)
    records = []
    calls: list[int] = []

    def counting(real: Any) -> Any:  # counts real model calls (cache misses) per recall
        def counted(texts: list[str]) -> Any:
            calls.append(len(texts))
            return real(texts)

        return counted

    for model in models(embedder):
        model._embed = counting(model._embed)
    try:
        for task in TASKS[: args.tasks]:
            forget(embedder)
            before = len(calls)
            start = time.perf_counter()
            recall = await gateway.recall(user, thread, task)
            wall = ms_since(start)
            records.append(record(recall, task, wall, len(calls) - before))
    finally:
        for model in models(embedder):
            del model._embed  # back to the class's method
    tokens = [r["tokens"] for r in records]
    layers = sorted({name for r in records for name in r["timings"]})
    return {
        "seeded": {"episodes": len(data["episodes"]), "kb_chunks": kb_report.chunks, "skills": skills},
        "budget": settings.memory_token_budget,
        "tasks": len(records),
        "tokens": summary(tokens),
        "tokens_zero": sum(1 for t in tokens if t == 0),
        "mean_items": {
            "episodes": float(np.mean([r["episodes"] for r in records])),
            "passages": float(np.mean([r["passages"] for r in records])),
            "skills": float(np.mean([len(r["skills"]) for r in records])),
        },
        "layer_ms": {name: summary([r["timings"][name] for r in records]) for name in layers},
        "wall_ms": summary([r["wall_ms"] for r in records]),
        "model_calls": summary([r["model_calls"] for r in records]),
        "first_recall": {"wall_ms": first_ms, "timings": first.timings, "tokens": first.tokens},
        "per_task": records,
    }


# -- run and report ------------------------------------------------------------------------------------


def corpus(args: argparse.Namespace, embedder: Any) -> tuple[list[tuple[str, str, str]], Any, dict]:
    """The synthetic episodes for the largest size and their embeddings (computed or cached)."""
    total = max(args.sizes)
    episodes = make_episodes(total)
    texts = [stored_text(text) for text, _, _ in episodes]
    masked = sum(1 for (text, _, _), stored in zip(episodes, texts, strict=True) if text != stored)
    vectors, origin = bulk_embeddings(embedder, texts, args.embedding_cache, not args.no_embedding_cache)
    info = {
        "episodes": total,
        "changed_by_pii_masking": masked,
        "kinds": {k: sum(1 for e in episodes if e[1] == k) for k in KINDS},
        "embeddings": origin,
        "examples": [e[0] for e in episodes[:8]],
    }
    return episodes, vectors, info


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from brainstack.memory.embeddings import MiniLMEmbedder, QueryFastEmbedder

    began = time.perf_counter()
    float32 = MiniLMEmbedder(args.cache_dir)
    # Memory's default (``BRAINSTACK_QUERY_EMBEDDINGS=int8``): store float32, search with int8.
    embedder = QueryFastEmbedder(float32, MiniLMEmbedder(args.cache_dir, quantized=True))
    start = time.perf_counter()
    embedder.warm_up()
    log(f"models ready in {time.perf_counter() - start:.1f} s ({float32.onnx_path()})")
    single: dict[str, list[float]] = {"int8": [], "float32": []}
    for i in range(100):
        for name, model in (("int8", embedder.queries), ("float32", float32)):
            start = time.perf_counter()
            model.embed([f"single query embedding probe number {i}"])
            single[name].append(ms_since(start))

    result: dict[str, Any] = {
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "sizes": list(args.sizes),
        "users": USERS,
        "queries_per_size": args.queries,
        "quick": args.quick,
        "single_embed_ms": {name: summary(times) for name, times in single.items()},
    }
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("quality", lambda: quality(workdir / "q8", embedder)),
        ("quality_f32", lambda: quality(workdir / "f32", float32)),
    ]
    steps.append(("gateway", lambda: asyncio.run(gateway_recall(args, workdir, embedder))))
    steps.append(("ingestion", lambda: ingestion(args, workdir, embedder)))
    for name, step in steps:
        start = time.perf_counter()
        result[name] = step()
        log(f"{name} done in {time.perf_counter() - start:.0f} s")

    episodes, vectors, result["corpus"] = corpus(args, float32)
    start = time.perf_counter()
    result["search"] = search_latency(args, workdir, embedder, episodes, vectors)
    log(f"search done in {time.perf_counter() - start:.0f} s")
    result["total_seconds"] = time.perf_counter() - began
    return result


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def report(result: dict[str, Any]) -> str:
    out: list[str] = []
    rows = result["search"]["rows"]
    label = {"one": "1 user", "many": f"{result['users']} users"}
    out.append(f"Load average when the run started: {result['loadavg_at_start']}.\n")
    out.append("### Episodic search latency (hybrid, query embedding included)\n")
    out.append(
        f"{result['queries_per_size']} queries per size (80 % name an episode id, 20 % only a topic), "
        "each run through brainstack hybrid, brainstack dense and plain Chroma, with int8 query embeddings "
        "(memory's default, `BRAINSTACK_QUERY_EMBEDDINGS=int8`; episodes are stored float32) and with "
        "float32 ones (f32), in a rotating order; the single-text embedding caches are cleared before "
        "every call. Plain = `collection.query(query_embeddings=<the query's vector>, n_results=5)` on the "
        "same collection with the same query model. hit@5: the episode a query names is among the 5 "
        "results.\n"
    )
    out.append(
        table(
            [
                "layout",
                "episodes",
                "in the queried collection",
                "hybrid p50 ms",
                "hybrid p95 ms",
                "dense p50 ms",
                "plain p50 ms",
                "plain p95 ms",
                "ratio p50",
                "ratio p95",
                "hybrid f32 p50 ms",
                "hybrid f32 p95 ms",
                "plain f32 p50 ms",
                "hit@5 hybrid",
                "hit@5 hybrid f32",
                "hit@5 plain",
            ],
            [
                (
                    label[r["layout"]],
                    f"{r['episodes']:,}",
                    f"{r['in_collection']:,}",
                    r["ms"]["hybrid"]["p50"],
                    r["ms"]["hybrid"]["p95"],
                    r["ms"]["dense"]["p50"],
                    r["ms"]["plain"]["p50"],
                    r["ms"]["plain"]["p95"],
                    f"{r['ms']['hybrid']['p50'] / r['ms']['plain']['p50']:.1f}×",
                    f"{r['ms']['hybrid']['p95'] / r['ms']['plain']['p95']:.1f}×",
                    r["ms"]["hybrid_f32"]["p50"],
                    r["ms"]["hybrid_f32"]["p95"],
                    r["ms"]["plain_f32"]["p50"],
                    f"{r['hit_at_5']['hybrid']:.0%}",
                    f"{r['hit_at_5']['hybrid_f32']:.0%}",
                    f"{r['hit_at_5']['plain']:.0%}",
                )
                for r in rows
            ],
        )
    )
    targets = []
    for r in rows:
        if r["episodes"] == 10_000:
            p50 = r["ms"]["hybrid"]["p50"]
            targets.append(
                (label[r["layout"]], "p50 ≤ 10 ms at 10k", f"{p50:.1f} ms", verdict(p50 <= TARGET_P50_10K_MS))
            )
        if r["episodes"] == 100_000:
            p95 = r["ms"]["hybrid"]["p95"]
            targets.append(
                (
                    label[r["layout"]],
                    "p95 ≤ 25 ms at 100k",
                    f"{p95:.1f} ms",
                    verdict(p95 <= TARGET_P95_100K_MS),
                )
            )
    if targets:
        out.append("\nTargets (hybrid):\n")
        out.append(table(["layout", "target", "measured", "met"], targets))

    out.append("\n### First search after opening (lazy BM25 index build)\n")
    out.append(
        "In-process: a new `EpisodicMemory` on the already open client (BM25 index built from "
        "`collection.get` pages of 5000). New process: `open_chroma` + `EpisodicMemory` in a fresh Python "
        'process with the model already loaded, then its first and second hybrid search; "saved index": '
        "the same in a process that finds the keyword index an earlier process saved (`index_dir`, what "
        "the memory gateway uses).\n"
    )
    cold_rows = []
    for r in rows:
        cold = r["cold_process"] or {}
        cold_rows.append(
            (
                label[r["layout"]],
                f"{r['episodes']:,}",
                f"{r['in_collection']:,}",
                r["first_search_ms"],
                r["bm25_build_ms"],
                r["ms"]["hybrid"]["p50"],
                cold.get("open_ms", "n/a"),
                cold.get("first_ms", "n/a"),
                cold.get("second_ms", "n/a"),
                (r.get("cold_process_saved_index") or {}).get("first_ms", "n/a"),
            )
        )
    out.append(
        table(
            [
                "layout",
                "episodes",
                "in collection",
                "first search ms",
                "BM25 build alone ms",
                "steady p50 ms",
                "new process: open ms",
                "first search ms",
                "second search ms",
                "saved index: first search ms",
            ],
            cold_rows,
        )
    )

    out.append("\n### Where a hybrid search spends its time (p50 ms of each part, timed separately)\n")
    out.append(
        table(
            [
                "layout",
                "episodes",
                "mask_pii",
                "embed query (int8)",
                "embed query (float32)",
                "count()",
                "Chroma query n=20 (ids, distances)",
                "Chroma get of the 5 results",
                "Chroma query n=5 (plain)",
                "BM25 search",
                "BM25 p95",
                "hybrid total p50",
                "hybrid results with a keyword-only hit",
            ],
            [
                (
                    label[r["layout"]],
                    f"{r['episodes']:,}",
                    r["breakdown"]["mask_pii"]["p50"],
                    r["breakdown"]["embed"]["p50"],
                    r["breakdown"]["embed_f32"]["p50"],
                    r["breakdown"]["count"]["p50"],
                    r["breakdown"]["chroma_query_20"]["p50"],
                    r["breakdown"]["chroma_get_5"]["p50"],
                    r["breakdown"]["chroma_query_5"]["p50"],
                    r["breakdown"]["bm25"]["p50"],
                    r["breakdown"]["bm25"]["p95"],
                    r["ms"]["hybrid"]["p50"],
                    f"{r['hybrid_keyword_only_share']:.0%}",
                )
                for r in rows
            ],
        )
    )
    single = result["single_embed_ms"]
    corpus = result["corpus"]
    emb = corpus["embeddings"]
    made = emb if emb["source"] == "computed" else emb.get("computed") or {}
    rate = (
        f"computed in {made['seconds']:.0f} s ({made['per_s']:.0f} texts/s, batches of 64 inside "
        f"`MiniLMEmbedder.embed`)"
        if made
        else "from an earlier run's cache"
    )
    if emb["source"] == "cache" and made:
        rate += f", by an earlier run on {made.get('when')} (load average then {made.get('loadavg_after')})"
    store = result["search"]["bulk_store_rows_per_s"]
    out.append(
        "\nOne short query embedding alone: "
        + ", ".join(f"{k} p50 {v['p50']:.1f} ms, p95 {v['p95']:.1f} ms" for k, v in single.items())
        + ". Corpus: "
        f"{corpus['episodes']:,} episodes ({corpus['changed_by_pii_masking']} changed by PII masking), "
        f"embeddings {rate}. Bulk load with precomputed embeddings (`add_many(..., embeddings=...)`, "
        f"{STORE_BATCH} rows per call): "
        + ", ".join(f"{label[k]} {v:.0f} rows/s" for k, v in store.items())
        + "."
    )

    ing = result["ingestion"]
    out.append("\n### Ingestion throughput\n")
    out.append(
        table(
            ["what", "amount", "seconds", "throughput"],
            [
                (
                    f"`EpisodicMemory.add_many` with embeddings (batches of {ing['episode_batch']})",
                    f"{ing['episodes']:,} episodes",
                    ing["episode_seconds"],
                    f"{ing['episodes_per_s']:.0f} episodes/s",
                ),
                (
                    "of which: MiniLM embedding alone (same texts and batches)",
                    f"{ing['episodes']:,} texts",
                    ing["episodes"] / ing["embed_only_per_s"],
                    f"{ing['embed_only_per_s']:.0f} texts/s",
                ),
                (
                    "`KnowledgeBase.add` (Markdown folder)",
                    f"{ing['kb_files']} files, {ing['kb_bytes'] / 1024:.0f} KiB, {ing['kb_chunks']} chunks",
                    ing["kb_seconds"],
                    f"{ing['kb_chunks_per_s']:.1f} chunks/s ({ing['kb_files_per_s']:.1f} files/s)",
                ),
                (
                    "`KnowledgeBase.add` again, nothing changed",
                    f"{ing['kb_readd_unchanged']} files unchanged",
                    ing["kb_readd_unchanged_s"],
                    f"{ing['kb_files'] / max(ing['kb_readd_unchanged_s'], 1e-9):.0f} files/s",
                ),
            ],
        )
    )
    ct = ing["kb_chunk_tokens"]
    out.append(
        f"\n`KnowledgeBase.search` (k=3, {ing['kb_chunks']} chunks, embedding included): p50 "
        f"{ing['kb_search_ms']['p50']:.1f} ms, p95 {ing['kb_search_ms']['p95']:.1f} ms. Stored chunks "
        f"(LlamaIndex `SentenceSplitter`, chunk_size 512) are {ct['p50']:.0f} MiniLM word pieces at the "
        f"median (max {ct['max']:.0f}); {ing['kb_chunks_over_window']} of {ing['kb_chunks']} exceed the "
        f"embedder's {ing['embedder_max_tokens']}-piece window, so their tail is never embedded."
    )

    q, q32 = result["quality"], result["quality_f32"]
    out.append(
        f"\n### Retrieval quality (`tests/data/episodic_eval.yaml`: {q['episodes']} episodes, "
        f"{q['queries']} queries)\n\nEpisodes stored float32; queries int8 (memory's default) or float32.\n"
    )
    out.append(
        table(
            ["mode", "recall@1", "recall@5", "recall@10"],
            [
                (label_, *(f"{data['recall'][f'{mode}@{k}']:.2f}" for k in (1, 5, 10)))
                for label_, data, mode in (
                    ("hybrid", q, "hybrid"),
                    ("dense", q, "dense"),
                    ("keyword", q, "keyword"),
                    ("hybrid, float32 queries", q32, "hybrid"),
                    ("dense, float32 queries", q32, "dense"),
                )
            ],
        )
    )
    for mode, missed in q["misses_at_5"].items():
        out.append(f"\nMissed at 5 by {mode}: " + "; ".join(f"“{m}”" for m in missed))
    for mode, missed in q32["misses_at_5"].items():
        if mode != "keyword":
            out.append(f"\nMissed at 5 by {mode}, float32 queries: " + "; ".join(f"“{m}”" for m in missed))

    g = result["gateway"]
    out.append(
        f"\n### Tokens the memory context adds per run (`MemoryGateway.recall`, {g['tasks']} tasks)\n\n"
        f"Seeded: {g['seeded']['episodes']} episodes for the user, {g['seeded']['kb_chunks']} KB chunks "
        f"({len(KB_DOCS)} docs), {g['seeded']['skills']} built-in skills, one stated preference and two "
        f"session facts. Budget `memory_token_budget` = {g['budget']}; tokens = `estimate_tokens` (≈ 4 "
        "characters per token) of `render_memory(recall)`.\n"
    )
    t = g["tokens"]
    out.append(
        table(
            ["tokens mean", "p50", "p95", "max", "tasks at 0", "episodes/run", "passages/run", "skills/run"],
            [
                (
                    t["mean"],
                    t["p50"],
                    t["p95"],
                    t["max"],
                    g["tokens_zero"],
                    g["mean_items"]["episodes"],
                    g["mean_items"]["passages"],
                    g["mean_items"]["skills"],
                )
            ],
        )
    )
    out.append("\nRecall timings (layers run concurrently on worker threads; ms):\n")
    layer_rows = [(name, s["p50"], s["p95"], s["max"]) for name, s in g["layer_ms"].items()]
    layer_rows.append(
        ("whole `recall` (wall)", g["wall_ms"]["p50"], g["wall_ms"]["p95"], g["wall_ms"]["max"])
    )
    out.append(table(["layer", "p50", "p95", "max"], layer_rows))
    mc = g["model_calls"]
    out.append(
        f"\nMiniLM model calls per recall (cache misses of the single-text cache; the four layers embed the "
        f"same task concurrently): mean {mc['mean']:.2f}, max {mc['max']:.0f} (1 is the minimum)."
    )
    first = g["first_recall"]
    out.append(
        f"\nFirst recall of a new gateway (opens Chroma, builds the BM25 index, the LlamaIndex retriever "
        f"and the skills index): {first['wall_ms']:.0f} ms ("
        + ", ".join(f"{k} {v:.0f}" for k, v in first["timings"].items())
        + ")."
    )
    out.append(f"\nWhole benchmark: {result['total_seconds'] / 60:.1f} min.")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", help="comma-separated corpus sizes (default 1000,10000,100000)")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per size and layout")
    parser.add_argument("--ingest-episodes", type=int, default=2000, help="episodes for the ingestion test")
    parser.add_argument("--kb-files", type=int, default=200, help="Markdown files for the KB ingestion test")
    parser.add_argument("--tasks", type=int, default=len(TASKS), help="gateway recall tasks")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="MiniLM ONNX cache folder")
    parser.add_argument(
        "--embedding-cache",
        type=Path,
        default=DEFAULT_EMBEDDING_CACHE,
        help=f"folder for the corpus embeddings (default {DEFAULT_EMBEDDING_CACHE})",
    )
    parser.add_argument(
        "--no-embedding-cache", action="store_true", help="recompute the corpus embeddings (no .npy cache)"
    )
    parser.add_argument(
        "--embed-only", action="store_true", help="only compute and cache the corpus embeddings, then exit"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 500 and 2000 episodes, 30 queries")
    parser.add_argument("--json", metavar="PATH", help="write the raw numbers here")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = args.sizes or "500,2000"
        args.queries, args.ingest_episodes, args.kb_files = min(args.queries, 30), 256, 20
        args.tasks = min(args.tasks, 8)
    args.sizes = sorted(int(s) for s in (args.sizes or ",".join(map(str, SIZES))).split(","))
    if args.sizes[0] < USERS:
        parser.error(f"sizes must be at least {USERS} (the 100-user layout needs one episode per user)")
    scrub_environment()
    if args.embed_only:
        from brainstack.memory.embeddings import MiniLMEmbedder

        _, _, info = corpus(args, MiniLMEmbedder(args.cache_dir))
        print(json.dumps(info["embeddings"]))
        return 0
    with tempfile.TemporaryDirectory(prefix="brainstack-bench-memory-") as tmp:
        result = run(args, Path(tmp))
    print(f"Machine: {machine_line(machine())}\n")
    print(report(result))
    with contextlib.redirect_stdout(sys.stderr):
        write_json(args.json, {"benchmark": "memory", **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
