"""Knowledge-base search: recall against an exact search, query latency, and the passages recall keeps.

Two generated corpora (seeded, nothing downloaded) are ingested with ``KnowledgeBase.add`` into a
temporary local Chroma folder, with the local MiniLM (float32 documents, int8 queries: memory's
defaults):

- **repetitive**: store reports that differ only in their numbers, names and weeks (QA's "8 MB of
  near-identical chunks"; ``--repetitive-mb``, 2 MB by default to keep the embedding time in
  minutes on 2 cores, 0.25 MB with ``--quick``), with 24 questions that each name one report and
  24 that only name a topic (many reports score alike: where an approximate search slips);
- **synthetic**: 4,000 vectors of near-identical chunks and 100 vague queries near them (no
  model: the case in its purest form, as in the contract test);
- **handbook**: 14 short company-policy documents with 28 labelled questions: 20 answered by one
  passage (a phrase of it is the label), 8 that the knowledge base cannot answer.

1. **Search quality and latency.** The exact answer is a brute-force cosine of the query's vector
   against every stored vector. recall@1: the variant's first passage scores as high as the exact
   first one (ties count: near-identical chunks can score the same); recall@4: the share of the
   exact top 4 scores the variant's top 4 reach. Variants, on copies of the same vectors in the
   same run: Chroma's HNSW with its defaults (``ef_search`` 100, ``max_neighbors`` 16: what
   every collection created before this change has, and what ``kb search`` searched with), wider
   searches, an earlier collection widened to ``SEARCH_BREADTH``, a new collection
   (``knowledge.HNSW``); then, end to end, the LlamaIndex retriever ``KnowledgeBase.search`` used
   on Chroma's defaults (before) and ``KnowledgeBase.search`` as it is now. Latency: p50/p95 of the
   Chroma query alone (the query's vector precomputed, variants in a rotating order), and of
   ``KnowledgeBase.search``'s ranking by meaning end to end (``mode="dense"``, query embedding
   included).
2. **Which passages recall keeps** (handbook): for each question, the ``PASSAGES_K`` passages
   ``KnowledgeBase.search`` returns, by meaning (before) and hybrid (now), filtered by the old
   rule (cosine ≥ 0.4) and by the gateway's rule now; relevant passages kept (of the 20
   answerable questions) and irrelevant ones let through (passages without the answer, and
   unanswerable questions given any passage).
3. **Keyword matching**: hit@1/@4 of the questions with a known answer (the 24 that name one
   store report, the 20 answerable handbook questions) for ``KnowledgeBase.search`` by meaning,
   by BM25 alone and hybrid (the default), and for reciprocal rank fusion as ``EpisodicMemory``
   fuses its rankings; the keyword index's build and load times.

Corpus embeddings are cached by text in ``--embedding-cache`` (a second run embeds nothing).

    .venv/bin/python benchmarks/bench_kb_search.py [--quick] [--repetitive-mb 8] [--json PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, scrub_environment, summary, table, write_json

DEFAULT_CACHE = Path("/tmp/bscache")
DEFAULT_EMBEDDING_CACHE = Path(tempfile.gettempdir()) / "brainstack-bench-kb-cache"
SEED = 20261125
K = 4
REPETITIVE_QUERIES = 24
"""Questions that name one report; three times as many only name a topic (many reports score alike)."""
SYNTHETIC_CHUNKS, SYNTHETIC_QUERIES = 4000, 100
"""The synthetic corpus: vectors of near-identical chunks (no model), as in the contract test."""
INSERT_BATCH = 2048
"""Rows per write into the copies (LlamaIndex's insert batch)."""
FILE_MB = 1.0
"""Size of each generated store-report file (``kb add`` takes files of up to 5 MiB)."""

CITIES = (
    "Lyon", "Lille", "Nantes", "Bordeaux", "Toulouse", "Marseille", "Nice", "Rennes", "Strasbourg",
    "Grenoble", "Dijon", "Reims", "Metz", "Tours", "Angers", "Brest", "Caen", "Rouen", "Nancy",
    "Amiens", "Limoges", "Poitiers", "Orleans", "Besancon", "Perpignan", "Pau", "Annecy", "Avignon",
    "Nimes", "Valence", "Troyes", "Lorient", "Vannes", "Quimper", "Calais", "Dunkirk", "Chartres",
    "Bayonne", "Colmar", "Mulhouse",
)  # fmt: skip
PRODUCTS = (
    "winter jacket", "running shoe", "denim", "rain coat", "wool sweater", "kids' pyjama",
    "hiking boot", "swimwear", "linen shirt", "backpack", "sports bra", "fleece",
)  # fmt: skip
REASONS = (
    "sizing", "colour not as shown", "late delivery", "a broken zip", "a wrong item",
    "fabric quality", "a duplicate order", "damage in transit",
)  # fmt: skip
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")

HANDBOOK = {
    "refunds.md": """# Refunds

Customers on a monthly plan can ask for a full refund within 14 days of a charge. After 14 days we
refund only the unused part of an annual plan, pro rata, and never the setup fee.

Refunds go back to the card that paid; a card that expired meanwhile is refunded by bank transfer
after the customer sends their IBAN to billing@example.com. A refund takes five to ten business days
to appear on the statement.
""",
    "pricing.md": """# Pricing

The Starter plan is free for up to three projects. The Pro plan costs 49 euros per seat per month, or
490 euros per seat per year when paid annually. Enterprise pricing is negotiated per contract, with a
minimum of 25 seats.

Discounts: non-profits and schools get 50 percent off Pro. Sales may give up to 15 percent off an
annual Enterprise contract without the CFO's approval; anything above needs it in writing.
""",
    "security.md": """# Security policy

Every employee uses a hardware security key for single sign-on; SMS codes are not accepted. Laptops
must have full-disk encryption turned on before they join the corporate network.

Production database access is granted for 8 hours at a time through the access broker, and every
session is recorded. A lost laptop or key is reported to security@example.com within one hour.
""",
    "oncall.md": """# On-call

Each engineering team runs a weekly on-call rotation that hands over on Monday at 10:00 Paris time.
The primary on-call engineer acknowledges a page within 5 minutes during the day and 15 minutes at
night; the secondary is paged automatically when the primary does not answer.

On-call engineers get a flat bonus of 300 euros per week and a day off after any night with more
than two pages.
""",
    "incidents.md": """# Incident response

A SEV1 is an outage of checkout, login or the public API for more than 5 minutes. The incident
commander opens a channel named after the incident number, posts updates every 30 minutes on the
status page, and writes the postmortem within five business days.

Postmortems are blameless: they name what failed and what we change, not who made the mistake.
Incident INC-4412 (billing API timeouts) was caused by an exhausted database connection pool.
""",
    "hiring.md": """# Hiring

Every candidate goes through four steps: a recruiter call, a take-home exercise capped at three hours,
a technical interview with two engineers, and a values interview with a manager from another team.

Offers are approved by the hiring manager and the head of people. Referral bonuses are 2,000 euros,
paid after the new hire's probation period of four months.
""",
    "expenses.md": """# Expenses

Meals while travelling are reimbursed up to 60 euros per day. Receipts are uploaded to the expense
tool within 30 days; later claims are refused. Alcohol is never reimbursed.

Purchases above 1,000 euros need a purchase order approved by finance before anyone signs the vendor's
quote. Software subscriptions go through IT so licences can be reclaimed when someone leaves.
""",
    "travel.md": """# Travel

Trains are preferred for trips under four hours. Flights are booked in economy class; business class
is allowed only for flights longer than eight hours. Hotels are booked through the travel portal,
within the city's nightly cap.

Travel to countries on the sanctions list needs approval from legal two weeks in advance.
""",
    "onboarding.md": """# Onboarding

New hires receive their laptop on the first day, already enrolled in device management. During the
first week they pair with an onboarding buddy and ship one small change to production.

By the end of the first month every new hire has met their manager for three one-to-ones and
completed the security awareness training.
""",
    "releases.md": """# Release process

We deploy to production every weekday between 09:00 and 16:00, never on Fridays after 12:00. Each
release goes first to the canary cluster, which takes 5 percent of traffic for 30 minutes.

A release is rolled back automatically when the error rate on the canary exceeds 2 percent. Database
migrations ship in their own release, one day before the code that needs them.
""",
    "retention.md": """# Data retention

Customer data is deleted 30 days after an account is closed; backups holding it expire after 90 days.
Application logs are kept for 14 days, audit logs for seven years.

A customer's request to export or erase their personal data is answered within one month, as the
GDPR requires; support forwards such requests to privacy@example.com.
""",
    "sla.md": """# Service level agreement

The Enterprise plan guarantees 99.95 percent monthly uptime for the API. When we miss it, the
customer gets a credit of 10 percent of the monthly fee for each 0.1 percent below the target, up to
50 percent.

Scheduled maintenance announced seven days ahead does not count as downtime.
""",
    "vacation.md": """# Vacation

Full-time employees have 27 days of paid vacation a year, plus public holidays of their country.
Up to five unused days carry over to the next year and expire on March 31.

Vacation of more than two consecutive weeks is agreed with the manager at least one month ahead.
""",
    "vendors.md": """# Vendor management

A new vendor that will process customer data passes a security review and signs our data processing
agreement before any data is shared. Vendors are reviewed again every year.

Contracts above 50,000 euros a year are signed by the CFO; below that, by the budget owner.
""",
}
QUESTIONS: tuple[tuple[str, str | None], ...] = (
    # (question, a phrase of the passage that answers it; None: the knowledge base cannot answer it)
    ("Can I get my money back if I cancel my monthly subscription after a week?", "within 14 days"),
    ("How long until a refund shows up on my card?", "five to ten business days"),
    ("How much does Pro cost if we pay for a year?", "490 euros per seat"),
    ("What discount can a salesperson offer without asking the CFO?", "up to 15 percent"),
    ("Do we accept text message codes for login?", "SMS codes are not accepted"),
    ("For how long do I get access to the production database?", "8 hours at a time"),
    ("When does the on-call shift change hands?", "Monday at 10:00"),
    ("How quickly must the primary respond to a page at night?", "15 minutes at"),
    ("What caused INC-4412?", "connection pool"),
    ("How often should the status page be updated during a major outage?", "every 30 minutes"),
    ("How long is the take-home assignment for candidates?", "three hours"),
    ("What is the daily food allowance on business trips?", "60 euros per day"),
    ("Can I fly business class to Singapore?", "longer than eight hours"),
    ("Are we allowed to ship code on a Friday afternoon?", "never on Fridays"),
    ("When is a deploy rolled back automatically?", "exceeds 2"),
    ("How long do we keep application logs?", "14 days, audit"),
    ("What compensation does a customer get if the API uptime promise is broken?", "credit of 10 percent"),
    ("How many vacation days can I take into next year?", "five unused days"),
    ("Who signs a contract worth 80,000 euros a year?", "signed by the CFO"),
    ("What is the referral bonus for recommending a friend?", "2,000 euros"),
    ("What is the parental leave policy?", None),
    ("Which office has the best coffee machine?", None),
    ("What is the capital of Australia?", None),
    ("How do I reset the password of the office wifi router?", None),
    ("What was our revenue growth last quarter?", None),
    ("Which programming language should new services be written in?", None),
    ("How do I bake sourdough bread?", None),
    ("Who won the football match yesterday?", None),
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- corpora ----------------------------------------------------------------------------------------


def store_report(rng: random.Random, store: int, week: int) -> tuple[str, dict[str, Any]]:
    """One store's weekly report (~330 characters): the same sentences, other numbers and names."""
    facts = {
        "store": f"{store:04d}",
        "city": CITIES[store % len(CITIES)],
        "week": week,
        "returns": rng.randint(5, 60),
        "late": rng.randint(0, 9),
        "product": rng.choice(PRODUCTS),
        "reason": rng.choice(REASONS),
        "staff": rng.randint(6, 14),
        "leave": rng.randint(0, 3),
        "day": rng.choice(DAYS),
    }
    text = (
        f"## Store {facts['store']}, {facts['city']}, week {week}\n\n"
        f"The {facts['city']} store ({facts['store']}) reported {facts['returns']} returns and "
        f"{facts['late']} late deliveries in week {week}. The top return reason was {facts['reason']} on "
        f"the {facts['product']} line. Staffing: {facts['staff']} associates, {facts['leave']} on leave. "
        f"Action: recount the stock room on {facts['day']}.\n\n"
    )
    return text, facts


def repetitive_corpus(
    megabytes: float, seed: int = SEED
) -> tuple[dict[str, str], list[str], list[str | None]]:
    """Files of store reports adding up to ``megabytes``, questions about them, and for each
    question that names one report a phrase of that report (``None`` for the others)."""
    rng = random.Random(seed)
    reports: list[tuple[str, dict[str, Any]]] = []
    size, store = 0, 0
    while size < megabytes * 1_000_000:
        store += 1
        for week in range(1, 53):
            text, facts = store_report(rng, store, week)
            reports.append((text, facts))
            size += len(text)
    files: dict[str, str] = {}
    current: list[str] = []
    for text, _ in reports:
        current.append(text)
        if sum(map(len, current)) >= FILE_MB * 1_000_000:
            files[f"stores-{len(files):02d}.md"] = "".join(current)
            current = []
    if current:
        files[f"stores-{len(files):02d}.md"] = "".join(current)
    forms = (
        "How many returns did the {city} store {store} report in week {week}?",
        "What was the top return reason at store {store} in {city} in week {week}?",
        "In week {week}, how many late deliveries did the {city} store have?",
        "Which day will the {city} store ({store}) recount its stock room after week {week}?",
    )
    vague = (
        "Which store had returns because of {reason} on the {product} line?",
        "Stores that recount the stock room on {day} with {staff} associates",
        "{city} returns of {product}",
        "late deliveries in week {week}",
    )
    questions, labels = [], []
    for n, (_, facts) in enumerate(rng.sample(reports, REPETITIVE_QUERIES)):
        questions.append(forms[n % len(forms)].format(**facts))
        labels.append(f"The {facts['city']} store ({facts['store']}) reported {facts['returns']} returns")
    for n, (_, facts) in enumerate(rng.sample(reports, 3 * REPETITIVE_QUERIES)):
        questions.append(vague[n % len(vague)].format(**facts))
        labels.append(None)
    return files, questions, labels


def synthetic_corpus(seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors of chunks that differ in a word or a number, and vague queries near them."""
    rng = np.random.default_rng(seed)
    chunks = rng.normal(size=384) + 0.03 * rng.normal(size=(SYNTHETIC_CHUNKS, 384))
    chunks /= np.linalg.norm(chunks, axis=1, keepdims=True)
    picked = chunks[rng.choice(SYNTHETIC_CHUNKS, SYNTHETIC_QUERIES, replace=False)]
    asked = picked + 0.03 * rng.normal(size=(SYNTHETIC_QUERIES, 384))
    asked /= np.linalg.norm(asked, axis=1, keepdims=True)
    return chunks.astype(np.float32), asked.astype(np.float32)


class KnownVectors:
    """An embedder that knows the vector of each text it is asked for (the synthetic corpus)."""

    name, dim = "known-vectors", 384

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.vectors[text] for text in texts])

    def embed_one(self, text: str) -> np.ndarray:
        return self.vectors[text]

    embed_query = embed_one


def synthetic_base(client: Any) -> tuple[Any, list[str], Any]:
    """A knowledge base of :func:`synthetic_corpus`'s vectors, its questions and its embedder."""
    from brainstack.memory.knowledge import KnowledgeBase

    chunks, asked = synthetic_corpus()
    embedder = KnownVectors({f"question {n}": vector for n, vector in enumerate(asked)})
    kb = KnowledgeBase(client, embedder=embedder, collection="bench-synthetic")
    for start in range(0, len(chunks), INSERT_BATCH):
        ids = [str(n) for n in range(start, min(start + INSERT_BATCH, len(chunks)))]
        kb.collection.add(
            ids=ids,
            embeddings=chunks[start : start + INSERT_BATCH],
            documents=[f"report {n}" for n in ids],
            metadatas=[{"source": "/synthetic/reports.md", "chunk": int(n)} for n in ids],
        )
    return kb, list(embedder.vectors), embedder


def write_files(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


# -- embeddings, cached by text ---------------------------------------------------------------------


class CachedDocuments:
    """The default embedder, with the documents' vectors kept in a file by text: the corpus is
    embedded once across runs (queries are always embedded: they are what is timed)."""

    def __init__(self, embedder: Any, path: Path) -> None:
        self.embedder, self.path = embedder, path
        self.vectors: dict[str, np.ndarray] = {}
        self.new = 0
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                self.vectors = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    @property
    def name(self) -> str:
        return str(self.embedder.name)

    @property
    def dim(self) -> int:
        return int(self.embedder.dim)

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = sorted({self.key(t): t for t in texts if self.key(t) not in self.vectors}.items())
        if missing:
            computed = self.embedder.embed([t for _, t in missing])
            self.vectors.update({k: v for (k, _), v in zip(missing, computed, strict=True)})
            self.new += len(missing)
        return np.stack([self.vectors[self.key(t)] for t in texts]).astype(np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def embed_query(self, text: str) -> np.ndarray:
        return np.asarray(self.embedder.embed_query(text), dtype=np.float32)

    def save(self) -> None:
        if not self.new:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self.vectors)
        np.savez(self.path, keys=np.array(keys), vectors=np.stack([self.vectors[k] for k in keys]))


# -- search quality ---------------------------------------------------------------------------------


def stored(collection: Any) -> dict[str, Any]:
    """Every row of ``collection`` (ids, vectors, documents, metadata), in pages."""
    rows: dict[str, list[Any]] = {"ids": [], "embeddings": [], "documents": [], "metadatas": []}
    offset = 0
    while True:
        got = collection.get(include=["embeddings", "documents", "metadatas"], limit=5000, offset=offset)
        for key in rows:
            rows[key].extend(got[key])
        if len(got["ids"]) < 5000:
            break
        offset += 5000
    rows["embeddings"] = np.asarray(rows["embeddings"], dtype=np.float32)
    return rows


def copy_collection(client: Any, name: str, rows: dict[str, Any], hnsw: dict[str, Any], function: Any) -> Any:
    """A new collection holding ``rows``, with the HNSW configuration ``hnsw``."""
    collection = client.create_collection(name, embedding_function=function, configuration={"hnsw": hnsw})
    for start in range(0, len(rows["ids"]), INSERT_BATCH):
        end = start + INSERT_BATCH
        collection.add(
            ids=rows["ids"][start:end],
            embeddings=rows["embeddings"][start:end],
            documents=rows["documents"][start:end],
            metadatas=rows["metadatas"][start:end],
        )
    return collection


def llamaindex_retriever(collection: Any, embedder: Any) -> Any:
    """The retriever ``KnowledgeBase.search`` used before it queried Chroma itself."""
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from brainstack.memory.embeddings import llamaindex_embedding

    store = ChromaVectorStore(chroma_collection=collection)
    index = VectorStoreIndex.from_vector_store(
        store,
        embed_model=llamaindex_embedding(embedder),
        storage_context=StorageContext.from_defaults(vector_store=store),
    )
    return index.as_retriever(similarity_top_k=K)


def exact(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Every stored vector's cosine with ``vector``, best first (the scores, sorted)."""
    return np.sort(matrix @ vector)[::-1]


def recall_at(found: Sequence[float], truth: np.ndarray, k: int) -> float:
    """The share of the exact top ``k`` scores that the ``k`` found scores reach (ties count)."""
    found = sorted(found, reverse=True)[:k]
    return sum(1 for rank in range(k) if rank < len(found) and found[rank] >= truth[rank] - 1e-5) / k


def quality(
    name: str,
    queries: Sequence[str],
    vectors: np.ndarray,
    matrix: np.ndarray,
    searches: dict[str, Callable[[int], list[float]]],
) -> list[dict[str, Any]]:
    """recall@1/@4 and latency of each search (variants in a rotating order, query by query)."""
    times: dict[str, list[float]] = {label: [] for label in searches}
    r1: dict[str, list[float]] = {label: [] for label in searches}
    r4: dict[str, list[float]] = {label: [] for label in searches}
    labels = list(searches)
    for n in range(len(queries)):
        truth = exact(matrix, vectors[n])
        for label in labels[n % len(labels) :] + labels[: n % len(labels)]:
            start = time.perf_counter()
            scores = searches[label](n)
            times[label].append((time.perf_counter() - start) * 1000)
            r1[label].append(recall_at(scores, truth, 1))
            r4[label].append(recall_at(scores, truth, K))
    return [
        {
            "corpus": name,
            "variant": label,
            "queries": len(queries),
            "recall@1": float(np.mean(r1[label])),
            "recall@4": float(np.mean(r4[label])),
            "ms": summary(times[label]),
        }
        for label in labels
    ]


def search_quality(
    name: str, kb: Any, queries: Sequence[str], embedder: Any, function: Any
) -> list[dict[str, Any]]:
    """:func:`quality` of HNSW configurations (copies of ``kb``'s vectors) and of ``kb.search``."""
    from brainstack.memory.knowledge import HNSW

    rows = stored(kb.collection)
    matrix = rows["embeddings"]
    vectors = np.stack([embedder.embed_query(q) for q in queries])
    variants = {
        "HNSW ef_search 100, max_neighbors 16 (before: Chroma's defaults)": {"space": "cosine"},
        "HNSW ef_search 200, max_neighbors 16": {"space": "cosine", "ef_search": 200},
        "HNSW ef_search 500, max_neighbors 16": {"space": "cosine", "ef_search": 500},
        f"HNSW ef_search {HNSW['ef_search']}, max_neighbors 16 (an earlier collection, widened)": {
            "space": "cosine",
            "ef_search": HNSW["ef_search"],
        },
        f"HNSW ef_search {HNSW['ef_search']}, max_neighbors {HNSW['max_neighbors']}, ef_construction "
        f"{HNSW['ef_construction']} (a new collection)": dict(HNSW),
    }
    log(f"{name}: {len(rows['ids'])} chunks; {len(variants)} copies")
    copies = {
        label: copy_collection(kb.client, f"bench-{name}-{n}", rows, hnsw, function)
        for n, (label, hnsw) in enumerate(variants.items())
    }

    def hnsw(collection: Any) -> Callable[[int], list[float]]:
        def search(n: int) -> list[float]:
            found = collection.query(query_embeddings=vectors[n : n + 1], n_results=K, include=["distances"])
            return [1.0 - d for d in found["distances"][0]]

        return search

    def knowledge_base(n: int) -> list[float]:
        return [p.score for p in kb.search(queries[n], k=K, mode="dense")]

    retriever = llamaindex_retriever(next(iter(copies.values())), embedder)

    def before(n: int) -> list[float]:  # what KnowledgeBase.search did, on Chroma's defaults
        return [1.0 + math.log(node.score) for node in retriever.retrieve(queries[n])]

    searches = {label: hnsw(copy) for label, copy in copies.items()}
    for copy in copies.values():  # loaded (with its breadth) before anything is timed
        copy.query(query_embeddings=vectors[:1], n_results=1)
    kb.search(queries[0], k=K, mode="dense")
    retriever.retrieve(queries[0])
    searches["before: LlamaIndex's retriever on Chroma's defaults (query embedding included)"] = before
    searches["KnowledgeBase.search, its ranking by meaning (mode dense; query embedding included)"] = (
        knowledge_base
    )
    results = quality(name, queries, vectors, matrix, searches)
    for result in results:
        result["chunks"] = len(rows["ids"])
    return results


# -- keyword matching ------------------------------------------------------------------------------


def keyword_matching(
    name: str, kb: Any, questions: Sequence[str], labels: Sequence[str | None]
) -> list[dict[str, Any]]:
    """hit@1/@4 of the labelled questions (the top passage, or one of the top 4, holds the label)
    for ``KnowledgeBase.search`` in its three modes (hybrid is the default), and for the fusion
    episodic memory uses, measured here only: reciprocal rank fusion of 20 dense candidates and
    the BM25 matches scoring at least half the best one. Also the keyword index's cost: built from
    the collection by a process's first search, and loaded from its saved file."""
    from brainstack.memory.embeddings import query_embedding
    from brainstack.memory.keyword import CollectionKeywords, reciprocal_rank_fusion

    with tempfile.TemporaryDirectory(prefix="bench-kb-index-") as folder:
        start = time.perf_counter()
        index = CollectionKeywords(folder).index(kb.collection)  # builds it and saves it
        build_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        CollectionKeywords(folder).index(kb.collection)
        load_ms = (time.perf_counter() - start) * 1000
    text_of = dict(zip(*(stored(kb.collection)[key] for key in ("ids", "documents")), strict=True))

    def mode(which: str) -> Callable[[str], list[str]]:
        return lambda question: [p.text for p in kb.search(question, k=K, mode=which)]

    def rrf(question: str) -> list[str]:
        found = kb.collection.query(
            query_embeddings=query_embedding(kb.embedder, question)[None, :], n_results=20, include=[]
        )
        matches = index.search(question, 20)
        best = max((score for _, score in matches), default=0.0)
        strong = [chunk_id for chunk_id, score in matches if score >= 0.5 * best]
        return [text_of[chunk_id] for chunk_id, _ in reciprocal_rank_fusion(found["ids"][0], strong)[:K]]

    rankings: dict[str, Callable[[str], list[str]]] = {
        "by meaning (mode dense; the ranking before)": mode("dense"),
        "BM25 alone (mode keyword)": mode("keyword"),
        "reciprocal rank fusion, as episodic memory fuses (measured here only)": rrf,
        "hybrid (mode hybrid, the default)": mode("hybrid"),
    }
    for rank in rankings.values():  # the index loaded, the collection opened, before timing
        rank(questions[0])
    labelled = [(q, label) for q, label in zip(questions, labels, strict=True) if label]
    results = []
    for label_name, rank in rankings.items():
        hit1 = hit4 = 0
        times = []
        for question, label in labelled:
            start = time.perf_counter()
            texts = rank(question)
            times.append((time.perf_counter() - start) * 1000)
            hit1 += bool(texts) and label in texts[0]
            hit4 += any(label in text for text in texts)
        results.append(
            {
                "corpus": name,
                "ranking": label_name,
                "questions": len(labelled),
                "hit@1": hit1,
                "hit@4": hit4,
                "ms": summary(times),
                "index_build_ms": build_ms,
                "index_load_ms": load_ms,
                "chunks": len(text_of),
            }
        )
    return results


# -- the passages recall keeps ----------------------------------------------------------------------


def passage_rules(kb: Any) -> list[dict[str, Any]]:
    """Relevant passages kept and irrelevant ones let through, by the old rule and the current one."""
    from brainstack.memory.gateway import PASSAGES_K, relevant_passages

    rules: dict[str, tuple[str, Callable[[str, list[Any]], list[Any]]]] = {
        "session 17: cosine ≥ 0.4, search by meaning": (
            "dense",
            lambda task, found: [p for p in found if p.score >= 0.4],
        ),
        "session 18: `relevant_passages`, search by meaning": ("dense", relevant_passages),
        "now: `relevant_passages`, hybrid search": ("hybrid", relevant_passages),
    }
    results = []
    answerable = sum(1 for _, label in QUESTIONS if label)
    for name, (mode, rule) in rules.items():
        kept = irrelevant = given_without_answer = found_at_all = 0
        for question, label in QUESTIONS:
            found = kb.search(question, k=PASSAGES_K, mode=mode)
            chosen = rule(question, found)
            if label is not None:
                found_at_all += any(label in p.text for p in found)
                kept += any(label in p.text for p in chosen)
            else:
                given_without_answer += bool(chosen)
            irrelevant += sum(1 for p in chosen if label is None or label not in p.text)
        results.append(
            {
                "rule": name,
                "relevant_kept": kept,
                "answerable": answerable,
                "in_search_results": found_at_all,
                "irrelevant_let_through": irrelevant,
                "unanswerable_given_a_passage": given_without_answer,
                "unanswerable": len(QUESTIONS) - answerable,
            }
        )
    return results


# -- main -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitive-mb", type=float, default=2.0, help="size of the repetitive corpus")
    parser.add_argument("--quick", action="store_true", help="smoke run: a 0.25 MB repetitive corpus")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="MiniLM ONNX cache folder")
    parser.add_argument("--embedding-cache", type=Path, default=DEFAULT_EMBEDDING_CACHE)
    parser.add_argument("--json", metavar="PATH", help="write the raw numbers here")
    args = parser.parse_args(argv)
    if args.quick:
        args.repetitive_mb = 0.25
    scrub_environment()
    from brainstack import Settings
    from brainstack.memory.embeddings import chroma_embedding_function, default_embedder
    from brainstack.memory.episodic import open_chroma
    from brainstack.memory.knowledge import KnowledgeBase

    embedder = CachedDocuments(
        default_embedder(Settings(cache_dir=args.cache_dir)), args.embedding_cache / "documents.npz"
    )
    embedder.embedder.warm_up()
    function = chroma_embedding_function(embedder)
    info = machine()
    results: dict[str, Any] = {"search": [], "rules": [], "keyword": []}
    with tempfile.TemporaryDirectory(prefix="bench-kb-") as tmp:
        root = Path(tmp)
        client = open_chroma(path=root / "chroma")
        files, questions, labels = repetitive_corpus(args.repetitive_mb)
        # (the same paths every run: chunking counts a chunk's metadata, its path too)
        texts = args.embedding_cache / "corpora"
        corpora = {
            "repetitive": (write_files(texts / f"repetitive-{args.repetitive_mb:g}mb", files), questions),
            "handbook": (write_files(texts / "handbook", HANDBOOK), [q for q, _ in QUESTIONS]),
        }
        bases = {}
        for name, (folder, queries) in corpora.items():
            log(f"{name}: ingesting {sum(f.stat().st_size for f in folder.iterdir()) / 1e6:.2f} MB")
            start = time.perf_counter()
            kb = KnowledgeBase(client, embedder=embedder, collection=f"bench-{name}")
            report = kb.add(folder)
            embedder.save()
            log(f"{name}: {report} in {time.perf_counter() - start:.1f} s")
            bases[name] = kb
            results["search"] += search_quality(name, kb, queries, embedder, function)
        synthetic, queries, known = synthetic_base(client)
        log(f"synthetic: {synthetic.count()} chunks")
        results["search"] += search_quality(
            "synthetic", synthetic, queries, known, chroma_embedding_function(known)
        )
        results["rules"] = passage_rules(bases["handbook"])
        results["keyword"] = keyword_matching("repetitive", bases["repetitive"], questions, labels)
        results["keyword"] += keyword_matching(
            "handbook", bases["handbook"], [q for q, _ in QUESTIONS], [label for _, label in QUESTIONS]
        )
    print(f"Machine: {machine_line(info)}\n")
    print(f"### Search quality against an exact search, and latency (top {K})\n")
    print(
        table(
            ["corpus", "chunks", "variant", "queries", "recall@1", "recall@4", "p50 ms", "p95 ms"],
            [
                [
                    r["corpus"],
                    r["chunks"],
                    r["variant"],
                    r["queries"],
                    f"{r['recall@1']:.3f}",
                    f"{r['recall@4']:.3f}",
                    f"{r['ms']['p50']:.2f}",
                    f"{r['ms']['p95']:.2f}",
                ]
                for r in results["search"]
            ],
        )
    )
    print("\n### Passages recall keeps (handbook questions, top 3 each)\n")
    print(
        table(
            [
                "rule",
                "relevant kept",
                "in the search results",
                "irrelevant let through",
                "unanswerable given one",
            ],
            [
                [
                    r["rule"],
                    f"{r['relevant_kept']}/{r['answerable']}",
                    f"{r['in_search_results']}/{r['answerable']}",
                    r["irrelevant_let_through"],
                    f"{r['unanswerable_given_a_passage']}/{r['unanswerable']}",
                ]
                for r in results["rules"]
            ],
        )
    )
    first = results["keyword"][0]
    print(
        "\n### Keyword matching (labelled questions; hit@k: the answer's passage in the top k; the "
        f"keyword index of the {first['chunks']} repetitive chunks built from the collection in "
        f"{first['index_build_ms']:.0f} ms, loaded from its file in {first['index_load_ms']:.0f} ms)\n"
    )
    print(
        table(
            ["corpus", "ranking", "questions", "hit@1", "hit@4", "p50 ms", "p95 ms"],
            [
                [
                    r["corpus"],
                    r["ranking"],
                    r["questions"],
                    r["hit@1"],
                    r["hit@4"],
                    f"{r['ms']['p50']:.2f}",
                    f"{r['ms']['p95']:.2f}",
                ]
                for r in results["keyword"]
            ],
        )
    )
    write_json(args.json, {"benchmark": "kb_search", "repetitive_mb": args.repetitive_mb, **results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
