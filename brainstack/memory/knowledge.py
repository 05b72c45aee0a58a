"""Semantic memory: a knowledge base of documents, a LlamaIndex ``VectorStoreIndex`` stored in Chroma.

``add(path)`` ingests a file or a folder (Markdown and text). Each file is one LlamaIndex document
whose id is its absolute path; its content hash is kept with its chunks, so re-adding an unchanged
file writes nothing and a changed file replaces its chunks. ``search`` returns passages with
their source, which recall and the ``knowledge_search`` tool hand to the agents so they can cite
them. A search ranks the passages by meaning and by keyword at once (see
:meth:`KnowledgeBase.search`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from brainstack.errors import translate
from brainstack.memory._hnsw import HNSW, SEARCH_BREADTH, widen_search
from brainstack.memory.keyword import CollectionKeywords

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from brainstack.memory.embeddings import Embedder

__all__ = ["SUFFIXES", "IngestReport", "KnowledgeBase", "Passage", "SearchMode"]

SearchMode = Literal["hybrid", "dense", "keyword"]

SUFFIXES = (".md", ".markdown", ".txt", ".rst")
MAX_FILE_BYTES = 5 * 1024 * 1024
INSERT_BATCH = 64
"""Chunks embedded and stored at a time by :meth:`KnowledgeBase.add` (LlamaIndex's embedding
batch), each batch reported to ``chunk_progress``."""
SEARCH_POOL = 4
"""Candidates a search asks for per passage wanted: room for copies of one text (see
:meth:`KnowledgeBase.search`)."""
KEYWORD_WEIGHT = 0.5
"""A hybrid search ranks a passage by ``(1 - KEYWORD_WEIGHT) * cosine + KEYWORD_WEIGHT * matched``,
where ``matched`` is its BM25 score over the query's :meth:`~BM25Index.idf_mass` (about 1 for a
passage holding every term of the query that the knowledge base holds). Chunks that differ only in
a name or a number (weekly reports of 80 stores) score alike by meaning: the dense ranking put the
report a question names first for 1 of 24 questions, BM25 alone for 18, this fusion for 16 (and in
its top 4 for 24 of 24, against 3), while on the handbook set it put the answer first for 19 of 20
questions, against 17 by meaning alone. Weights from 0.4 to 0.7 scored the same on both sets;
reciprocal rank fusion, as episodic memory fuses, put the named report first for 3 of 24
(benchmarks/bench_kb_search.py, RESULTS.md)."""


@dataclass(frozen=True)
class Passage:
    text: str
    source: str
    """The file the passage comes from."""
    score: float
    """Cosine similarity to the query."""
    chunk: int = 0
    keyword: float | None = None
    """The passage's BM25 score for the query, when it holds one of the query's words (see
    :data:`KEYWORD_WEIGHT`)."""
    coverage: float | None = None
    """How much of the query the passage holds by keyword, with :attr:`keyword`: that score over
    the summed IDF of every term of the query, those no chunk holds included
    (:meth:`~brainstack.memory.keyword.BM25Index.idf_mass` with ``unheld``); about 1 for a
    passage holding each term once. Recall keeps a passage that names what a question names
    though MiniLM scores it low (see :func:`~brainstack.memory.gateway.relevant_passages`)."""


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(path, why) for files that were not ingested."""
    chunks: int = 0
    """Chunks written by this call."""

    def __str__(self) -> str:
        parts = [
            f"{len(self.added)} added",
            f"{len(self.updated)} updated",
            f"{len(self.unchanged)} unchanged",
            f"{chunk_count(self.chunks)} written",
        ]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        return ", ".join(parts)


