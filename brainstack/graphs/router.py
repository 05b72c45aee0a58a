"""Semantic routing: pick a route by comparing a request with example utterances."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from brainstack.memory.embeddings import Embedder

__all__ = ["RouteCheck", "RouteMatch", "SemanticRouter", "check_routes"]

DEFAULT_THRESHOLD = 0.32
"""Tuned on tests/data/routing_eval.yaml with all-MiniLM-L6-v2, float32 and int8 (see
benchmarks/RESULTS.md)."""
TOP_K = 2
"""A route's score is the mean of its ``TOP_K`` best example similarities:
steadier than the single best match, sharper than the mean of all."""
PREFETCH_LIMIT = 32
"""Prefetched texts kept for a later :meth:`SemanticRouter.best` or :meth:`~SemanticRouter.abest`
(the oldest unclaimed go first)."""

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _prefetch_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="brainstack-route-ahead")
        return _pool


class RouteMatch(NamedTuple):
    name: str
    score: float
    """Cosine similarity (mean of the route's best examples)."""
    margin: float
    """How far ahead of the runner-up route it is."""


class SemanticRouter:
    """Routes text to the route whose example utterances it resembles most.

    ``route()`` answers ``None`` when the best score is under ``threshold`` or
    does not beat the runner-up by ``margin``; the graph then asks the model.
    """

    def __init__(
        self,
        routes: Mapping[str, Sequence[str]],
        embedder: Embedder | None = None,
        threshold: float | None = None,
        *,
        margin: float = 0.0,
    ) -> None:
        for name, examples in routes.items():
            if isinstance(examples, str | bytes):
                raise TypeError(
                    f"route {name!r}: examples must be a list of utterances, not a single "
                    f"{type(examples).__name__} (write [{examples!r}])"
                )
            if any(not isinstance(text, str) for text in examples):
                raise TypeError(f"route {name!r}: every example utterance must be a string")
        if not routes or any(not examples for examples in routes.values()):
            raise ValueError("every route needs at least one example utterance")
        if embedder is None:
            from brainstack.memory.embeddings import router_embedder

            embedder = router_embedder()
        self.embedder = embedder
        self.threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        self.margin = margin
        self.names = list(routes)
        examples = [text for name in self.names for text in routes[name]]
        counts = np.array([len(routes[n]) for n in self.names])
        # Each route's examples as one row of a grid (padded with -inf), so that scoring is a
        # handful of array operations whatever the number of routes.
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        columns = np.arange(counts.max())
        self._grid = np.minimum(starts[:, None] + columns, len(examples) - 1)
        self._padding = np.where(columns < counts[:, None], 0.0, -np.inf).astype(np.float32)
        self._top_k = np.minimum(TOP_K, counts).astype(np.float32)
        self._vectors = embedder.embed(examples)
        self._ahead: OrderedDict[str, Future[np.ndarray]] = OrderedDict()
        self._ahead_lock = threading.Lock()

    def prefetch(self, text: str) -> None:
        """Start embedding ``text`` on a background thread: a later :meth:`best`, :meth:`abest`
        or :meth:`route` of the same text waits for that vector instead of embedding it again.

        Lets a caller overlap routing with other work; the Runtime calls it when a task arrives,
        so the embedding runs while the graph starts and writes its first checkpoint (and, with
        memory on, while memory is recalled). An embedding error surfaces from :meth:`best`
        (or :meth:`abest`).
        """
        with self._ahead_lock:
            if text in self._ahead:
                return
            while len(self._ahead) >= PREFETCH_LIMIT:
                self._ahead.popitem(last=False)
            self._ahead[text] = _prefetch_pool().submit(self.embedder.embed, [text])

    def _claim(self, text: str) -> Future[np.ndarray] | None:
        """The prefetch of ``text``, taken (each is used once), or ``None``."""
        with self._ahead_lock:
            return self._ahead.pop(text, None)

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        ahead = self._claim(texts[0]) if len(texts) == 1 else None
        return ahead.result() if ahead is not None else self.embedder.embed(texts)

    def scores_many(self, texts: Sequence[str]) -> np.ndarray:
        """Score matrix (texts × routes)."""
        return self._scores(self._embed(texts))

    def _scores(self, vectors: np.ndarray) -> np.ndarray:
        grid = (vectors @ self._vectors.T)[:, self._grid] + self._padding  # texts × routes × examples
        best = np.sort(grid, axis=2)[:, :, -TOP_K:]  # a route with fewer examples keeps -inf here
        return (np.where(np.isneginf(best), 0.0, best).sum(axis=2) / self._top_k).astype(np.float32)

    def best_many(self, texts: Sequence[str]) -> list[RouteMatch]:
        """The top route for each text, whatever its score."""
        return self._matches(self.scores_many(texts))

    def _matches(self, scores: np.ndarray) -> list[RouteMatch]:
        matches = []
        for row in scores:
            order = np.argsort(row)[::-1]
            runner_up = float(row[order[1]]) if len(order) > 1 else -1.0
            top = float(row[order[0]])
            matches.append(RouteMatch(self.names[order[0]], top, top - runner_up))
        return matches

    def best(self, text: str) -> RouteMatch:
        return self.best_many([text])[0]

    async def abest(self, text: str) -> RouteMatch:
        """:meth:`best` for a coroutine that must not block its loop: a prefetched embedding is
        awaited on the loop itself (scoring it takes microseconds), so a run whose embedding is
        ready pays no worker-thread round trip; otherwise :meth:`best` runs on a worker thread."""
        ahead = self._claim(text)
        if ahead is None:
            return await asyncio.to_thread(self.best, text)
        vector = await asyncio.wrap_future(ahead)
        return self._matches(self._scores(vector))[0]

    def accepts(self, match: RouteMatch) -> bool:
        return match.score >= self.threshold and match.margin >= self.margin

    def route_many(self, texts: Sequence[str]) -> list[RouteMatch | None]:
        return [m if self.accepts(m) else None for m in self.best_many(texts)]

    def route(self, text: str) -> RouteMatch | None:
        return self.route_many([text])[0]


class LabelledMatch(NamedTuple):
    text: str
    expected: str
    match: RouteMatch
    """The best route, whether or not the router accepts it."""


@dataclass
class RouteCheck:
    """How a router does on utterances labelled with the route a person would pick
    (:func:`check_routes`). *Coverage*: the share the router decides alone (the rest cost a model
    classification); *precision*: the share of those it gets right; *top-1*: the share whose best
    route is right, whatever the threshold."""

    threshold: float
    margin: float
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per route: ``n``, ``covered``, ``correct`` (of covered) and ``top1``."""
    wrong: list[LabelledMatch] = field(default_factory=list)
    """Routed alone, to the wrong route."""
    unsure: list[LabelledMatch] = field(default_factory=list)
    """Below the threshold or the margin: left to the model."""
    examples: list[str] = field(default_factory=list)
    """Utterances that are example utterances themselves: left out (they would score 1.0)."""

    def total(self, key: str) -> int:
        return sum(row[key] for row in self.counts.values())

    @property
    def coverage(self) -> float:
        n = self.total("n")
        return self.total("covered") / n if n else 0.0

    @property
    def precision(self) -> float | None:
        covered = self.total("covered")
        return self.total("correct") / covered if covered else None

    @property
    def top1(self) -> float:
        n = self.total("n")
        return self.total("top1") / n if n else 0.0


def check_routes(
    router: SemanticRouter,
    labelled: Mapping[str, Sequence[str]],
    *,
    examples: Mapping[str, Sequence[str]] | None = None,
) -> RouteCheck:
    """Route every labelled utterance (route name → utterances) and count what went where.

    Label names the router does not know raise ``ValueError``. Utterances found among
    ``examples`` (normally the router's own routes) are left out and listed.
    """
    unknown = sorted(set(labelled) - set(router.names))
    if unknown:
        raise ValueError(
            f"unknown route(s) {', '.join(map(repr, unknown))}; the routes are {', '.join(router.names)}"
        )
    known = {text.strip().lower() for texts in (examples or {}).values() for text in texts}
    check = RouteCheck(router.threshold, router.margin)
    pairs: list[tuple[str, str]] = []
    for name, texts in labelled.items():
        check.counts[name] = {"n": 0, "covered": 0, "correct": 0, "top1": 0}
        for text in texts:
            if text.strip().lower() in known:
                check.examples.append(text)
            else:
                pairs.append((text, name))
    if not pairs:
        return check
    from brainstack.graphs.nodes import routing_text  # what the Route node embeds

    matches = router.best_many([routing_text(text) for text, _ in pairs])
    for (text, expected), match in zip(pairs, matches, strict=True):
        row = check.counts[expected]
        row["n"] += 1
        row["top1"] += match.name == expected
        labelled_match = LabelledMatch(text, expected, match)
        if not router.accepts(match):
            check.unsure.append(labelled_match)
            continue
        row["covered"] += 1
        if match.name == expected:
            row["correct"] += 1
        else:
            check.wrong.append(labelled_match)
    return check
