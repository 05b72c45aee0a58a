"""Episodic memory: what happened in earlier runs, per user, searchable by meaning and by keyword.

Each user's episodes live in their own Chroma collection, so one user's search can never see
another user's episodes, whatever the query or the metadata says. Text and metadata are masked
for personal data (:mod:`brainstack.memory.pii`) before they are stored. Search is hybrid: the
dense (embedding) ranking and a BM25 keyword ranking are fused with reciprocal rank fusion.

>>> memory = EpisodicMemory.local("/tmp/episodes")                          # doctest: +SKIP
>>> memory.add("ada", "Decided to launch freemium with strict usage limits")  # doctest: +SKIP
>>> memory.search("ada", "what did we decide about the free plan?")[0].text  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

from brainstack.errors import BackendError, ConfigurationError, translate
from brainstack.memory._hnsw import HNSW, SEARCH_BREADTH, widen_search
from brainstack.memory.embeddings import query_embedding
from brainstack.memory.keyword import CollectionKeywords, reciprocal_rank_fusion
from brainstack.memory.pii import mask_pii, mask_value

if TYPE_CHECKING:
    from brainstack.memory.embeddings import Embedder

__all__ = ["Episode", "EpisodicMemory", "episode_document", "open_chroma", "scrub_local_chroma"]

log = logging.getLogger(__name__)

SearchMode = Literal["hybrid", "dense", "keyword"]
T = TypeVar("T")
MAX_TEXT_CHARS = 4000
RESERVED = ("user_id", "created_at")
KEYWORD_FLOOR = 0.5
SEGMENT_FOLDER = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
"""How Chroma names a segment's folder in its local folder (the segment's id)."""
OPEN_LOCK = ".brainstack-open.lock"
"""In a local Chroma folder: held while a process opens it (see :func:`open_chroma`)."""


@dataclass(frozen=True)
class Episode:
    """One remembered episode, as returned by :meth:`EpisodicMemory.search`."""

    id: str
    text: str
    score: float
    """Fused relevance (higher is better); in ``dense`` mode the cosine similarity."""
    metadata: dict[str, Any] = field(default_factory=dict)
    dense_score: float | None = None
    """Cosine similarity to the query, when the dense ranking found it."""
    keyword_score: float | None = None
    """BM25 score, when the keyword ranking found it."""


def episode_document(text: str) -> str:
    """What the store keeps of an episode's text, and embeds: masked, then cut to ``MAX_TEXT_CHARS``."""
    return mask_pii(text.strip())[:MAX_TEXT_CHARS]


CHROMA_CONNECT_TIMEOUT_S = 10.0
CHROMA_TIMEOUT_S = 60.0
"""How long a Chroma server may take to answer one request (a query over a big collection takes
seconds; one that takes a minute is not answering)."""


def _answers(url: str) -> None:
    """Raise if the Chroma server at ``url`` does not answer its heartbeat in time: the client's
    constructor asks the server who the user is, with no time limit of its own."""
    import httpx

    try:
        httpx.get(
            url.rstrip("/") + "/api/v2/heartbeat",
            timeout=CHROMA_CONNECT_TIMEOUT_S,
        )
    except httpx.TimeoutException as exc:
        raise BackendError(
            f"The Chroma backend at {url} did not answer within {CHROMA_CONNECT_TIMEOUT_S:g} s "
            f"({type(exc).__name__}). Check that it is a Chroma server and that it is not overloaded, "
            "or fix BRAINSTACK_CHROMA_URL."
        ) from exc
    except httpx.HTTPError:
        return  # refused, or not found: the client's own error says it as before


