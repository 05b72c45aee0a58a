"""One conformance suite for the knowledge base on a local Chroma folder and on a real Chroma server."""

from __future__ import annotations

import ipaddress
import socket
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from brainstack.memory.episodic import open_chroma
from brainstack.memory.gateway import PASSAGE_MIN_SCORE
from brainstack.memory.knowledge import SEARCH_BREADTH, IngestReport, KnowledgeBase, Passage

PRICING = (
    "# Pricing\n\nThe Pro plan costs 49 euros per month. Enterprise pricing is negotiated per contract.\n"
)
INCIDENT = (
    "Incident INC-4412: the billing API timed out because the database connection pool was exhausted.\n"
)
HIRING = "Hiring plan\n===========\n\nWe will hire two backend engineers and one designer in Q3.\n"


@pytest.fixture(autouse=True)
def _only_loopback(monkeypatch):
    """Nothing here may leave the machine: no model download, no OpenAI, no telemetry."""
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
                raise AssertionError(f"network access to {address!r} during a knowledge-base test")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture(params=["local", "server"])
def kb(request, tmp_path, embedder):
    if request.param == "local":
        client = open_chroma(path=tmp_path / "chroma")
    else:
        client = open_chroma(url=request.getfixturevalue("chroma_url"))
    name = f"kb-{uuid.uuid4().hex[:12]}"  # the server outlives each test
    yield KnowledgeBase(client, embedder=embedder, collection=name)
    if request.param == "server":
        client.delete_collection(name)


@pytest.fixture
def docs(tmp_path) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "pricing.md").write_text(PRICING, encoding="utf-8")
    (root / "sub" / "incident.txt").write_text(INCIDENT, encoding="utf-8")
    (root / "hiring.markdown").write_text(HIRING, encoding="utf-8")
    (root / "script.py").write_text("print('The Pro plan costs 49 euros')\n", encoding="utf-8")
    (root / "data.json").write_text('{"pro": 49}\n', encoding="utf-8")
    (root / ".hidden" / "secret.md").write_text("The secret launch codename is BLUEBIRD.\n", encoding="utf-8")
    (root / ".notes.md").write_text("A hidden file about BLUEBIRD.\n", encoding="utf-8")
    return root


def _expected(docs: Path) -> list[str]:
    return sorted(
        str(p.resolve())
        for p in (docs / "pricing.md", docs / "sub" / "incident.txt", docs / "hiring.markdown")
    )


def _chunks(kb: KnowledgeBase, source: Path) -> list[dict]:
    found = kb.collection.get(where={"source": str(source.resolve())}, include=["metadatas", "documents"])
    return sorted(
        ({**m, "text": d} for m, d in zip(found["metadatas"], found["documents"], strict=True)),
        key=lambda m: m["chunk"],
    )


def test_an_empty_knowledge_base(kb):
    assert kb.count() == 0
    assert kb.sources() == []
    assert kb.search("anything") == []


def test_ingest_a_folder(kb, docs):
    seen = []
    report = kb.add(docs, progress=lambda path, status: seen.append((path, status)))
    assert isinstance(report, IngestReport)
    assert sorted(report.added) == _expected(docs)
    assert report.updated == report.unchanged == report.skipped == []
    assert report.chunks == kb.count() == 3
    assert kb.sources() == _expected(docs)  # no .py, .json, hidden folder or hidden file
    assert sorted(seen) == sorted((path, "added") for path in _expected(docs))
    assert str(report) == "3 added, 0 updated, 0 unchanged, 3 chunks written"


def test_ingest_a_single_file(kb, docs):
    report = kb.add(docs / "pricing.md")
    assert report.added == [str((docs / "pricing.md").resolve())]
    assert kb.sources() == report.added


def test_search_returns_the_passage_with_its_source_and_score(kb, docs):
    kb.add(docs)
    passages = kb.search("How much does the Pro plan cost per month?", k=3)
    assert len(passages) == 3 and all(isinstance(p, Passage) for p in passages)
    best = passages[0]
    assert best.source == str((docs / "pricing.md").resolve())
    assert "49 euros" in best.text and best.chunk == 0
    scores = [p.score for p in passages]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 < s <= 1.0 for s in scores)
    assert best.score > passages[1].score + 0.1

    incident = kb.search("Why did the billing API time out?", k=1)
    assert [p.source for p in incident] == [str((docs / "sub" / "incident.txt").resolve())]
    assert len(kb.search("pricing", k=1)) == 1
    assert kb.search("   ") == []
    for k in (0, 1001, 10**20):  # (the last was an OverflowError from the store)
        with pytest.raises(ValueError, match="k must be between 1 and 1000"):
            kb.search("pricing", k=k)


def test_the_score_is_the_cosine_similarity(kb, docs, embedder):
    kb.add(docs)
    query = "How much does the Pro plan cost per month?"
    vector = np.asarray(embedder.embed_one(query), dtype=float)
    stored = kb.collection.get(include=["embeddings", "metadatas"])
    cosine = {}
    for embedding, metadata in zip(stored["embeddings"], stored["metadatas"], strict=True):
        embedding = np.asarray(embedding, dtype=float)
        cosine[metadata["source"]] = float(
            embedding @ vector / np.linalg.norm(embedding) / np.linalg.norm(vector)
        )
    passages = kb.search(query, k=3)
    for passage in passages:
        assert passage.score == pytest.approx(cosine[passage.source], abs=1e-3)
    assert passages[-1].score < PASSAGE_MIN_SCORE  # an unrelated passage


def test_re_adding_unchanged_files_writes_nothing(kb, docs):
    kb.add(docs)
    before = kb.collection.get(include=[])["ids"]
    report = kb.add(docs)
    assert sorted(report.unchanged) == _expected(docs)
    assert report.added == report.updated == [] and report.chunks == 0
    assert sorted(kb.collection.get(include=[])["ids"]) == sorted(before)
    assert kb.count() == 3


