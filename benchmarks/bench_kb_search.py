"""Knowledge-base search: recall against an exact search, query latency, and the passages recall keeps.

Generated corpora (seeded, or written out below; nothing downloaded) are ingested with
``KnowledgeBase.add`` into a temporary local Chroma folder, with the local MiniLM (float32
documents, int8 queries: memory's defaults):

- **repetitive**: store reports that differ only in their numbers, names and weeks (QA's "8 MB of
  near-identical chunks"; ``--repetitive-mb``, 2 MB by default to keep the embedding time in
  minutes on 2 cores, 0.25 MB with ``--quick``), with 24 questions that each name one report and
  24 that only name a topic (many reports score alike: where an approximate search slips);
- **synthetic**: 4,000 vectors of near-identical chunks and 100 vague queries near them (no
  model: the case in its purest form, as in the contract test);
- **handbook**: 14 short company-policy documents with 28 labelled questions: 20 answered by one
  passage (a phrase of it is the label), 8 that the knowledge base cannot answer;
- **identifiers**: 5 documents of tables and lists (error codes, a catalogue with SKUs, a staff
  directory with an on-call rota, a changelog, store opening hours) with 28 labelled questions:
  20 that name the identifier their answer hangs on (a code, a SKU, a person, a version, a store
  number, a week), 8 that name one no document holds (an error code or a SKU that does not
  exist, a person not in the directory, a version not released, a week not on the rota).

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
2. **Which passages recall keeps** (handbook, identifiers): for each question, the ``PASSAGES_K``
   passages ``KnowledgeBase.search`` returns, by meaning and hybrid, filtered by session 17's rule
   (cosine ≥ 0.4), by the cosine rule (``relevant_passages`` until the best keyword match was
   also kept: a copy here), by two rejected variants of the current rule, and by the gateway's
   rule now; relevant passages kept (of the 20 answerable questions) and irrelevant ones let
   through (passages without the answer, and unanswerable questions given any passage); and the
   coverages that decide what the current rule adds, where a threshold gives the same result.
3. **Keyword matching**: hit@1/@4 of the questions with a known answer (the 24 that name one
   store report, the 20 answerable handbook and identifier questions) for
   ``KnowledgeBase.search`` by meaning, by BM25 alone and hybrid (the default), and for
   reciprocal rank fusion as ``EpisodicMemory`` fuses its rankings; the keyword index's build
   and load times.

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

IDENTIFIERS = {
    "error-codes.md": """# Checkout error codes

Every error the checkout API returns carries one of these codes. Support quotes the code to the
customer; engineering looks it up here before escalating.

| Code | Meaning | What to do |
|---|---|---|
| AUTH-1102 | Session expired | Ask the customer to sign in again |
| AUTH-1107 | Account locked after five failed sign-ins | Unlocks after 30 minutes, or support unlocks it |
| AUTH-1121 | Single sign-on token signature invalid | Check the identity provider's certificate rotation |
| ORD-2101 | Basket empty at checkout | Nothing to do: the customer removed the last item |
| ORD-2114 | Item out of stock after the reservation expired | Release it; offer the nearest store |
| ORD-2120 | Delivery address outside the shipping zones | Offer click and collect instead |
| ORD-2133 | Promo code expired | The code cannot be revived; offer the current promotion |
| ORD-2147 | Order above the 5,000 euro fraud limit | Held for manual review by the risk team |
| INV-3305 | Stock count differs between warehouse and store | Recount from the store console |
| INV-3310 | Barcode unknown to the catalogue | Send the barcode to the catalogue team |
| INV-3318 | Negative stock after a return | Open a ticket with the inventory team |
| PAY-4001 | Card number invalid | Ask the customer to enter the card again |
| PAY-4002 | Card expired | Ask for another card |
| PAY-4017 | 3-D Secure challenge failed | The customer retries; their bank sends a new code |
| PAY-4031 | Card declined by the issuer | Do not retry; the customer calls their bank |
| PAY-4050 | Currency not supported for this merchant account | Charge in euros |
| PAY-5002 | Payment provider timeout | Retried three times; page payments on-call after 10 minutes |
| SHP-6040 | Carrier label service unavailable | Switch to the backup carrier in the admin console |
| SHP-6052 | Parcel heavier than 30 kg | Book a freight pickup |
""",
    "catalogue.md": """# Autumn-winter catalogue

Prices include VAT. Every item can be returned within 30 days; sizes run from XS to XXL unless
the row says otherwise.

