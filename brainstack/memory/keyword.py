"""A small incremental BM25 index: the keyword half of hybrid retrieval."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict

__all__ = ["BM25Index", "reciprocal_rank_fusion", "tokenize"]

_TOKEN = re.compile(r"[^\W_]+(?:[._'-][^\W_]+)*")
STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "too",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    }
)


_SUFFIXES = ("ing", "ed", "es", "s")


def stem(word: str) -> str:
    """A light suffix stripper (decided → decid, decide → decid, plans → plan); digits are left alone."""
    if len(word) <= 4 or not word.isalpha():
        return word
    if word.endswith("e"):
        return word[:-1]
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def tokenize(text: str) -> list[str]:
    """Lower-case, stemmed word tokens without stop words; ``INC-4412`` is kept whole and also split."""
    tokens = []
    for token in _TOKEN.findall(text.lower()):
        if token in STOPWORDS:
            continue
        tokens.append(stem(token))
        parts = re.split(r"[._'-]", token)
        if len(parts) > 1:
            tokens.extend(stem(p) for p in parts if p and p not in STOPWORDS)
    return tokens


class BM25Index:
    """Okapi BM25 over documents added one by one (``k1=1.2``, ``b=0.75``)."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.ids: list[str] = []
        self._lengths: list[int] = []
        self._postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self._total = 0

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, doc_id: str, text: str) -> None:
        index = len(self.ids)
        tokens = tokenize(text)
        self.ids.append(doc_id)
        self._lengths.append(len(tokens))
        self._total += len(tokens)
        for term, tf in Counter(tokens).items():
            self._postings[term].append((index, tf))

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` best ``(id, score)`` pairs, best first; documents sharing no term are left out."""
        if not self.ids:
            return []
        n = len(self.ids)
        average = self._total / n or 1.0
        scores: dict[int, float] = defaultdict(float)
        for term in set(tokenize(query)):
            postings = self._postings.get(term)
            if not postings:
                continue
            idf = math.log(1 + (n - len(postings) + 0.5) / (len(postings) + 0.5))
            for index, tf in postings:
                norm = tf + self.k1 * (1 - self.b + self.b * self._lengths[index] / average)
                scores[index] += idf * tf * (self.k1 + 1) / norm
        best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]
        return [(self.ids[index], score) for index, score in best]


def reciprocal_rank_fusion(*rankings: list[str], k: int = 60) -> list[tuple[str, float]]:
    """Fuse ranked id lists: ``score(d) = Σ 1 / (k + rank)`` (Cormack et al., 2009)."""
    scores: dict[str, float] = defaultdict(float)
    for ranking in rankings:
        for rank, doc_id in enumerate(ranking, start=1):
            scores[doc_id] += 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])
