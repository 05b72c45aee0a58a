"""How wide brainstack's Chroma collections search: the HNSW index a new collection gets, and the
widening of one created with a narrower search.

Chroma's default ``ef_search`` (100) misses the best of many near-identical vectors, which both
the knowledge base (store reports that differ only in their numbers) and episodic memory (one
user's many episodes of the same kinds) hold; an exact search is the reference
(``benchmarks/bench_kb_search.py``, ``benchmarks/bench_episodic_breadth.py``, RESULTS.md).
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["HNSW", "SEARCH_BREADTH", "widen_search"]

log = logging.getLogger(__name__)

SEARCH_BREADTH = 1000
"""HNSW ``ef_search`` of a collection: how many candidates a search weighs before it keeps the
best. With Chroma's default (100) a knowledge-base search missed the chunk an exact search ranks
first among many near-identical ones: recall@1 0.885-0.990 on 3,929 chunks of generated store
reports, 0.52-0.62 on 4,000 synthetic near-identical vectors (four runs); 1.000 and 0.99-1.00 with
this breadth and :data:`HNSW`, for 1.0-1.4 ms more per HNSW query at p50 at that size. Among
100,000 near-identical episodes of one user, an episodic search's 20 dense candidates reached
0.65-0.69 of the exact top 20 with the default, 0.97-0.98 with :data:`HNSW` (four runs), for
2.4-2.5 ms more per search at p50."""
HNSW = {"space": "cosine", "ef_search": SEARCH_BREADTH, "max_neighbors": 32, "ef_construction": 200}
"""A new collection's index. Twice Chroma's default links per vector (``max_neighbors``) and a
wider build (``ef_construction``) keep near-identical vectors reachable from each other; Chroma
fixes both when it creates a collection, so one created earlier keeps its own (only its search
breadth is widened, see :func:`widen_search`)."""


def widen_search(collection: Any, breadth: int, what: str) -> None:
    """Give ``collection``, if it was created with a narrower search (by an earlier version:
    Chroma's default, 100), an HNSW ``ef_search`` of ``breadth``. Chroma keeps it with the
    collection and applies it when it next loads the collection's index: in the next process that
    opens a local folder, after a restart on a Chroma server. Failing to is no reason to fail:
    searches go on as before, and the next process tries again (logged, naming ``what``)."""
    try:  # (the raw configuration: reading ``configuration`` rebuilds the embedding function)
        hnsw = (collection.configuration_json or {}).get("hnsw")
        if hnsw is not None and int(hnsw.get("ef_search") or 0) < breadth:
            collection.modify(configuration={"hnsw": {"ef_search": breadth}})
    except Exception as exc:
        log.warning("%s keeps its narrower search breadth (%s: %s)", what, type(exc).__name__, exc)