class KnowledgeBase:
    """A folder of documents, chunked and embedded into one Chroma collection through LlamaIndex.

    Chunks are 200 tokens by default: all-MiniLM-L6-v2 reads at most 256 word pieces, so longer
    chunks would be embedded by their beginning only.
    """

    def __init__(
        self,
        client: Any,
        *,
        embedder: Embedder | None = None,
        collection: str = "brainstack-knowledge",
        chunk_size: int = 200,
        chunk_overlap: int = 32,
        index_dir: str | Path | None = None,
    ) -> None:
        """``index_dir``: where the chunks' keyword index is saved between processes (a cache,
        checked against the collection; ``None`` keeps it in memory, built on a process's first
        search)."""
        from brainstack.memory.embeddings import chroma_embedding_function, default_embedder

        self.client = client
        self.embedder = embedder or default_embedder()
        self.chunk_size, self.chunk_overlap = chunk_size, chunk_overlap
        try:
            self.collection = client.get_or_create_collection(
                collection,
                embedding_function=chroma_embedding_function(self.embedder),
                metadata={"brainstack": "knowledge"},
                configuration={"hnsw": dict(HNSW)},
            )
        except Exception as exc:
            raise translate(exc, backend="chromadb") from exc
        widen_search(
            self.collection, SEARCH_BREADTH, "the knowledge base"
        )  # (one made by an earlier version)
        self.keywords = CollectionKeywords(index_dir)
        self._index: Any = None
        self._lock = threading.Lock()

    @property
    def index(self) -> Any:
        """The LlamaIndex ``VectorStoreIndex`` over the Chroma collection."""
        if self._index is None:
            from llama_index.core import StorageContext, VectorStoreIndex
            from llama_index.vector_stores.chroma import ChromaVectorStore

            from brainstack.memory.embeddings import llamaindex_embedding

            store = ChromaVectorStore(chroma_collection=self.collection)
            self._index = VectorStoreIndex.from_vector_store(
                store,
                embed_model=llamaindex_embedding(self.embedder),
                storage_context=StorageContext.from_defaults(vector_store=store),
            )
        return self._index

    # -- ingestion -----------------------------------------------------------------------------

    def add(
        self,
        path: str | Path,
        *,
        progress: Callable[[str, str], None] | None = None,
        chunk_progress: Callable[[str, int, int], None] | None = None,
    ) -> IngestReport:
        """Ingest a file or every Markdown/text file under a folder. ``progress(path, status)``
        once per file; ``chunk_progress(path, stored, chunks)`` after each :data:`INSERT_BATCH` of
        a file's chunks is embedded and stored (a big file takes minutes on a small machine)."""
        from llama_index.core import Document
        from llama_index.core.node_parser import SentenceSplitter

        root = Path(path).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist")
        if not (root.is_file() or root.is_dir()):  # a FIFO would block the read for good
            raise ValueError(f"{root} is not a regular file or a folder")
        report = IngestReport()
        from llama_index.core.node_parser.text.utils import split_by_regex

        # A regex sentence splitter: LlamaIndex's default goes through NLTK data files, which
        # some installs cannot open (hard-linked, read-only), and needs nothing NLTK adds here.
        splitter = SentenceSplitter(
            chunk_size=self.chunk_size,
            chunk_overlap=self.chunk_overlap,
            chunking_tokenizer_fn=split_by_regex(r"[^,.;!?\n]+[,.;!?\n]?"),
        )
        for file in _files(root):
            source = str(file.resolve() if file.exists() else file.absolute())  # (a link to nothing: itself)
            try:
                if not _encodable(source):  # Chroma stores text: its chunks could never be found
                    raise ValueError("its path is not valid UTF-8; rename it")
                if not file.is_file():  # reading a FIFO would block for good
                    raise ValueError("not a regular file (a FIFO, a socket or a link to nothing)")
                data = file.read_bytes()
                if len(data) > MAX_FILE_BYTES:
                    raise ValueError(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
                text = data.decode("utf-8-sig")  # a byte-order mark is not text
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                why = str(exc)
                if isinstance(exc, UnicodeDecodeError):
                    why = f"not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
                report.skipped.append((source, why))
                if progress:
                    progress(source, "skipped")
                continue
            digest = hashlib.sha256(data).hexdigest()
            stored = self._stored_hash(source)
            if not text.strip():
                # Nothing to index: LlamaIndex would store one blank chunk that every search
                # then returns. A file emptied since it was added loses its old chunks.
                why = "empty file, nothing to index"
                if stored is not None:
                    removed = self.remove(file)
                    why += f" (its earlier {chunk_count(removed)} removed)"
                report.skipped.append((source, why))
                if progress:
                    progress(source, "skipped")
                continue
            if stored == digest:
                report.unchanged.append(source)
                if progress:
                    progress(source, "unchanged")
                continue
            with self._lock:
                try:
                    document = Document(
                        text=text,
                        doc_id=source,
                        metadata={"source": source, "sha256": digest, "name": file.name},
                        excluded_embed_metadata_keys=["source", "sha256", "chunks"],
                        excluded_llm_metadata_keys=["sha256", "chunks"],
                    )
                    nodes = [
                        n for n in splitter.get_nodes_from_documents([document]) if n.get_content().strip()
                    ]
                    # Ids from the file and its content: the same chunks written twice (two
                    # `kb add`s at once, or one run again after a crash) are one set (Chroma keeps
                    # an id's first write), and a changed file's new chunks are stored before its
                    # old ones go, so it is never missing from searches meanwhile.
                    prefix = f"{hashlib.sha256(source.encode()).hexdigest()[:16]}-{digest[:16]}"
                    for number, node in enumerate(nodes):
                        node.id_ = f"{prefix}-{number}"
                        node.metadata["chunk"] = number
                        node.metadata["chunks"] = len(nodes)  # (see _stored_hash)
                    for start in range(0, len(nodes), INSERT_BATCH):
                        batch = nodes[start : start + INSERT_BATCH]
                        self.index.insert_nodes(batch)
                        self.keywords.added(
                            self.collection.name,
                            [node.id_ for node in batch],
                            [node.get_content() for node in batch],
                            same_text=True,  # (an id's text never changes: see above)
                        )
                        if chunk_progress:
                            chunk_progress(source, min(start + INSERT_BATCH, len(nodes)), len(nodes))
                    if stored is not None:  # the file's other chunks: earlier versions, stray copies
                        kept = {node.id_ for node in nodes}
                        found = self.collection.get(where={"source": source}, include=[])["ids"]
                        stale = [chunk for chunk in found if chunk not in kept]
                        if stale:
                            self.collection.delete(ids=stale)
                            self.keywords.removed(self.collection.name, stale)
                except Exception as exc:
                    raise translate(exc, backend="chromadb") from exc
            report.chunks += len(nodes)
            (report.updated if stored is not None else report.added).append(source)
            if progress:
                progress(source, "updated" if stored is not None else "added")
        if (report.added or report.updated) and self.keywords.index_dir is not None:
            self._save_keywords()
        return report

    def _save_keywords(self) -> None:
        """Bring the saved keyword index up to date with what was just stored, so that the next
        process's first search (a run's recall, say) loads it instead of reading every chunk
        (3.2 s at 15,684 chunks, against 40 ms): a saved index is topped up with the new chunks,
        and only a collection without one is read whole, here, after its embedding took far
        longer. A cache: when it fails, the chunks are stored all the same and the first search
        builds it."""
        try:
            # (saved too when this process's index in memory took the chunks as they were stored)
            self.keywords.index(self.collection, save=True)
        except Exception as exc:
            log.warning(
                "the keyword index was not saved (%s: %s); the next search builds it", type(exc).__name__, exc
            )

    def _stored_hash(self, source: str) -> str | None:
        """The content hash stored with ``source``'s chunks (None: it has none), or ``"incomplete"``
        when they are not the number its ingest wrote: an add that failed or was killed between
        two of LlamaIndex's insert batches, or two processes adding it at once. A file with the
        hash of its new content but only part of its chunks would otherwise count as unchanged,
        for good; an incomplete one is written again."""
        try:
            found = self.collection.get(where={"source": source}, limit=1, include=["metadatas"])
            metadatas = found.get("metadatas") or []
            if not (metadatas and metadatas[0]):
                return None
            total = metadatas[0].get("chunks")  # (chunks written before it was recorded: not checked)
            if isinstance(total, int) and total != len(
                self.collection.get(where={"source": source}, include=[])["ids"]
            ):
                return "incomplete"
        except Exception as exc:
            raise translate(exc, backend="chromadb") from exc
        return str(metadatas[0].get("sha256"))

    def remove(self, path: str | Path) -> int:
        """Delete the chunks of a file, or of every file under a folder; how many there were.
        The files need not exist any more."""
        return sum(self.remove_all(path).values())

    def remove_all(self, path: str | Path) -> dict[str, int]:
        """Delete the chunks of a file, or of every file under a folder (the files of
        :meth:`sources` ``under`` it); each source removed, with its number of chunks."""
        with self._lock:
            chunks = self._chunks(under=path)
            try:
                if chunks:
                    deleted = [i for ids in chunks.values() for i in ids]
                    self.collection.delete(ids=deleted)
                    self.keywords.removed(self.collection.name, deleted)
            except Exception as exc:
                raise translate(exc, backend="chromadb") from exc
        return {name: len(ids) for name, ids in sorted(chunks.items())}

    def _chunks(self, under: str | Path | None = None) -> dict[str, list[str]]:
        """Each file's chunk ids; with ``under``, only that file's, or those of the files under
        that folder (paths as :meth:`add` stores them: resolved; they need not exist any more)."""
        try:
            if under is not None:
                source = str(Path(under).expanduser().resolve())
                ids = self.collection.get(where={"source": source}, include=[])["ids"]
                if ids:  # a file (one lookup, not a scan)
                    return {source: list(ids)}
            found = self.collection.get(include=["metadatas"])
        except Exception as exc:
            raise translate(exc, backend="chromadb") from exc
        chunks: dict[str, list[str]] = {}
        for chunk_id, metadata in zip(found["ids"], found["metadatas"] or [], strict=False):
            if metadata:
                chunks.setdefault(str(metadata.get("source")), []).append(chunk_id)
        if under is None:
            return chunks
        folder = source.rstrip(os.sep) + os.sep
        return {name: ids for name, ids in chunks.items() if name.startswith(folder)}

    # -- search --------------------------------------------------------------------------------

    def search(self, query: str, k: int = 4, *, mode: SearchMode = "hybrid") -> list[Passage]:
        """The ``k`` passages that best answer ``query``, with their source files; each text once.

        ``mode="hybrid"`` (the default) ranks by meaning and by keyword at once (see
        :data:`KEYWORD_WEIGHT`): the candidates closest by meaning (through LlamaIndex's
        retriever) and those that share the most words with the query (a BM25 index of the
        chunks, kept in step with the collection) are scored on both. ``"dense"`` ranks by meaning
        alone, ``"keyword"`` by BM25 alone. A passage's ``score`` is its cosine similarity to the
        query in every mode.

        The same text stored more than once (a file with repeated sections, or the same text in
        two files) is one passage, from its best-ranked copy: a search weighs ``SEARCH_POOL``
        times ``k`` candidates of each kind and keeps the first ``k`` distinct texts (weighing
        ``SEARCH_POOL`` times more, up to :data:`SEARCH_BREADTH`, while copies leave fewer).
        Copies are told apart here rather than stored once: each file owns its chunks (``kb
        remove`` and a changed file's update delete them, :meth:`_stored_hash` counts them), so
        removing one of two files that share a text must not take it from the other.
        """
        if not 1 <= k <= SEARCH_BREADTH:  # (no search weighs more candidates than that)
            raise ValueError(f"k must be between 1 and {SEARCH_BREADTH}")
        if mode not in ("hybrid", "dense", "keyword"):
            raise ValueError(f"mode must be hybrid, dense or keyword, not {mode!r}")
        if not query.strip() or (stored := self.count()) == 0:
            return []
        from brainstack.memory.embeddings import query_embedding

        vector = np.asarray(query_embedding(self.embedder, query), dtype=np.float32)
        pool = SEARCH_POOL * k
        while True:
            try:
                candidates, exhausted = self._candidates(query, vector, pool, mode)
            except Exception as exc:
                raise translate(exc, backend="chromadb") from exc
            passages = _distinct(candidates, k)
            # Copies of one text filled the candidates (a disclaimer in every file): ask for more,
            # as the other texts are there; 20 copies gave `kb search -k 3` one passage.
            if len(passages) == k or exhausted or pool >= min(stored, SEARCH_BREADTH):
                return passages
            pool = min(pool * SEARCH_POOL, stored, SEARCH_BREADTH)

    def _candidates(
        self, query: str, vector: np.ndarray, pool: int, mode: SearchMode
    ) -> tuple[list[Passage], bool]:
        """Up to ``pool`` candidates of each ranking ``mode`` uses, best first, and whether the
        rankings ran out of chunks before ``pool``."""
        from llama_index.core.schema import QueryBundle

        found: dict[str, Passage] = {}
        exhausted = True
        if mode != "keyword":
            retriever = self.index.as_retriever(similarity_top_k=pool)  # (Chroma caps it at the size)
            nodes = retriever.retrieve(QueryBundle(query, embedding=vector.tolist()))
            exhausted = len(nodes) < pool
            for hit in nodes:
                # LlamaIndex's Chroma store reports exp(-distance); a cosine distance d means
                # similarity 1 - d, so turn it back into the cosine the rest of brainstack uses.
                score = 1.0 + math.log(hit.score) if hit.score else 0.0
                found[hit.node.node_id] = _passage(hit.node.get_content(), hit.node.metadata, score)
        if mode == "dense":
            return list(found.values()), exhausted
        for attempt in range(2):
            index = self.keywords.index(self.collection, found)
            # (candidates by meaning outside the best keyword matches are scored by keyword all
            # the same: 0 would rank them by where the keyword pool was cut among chunks sharing
            # most words)
            matches, by_meaning = index.search_scoring(query, pool, list(found))
            missing = [chunk_id for chunk_id, _ in matches if chunk_id not in found]
            got: dict[str, Any] = {"ids": []}
            if missing:  # chunks only the keywords found: their cosine from their stored vectors
                got = self._stored(missing)
            if len(got["ids"]) == len(missing) or attempt:
                break
            # The index holds chunks deleted since it was checked (another process's `kb remove`
            # or update, which it cannot see while the count is unchanged or for RECHECK_S):
            # it is stale, and may lack their replacements. Start again from the saved index,
            # which that process brought up to date (or from the collection), and search again.
            self.keywords.drop(self.collection.name)
        exhausted = exhausted and len(matches) < pool
        if got["ids"]:
            vectors = np.asarray(got["embeddings"], dtype=np.float32).reshape(len(got["ids"]), -1)
            norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(vector)
            scores = vectors @ vector / np.maximum(norms, 1e-12)
            for chunk_id, text, metadata, score in zip(
                got["ids"], got["documents"], got["metadatas"], scores.tolist(), strict=True
            ):
                found[chunk_id] = _passage(text or "", metadata or {}, score)
        keyword = {**by_meaning, **dict(matches)}
        whole = index.idf_mass(query, unheld=True) or 1.0
        for chunk_id in list(found):
            if chunk_id in keyword:
                found[chunk_id] = dataclasses.replace(
                    found[chunk_id], keyword=keyword[chunk_id], coverage=keyword[chunk_id] / whole
                )
        if mode == "keyword":  # (a chunk deleted since the index saw it is not found)
            return [found[chunk_id] for chunk_id, _ in matches if chunk_id in found], exhausted
        mass = index.idf_mass(query) or 1.0

        def fused(passage: Passage) -> float:
            matched = (passage.keyword or 0.0) / mass
            return (1 - KEYWORD_WEIGHT) * passage.score + KEYWORD_WEIGHT * matched

        return sorted(found.values(), key=fused, reverse=True), exhausted

    def _stored(self, ids: list[str]) -> dict[str, Any]:
        """Chunks ``ids`` as Chroma's ``get`` gives them, with their documents, metadata and
        vectors (fewer when some were deleted).

        In local mode each process keeps its own vector index, which lacks the chunks another
        process stored until this one writes to the collection (README), while the keyword
        index, topped up from the collection's documents, has them: reading their vectors then
        raises ("Error finding id"). They are embedded again from their stored text and metadata,
        as LlamaIndex embedded them (the same vector, with the same embedder)."""
        from brainstack.errors import is_transport_error

        try:
            return dict(self.collection.get(ids=ids, include=["documents", "metadatas", "embeddings"]))
        except Exception as exc:
            if is_transport_error(exc):  # (a server that is down or hangs: asking again waits again)
                raise
            got = dict(self.collection.get(ids=ids, include=["documents", "metadatas"]))
        from llama_index.core.schema import MetadataMode
        from llama_index.core.vector_stores.utils import metadata_dict_to_node

        from brainstack.memory.embeddings import llamaindex_embedding

        texts = [
            metadata_dict_to_node(dict(metadata or {}), text=text or "").get_content(
                metadata_mode=MetadataMode.EMBED
            )
            for text, metadata in zip(got["documents"], got["metadatas"], strict=True)
        ]
        embed = llamaindex_embedding(self.embedder)
        got["embeddings"] = embed.get_text_embedding_batch(texts) if texts else []
        return got

    def count(self) -> int:
        """Chunks stored."""
        try:
            return int(self.collection.count())
        except Exception as exc:
            raise translate(exc, backend="chromadb") from exc

    def sources(self, under: str | Path | None = None) -> list[str]:
        """The files the knowledge base holds; with ``under``, only that file, or the files under
        that folder (paths as :meth:`add` stores them: resolved; they need not exist any more)."""
        return sorted(self._chunks(under))


def _encodable(text: str) -> bool:
    """Whether ``text`` is valid UTF-8 text (a file name that is not comes with lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def chunk_count(count: int) -> str:
    """``count`` chunks, said as a reader would: "1 chunk", "76 chunks"."""
    return f"{count} chunk{'' if count == 1 else 's'}"


def _files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for file in sorted(root.rglob("*")):
        if (
            file.suffix.lower() in SUFFIXES
            and not file.is_dir()  # a FIFO or a dangling link is named and skipped by add
            and not any(part.startswith(".") for part in file.relative_to(root).parts)
        ):
            yield file


def _passage(text: str, metadata: Any, score: float) -> Passage:
    return Passage(
        text=text,
        source=str(metadata.get("source", "")),
        score=score,
        chunk=int(metadata.get("chunk", 0)),
    )


def _distinct(candidates: list[Passage], k: int) -> list[Passage]:
    """The first ``k`` distinct texts of ranked ``candidates``, each from its best-ranked copy."""
    passages: list[Passage] = []
    seen: set[str] = set()
    for passage in candidates:
        key = " ".join(passage.text.split())
        # A blank chunk (stored by versions that indexed empty files) is no passage, nor is a copy.
        if not key or key in seen:
            continue
        seen.add(key)
        passages.append(passage)
        if len(passages) == k:
            break
    return passages