def open_chroma(*, path: str | Path | None = None, url: str | None = None) -> Any:
    """A Chroma client: the server at ``url`` when given, else a persistent local folder."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    try:
        if url:
            from urllib.parse import urlparse

            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ConfigurationError(f"BRAINSTACK_CHROMA_URL {url!r} is not an http(s)://host:port URL")
            _answers(url)
            client = chromadb.HttpClient(
                host=parsed.hostname,
                port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                ssl=parsed.scheme == "https",
                settings=chroma_settings,
            )
            # Chroma's client waits for its server without a limit: a server that accepted
            # connections and never answered held runs and memory commands forever (QA).
            session = getattr(getattr(client, "_server", None), "_session", None)
            if session is not None:
                import httpx

                session.timeout = httpx.Timeout(CHROMA_TIMEOUT_S, connect=CHROMA_CONNECT_TIMEOUT_S)
            return client
        if path is None:
            raise ConfigurationError("open_chroma needs a path or a url")
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # BRAINSTACK_HOME is a file, or not writable
            raise ConfigurationError(
                f"Cannot create the memory folder {path}: {exc.strerror}. Set BRAINSTACK_HOME to a "
                "writable folder."
            ) from exc
        # Processes opening a new folder at once would each create Chroma's tables ("table
        # collections already exists", "database is locked"): they open it one at a time.
        from brainstack.memory._filelock import exclusive

        with contextlib.ExitStack() as opening:
            try:
                opening.enter_context(exclusive(Path(path) / OPEN_LOCK))
            except OSError as exc:  # a read-only folder or file system: its lock file cannot be made
                raise ConfigurationError(
                    f"Cannot open the memory folder {path}: {exc.strerror or exc}. Set BRAINSTACK_HOME "
                    "to a writable folder."
                ) from exc
            try:
                return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
            except Exception:
                _drop_unstarted(chroma_settings)
                raise
    except (ConfigurationError, BackendError):
        raise
    except Exception as exc:
        if url:
            raise BackendError(
                f"The Chroma backend at {url} cannot be reached ({type(exc).__name__}: {exc}). Start it "
                "(`chroma run --path DIR --host 127.0.0.1 --port PORT`) or fix BRAINSTACK_CHROMA_URL."
            ) from exc
        raise translate(exc, backend="chromadb") from exc


def _local_folder(client: Any) -> Path | None:
    """The folder of a local (persistent) Chroma client; ``None`` for a server or in-memory one."""
    try:
        chroma_settings = client.get_settings()
    except Exception:
        return None
    if not getattr(chroma_settings, "is_persistent", False) or not chroma_settings.persist_directory:
        return None
    return Path(chroma_settings.persist_directory)


def scrub_local_chroma(folder: str | Path) -> int:
    """Remove from a local Chroma folder what it keeps of deleted data; returns how many deleted
    segment folders were removed. Best effort: what Chroma's own files hold beyond these (a live
    vector index may keep stale bytes in unused slots) is out of its reach.

    Chroma deletes a collection's rows but not its bytes: its text stays readable in the SQLite
    file's free pages and full-text index segments, and its vector index stays in a folder of its
    own (Chroma issue 5520). This merges the full-text index (FTS5 ``optimize``, which drops
    deleted rows' entries), rewrites the file (``VACUUM``) and removes every segment folder no
    segment row names. Segment folders are listed *before* the rows are read, and Chroma writes a
    collection's segment row before the folder, so a collection another process creates meanwhile
    is never taken for deleted. Other processes may use the folder meanwhile: they wait for the
    file's lock (about a second per 100 MB). Chroma's internals: should its schema change, nothing
    is removed and ``sqlite3.Error`` says why.
    """
    folder = Path(folder)
    database = folder / "chroma.sqlite3"
    if not database.is_file():
        return 0
    listed = [entry for entry in folder.iterdir() if SEGMENT_FOLDER.fullmatch(entry.name) and entry.is_dir()]
    start = time.perf_counter()
    with contextlib.closing(sqlite3.connect(database, timeout=60, isolation_level=None)) as db:
        live = {str(row[0]) for row in db.execute("SELECT id FROM segments")}
        db.execute("INSERT INTO embedding_fulltext_search(embedding_fulltext_search) VALUES('optimize')")
        db.execute("VACUUM")
    removed = 0
    for entry in listed:
        if entry.name not in live:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    log.debug(
        "scrubbed %s: file rewritten, %d deleted segment folder(s) removed (%.2f s)",
        folder,
        removed,
        time.perf_counter() - start,
    )
    return removed


def _drop_unstarted(settings: Any) -> None:
    """Remove the store of a folder Chroma failed to open from its per-process cache.

    Chroma caches a folder's store before starting it and keeps it when starting fails: the next
    client of the folder in this process got it back, half-started ("'RustBindingsAPI' object has
    no attribute 'bindings'"). A store no client holds is dropped, so the next attempt starts
    afresh. (Chroma's internals: should they change, the next attempt only fails as before.)
    """
    with contextlib.suppress(Exception):
        from chromadb.api.shared_system_client import SharedSystemClient as Shared

        identifier = Shared._get_identifier_from_settings(settings)
        with Shared._refcount_lock:
            if identifier not in Shared._identifier_to_refcount:
                Shared._identifier_to_system.pop(identifier, None)


class EpisodicMemory:
    """Per-user episodes in Chroma with hybrid (dense + BM25) search."""

    def __init__(
        self,
        client: Any,
        *,
        embedder: Embedder | None = None,
        namespace: str = "brainstack",
        index_dir: str | Path | None = None,
    ) -> None:
        """``index_dir``: where each collection's BM25 keyword index is saved between processes
        (a cache: it is checked against the collection and topped up or rebuilt when stale);
        ``None`` keeps it in memory only, built on a process's first search of each user."""
        from brainstack.memory.embeddings import chroma_embedding_function, default_embedder

        self.client = client
        self.embedder = embedder or default_embedder()
        self.namespace = namespace
        self._function = chroma_embedding_function(self.embedder)
        self._collections: dict[str, Any] = {}
        self.keywords = CollectionKeywords(index_dir)
        self._lock = threading.RLock()

    @classmethod
    def local(cls, path: str | Path, *, embedder: Embedder | None = None) -> EpisodicMemory:
        """Episodes in a local Chroma folder."""
        return cls(open_chroma(path=path), embedder=embedder)

    # -- collections ---------------------------------------------------------------------------

    def collection_name(self, user_id: str) -> str:
        digest = hashlib.sha256(user_id.encode()).hexdigest()[:32]
        return f"{self.namespace}-episodes-{digest}"

    def _collection(self, user_id: str, *, create: bool) -> Any:
        if not user_id:
            raise ValueError("user_id must not be empty")
        name = self.collection_name(user_id)
        with self._lock:
            if name in self._collections:
                return self._collections[name]
            try:
                if create:
                    collection = self.client.get_or_create_collection(
                        name,
                        embedding_function=self._function,
                        metadata={"brainstack": "episodes", "user_id": user_id},
                        configuration={"hnsw": dict(HNSW)},
                    )
                else:
                    collection = self.client.get_collection(name, embedding_function=self._function)
            except Exception as exc:
                if not create and _is_not_found(exc):
                    return None
                raise translate(exc, backend="chromadb") from exc
            # A collection made by an earlier version searched with Chroma's default breadth,
            # which missed a third of the exact top 20 among 100k near-identical episodes.
            widen_search(collection, SEARCH_BREADTH, "episodic memory")
            self._collections[name] = collection
            return collection

    def _on_collection(self, user_id: str, fn: Callable[[Any], T], *, create: bool, absent: T) -> T:
        """``fn(collection)`` on the user's collection (``absent`` when there is none), with
        Chroma's errors translated.

        Another client may have deleted the collection this handle cached (``brainstack memory
        forget`` in another process, while a worker runs): what this handle knew of it is dropped
        and it is looked up again, once, so the user's next episodes go to the collection as it
        now is instead of failing with "does not exist" for the life of the process.
        """
        for attempt in (1, 2):
            collection = self._collection(user_id, create=create)
            if collection is None:
                return absent
            try:
                return fn(collection)
            except Exception as exc:
                if attempt == 1 and _is_not_found(exc) and type(exc).__module__.startswith("chromadb"):
                    self._drop(collection.name)
                    continue
                raise translate(exc, backend="chromadb") from exc
        raise AssertionError("unreachable")

    def _drop(self, name: str) -> None:
        """Forget what this handle keeps of collection ``name`` (its handle, keyword index)."""
        with self._lock:
            self._collections.pop(name, None)
        self.keywords.drop(name)

    # -- writing -------------------------------------------------------------------------------

    def add(
        self,
        user_id: str,
        text: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        embedding: Any = None,
        episode_id: str | None = None,
    ) -> str:
        """Store one episode for ``user_id``; returns its id.

        ``embedding``: the vector of :func:`episode_document` of ``text`` from this memory's
        embedder, when it was computed ahead (otherwise it is computed here). ``episode_id``: the
        id to store it under (a new random one by default); an episode already stored under it is
        replaced, so writing the same episode twice (a step run again after a crash) keeps one.
        """
        embeddings = None if embedding is None else np.asarray(embedding).reshape(1, -1)
        ids = None if episode_id is None else [episode_id]
        return self.add_many(user_id, [(text, metadata)], embeddings=embeddings, ids=ids)[0]

    def add_many(
        self,
        user_id: str,
        items: Sequence[tuple[str, Mapping[str, Any] | None]],
        *,
        embeddings: Any = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Store several episodes at once (one embedding batch, one write).

        ``embeddings`` (one row per item, from this memory's embedder, of each text's
        :func:`episode_document`) skips the embedding step — for bulk imports that already have
        them, and for an episode embedded ahead. ``ids`` (one per item) replace the episodes
        already stored under them instead of adding new ones (see :meth:`add`).
        """
        if not items:
            return []
        if ids is not None and (len(ids) != len(items) or not all(isinstance(i, str) and i for i in ids)):
            raise ValueError(f"{len(ids)} ids for {len(items)} episodes (each a non-empty string)")
        texts, metadatas = [], []
        now = time.time()
        for text, metadata in items:
            if not isinstance(text, str) or not text.strip():
                raise ValueError("an episode needs non-empty text")
            texts.append(episode_document(text))
            metadatas.append(_clean_metadata(metadata, user_id, now))
        chosen = ids is not None
        ids = list(ids) if ids is not None else [uuid.uuid4().hex for _ in texts]
        vectors = self.embedder.embed(texts) if embeddings is None else embeddings
        if len(vectors) != len(texts):
            raise ValueError(f"{len(vectors)} embeddings for {len(texts)} episodes")

        def write(collection: Any) -> Any:
            store = collection.upsert if chosen else collection.add
            store(ids=ids, documents=texts, metadatas=metadatas, embeddings=vectors)
            return collection

        collection = self._on_collection(user_id, write, create=True, absent=None)
        self.keywords.added(collection.name, ids, texts)
        return ids

    def forget(self, user_id: str) -> int:
        """Delete every episode of ``user_id``; returns how many there were.

        In a local Chroma folder the episodes are then scrubbed from the disk too (see
        :func:`scrub_local_chroma`): deleting a collection leaves its text readable in the SQLite
        file's free pages and its vectors in a folder of their own. A Chroma server keeps what it
        keeps: that is its operator's to compact."""

        def delete(collection: Any) -> int:
            count = int(collection.count())
            self.client.delete_collection(collection.name)
            return count

        count = self._on_collection(user_id, delete, create=False, absent=0)
        name = self.collection_name(user_id)
        self._drop(name)
        self.keywords.drop(name, saved=True)
        folder = _local_folder(self.client)
        if folder is not None:
            try:
                scrub_local_chroma(folder)
            except (OSError, sqlite3.Error) as exc:
                log.warning(
                    "the episodes are deleted, but their traces in %s could not be scrubbed from the "
                    "disk (%s); forgetting again scrubs them once no other process holds the file",
                    folder,
                    exc,
                )
        return count

    def count(self, user_id: str) -> int:
        return self._on_collection(user_id, lambda found: int(found.count()), create=False, absent=0)

    # -- searching -----------------------------------------------------------------------------

    def search(self, user_id: str, query: str, k: int = 5, *, mode: SearchMode = "hybrid") -> list[Episode]:
        """The ``k`` episodes of ``user_id`` most relevant to ``query``, best first."""
        if not 1 <= k <= SEARCH_BREADTH:  # (no search weighs more candidates than that)
            raise ValueError(f"k must be between 1 and {SEARCH_BREADTH}")
        if mode not in ("hybrid", "dense", "keyword"):
            raise ValueError(f"mode must be hybrid, dense or keyword, not {mode!r}")
        if not query.strip():
            return []
        query = mask_pii(query)
        return self._on_collection(
            user_id, lambda collection: self._search(collection, query, k, mode), create=False, absent=[]
        )

    def _search(self, collection: Any, query: str, k: int, mode: SearchMode) -> list[Episode]:
        """:meth:`search` on ``collection`` (Chroma's errors are left to the caller)."""
        pool = max(4 * k, 20)
        # The dense pool is ranked by distance alone; documents and metadata are read once,
        # for the k episodes that survive fusion (reading them for the whole pool cost more).
        dense: dict[str, float] = {}
        if mode != "keyword":
            found = collection.query(  # Chroma caps n_results at the collection's size
                query_embeddings=query_embedding(self.embedder, query)[None, :],
                n_results=pool,
                include=["distances"],
            )
            for doc_id, distance in zip(found["ids"][0], found["distances"][0], strict=True):
                dense[doc_id] = 1.0 - float(distance)
            if not dense:
                return []
        keyword: dict[str, float] = {}
        if mode == "dense":
            order = sorted(dense.items(), key=lambda item: -item[1])[:k]
        else:
            keyword = dict(self.keywords.index(collection, dense).search(query, pool))
            if mode == "keyword":
                order = list(keyword.items())[:k]
            else:
                # Weak keyword matches (a shared common word) only add noise to the fusion:
                # keep the ones scoring at least KEYWORD_FLOOR of the best keyword match.
                best = max(keyword.values(), default=0.0)
                strong = [doc_id for doc_id, score in keyword.items() if score >= KEYWORD_FLOOR * best]
                order = reciprocal_rank_fusion(list(dense), strong)[:k]
        stored = {}
        if order:
            got = collection.get(ids=[doc_id for doc_id, _ in order], include=["documents", "metadatas"])
            stored = {
                i: (doc, dict(m or {}))
                for i, doc, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
            }
        episodes = []
        for doc_id, score in order:
            if doc_id not in stored:  # deleted by another writer since the search began
                continue
            doc, meta = stored[doc_id]
            episodes.append(
                _episode(doc_id, score, doc, meta, dense=dense.get(doc_id), keyword=keyword.get(doc_id))
            )
        return episodes

    def __repr__(self) -> str:
        return f"EpisodicMemory({type(self.client).__name__}, embedder={self.embedder.name})"


def _episode(
    doc_id: str,
    score: float,
    text: str,
    meta: dict[str, Any],
    *,
    dense: float | None = None,
    keyword: float | None = None,
) -> Episode:
    metadata = {k: _decode(v) for k, v in meta.items()}
    return Episode(doc_id, text, float(score), metadata, dense, keyword)


def _clean_metadata(metadata: Mapping[str, Any] | None, user_id: str, now: float) -> dict[str, Any]:
    """Chroma-storable metadata: masked, scalars kept, the rest JSON; our keys always win."""
    clean: dict[str, Any] = {}
    for key, value in (metadata or {}).items():
        if key in RESERVED or value is None:
            continue
        value = mask_value(value)
        if isinstance(value, str | int | float | bool):
            clean[str(key)] = value
        else:
            clean[str(key)] = "json:" + json.dumps(value, ensure_ascii=False, default=str)
    clean["user_id"] = user_id
    clean["created_at"] = now
    return clean


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("json:"):
        try:
            return json.loads(value[5:])
        except ValueError:
            return value
    return value


def _is_not_found(exc: Exception) -> bool:
    name = type(exc).__name__
    return name in ("NotFoundError", "InvalidCollectionException") or "does not exist" in str(exc)