def test_a_file_left_with_part_of_its_chunks_is_written_again(kb, docs, tmp_path):
    """An add killed between two insert batches left chunks carrying the new content's hash: the
    next add called the file unchanged, and the rest of it was gone for good."""
    big = tmp_path / "big.md"
    big.write_text("\n\n".join(f"Section {n}. " + "The refund window is 30 days. " * 40 for n in range(12)))
    first = kb.add(big)
    total = first.chunks
    assert total > 3
    ids = kb.collection.get(where={"source": str(big.resolve())}, include=[])["ids"]
    kb.collection.delete(ids=ids[: total // 2])  # what the killed add had not written yet
    report = kb.add(big)
    assert report.updated == [str(big.resolve())] and report.chunks == total
    assert len(kb.collection.get(where={"source": str(big.resolve())}, include=[])["ids"]) == total
    assert kb.add(big).unchanged == [str(big.resolve())]


def test_the_same_file_added_twice_at_once_is_stored_once(kb, docs, monkeypatch):
    """QA: two `kb add`s of one folder at once stored every chunk twice (both saw the files as
    new). Chunk ids come from the file and its content now, so the second write is the same set."""
    kb.add(docs)
    before = sorted(kb.collection.get(include=[])["ids"])
    monkeypatch.setattr(kb, "_stored_hash", lambda source: None)  # the other process's view: new
    assert sorted(kb.add(docs).added) == _expected(docs)
    assert sorted(kb.collection.get(include=[])["ids"]) == before and kb.count() == 3


def test_a_changed_file_keeps_its_old_chunks_until_the_new_ones_are_stored(kb, docs, monkeypatch):
    """QA: its old chunks were deleted first, so the file was missing from searches while the new
    ones were embedded (45 s for 1 MB), and for good if the process was killed meanwhile."""
    kb.add(docs)
    pricing = str((docs / "pricing.md").resolve())
    (docs / "pricing.md").write_text("# Pricing\n\nThe Pro plan costs 59 euros.\n", encoding="utf-8")
    insert = kb.index.insert_nodes
    seen = []

    def watching(nodes, **kwargs):
        seen.append([c["text"] for c in _chunks(kb, docs / "pricing.md")])
        return insert(nodes, **kwargs)

    monkeypatch.setattr(kb.index, "insert_nodes", watching)
    assert kb.add(docs).updated == [pricing]
    assert (
        seen and seen[0] and all("59 euros" not in text for text in seen[0])
    )  # the old version, still there
    assert [c["text"] for c in _chunks(kb, docs / "pricing.md")] == [
        "# Pricing\n\nThe Pro plan costs 59 euros."
    ]


def test_a_changed_file_replaces_its_chunks(kb, docs):
    kb.add(docs)
    (docs / "pricing.md").write_text(
        "# Pricing\n\nThe Pro plan now costs 59 euros per month after the 2025 price review.\n",
        encoding="utf-8",
    )
    report = kb.add(docs)
    pricing = str((docs / "pricing.md").resolve())
    assert report.updated == [pricing]
    assert sorted(report.unchanged) == sorted(set(_expected(docs)) - {pricing})
    assert report.added == [] and report.chunks == 1
    assert kb.count() == 3  # replaced, not added to
    chunks = _chunks(kb, docs / "pricing.md")
    assert len(chunks) == 1 and "59 euros" in chunks[0]["text"]
    found = kb.search("How much does the Pro plan cost?", k=5)
    assert "59 euros" in found[0].text
    assert not any("49 euros" in p.text for p in found)
    assert kb.add(docs).unchanged  # the new content is now the stored one
    assert kb.add(docs).chunks == 0


def test_a_non_utf8_file_is_skipped_with_a_reason(kb, docs):
    latin = docs / "latin.txt"
    latin.write_bytes("Caf\u00e9 pricing notes".encode("latin-1"))
    seen = []
    report = kb.add(docs, progress=lambda path, status: seen.append((path, status)))
    assert report.skipped == [(str(latin.resolve()), report.skipped[0][1])]
    assert "utf-8" in report.skipped[0][1].lower()
    assert (str(latin.resolve()), "skipped") in seen
    assert str(latin.resolve()) not in kb.sources()
    assert sorted(report.added) == _expected(docs)
    assert str(report).endswith("1 skipped")


def test_a_file_whose_name_is_not_utf8_is_skipped_and_the_rest_added(kb, docs):
    """QA: one such name aborted the whole folder with Chroma's "Invalid where clause"."""
    import os

    odd = os.path.join(os.fsencode(docs), b"caf\xe9.md")
    with open(odd, "wb") as handle:
        handle.write(b"Latin-1 file name, UTF-8 text.")
    report = kb.add(docs)
    [(source, why)] = report.skipped
    assert os.fsencode(source) == os.path.realpath(odd) and why == "its path is not valid UTF-8; rename it"
    assert sorted(report.added) == _expected(docs) and kb.count() == 3


def test_a_fifo_or_a_dangling_link_in_a_folder_is_skipped_and_named(kb, docs):
    """QA: they were left out without a word (and a FIFO given directly is refused)."""
    import os

    os.mkfifo(docs / "pipe.md")
    (docs / "gone.md").symlink_to(docs / "no-such-file.md")
    report = kb.add(docs)
    assert sorted(path.rsplit("/", 1)[1] for path, _ in report.skipped) == ["gone.md", "pipe.md"]
    assert all(why.startswith("not a regular file") for _, why in report.skipped)
    assert sorted(report.added) == _expected(docs)


def test_a_byte_order_mark_is_not_part_of_the_first_passage(kb, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_bytes("\ufeffRefunds are paid within 30 days.".encode())  # as Windows editors save it
    kb.add(notes)
    [passage] = kb.search("refund window", k=1)
    assert passage.text == "Refunds are paid within 30 days."


def test_a_path_that_is_neither_file_nor_folder_is_refused(kb, tmp_path):
    import os

    fifo = tmp_path / "pipe.md"
    os.mkfifo(fifo)  # reading it would block for good
    with pytest.raises(ValueError, match="is not a regular file or a folder"):
        kb.add(fifo)


@pytest.mark.parametrize("content", ["", "  \n\t\n   \n"])
def test_an_empty_file_is_skipped_and_stores_no_blank_chunk(kb, docs, content):
    empty = docs / "empty.md"
    empty.write_text(content, encoding="utf-8")
    seen = []
    report = kb.add(docs, progress=lambda path, status: seen.append((path, status)))
    assert report.skipped == [(str(empty.resolve()), "empty file, nothing to index")]
    assert (str(empty.resolve()), "skipped") in seen
    assert sorted(report.added) == _expected(docs) and report.chunks == kb.count() == 3
    assert str(empty.resolve()) not in kb.sources()
    assert all(p.text.strip() for p in kb.search("anything at all", k=10))
    assert kb.add(empty).skipped  # and again: an empty file is never "unchanged"


def test_a_file_emptied_since_it_was_added_loses_its_chunks(kb, docs):
    kb.add(docs)
    (docs / "pricing.md").write_text("\n", encoding="utf-8")
    report = kb.add(docs / "pricing.md")
    assert report.skipped == [
        (
            str((docs / "pricing.md").resolve()),
            "empty file, nothing to index (its earlier 1 chunk removed)",
        )
    ]
    assert kb.count() == 2 and str((docs / "pricing.md").resolve()) not in kb.sources()


def test_a_blank_chunk_stored_earlier_is_not_a_passage(kb, docs):
    """Versions before the empty-file check stored a blank chunk for an empty file."""
    from llama_index.core.schema import TextNode

    kb.add(docs)
    kb.index.insert_nodes([TextNode(text=" \n", metadata={"source": "/old/empty.md", "chunk": 0})])
    assert kb.count() == 4
    assert all(p.text.strip() for p in kb.search("anything at all", k=10))


def test_a_missing_path_raises(kb, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        kb.add(tmp_path / "no-such-folder")
    assert kb.count() == 0


def test_remove_deletes_a_files_chunks(kb, docs):
    kb.add(docs)
    assert kb.remove(docs / "pricing.md") == 1
    assert kb.count() == 2
    assert str((docs / "pricing.md").resolve()) not in kb.sources()
    assert all("49 euros" not in p.text for p in kb.search("How much does the Pro plan cost?", k=5))
    assert kb.remove(docs / "pricing.md") == 0
    assert kb.remove(docs / "never-added.md") == 0
    assert kb.add(docs).added == [str((docs / "pricing.md").resolve())]  # and it can come back


def test_remove_all_deletes_a_folder_but_not_a_sibling_that_shares_its_prefix(kb, docs, tmp_path):
    sibling = tmp_path / "docs-archive"
    sibling.mkdir()
    (sibling / "old.md").write_text(HIRING, encoding="utf-8")
    kb.add(docs)
    kb.add(sibling)
    removed = kb.remove_all(docs / "sub")
    assert removed == {str((docs / "sub" / "incident.txt").resolve()): 1}
    removed = kb.remove_all(str(docs) + "/")  # a trailing slash names the same folder
    names = ("pricing.md", "hiring.markdown")
    assert sorted(removed) == sorted(str((docs / name).resolve()) for name in names)
    assert kb.sources() == [str((sibling / "old.md").resolve())]
    assert kb.remove_all(docs) == {}
    assert kb.sources(under=sibling) == kb.sources(under=sibling / "old.md") == kb.sources()
    assert kb.sources(under=docs) == []


def test_a_file_deleted_from_disk_can_still_be_removed(kb, docs):
    kb.add(docs)
    (docs / "pricing.md").unlink()
    assert kb.remove(docs / "pricing.md") == 1
    assert str((docs / "pricing.md").resolve()) not in kb.sources()


def test_sources_lists_each_file_once(kb, docs, tmp_path):
    long = tmp_path / "long.md"
    long.write_text(_paragraphs(60), encoding="utf-8")
    kb.add(docs)
    kb.add(long)
    assert kb.count() > 4
    assert kb.sources() == sorted([*_expected(docs), str(long.resolve())])


def _paragraphs(count: int, separator: str = "\n\n\n") -> str:
    return separator.join(
        f"Section {n}. Region {n} pays {n * 7} euros for the Pro plan and reports a churn of {n % 9} "
        f"percent; the account team for region {n} meets every {n % 5 + 1} weeks to review the forecast."
        for n in range(count)
    )


def test_long_documents_are_split_into_numbered_chunks(kb, tmp_path):
    # Paragraphs separated by blank lines the splitter can cut at without a sentence tokenizer.
    long = tmp_path / "long.md"
    long.write_text(_paragraphs(60), encoding="utf-8")
    report = kb.add(long)
    chunks = _chunks(kb, long)
    assert len(chunks) > 2 and report.chunks == len(chunks) == kb.count()
    assert [c["chunk"] for c in chunks] == list(range(len(chunks)))
    first_section = [int(c["text"].split("Section ", 1)[1].split(".", 1)[0]) for c in chunks]
    assert first_section == sorted(first_section) and first_section[0] == 0  # in document order
    assert all(c["name"] == "long.md" and c["source"] == str(long.resolve()) for c in chunks)
    assert len({c["sha256"] for c in chunks}) == 1
    found = kb.search("What does region 57 pay for the Pro plan?", k=3)
    assert any("Region 57 pays 399 euros" in p.text for p in found)
    assert {p.chunk for p in found} <= {c["chunk"] for c in chunks}
    assert kb.remove(long) == len(chunks) and kb.count() == 0


def test_long_prose_is_chunked_without_nltk_data(kb, tmp_path, monkeypatch):
    from llama_index.core.utils import GlobalsHelper

    def unavailable(self):
        raise PermissionError("NLTK data cannot be opened here")

    monkeypatch.setattr(GlobalsHelper, "punkt_tokenizer", property(unavailable))
    monkeypatch.setattr(GlobalsHelper, "stopwords", property(unavailable))
    long = tmp_path / "prose.md"
    long.write_text("# Regions\n\n" + _paragraphs(60, separator="\n\n"), encoding="utf-8")
    report = kb.add(long)
    assert report.chunks > 2 and [c["chunk"] for c in _chunks(kb, long)] == list(range(report.chunks))


@pytest.mark.parametrize("where", ["hidden-parent", "relative-parent"])
def test_a_folder_below_a_dot_directory_is_ingested(kb, tmp_path, monkeypatch, where):
    root = tmp_path / ".brainstack" / "kb"
    root.mkdir(parents=True)
    (root / "pricing.md").write_text(PRICING, encoding="utf-8")
    if where == "relative-parent":
        root = tmp_path / "docs"
        root.mkdir()
        (root / "pricing.md").write_text(PRICING, encoding="utf-8")
        (tmp_path / "work").mkdir()
        monkeypatch.chdir(tmp_path / "work")
        report = kb.add("../docs")
    else:
        report = kb.add(root)
    assert report.added == [str((root / "pricing.md").resolve())]


def test_no_llm_or_openai_is_ever_used(kb, docs, monkeypatch):
    """LlamaIndex must never fall back to its default (OpenAI) LLM or embedding model."""
    import openai
    from llama_index.core import Settings, StorageContext, VectorStoreIndex  # noqa: F401 (bind before patching)
    from llama_index.core.embeddings import utils as embed_utils
    from llama_index.core.llms import utils as llm_utils
    from llama_index.vector_stores.chroma import ChromaVectorStore  # noqa: F401

    assert not any(name.startswith("OPENAI_") for name in __import__("os").environ)
    monkeypatch.delenv("IS_TESTING", raising=False)  # LlamaIndex would silently use mock models
    defaults: list[str] = []
    real_embed, real_llm = embed_utils.resolve_embed_model, llm_utils.resolve_llm

    def resolve_embed_model(embed_model=None, *args, **kwargs):
        if embed_model is None or isinstance(embed_model, str):
            defaults.append(f"embed_model={embed_model!r}")
            raise AssertionError("LlamaIndex resolved a default embedding model")
        return real_embed(embed_model, *args, **kwargs)

    def resolve_llm(llm=None, *args, **kwargs):
        defaults.append(f"llm={llm!r}")
        raise AssertionError("LlamaIndex resolved an LLM")

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("llama_index"):
            if getattr(module, "resolve_embed_model", None) is real_embed:
                monkeypatch.setattr(module, "resolve_embed_model", resolve_embed_model)
            if getattr(module, "resolve_llm", None) is real_llm:
                monkeypatch.setattr(module, "resolve_llm", resolve_llm)
    monkeypatch.setattr(Settings, "_llm", None)
    monkeypatch.setattr(Settings, "_embed_model", None)

    def no_client(self, *args, **kwargs):
        raise AssertionError("an OpenAI client was created")

    monkeypatch.setattr(openai.OpenAI, "__init__", no_client)
    monkeypatch.setattr(openai.AsyncOpenAI, "__init__", no_client)

    kb._index = None  # build the LlamaIndex index under the guards
    kb.add(docs)
    assert kb.search("How much does the Pro plan cost?", k=2)[0].source.endswith("pricing.md")
    (docs / "pricing.md").write_text(PRICING + "\nAnnual billing saves two months.\n", encoding="utf-8")
    assert kb.add(docs).updated
    assert kb.remove(docs / "hiring.markdown") == 1
    assert defaults == []
    assert Settings._llm is None and Settings._embed_model is None


# -- search breadth --------------------------------------------------------------------------------


class _Vectors:
    """An embedder that knows the vector of each text it will be asked for (no model)."""

    name = "test-vectors"
    dim = 384

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors

    def embed(self, texts):
        return np.stack([self.vectors[text] for text in texts])

    def embed_one(self, text):
        return self.vectors[text]

    embed_query = embed_one


def _near_identical(count: int, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` unit vectors close to one another (chunks that differ in a word or a number), and
    vague query vectors near them: many chunks score almost alike, where an approximate search slips."""
    rng = np.random.default_rng(seed)
    chunks = rng.normal(size=384) + 0.03 * rng.normal(size=(count, 384))
    chunks /= np.linalg.norm(chunks, axis=1, keepdims=True)
    asked = chunks[rng.choice(count, queries, replace=False)] + 0.03 * rng.normal(size=(queries, 384))
    asked /= np.linalg.norm(asked, axis=1, keepdims=True)
    return chunks.astype(np.float32), asked.astype(np.float32)


def test_search_finds_the_best_of_many_near_identical_chunks(kb):
    """QA: among near-identical chunks, Chroma's default search breadth (ef_search 100) often
    missed the one an exact search ranks first (about 1 query in 4 on this set)."""
    chunks, asked = _near_identical(2000, 40, seed=7)
    queries = {f"question {n}": vector for n, vector in enumerate(asked)}
    searcher = KnowledgeBase(kb.client, embedder=_Vectors(queries), collection=kb.collection.name)
    for start in range(0, len(chunks), 500):
        ids = [str(n) for n in range(start, start + 500)]
        searcher.collection.add(
            ids=ids,
            embeddings=chunks[start : start + 500],
            documents=[f"report {n}" for n in ids],
            metadatas=[{"source": "/kb/reports.md", "chunk": int(n)} for n in ids],
        )
    found = 0
    for n, (query, vector) in enumerate(queries.items()):
        best = int(np.argmax(chunks @ vector))
        passages = searcher.search(query, k=4, mode="dense")  # (its words would name the chunk)
        found += passages[0].chunk == best
        assert passages[0].score <= float(chunks[best] @ vector) + 1e-4, n
    assert found >= 38, f"{found} of 40 found the best chunk"


def test_a_new_collection_searches_wide(kb):
    hnsw = kb.collection.configuration["hnsw"]
    assert hnsw["ef_search"] == SEARCH_BREADTH and hnsw["max_neighbors"] == 32 and hnsw["space"] == "cosine"


def test_a_collection_made_by_an_earlier_version_is_widened_and_kept(kb, docs, embedder, monkeypatch):
    """A knowledge base created with Chroma's defaults keeps its chunks and gets the wider search
    (Chroma applies it when it next loads the index: a new process, a restarted server)."""
    from brainstack.memory import knowledge

    name = f"kb-{uuid.uuid4().hex[:12]}"
    monkeypatch.setattr(knowledge, "HNSW", {"space": "cosine"})  # what earlier versions created
    monkeypatch.setattr(knowledge, "SEARCH_BREADTH", 0)
    earlier = KnowledgeBase(kb.client, embedder=embedder, collection=name)
    earlier.add(docs)
    assert earlier.collection.configuration["hnsw"]["ef_search"] == 100
    monkeypatch.undo()
    try:
        now = KnowledgeBase(kb.client, embedder=embedder, collection=name)
        assert now.collection.configuration["hnsw"]["ef_search"] == SEARCH_BREADTH
        reopened = kb.client.get_collection(name)
        assert reopened.configuration["hnsw"]["ef_search"] == SEARCH_BREADTH
        assert reopened.metadata == {"brainstack": "knowledge"} and reopened.count() == 3
        assert now.search("How much does the Pro plan cost?", k=1)[0].source.endswith("pricing.md")
        assert sorted(now.add(docs).unchanged) == _expected(docs)
    finally:
        kb.client.delete_collection(name)


def test_a_search_breadth_that_cannot_be_widened_is_no_error(kb, embedder, monkeypatch, caplog):
    def refuse(**kwargs):
        raise RuntimeError("read-only")

    earlier = SimpleNamespace(configuration_json={"hnsw": {"ef_search": 100}}, modify=refuse)
    monkeypatch.setattr(kb.client, "get_or_create_collection", lambda *args, **kwargs: earlier)
    with caplog.at_level("WARNING", logger="brainstack.memory.knowledge"):
        assert KnowledgeBase(kb.client, embedder=embedder).collection is earlier
    assert "narrower search breadth (RuntimeError: read-only)" in caplog.text


# -- copies of one text ----------------------------------------------------------------------------


def test_the_same_text_in_two_files_is_one_passage_and_outlives_either_file(kb, docs):
    """QA: search results (and recall) filled up with copies of one text."""
    (docs / "archive").mkdir()
    (docs / "archive" / "pricing-2025.md").write_text(PRICING, encoding="utf-8")
    (docs / "archive" / "pricing-draft.md").write_text(PRICING, encoding="utf-8")
    kb.add(docs)
    assert kb.count() == 5  # each file keeps its own chunks
    passages = kb.search("How much does the Pro plan cost per month?", k=3)
    texts = [" ".join(p.text.split()) for p in passages]
    assert len(passages) == 3 and len(set(texts)) == 3
    assert sum("49 euros" in text for text in texts) == 1
    kb.remove(docs / "pricing.md")
    kb.remove(docs / "archive" / "pricing-draft.md")
    best = kb.search("How much does the Pro plan cost per month?", k=1)[0]
    assert best.source == str((docs / "archive" / "pricing-2025.md").resolve()) and "49 euros" in best.text


def test_a_file_with_a_repeated_section_gives_it_once(kb, tmp_path):
    section = "## Escalation\n\nPage the on-call engineer, then the team lead after 15 minutes.\n\n"
    runbook = tmp_path / "runbook.md"
    runbook.write_text(section * 40 + PRICING + INCIDENT + HIRING, encoding="utf-8")
    kb.add(runbook)
    stored = [" ".join(d.split()) for d in kb.collection.get(include=["documents"])["documents"]]
    assert len(stored) > len(set(stored)) + 2  # the file does hold copies
    texts = [" ".join(p.text.split()) for p in kb.search("Who do I page after 15 minutes?", k=4)]
    assert len(set(texts)) == len(texts) == min(4, len(set(stored)))


def test_copies_that_fill_the_candidates_still_leave_k_passages(kb, tmp_path):
    """A text in 20 files (a disclaimer, a policy) took all SEARCH_POOL * k candidates: `kb search
    -k 3` gave one passage, and the other two texts, stored, were never reached."""
    refunds = "# Refunds\n\nRefunds are paid within 14 days of the request, to the card used.\n"
    for n in range(20):
        (tmp_path / f"policy-{n}.md").write_text(refunds, encoding="utf-8")
    (tmp_path / "late.md").write_text("Refund requests after 30 days need a manager.\n", encoding="utf-8")
    (tmp_path / "shipping.md").write_text("Shipping takes 3 days within the EU.\n", encoding="utf-8")
    kb.add(tmp_path)
    passages = kb.search("How long do refunds take?", k=3)
    assert len(passages) == 3
    assert len({" ".join(p.text.split()) for p in passages}) == 3
    assert "14 days" in passages[0].text
    assert [p.source for p in passages[1:]] == [
        str((tmp_path / "late.md").resolve()),
        str((tmp_path / "shipping.md").resolve()),
    ]


def test_a_big_files_chunks_are_reported_as_they_are_stored(kb, tmp_path, monkeypatch):
    """QA: `kb add` of one big file said nothing until the whole file was embedded."""
    from brainstack.memory import knowledge

    monkeypatch.setattr(knowledge, "INSERT_BATCH", 2)
    long = tmp_path / "long.md"
    long.write_text(_paragraphs(60), encoding="utf-8")
    seen: list[tuple[str, int, int, int]] = []

    def chunk_progress(path: str, stored: int, chunks: int) -> None:
        seen.append((path, stored, chunks, kb.count()))

    report = kb.add(long, chunk_progress=chunk_progress)
    total = report.chunks
    assert total > 4
    assert [s[1] for s in seen] == [*range(2, total, 2), total]
    assert all(path == str(long.resolve()) and chunks == total for path, _, chunks, _ in seen)
    assert all(count == stored for _, stored, _, count in seen)  # stored when reported
    before = len(seen)
    assert kb.add(long, chunk_progress=chunk_progress).unchanged and len(seen) == before


# -- keyword matching --------------------------------------------------------------------------------


def _store_reports(folder: Path, stores: range) -> Path:
    """One weekly report per store, each its own file: the same sentences, other numbers."""
    folder.mkdir(parents=True, exist_ok=True)
    for store in stores:
        (folder / f"store-{store:04d}.md").write_text(
            f"## Store {store:04d}, week 12\n\nThe store ({store:04d}) reported {(store * 7) % 50 + 5} "
            f"returns and {store % 9} late deliveries in week 12. The top return reason was sizing on "
            f"the denim line. Action: recount the stock room on Monday.\n",
            encoding="utf-8",
        )
    return folder


ASKED_STORES = (3, 11, 17, 22, 28, 31, 36, 40)


def _named_first(kb: KnowledgeBase, folder: Path, mode: str) -> int:
    """How many of the questions that name a store get that store's report first."""
    first = 0
    for store in ASKED_STORES:
        found = kb.search(f"How many returns did store {store:04d} report in week 12?", k=1, mode=mode)
        first += Path(found[0].source) == (folder / f"store-{store:04d}.md").resolve()
    return first


def test_a_question_naming_one_of_many_near_identical_reports_finds_it(kb, tmp_path):
    """QA: among reports that differ only in their numbers, the dense ranking put the one a
    question names first for 1 question in 24; words find it."""
    folder = _store_reports(tmp_path / "stores", range(1, 41))
    kb.add(folder)
    dense, hybrid = _named_first(kb, folder, "dense"), _named_first(kb, folder, "hybrid")
    assert hybrid == len(ASKED_STORES), f"hybrid: {hybrid} of {len(ASKED_STORES)}"
    assert dense < hybrid  # what the keyword index adds on this set


def test_a_passage_found_by_its_words_alone_carries_its_cosine_and_keyword_score(kb, tmp_path):
    folder = _store_reports(tmp_path / "stores", range(1, 41))
    kb.add(folder)
    question = "How many returns did store 0017 report in week 12?"
    (passage,) = kb.search(question, k=1)  # 4 dense candidates of 40: the report is rarely among them
    assert passage.source.endswith("store-0017.md") and passage.keyword is not None and passage.keyword > 0
    by_meaning = {p.source: p for p in kb.search(question, k=40, mode="dense")}
    assert by_meaning[passage.source].keyword is None
    assert passage.score == pytest.approx(by_meaning[passage.source].score, abs=1e-4)
    (only_words,) = kb.search(question, k=1, mode="keyword")
    assert only_words.source == passage.source and only_words.keyword == pytest.approx(passage.keyword)


def test_a_passages_coverage_counts_the_words_of_the_query_no_chunk_holds(kb, docs):
    """Coverage is the keyword score over the IDF of every term of the query: a question naming
    a ticket no chunk holds is covered less by the chunk holding another ticket's words."""
    kb.add(docs)
    index = kb.keywords.index(kb.collection)
    for question in ("What caused INC-4412?", "What caused INC-4499?"):
        (found,) = kb.search(question, k=1)
        assert found.source.endswith("incident.txt") and found.keyword is not None
        assert found.coverage == pytest.approx(found.keyword / index.idf_mass(question, unheld=True))
        (by_words,) = kb.search(question, k=1, mode="keyword")
        assert by_words.coverage == pytest.approx(found.coverage)
    held = kb.search("What caused INC-4412?", k=1)[0].coverage
    assert held > 2 * kb.search("What caused INC-4499?", k=1)[0].coverage
    assert all(p.coverage is None for p in kb.search("What caused INC-4412?", k=3, mode="dense"))


def test_an_unknown_search_mode_is_refused(kb, docs):
    kb.add(docs)
    with pytest.raises(ValueError, match="hybrid, dense or keyword"):
        kb.search("pricing", mode="sparse")  # type: ignore[arg-type]


def test_the_keyword_index_follows_adds_and_removes_and_is_shared_through_its_folder(kb, tmp_path):
    folder = _store_reports(tmp_path / "stores", range(1, 21))
    index_dir = tmp_path / "keyword-index"

    def handle() -> KnowledgeBase:  # as another process opens it
        name = kb.collection.name
        return KnowledgeBase(kb.client, embedder=kb.embedder, collection=name, index_dir=index_dir)

    first = handle()
    first.add(folder)

    def found(base: KnowledgeBase, store: int) -> bool:
        hits = base.search(f"store {store:04d}", k=1, mode="keyword")
        return bool(hits) and hits[0].source.endswith(f"store-{store:04d}.md")

    assert found(first, 17)
    assert (index_dir / f"{kb.collection.name}.npz").is_file()  # saved for the next process
    _store_reports(folder, range(21, 22))
    first.add(folder)
    assert found(first, 21)  # taken into the index as it was stored
    first.remove(folder / "store-0017.md")
    assert not found(first, 17)
    second = handle()
    assert found(second, 21) and not found(second, 17)
    _store_reports(folder, range(22, 23))
    first.add(folder)  # another process's add: the second handle tops its index up
    second.keywords.expire()
    assert found(second, 22)


def test_a_search_after_another_process_removed_the_only_matching_file_finds_nothing(kb, tmp_path):
    """Another process's `kb remove` leaves this one's keyword index holding the file's chunks
    (for RECHECK_S, or for good when as many chunks came back): a search whose only keyword
    matches were those chunks raised (numpy cannot shape an empty read) instead of finding none."""
    folder = _store_reports(tmp_path / "stores", range(1, 6))
    kb.add(folder)
    assert kb.search("store 0003", k=1, mode="keyword")[0].source.endswith("store-0003.md")
    other = KnowledgeBase(kb.client, embedder=kb.embedder, collection=kb.collection.name)
    other.remove(folder / "store-0003.md")
    for mode in ("hybrid", "keyword"):  # (hybrid first: a keyword search counts the chunks)
        found = kb.search("0003", k=4, mode=mode)
        assert not any(p.source.endswith("store-0003.md") for p in found), mode


def test_a_file_another_process_changed_is_found_by_its_new_words(kb, tmp_path):
    """Another process's update of a file into as many chunks (a price edited) leaves the
    collection's count as it was: this process's keyword index kept the old words for good
    (a keyword search never found the new ones, nor a hybrid one whose dense candidates missed
    the file). The other process drops the saved index; this one notices at its next check."""
    folder = _store_reports(tmp_path / "stores", range(1, 6))
    index_dir = tmp_path / "keyword-index"

    def handle() -> KnowledgeBase:  # as another process opens it
        return KnowledgeBase(
            kb.client, embedder=kb.embedder, collection=kb.collection.name, index_dir=index_dir
        )

    this, other = handle(), handle()
    this.add(folder)
    assert this.search("denim", k=1, mode="keyword")
    report = folder / "store-0003.md"
    report.write_text(report.read_text(encoding="utf-8").replace("denim", "velvet"), encoding="utf-8")
    assert other.add(folder).updated == [str(report.resolve())]
    assert this.count() == 5  # as many chunks as before
    this.keywords.expire()  # (RECHECK_S later)
    found = this.search("velvet", k=1, mode="keyword")
    assert found and found[0].source == str(report.resolve())


def test_a_hybrid_search_scores_every_candidate_on_both_rankings(kb, tmp_path):
    """A candidate by meaning that was not among the best keyword matches scored 0 by keyword
    though it holds the query's words (its `keyword` None): among reports that share most
    words, which of them followed the named one was down to the keyword pool's cut, not the
    fusion KEYWORD_WEIGHT documents."""
    from brainstack.memory.knowledge import KEYWORD_WEIGHT

    folder = _store_reports(tmp_path / "stores", range(1, 41))
    kb.add(folder)
    for question in ("late deliveries in week 12 at store 0005", "denim sizing returns at store 0017"):
        cosine = {p.source: p.score for p in kb.search(question, k=40, mode="dense")}
        keyword = {p.source: p.keyword or 0.0 for p in kb.search(question, k=40, mode="keyword")}
        mass = kb.keywords.index(kb.collection).idf_mass(question)

        def fused(source: str, cosine=cosine, keyword=keyword, mass=mass) -> float:
            return (1 - KEYWORD_WEIGHT) * cosine[source] + KEYWORD_WEIGHT * keyword.get(source, 0.0) / mass

        found = kb.search(question, k=4)
        assert all(p.keyword == pytest.approx(keyword[p.source]) for p in found), question
        assert [p.source for p in found] == sorted(cosine, key=fused, reverse=True)[:4], question


def _collection_reads(monkeypatch) -> list[list[str]]:
    """What each read of a whole collection by a keyword index asked for, as the reads happen
    (``["documents"]``: every chunk's text, to build the index)."""
    from brainstack.memory.keyword import CollectionKeywords

    reads: list[list[str]] = []
    pages = CollectionKeywords._pages

    def counted(collection, include):
        reads.append(include)
        return pages(collection, include)

    monkeypatch.setattr(CollectionKeywords, "_pages", staticmethod(counted))
    return reads


def test_a_removal_or_an_update_is_taken_out_of_the_saved_index_not_rebuilt_from_every_chunk(
    kb, tmp_path, monkeypatch
):
    """A removed file or a changed one sent every process back to reading every chunk (3.2 s for
    15,684): the process that deletes takes the chunks out of the saved index instead, and the
    others start again from it."""
    folder = _store_reports(tmp_path / "stores", range(1, 21))
    index_dir = tmp_path / "keyword-index"

    def handle() -> KnowledgeBase:  # as another process opens it
        name = kb.collection.name
        return KnowledgeBase(kb.client, embedder=kb.embedder, collection=name, index_dir=index_dir)

    def found(base: KnowledgeBase, words: str) -> list[str]:
        return [Path(p.source).name for p in base.search(words, k=1, mode="keyword")]

    writer, reader = handle(), handle()
    writer.add(folder)
    assert found(reader, "store 0017") == ["store-0017.md"]  # the reader builds and saves the index
    reads = _collection_reads(monkeypatch)
    writer.remove(folder / "store-0017.md")  # a process with no index in memory: `kb remove`
    (folder / "store-0011.md").write_text("## Store 0011\\n\\nClosed for refurbishment in week 12.\\n")
    writer.add(folder / "store-0011.md")  # an update: new chunks in, old ones out
    assert (index_dir / f"{kb.collection.name}.npz").is_file()
    assert found(reader, "store 0017") != ["store-0017.md"]
    assert found(reader, "refurbishment") == ["store-0011.md"]
    assert found(handle(), "refurbishment") == ["store-0011.md"]  # a new process, from the file
    assert ["documents"] not in reads, reads  # no process read every chunk again


def test_kb_add_saves_the_keyword_index_so_the_next_process_reads_no_chunk(kb, tmp_path, monkeypatch):
    """`kb add` left the keyword index to the next process's first search (a run's recall),
    which read every chunk to build it: 3.2 s at 15,684 chunks. The add saves it; a second
    add tops the saved index up with its own chunks only."""
    index_dir = tmp_path / "keyword-index"

    def handle() -> KnowledgeBase:  # as another process opens it
        name = kb.collection.name
        return KnowledgeBase(kb.client, embedder=kb.embedder, collection=name, index_dir=index_dir)

    reads = _collection_reads(monkeypatch)
    folder = _store_reports(tmp_path / "stores", range(1, 11))
    handle().add(folder)  # a new collection: read once, at the end of the add
    assert reads == [["documents"]] and (index_dir / f"{kb.collection.name}.npz").is_file()
    reads.clear()
    _store_reports(folder, range(11, 13))
    handle().add(folder)  # the saved index, topped up (an id scan, then the new chunks)
    assert ["documents"] not in reads, reads
    reads.clear()
    hits = handle().search("store 0012", k=1, mode="keyword")
    assert Path(hits[0].source).name == "store-0012.md" and reads == []


def test_kb_add_by_a_process_that_searched_before_saves_the_keyword_index(kb, tmp_path, monkeypatch):
    """A process with the index in memory (it searched) took the added chunks into it and, the
    count then matching, did not save it: the next process read every chunk id again."""
    from brainstack.memory.keyword import BM25Index

    index_dir = tmp_path / "keyword-index"
    handle = KnowledgeBase(
        kb.client, embedder=kb.embedder, collection=kb.collection.name, index_dir=index_dir
    )
    folder = _store_reports(tmp_path / "stores", range(1, 4))
    handle.add(folder)
    handle.search("store 0002", k=1, mode="keyword")  # (its index in memory)
    _store_reports(folder, range(4, 6))
    handle.add(folder)
    saved = BM25Index.load(index_dir / f"{kb.collection.name}.npz")
    assert len(saved) == kb.count()


def test_a_keyword_index_that_cannot_be_saved_does_not_fail_the_add(kb, tmp_path, monkeypatch, caplog):
    from brainstack.memory.keyword import CollectionKeywords

    def down(self, collection, known=(), save=False):
        raise ConnectionError("chroma went away")

    base = KnowledgeBase(
        kb.client, embedder=kb.embedder, collection=kb.collection.name, index_dir=tmp_path / "kw"
    )
    monkeypatch.setattr(CollectionKeywords, "index", down)
    report = base.add(_store_reports(tmp_path / "stores", range(1, 3)))
    assert len(report.added) == 2 and base.count() == 2
    assert "the keyword index was not saved (ConnectionError: chroma went away)" in caplog.text


_ADD_IN_ANOTHER_PROCESS = """
import sys
from brainstack.memory import MiniLMEmbedder
from brainstack.memory.episodic import open_chroma
from brainstack.memory.knowledge import KnowledgeBase

chroma, cache, name, index_dir, path = sys.argv[1:]
client, embedder = open_chroma(path=chroma), MiniLMEmbedder(cache)
KnowledgeBase(client, embedder=embedder, collection=name, index_dir=index_dir).add(path)
"""


def test_a_file_another_process_added_is_found_by_its_words_in_every_mode(tmp_path, embedder, cache_dir):
    """In local mode each process keeps its own vector index, which lacks the chunks another
    process stored until this one writes to the collection: the keyword index is topped up
    with them, and reading their vectors for their cosine raised ("Error finding id"), so every
    keyword or hybrid search that matched one failed with a BackendError (a long-lived worker,
    after a `kb add` from the CLI), where a dense search only missed them."""
    import subprocess

    from brainstack.memory.embeddings import query_embedding

    # (local only: a Chroma server keeps one vector index for every client)
    kb = KnowledgeBase(open_chroma(path=tmp_path / "chroma"), embedder=embedder, collection="kb-local")
    folder = _store_reports(tmp_path / "stores", range(1, 6))
    index_dir = tmp_path / "keyword-index"
    this = KnowledgeBase(kb.client, embedder=embedder, collection=kb.collection.name, index_dir=index_dir)
    this.add(folder)
    assert this.search("denim", k=1, mode="keyword")  # this process's index, in memory
    report = tmp_path / "new" / "quokka.md"
    report.parent.mkdir()
    report.write_text("# Quokka\n\nThe quokka programme's reference is QUOKKA-9902.\n", encoding="utf-8")
    args = [tmp_path / "chroma", cache_dir, kb.collection.name, index_dir, report]
    subprocess.run([sys.executable, "-c", _ADD_IN_ANOTHER_PROCESS, *map(str, args)], check=True, timeout=120)
    this.keywords.expire()  # (RECHECK_S later)
    cosine = embedder.embed([f"name: quokka.md\nchunk: 0\n\n{report.read_text()}"])  # as LlamaIndex embeds it
    query = query_embedding(embedder, "QUOKKA-9902 reference")
    expected = float(cosine[0] @ query / np.linalg.norm(cosine[0]) / np.linalg.norm(query))
    for mode in ("keyword", "hybrid"):
        found = this.search("QUOKKA-9902 reference", k=1, mode=mode)
        assert [p.source for p in found] == [str(report.resolve())], mode
        assert found[0].score == pytest.approx(expected, abs=1e-4), mode


def test_a_word_of_cjk_text_is_found_by_keyword(kb, tmp_path):
    """A run of CJK characters was one token, so 返金 (refund) found nothing in 返金ポリシー."""
    folder = tmp_path / "ja"
    folder.mkdir()
    (folder / "refunds.md").write_text(
        "# 返金ポリシー\n\n購入から三十日以内は全額返金します。\n", encoding="utf-8"
    )
    (folder / "shipping.md").write_text("# 配送\n\n通常は三営業日以内に発送します。\n", encoding="utf-8")
    kb.add(folder)
    found = kb.search("返金", k=2, mode="keyword")
    assert [Path(p.source).name for p in found] == ["refunds.md"]


def test_a_server_that_is_down_is_asked_once_for_the_vectors_of_keyword_matches(kb, tmp_path, monkeypatch):
    """Reading the vectors of chunks only the keywords found falls back to embedding them again
    when Chroma cannot find them (another local process's chunks), not when the server is down
    or hangs: that asked it a second time, and waited a second timeout."""
    folder = _store_reports(tmp_path / "stores", range(1, 4))
    kb.add(folder)
    asked: list[list[str]] = []
    real_get = kb.collection.get

    def down(*args, **kwargs):
        if "embeddings" in (kwargs.get("include") or []) or asked:
            asked.append(list(kwargs.get("include") or []))
            raise ConnectionError("connection refused")
        return real_get(*args, **kwargs)

    monkeypatch.setattr(kb.collection, "get", down)
    with pytest.raises(ConnectionError):
        kb._stored(["some-chunk"])
    assert asked == [["documents", "metadatas", "embeddings"]]
