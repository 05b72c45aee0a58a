"""A small incremental BM25 index: the keyword half of hybrid retrieval."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["BM25Index", "CollectionKeywords", "reciprocal_rank_fusion", "tokenize"]

RECHECK_S = 5.0
"""How long a collection's keyword index is trusted without counting the collection again."""
PAGE = 5000
"""Rows per Chroma ``get`` when reading a collection for its keyword index."""
LOCK = ".lock"
"""The file in an index folder that processes lock while they change a saved index (it names no
collection)."""
BUILD_NOTICE = 5000
"""A collection of this many documents or more has its index build logged (INFO): about a
second of reading (3.2 s for 15,684 chunks), where a search otherwise just waits."""

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


_CJK = re.compile(
    "[\u1100-\u11ff\u3005-\u3007\u3021-\u3029\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f]+"
)
"""A run of Chinese, Japanese or Korean characters (ideographs with their rarer extensions and
marks such as 々, kana, half-width katakana, Hangul and its letters): written without spaces
between words (Korean between phrases), so a run is no word."""


def tokenize(text: str) -> list[str]:
    """Lower-case, stemmed word tokens without stop words; ``INC-4412`` is kept whole and also
    split. Chinese, Japanese and Korean text becomes overlapping character pairs (a single
    character alone), as search engines index it: a whole run was one token, so ``返金`` never
    matched ``返金ポリシー``."""
    text = text.lower()
    cjk = not text.isascii() and _CJK.search(text) is not None  # (once for the text: most hold none)
    tokens: list[str] = []
    for token in _TOKEN.findall(text):
        if token in STOPWORDS:
            continue
        if cjk and _CJK.search(token):
            _add_cjk(tokens, token)
            continue
        tokens.append(stem(token))
        parts = re.split(r"[._'-]", token)
        if len(parts) > 1:
            tokens.extend(stem(p) for p in parts if p and p not in STOPWORDS)
    return tokens


def _add_cjk(tokens: list[str], token: str) -> None:
    """Append a token holding CJK characters: each CJK run's character pairs, the rest as words."""
    start = 0
    for run in _CJK.finditer(token):
        if run.start() > start:
            tokens.extend(tokenize(token[start : run.start()]))
        chars = run.group()
        tokens.extend(chars[i : i + 2] for i in range(max(len(chars) - 1, 1)))
        start = run.end()
    if start < len(token):
        tokens.extend(tokenize(token[start:]))