| SKU | Product | Colour | Sizes | Price |
|---|---|---|---|---|
| JK-20417 | Alpine down jacket | navy | XS-XXL | 189.00 EUR |
| JK-20418 | Alpine down jacket | red | XS-XL | 189.00 EUR |
| JK-20433 | Storm rain shell | olive | S-XXL | 129.00 EUR |
| SH-31052 | Trail running shoe | grey and orange | 36-47 | 119.00 EUR |
| SH-31077 | City leather sneaker | white | 35-46 | 99.00 EUR |
| BT-31210 | Summit hiking boot, waterproof membrane | brown | 37-48 | 169.00 EUR |
| SW-40115 | Merino crew sweater | charcoal | XS-XXL | 89.00 EUR |
| SW-40122 | Cable-knit cardigan | cream | XS-L | 95.00 EUR |
| DN-50301 | Slim selvedge jeans | indigo | 26-38 | 110.00 EUR |
| DN-50318 | Relaxed cargo trousers | khaki | 28-40 | 79.00 EUR |
| BP-60044 | Commuter backpack 22 L, lifetime warranty | black | one size | 74.00 EUR |
| BP-60051 | Expedition pack 45 L | slate | one size | 149.00 EUR |
| AC-70008 | Wool beanie | mustard | one size | 24.00 EUR |
| AC-70019 | Touchscreen gloves | black | S-L | 29.00 EUR |
| KD-80230 | Kids' fleece pyjama | sky blue | 2-12 years | 32.00 EUR |
""",
    "directory.md": """# Staff directory and on-call rota

Internal extensions are dialled from any office phone; from outside, prefix +33 4 72 00.

| Name | Team | Role | Extension | Office |
|---|---|---|---|---|
| Ingrid Vasquez | Payments | Engineering manager | 4417 | Lyon |
| Tomasz Wierzbicki | Payments | Backend engineer | 4452 | Lyon |
| Amara Nwosu | Inventory | Product manager | 4309 | Lille |
| Lucien Marchetti | Stores | Regional manager, south | 4120 | Marseille |
| Sofia Lindqvist | Security | Security lead | 4501 | Lyon |
| Kenji Arakawa | Data | Analytics engineer | 4633 | remote |
| Fatima Benali | Customer support | Support lead | 4215 | Lille |
| Oskar Haugen | Logistics | Carrier relations | 4788 | Nantes |

Payments on-call rota (the primary carries the pager; the secondary takes over after 15 minutes):

| Week | Primary | Secondary |
|---|---|---|
| 45 | Tomasz Wierzbicki | Ingrid Vasquez |
| 46 | Kenji Arakawa | Tomasz Wierzbicki |
| 47 | Ingrid Vasquez | Kenji Arakawa |
| 48 | Oskar Haugen | Ingrid Vasquez |
| 49 | Tomasz Wierzbicki | Oskar Haugen |
""",
    "changelog.md": """# Storefront changelog

## 4.14.2 (2026-11-18)
- Fixed: promo codes with a trailing space were rejected with ORD-2133.

## 4.14.1 (2026-11-10)
- Fixed: a customer was charged twice when a 3-D Secure challenge timed out.

## 4.14.0 (2026-11-03)
- Added: click and collect in 38 more stores.
- Changed: a basket reservation now lasts 30 minutes instead of 20.

## 4.13.0 (2026-10-20)
- Added: Apple Pay at checkout.
- Removed: the legacy PayPal express button.

## 4.12.3 (2026-10-08)
- Security: the single sign-on signing certificate was rotated after the vendor's advisory.

## 4.12.0 (2026-09-29)
- Added: size recommendations on product pages, from past returns.
""",
    "stores.md": """# Store directory

Store 0412, Lyon Part-Dieu: managed by Claire Dubois. Open Monday to Saturday 09:30-20:00,
Sunday 11:00-18:00. Click and collect at the back of the ground floor.

Store 0178, Lille Euralille: managed by Hugo Lefebvre. Open Monday to Saturday 10:00-20:00,
closed on Sunday. No click and collect: the store has no stock room.

Store 0733, Bordeaux Sainte-Catherine: managed by Nadia Kaci. Open every day 10:00-19:30.
Click and collect from the customer service desk.