class BM25Index:
    """Okapi BM25 over documents added one by one (``k1=1.2``, ``b=0.75``).

    Postings are kept as Python lists while documents arrive and turned into numpy arrays the
    first time a term is searched after a change, so scoring is vectorised (about 1 ms for a
    common term over 100k documents instead of tens of ms in a Python loop).

    Safe to share between threads: a search and an add (a run recalling while another run of
    the same process remembers) take turns; a search that read the document lengths before an
    add and a new term's postings after it failed with an ``IndexError``.

    Documents can be removed, and adding an id again replaces its document: the old one is
    marked deleted (scored 0, out of the average length and of each term's document frequency)
    and its postings stay until deleted ones make up a quarter of the index, when the postings
    are rewritten without them (in memory, with no need for the texts).
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.ids: list[str] = []
        self._known: dict[str, int] = {}
        """Each document's position in :attr:`ids` (its latest, were it added twice)."""
        self._lengths: list[int] = []
        self._postings: dict[str, tuple[list[int], list[int]]] = {}
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._length_array: np.ndarray | None = None
        self._total = 0
        self._deleted: set[int] = set()
        """Positions in :attr:`ids` of removed or replaced documents."""
        self._alive: np.ndarray | None = None
        """Which positions hold a document (built when needed, while some are deleted)."""
        self._lock = threading.Lock()
        self.source = ""
        """The id of the collection this index was built from ("" when unknown), saved with it:
        a collection deleted and created again under its name is another one."""

    def __len__(self) -> int:
        """Documents held (removed and replaced ones not counted)."""
        return len(self._known)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._known

    def add(self, doc_id: str, text: str) -> None:
        tokens = tokenize(text)
        with self._lock:
            self._add(doc_id, tokens)

    def remove(self, doc_ids: Iterable[str]) -> int:
        """Remove documents (ids the index does not hold are ignored); how many it held."""
        with self._lock:
            positions = [self._known.pop(doc_id) for doc_id in set(doc_ids) if doc_id in self._known]
            for position in positions:
                self._delete(position)
            self._compact_if_needed()
        return len(positions)

    def _delete(self, position: int) -> None:
        self._deleted.add(position)
        self._alive = None
        self._total -= self._lengths[position]

    def _alive_mask(self) -> np.ndarray | None:
        """Which positions hold a document; None while none is deleted (all do)."""
        if not self._deleted:
            return None
        if self._alive is None or len(self._alive) != len(self.ids):
            alive = np.ones(len(self.ids), dtype=bool)
            alive[np.fromiter(self._deleted, dtype=np.int64, count=len(self._deleted))] = False
            self._alive = alive
        return self._alive

    def _frequency(self, docs: np.ndarray, alive: np.ndarray | None) -> int:
        """How many documents held a term's postings ``docs`` name."""
        return len(docs) if alive is None else int(np.count_nonzero(alive[docs]))

    def _compact_if_needed(self) -> None:
        """Rewrite the postings without deleted documents once they are a quarter of the index."""
        if len(self._deleted) <= max(64, len(self.ids) // 4):
            return
        keep = [n for n in range(len(self.ids)) if n not in self._deleted]
        moved = {old: new for new, old in enumerate(keep)}
        self.ids = [self.ids[n] for n in keep]
        self._lengths = [self._lengths[n] for n in keep]
        self._known = {doc_id: n for n, doc_id in enumerate(self.ids)}
        postings: dict[str, tuple[list[int], list[int]]] = {}
        for term, (docs, tfs) in self._postings.items():
            kept = [(moved[d], f) for d, f in zip(docs, tfs, strict=True) if d in moved]
            if kept:
                postings[term] = ([d for d, _ in kept], [f for _, f in kept])
        self._postings = postings
        self._arrays.clear()
        self._length_array = None
        self._deleted, self._alive = set(), None

    def _add(self, doc_id: str, tokens: list[str]) -> None:
        index = len(self.ids)
        if doc_id in self._known:  # added again: the new text replaces the old one
            self._delete(self._known[doc_id])
        self.ids.append(doc_id)
        self._known[doc_id] = index
        self._lengths.append(len(tokens))
        self._total += len(tokens)
        self._length_array = None
        for term, tf in Counter(tokens).items():
            docs, tfs = self._postings.setdefault(term, ([], []))
            docs.append(index)
            tfs.append(tf)
            self._arrays.pop(term, None)

    # -- persistence -----------------------------------------------------------------------------

    FORMAT = 4
    """4: the CJK class with its marks, half-width katakana and rarer ideographs; 3: CJK text as
    character pairs (a file of 3 or less is read unless it holds a CJK term, which
    :func:`tokenize` now makes otherwise); 2: with the deleted positions (1, before removal:
    read as having none)."""

    def save(self, path: str | Path) -> None:
        """Write the index to ``path`` (NumPy ``.npz``, no pickle), atomically."""
        with self._lock:
            terms = list(self._postings)
            sizes = [len(self._postings[t][0]) for t in terms]
            offsets = np.zeros(len(terms) + 1, dtype=np.int64)
            np.cumsum(sizes, out=offsets[1:])
            docs = np.fromiter((d for t in terms for d in self._postings[t][0]), np.int32, int(offsets[-1]))
            tfs = np.fromiter((f for t in terms for f in self._postings[t][1]), np.int32, int(offsets[-1]))
            ids, lengths, deleted = list(self.ids), list(self._lengths), sorted(self._deleted)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as out:
            np.savez(
                out,
                format=np.array([self.FORMAT]),
                params=np.array([self.k1, self.b]),
                ids=np.array(ids, dtype=np.str_),
                lengths=np.array(lengths, dtype=np.int32),
                terms=np.array(terms, dtype=np.str_),
                offsets=offsets,
                docs=docs,
                tfs=tfs,
                deleted=np.array(deleted, dtype=np.int64),
                source=np.array([self.source], dtype=np.str_),
            )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> BM25Index:
        """Read an index written by :meth:`save`; ``ValueError`` when it is not one."""
        with np.load(path, allow_pickle=False) as data:
            version = int(data["format"][0])
            if version > cls.FORMAT:
                raise NewerFormatError(f"{path}: keyword index format {version}, newer than {cls.FORMAT}")
            if version not in (1, 2, 3, cls.FORMAT):
                raise ValueError(f"{path}: keyword index format {version}, not {cls.FORMAT}")
            k1, b = (float(v) for v in data["params"])
            index = cls(k1=k1, b=b)
            index.ids = data["ids"].tolist()
            lengths, terms = data["lengths"], data["terms"].tolist()
            if version < cls.FORMAT and any(_CJK.search(term) for term in terms):
                raise ValueError(f"{path}: keyword index of CJK text tokenized before format {cls.FORMAT}")
            index._lengths = lengths.tolist()
            deleted = set(data["deleted"].tolist()) if version >= 2 else set()
            index.source = str(data["source"][0]) if "source" in data.files else ""  # (added later)
            arrays = data["offsets"], data["docs"], data["tfs"]  # (each read once: a read decompresses)
            _check_postings(
                path, *arrays, terms=len(terms), lengths=lengths, documents=len(index.ids), k1=k1, b=b
            )
            offsets, docs, tfs = (array.tolist() for array in arrays)
            for n, term in enumerate(terms):
                start, end = offsets[n], offsets[n + 1]
                index._postings[term] = (docs[start:end], tfs[start:end])
        if not all(0 <= n < len(index.ids) for n in deleted):
            raise ValueError(f"{path}: inconsistent keyword index")
        # An id held twice (format 1 kept both) is its latest document; the earlier one is deleted.
        index._known = {doc_id: n for n, doc_id in enumerate(index.ids) if n not in deleted}
        deleted |= {n for n, doc_id in enumerate(index.ids) if index._known.get(doc_id) != n}
        index._deleted = deleted
        index._total = sum(length for n, length in enumerate(index._lengths) if n not in deleted)
        return index

    def _term(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        arrays = self._arrays.get(term)
        if arrays is None:
            postings = self._postings.get(term)
            if postings is None:
                return None
            arrays = (np.asarray(postings[0], dtype=np.int64), np.asarray(postings[1], dtype=np.float64))
            self._arrays[term] = arrays
        return arrays

    def idf_mass(self, query: str, *, unheld: bool = False) -> float:
        """The summed IDF of ``query``'s distinct terms that some document holds: about what a
        document of average length holding each of them once scores, so ``score / idf_mass`` says
        how much of what the query asks a document matches (0 when the index knows none of its
        terms). Terms no document holds are left out: they do not tell documents apart.

        With ``unheld``, they count too, at the IDF of a term no document holds (the highest):
        ``score / idf_mass(query, unheld=True)`` says how much of the whole query a document
        holds, what tells "error PAY-4099" in a table of other PAY codes (the rarest term held
        nowhere) from "error PAY-4031" in it."""
        terms = set(tokenize(query))
        mass = 0.0
        with self._lock:
            n, alive = len(self._known), self._alive_mask()
            for term in terms:
                arrays = self._term(term)
                frequency = 0 if arrays is None else self._frequency(arrays[0], alive)
                if frequency or unheld:
                    mass += math.log(1 + (n - frequency + 0.5) / (frequency + 0.5))
        return mass

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` best ``(id, score)`` pairs, best first; documents sharing no term are left out."""
        return self.search_scoring(query, k, ())[0]

    def scores(self, query: str, ids: Collection[str]) -> dict[str, float]:
        """The scores of documents ``ids`` for ``query``, however they rank; those sharing no
        term with it (or unknown) are left out."""
        return self.search_scoring(query, 0, ids)[1]

    def search_scoring(
        self, query: str, k: int, ids: Collection[str]
    ) -> tuple[list[tuple[str, float]], dict[str, float]]:
        """:meth:`search` for the ``k`` best and :meth:`scores` of ``ids``, from one scoring of
        every document (a hybrid search wants both)."""
        terms = set(tokenize(query))
        with self._lock:
            scores = self._scores(terms)
            if scores is None:
                return [], {}
            return self._best(scores, k), self._of(scores, ids)

    def _best(self, scores: np.ndarray, k: int) -> list[tuple[str, float]]:
        hits = np.flatnonzero(scores > 0) if k >= 1 else np.empty(0, dtype=np.int64)
        if hits.size > k:
            hits = hits[np.argpartition(-scores[hits], k - 1)[:k]]
        order = sorted(hits.tolist(), key=lambda i: (-float(scores[i]), i))
        return [(self.ids[i], float(scores[i])) for i in order]

    def _of(self, scores: np.ndarray, ids: Collection[str]) -> dict[str, float]:
        found = {doc_id: float(scores[self._known[doc_id]]) for doc_id in ids if doc_id in self._known}
        return {doc_id: score for doc_id, score in found.items() if score > 0}

    def _scores(self, terms: set[str]) -> np.ndarray | None:
        """Every position's score for ``terms``, 0 for deleted documents (None when the index
        holds none)."""
        n = len(self._known)
        if not n:
            return None
        if self._length_array is None:
            self._length_array = np.asarray(self._lengths, dtype=np.float64)
        average = (self._total / n) or 1.0
        scores = np.zeros(len(self.ids), dtype=np.float64)
        alive = self._alive_mask()
        for term in terms:
            arrays = self._term(term)
            if arrays is None:
                continue
            docs, tfs = arrays
            frequency = self._frequency(docs, alive)
            if not frequency:
                continue
            idf = math.log(1 + (n - frequency + 0.5) / (frequency + 0.5))
            norm = tfs + self.k1 * (1 - self.b + self.b * self._length_array[docs] / average)
            scores[docs] += idf * tfs * (self.k1 + 1) / norm
        if alive is not None:
            scores[~alive] = 0.0
        return scores


class NewerFormatError(ValueError):
    """A saved keyword index written by a newer version of brainstack."""


def _check_postings(
    path: str | Path,
    offsets: np.ndarray,
    docs: np.ndarray,
    tfs: np.ndarray,
    *,
    terms: int,
    lengths: np.ndarray,
    documents: int,
    k1: float,
    b: float,
) -> None:
    """``ValueError`` unless a saved index's postings fit its documents: a file that loads but
    points past them (written by hand, or damaged in a way the format cannot tell) failed every
    search that read the term (``IndexError``) until it was deleted by hand."""
    fits = (
        math.isfinite(k1)
        and k1 >= 0
        and 0 <= b <= 1
        and len(lengths) == documents
        and len(offsets) == terms + 1
        and len(docs) == len(tfs)
        and offsets[0] == 0
        and offsets[-1] == len(docs)
        and bool(np.all(np.diff(offsets) >= 0))
        and bool(np.all((docs >= 0) & (docs < documents)))
        and bool(np.all(np.isfinite(tfs) & (tfs > 0)))
        and bool(np.all(np.isfinite(lengths) & (lengths >= 0)))
    )
    if not fits:
        raise ValueError(f"{path}: inconsistent keyword index")


def reciprocal_rank_fusion(*rankings: list[str], k: int = 60) -> list[tuple[str, float]]:
    """Fuse ranked id lists: ``score(d) = Σ 1 / (k + rank)`` (Cormack et al., 2009)."""
    scores: dict[str, float] = defaultdict(float)
    for ranking in rankings:
        for rank, doc_id in enumerate(ranking, start=1):
            scores[doc_id] += 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


class CollectionKeywords:
    """The BM25 indexes of Chroma collections, kept in step with them across processes.

    Each collection's index lives in this process and, with ``index_dir``, in a file
    ``<collection name>.npz`` there (a cache: checked against the collection and topped up or
    rebuilt when stale), so a new process starts from it instead of reading every document.
    Another writer (another process) may add to or delete from a collection at any time;
    :meth:`index` notices it as :meth:`index` says. A writer that deletes or replaces documents
    takes them out of the saved index and marks the change in ``<collection name>.deleted`` beside
    it (:meth:`added`, :meth:`removed`; :meth:`drop` removes the file with a deleted collection):
    with ``index_dir``, a process whose index predates the mark starts again from the saved file
    (or builds the index again, without one), as the collection's count cannot tell it (an
    update that deleted as many documents as it added leaves it as it was). Writers change the
    saved index and its mark holding the folder's lock (:data:`LOCK`), starting from the saved
    file when its mark is newer than their index, so one's change is never saved over another's.
    """

    def __init__(self, index_dir: str | Path | None = None) -> None:
        self.index_dir = Path(index_dir) if index_dir is not None else None
        self._indexes: dict[str, BM25Index] = {}
        self._checked: dict[str, float] = {}
        self._marks: dict[str, str] = {}
        """Each index's deletion mark as it was when this process loaded or built it."""
        self._locks: dict[str, threading.RLock] = {}
        self._lock = threading.Lock()  # (for ``_locks``)

    def _locked(self, name: str) -> threading.RLock:
        """Collection ``name``'s lock: one collection's index is read, built or changed by one
        thread at a time, while the others' go on (building a user's index from 100k episodes
        took 6.4 s, during which every other user's recall waited for it)."""
        with self._lock:
            return self._locks.setdefault(name, threading.RLock())

    def index(self, collection: Any, known: Collection[str] = (), *, save: bool = False) -> BM25Index:
        """The BM25 index of ``collection``, brought up to date when another writer changed it.

        ``known``: ids the caller just found in the collection (a dense search's). Counting a
        collection costs milliseconds at 100k documents, so it is done only when ``known`` names
        a document the index lacks, when the index is older than :data:`RECHECK_S`, or when
        ``known`` is empty (nothing to compare). A stale index gets only the documents it lacks
        (one id scan, then their documents); it is rebuilt when documents went away.

        ``save``: save it even when it was up to date, for the next process (documents this
        process wrote are taken into its index in memory, and saved only with a change).
        """
        name, source = collection.name, str(getattr(collection, "id", "") or "")
        with self._locked(name):
            index = self._indexes.get(name)
            if index is not None and index.source != source:
                index = None  # the collection was deleted and created again (a user forgotten)
            fresh = (
                index is not None
                and known
                and all(doc_id in index for doc_id in known)
                and time.monotonic() - self._checked.get(name, 0.0) < RECHECK_S
            )
            if fresh:
                assert index is not None
                return index
            if index is not None and self._mark(name) != self._marks.get(name, ""):
                index = None  # another process deleted or replaced documents since it was read
            if index is None:
                self._marks[name] = self._mark(name)  # (before reading: a deletion from now on is seen)
                index = self._load(name)
                if index is not None and index.source not in ("", source):
                    index = None  # saved from a collection of that name since deleted
                elif index is not None:
                    index.source = source  # (a file saved before sources were)
            size = int(collection.count())
            self._checked[name] = time.monotonic()
            # As many documents as the collection is not enough when ``known`` names one the
            # index lacks: it may hold as many others (a saved index of deleted documents).
            if index is not None and len(index) == size and all(doc_id in index for doc_id in known):
                self._indexes[name] = index
                if save:
                    self._save(name, index)
                return index
            if index is None or len(index) > size or not self._top_up(collection, index):
                if size >= BUILD_NOTICE:  # (seconds: say why the search waits; the CLI shows it)
                    log.info("building the keyword index of %s from its %d documents", name, size)
                index = BM25Index()
                for doc_id, doc in self._pages(collection, ["documents"]):
                    index.add(doc_id, doc or "")
                index.source = source
            self._indexes[name] = index
            self._save(name, index)
            return index

    def added(self, name: str, ids: Sequence[str], texts: Sequence[str], *, same_text: bool = False) -> None:
        """Documents just written to collection ``name`` by this process: an index in memory
        takes them at once. One that replaced a document the index holds replaces it there too,
        and the index is saved and the change marked (other processes could not tell it from
        the count). Without an index in memory, the saved one is read to tell a replacement
        (and then kept, as :meth:`index` would load it). With ``same_text`` (ids made from their
        text), a document the index holds was written again unchanged and is skipped: nothing
        is read for it.

        A replacement is made to the saved index as it now is: an index in memory that predates
        another process's change (its mark) is set aside for the saved one, else saving it would
        bring back the words that process replaced, for every process (the count is unchanged)."""
        with self._locked(name):
            index = self._indexes.get(name)
            if index is None and same_text:
                return  # (an id's text never changes: no index can hold other words for it)
            if index is not None and (same_text or not any(doc_id in index for doc_id in ids)):
                for doc_id, text in zip(ids, texts, strict=True):
                    if not (same_text and doc_id in index):
                        index.add(doc_id, text)
                return
            held = index is not None
            with self._saving():
                index = self._current(name)
                if index is None:
                    return
                # (ids the saved index lacks are taken as new: an index of another process that
                # took them since the last save still holds their old words until its next reload)
                replaced = any(doc_id in index for doc_id in ids)
                if not (replaced or held):  # (read only to tell: not kept, as before)
                    self._indexes.pop(name, None)
                    self._marks.pop(name, None)
                    return
                for doc_id, text in zip(ids, texts, strict=True):
                    index.add(doc_id, text)
                if replaced:
                    self._write(name, index)
                    self._changed(name)

    def removed(self, name: str, ids: Collection[str]) -> None:
        """Documents this process deleted from collection ``name``: taken out of its index (the
        one in memory, or else the saved one, as for :meth:`added`), which is saved, and the
        change marked, so other processes start again from the saved file instead of reading
        every document (a rebuild: 3.2 s for 15,684 chunks)."""
        with self._locked(name), self._saving():
            index = self._current(name)
            if index is not None:
                index.remove(ids)
                self._write(name, index)
            self._changed(name)

    def _current(self, name: str) -> BM25Index | None:
        """Collection ``name``'s index to change and save (with :meth:`_saving` held): the one in
        memory unless another process changed the saved one since it was read, else the saved
        one (kept in memory: checked against the collection at its next use)."""
        mark = self._mark(name)  # (before reading, as in index())
        index = self._indexes.get(name)
        if index is not None and mark == self._marks.get(name, ""):
            return index
        self._indexes.pop(name, None)
        self._checked.pop(name, None)
        index = self._load(name)
        if index is not None:
            self._indexes[name], self._marks[name] = index, mark
        return index

    @contextlib.contextmanager
    def _saving(self) -> Iterator[None]:
        """Hold the index folder's lock, so that another process's read, change and save of a
        saved index and its mark do not interleave with this one's (the later save would undo
        the earlier change). A folder where it cannot be made (read-only) is saved to by none."""
        with contextlib.ExitStack() as stack:
            if self.index_dir is not None:
                from brainstack.memory._filelock import exclusive

                with contextlib.suppress(OSError):
                    self.index_dir.mkdir(parents=True, exist_ok=True)
                    stack.enter_context(exclusive(self.index_dir / LOCK))
            yield

    def _changed(self, name: str) -> None:
        """Mark that documents of ``name`` were deleted or replaced (see the class)."""
        if self.index_dir is None:
            return
        with contextlib.suppress(OSError):  # (a read-only folder: other processes wait RECHECK_S)
            self.index_dir.mkdir(parents=True, exist_ok=True)
            (self.index_dir / f"{name}.deleted").write_text(uuid.uuid4().hex, encoding="ascii")
        if name in self._indexes:  # this process's index has the change: no reload for it
            self._marks[name] = self._mark(name)

    def drop(self, name: str, *, saved: bool = False) -> None:
        """Forget collection ``name``'s index in this process; with ``saved``, its files too: the
        collection was deleted (documents it lost are taken out by :meth:`removed` instead), and
        nothing is left that names it (a forgotten user's). Another process's index of it is
        not used again: a collection created again under the name has another id
        (:attr:`BM25Index.source`)."""
        with self._locked(name):
            self._indexes.pop(name, None)
            self._checked.pop(name, None)
            self._marks.pop(name, None)
            if saved and self.index_dir is not None:
                for suffix in (".npz", ".deleted"):
                    with contextlib.suppress(OSError):  # (as _save: a read-only folder)
                        (self.index_dir / f"{name}{suffix}").unlink(missing_ok=True)

    def expire(self) -> None:
        """Make every index check its collection at its next use, as if :data:`RECHECK_S` had
        passed (for tests, and after a change another process is known to have made)."""
        with self._lock:
            self._checked.clear()

    def _top_up(self, collection: Any, index: BM25Index) -> bool:
        """Add the documents ``index`` lacks; ``False`` when some of its documents are gone."""
        ids = [doc_id for doc_id, _ in self._pages(collection, [])]
        new = [doc_id for doc_id in ids if doc_id not in index]
        if len(ids) - len(new) != len(index):
            return False
        for start in range(0, len(new), PAGE):
            got = collection.get(ids=new[start : start + PAGE], include=["documents"])
            for doc_id, doc in zip(got["ids"], got["documents"], strict=True):
                index.add(doc_id, doc or "")
        return True

    @staticmethod
    def _pages(collection: Any, include: list[str]) -> Iterator[tuple[str, Any]]:
        offset = 0
        while True:
            got = collection.get(include=include, limit=PAGE, offset=offset)
            docs = got.get("documents") or [None] * len(got["ids"])
            yield from zip(got["ids"], docs, strict=True)
            if len(got["ids"]) < PAGE:
                return
            offset += PAGE

    def _mark(self, name: str) -> str:
        """Collection ``name``'s deletion mark: another one each time a writer deleted or replaced
        documents ("" before any, or without ``index_dir``)."""
        if self.index_dir is None:
            return ""
        try:
            return (self.index_dir / f"{name}.deleted").read_text(encoding="ascii")
        except (OSError, ValueError):
            return ""

    def _load(self, name: str) -> BM25Index | None:
        if self.index_dir is None:
            return None
        path = self.index_dir / f"{name}.npz"
        try:
            return BM25Index.load(path)
        except (FileNotFoundError, NewerFormatError):  # (a newer version's file is left to it)
            return None
        except Exception:  # a damaged or foreign file is only a cache miss
            with contextlib.suppress(OSError):  # (a folder in its place: no saving either)
                path.unlink(missing_ok=True)
            return None

    def _save(self, name: str, index: BM25Index) -> None:
        """Save the index :meth:`index` made unless another process changed the saved one since
        this one's was read (its mark): this one may lack that change, which saving it would undo."""
        if self.index_dir is None:
            return
        with self._saving():
            if self._mark(name) == self._marks.get(name, ""):
                self._write(name, index)

    def _write(self, name: str, index: BM25Index) -> None:
        """Save ``index`` as collection ``name``'s, unless a newer version of brainstack saved
        that file (workers of two versions on one folder during an upgrade): each would otherwise
        replace the other's file with one the other cannot read, and rebuild it, in turn."""
        if self.index_dir is None:
            return
        path = self.index_dir / f"{name}.npz"
        with contextlib.suppress(Exception), np.load(path, allow_pickle=False) as data:
            if int(data["format"][0]) > BM25Index.FORMAT:
                return
        with contextlib.suppress(OSError):  # a read-only or full disk only costs a rebuild later
            index.save(path)