Store 0291, Nantes Atlantis: managed by Julien Moreau. Open Monday to Saturday 09:00-21:00.
Click and collect lockers by the entrance.
""",
}
"""Documents whose answers hang on an exact identifier (an error code, a SKU, a person, a version, a
store number), in tables and lists: MiniLM scores a short question naming one low against them."""
ID_QUESTIONS: tuple[tuple[str, str | None], ...] = (
    # (question, a phrase of the passage that answers it; None: no document names what it names)
    ("What does error PAY-4031 mean?", "Card declined by the issuer"),
    ("What happens to an order that fails with ORD-2147?", "Held for manual review by the risk team"),
    ("How do I fix AUTH-1121?", "certificate rotation"),
    ("The label printer shows SHP-6040, what now?", "Switch to the backup carrier"),
    ("Should I escalate INV-3318?", "Open a ticket with the inventory team"),
    ("How much is JK-20433?", "JK-20433 | Storm rain shell | olive | S-XXL | 129.00 EUR"),
    ("What colour is SW-40122?", "SW-40122 | Cable-knit cardigan | cream"),
    ("Does BP-60044 come with a warranty?", "lifetime warranty"),
    ("What is the price of DN-50318?", "DN-50318 | Relaxed cargo trousers | khaki | 28-40 | 79.00 EUR"),
    ("Which sizes does SH-31052 come in?", "SH-31052 | Trail running shoe | grey and orange | 36-47"),
    ("What is Ingrid Vasquez's extension?", "Ingrid Vasquez | Payments | Engineering manager | 4417"),
    ("Which team is Amara Nwosu in?", "Amara Nwosu | Inventory"),
    ("Where does Kenji Arakawa work from?", "Kenji Arakawa | Data | Analytics engineer | 4633 | remote"),
    ("Who is the primary on-call in week 48?", "| 48 | Oskar Haugen |"),
    ("What changed in 4.14.1?", "charged twice"),
    ("When was 4.13.0 released?", "4.13.0 (2026-10-20)"),
    ("What did release 4.12.3 do?", "signing certificate was rotated"),
    ("What are the opening hours of store 0412 on Sunday?", "Sunday 11:00-18:00"),
    ("Who manages store 0733?", "managed by Nadia Kaci"),
    ("Does store 0178 offer click and collect?", "No click and collect"),
    ("What does error PAY-4099 mean?", None),
    ("How do I fix AUTH-1150?", None),
    ("How much is JK-20499?", None),
    ("Does BP-60090 come with a warranty?", None),
    ("What is Dmitri Okafor's extension?", None),
    ("What changed in 4.15.0?", None),
    ("What are the opening hours of store 0999?", None),
    ("Who is the primary on-call in week 52?", None),
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


def cosine_rule(task: str, passages: list[Any]) -> list[Any]:
    """``relevant_passages`` from session 18 until this change: by cosine alone."""
    from brainstack.memory.gateway import PASSAGE_BEST_MARGIN, PASSAGE_MIN_KEYWORD_SCORE, PASSAGE_MIN_SCORE
    from brainstack.memory.keyword import tokenize

    if not passages:
        return []
    best = max(p.score for p in passages)
    words = set(tokenize(task))
    return [
        p
        for p in passages
        if p.score >= PASSAGE_MIN_SCORE
        or (
            p.score >= max(PASSAGE_MIN_KEYWORD_SCORE, best - PASSAGE_BEST_MARGIN)
            and not words.isdisjoint(tokenize(p.text))
        )
    ]


def best_match_rule(
    share: Callable[[str, Any], float], *, numbers: bool = True
) -> Callable[[str, list[Any]], list[Any]]:
    """The cosine rule, and also the best keyword match when its ``share(task, passage)`` of the
    task reaches ``PASSAGE_MIN_COVERAGE`` (and, with ``numbers``, it holds the task's numbers):
    ``relevant_passages`` now, and the variants it was chosen against."""
    from brainstack.memory.gateway import PASSAGE_MIN_COVERAGE
    from brainstack.memory.keyword import tokenize

    def rule(task: str, found: list[Any]) -> list[Any]:
        kept = cosine_rule(task, found)
        if not found:
            return kept
        named = max(found, key=lambda p: p.keyword or 0.0)
        named_numbers = {word for word in tokenize(task) if any(c.isdigit() for c in word)}
        extra = share(task, named) >= PASSAGE_MIN_COVERAGE and (
            not numbers or named_numbers.issubset(tokenize(named.text))
        )
        return [p for p in found if p in kept or (extra and p is named)]

    return rule


def passage_rules(sets: dict[str, tuple[Any, Sequence[tuple[str, str | None]]]]) -> list[dict[str, Any]]:
    """Relevant passages kept and irrelevant ones let through, by the earlier rules, two variants
    of the current one and the current one, on each labelled set (``{name: (knowledge base,
    questions)}``). Also, per set, the coverage of each question's best keyword match that the
    cosine rule did not keep and that holds the question's numbers (the only passage the current
    rule adds): the lowest of those holding the answer, the highest of the others, between which
    ``PASSAGE_MIN_COVERAGE`` gives the same result."""
    from brainstack.memory.gateway import PASSAGE_MIN_COVERAGE, PASSAGES_K, relevant_passages
    from brainstack.memory.keyword import tokenize

    results = []
    for set_name, (kb, questions) in sets.items():
        index = kb.keywords.index(kb.collection)

        def over_held_words(task: str, passage: Any, index: Any = index) -> float:
            return float((passage.keyword or 0.0) / (index.idf_mass(task) or 1.0))

        def coverage(task: str, passage: Any) -> float:
            return float(passage.coverage or 0.0)

        rules: dict[str, tuple[str, Callable[[str, list[Any]], list[Any]]]] = {
            "session 17: cosine ≥ 0.4, search by meaning": (
                "dense",
                lambda task, found: [p for p in found if p.score >= 0.4],
            ),
            "session 18: the cosine rule, search by meaning": ("dense", cosine_rule),
            "before: the cosine rule, hybrid search": ("hybrid", cosine_rule),
            "rejected: now, but BM25 over the IDF of the words some chunk holds": (
                "hybrid",
                best_match_rule(over_held_words),
            ),
            "rejected: now, without holding the question's numbers": (
                "hybrid",
                best_match_rule(coverage, numbers=False),
            ),
            f"now: `relevant_passages` (also the best keyword match, at coverage ≥ "
            f"{PASSAGE_MIN_COVERAGE} and holding the question's numbers), hybrid search": (
                "hybrid",
                relevant_passages,
            ),
        }
        answerable = sum(1 for _, label in questions if label)
        with_answer: list[float] = []
        without: list[float] = []
        for question, label in questions:  # the coverage the current rule decides on
            found = kb.search(question, k=PASSAGES_K)
            named = max(found, key=lambda p: p.keyword or 0.0, default=None)
            numbers = {word for word in tokenize(question) if any(c.isdigit() for c in word)}
            if (
                named is None
                or named.coverage is None
                or named in cosine_rule(question, found)
                or not numbers.issubset(tokenize(named.text))
            ):
                continue
            (with_answer if label is not None and label in named.text else without).append(named.coverage)
        for name, (mode, rule) in rules.items():
            kept = irrelevant = given_without_answer = found_at_all = 0
            for question, label in questions:
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
                    "set": set_name,
                    "rule": name,
                    "relevant_kept": kept,
                    "answerable": answerable,
                    "in_search_results": found_at_all,
                    "irrelevant_let_through": irrelevant,
                    "unanswerable_given_a_passage": given_without_answer,
                    "unanswerable": len(questions) - answerable,
                    "coverage_with_answer_min": min(with_answer, default=None),
                    "coverage_without_answer_max": max(without, default=None),
                }
            )
    return results


# -- main -------------------------------------------------------------------------------------------


def decimals(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f}"


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

        def ingest(name: str, folder: Path) -> Any:
            log(f"{name}: ingesting {sum(f.stat().st_size for f in folder.iterdir()) / 1e6:.2f} MB")
            start = time.perf_counter()
            kb = KnowledgeBase(client, embedder=embedder, collection=f"bench-{name}")
            report = kb.add(folder)
            embedder.save()
            log(f"{name}: {report} in {time.perf_counter() - start:.1f} s")
            return kb

        for name, (folder, queries) in corpora.items():
            bases[name] = ingest(name, folder)
            results["search"] += search_quality(name, bases[name], queries, embedder, function)
        bases["identifiers"] = ingest("identifiers", write_files(texts / "identifiers", IDENTIFIERS))
        synthetic, queries, known = synthetic_base(client)
        log(f"synthetic: {synthetic.count()} chunks")
        results["search"] += search_quality(
            "synthetic", synthetic, queries, known, chroma_embedding_function(known)
        )
        labelled = {"handbook": QUESTIONS, "identifiers": ID_QUESTIONS}
        results["rules"] = passage_rules({name: (bases[name], asked) for name, asked in labelled.items()})
        results["keyword"] = keyword_matching("repetitive", bases["repetitive"], questions, labels)
        for name, asked in labelled.items():
            results["keyword"] += keyword_matching(
                name, bases[name], [q for q, _ in asked], [label for _, label in asked]
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
    print("\n### Passages recall keeps (labelled questions, top 3 each)\n")
    print(
        table(
            [
                "set",
                "rule",
                "relevant kept",
                "in the search results",
                "irrelevant let through",
                "unanswerable given one",
            ],
            [
                [
                    r["set"],
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
    print(
        "\nCoverage of a question's best keyword match where the cosine rule did not keep it and it "
        "holds the question's numbers (the only passage the current rule adds; a threshold between "
        "the two keeps the same passages): "
        + "; ".join(
            f"{r['set']}: holding the answer, lowest {decimals(r['coverage_with_answer_min'])}; "
            f"not holding it, highest {decimals(r['coverage_without_answer_max'])}"
            for r in results["rules"]
            if r["rule"].startswith("now")
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
