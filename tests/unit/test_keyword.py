"""The keyword half of hybrid retrieval: tokenizer, BM25 index and reciprocal rank fusion."""

from __future__ import annotations

import math
import sys
import threading
import time

import numpy as np
import pytest

from brainstack.memory.keyword import LOCK, STOPWORDS, BM25Index, reciprocal_rank_fusion, stem, tokenize

# -- tokenize ----------------------------------------------------------------------------------


def test_tokens_are_lower_case_without_stop_words():
    assert tokenize("The Billing API AND the Database") == ["bill", "api", "databas"]
    assert tokenize("What is it that we were to do?") == []
    assert all(token not in STOPWORDS for token in tokenize("the a an of to in is was were for with"))


def test_ticket_ids_are_kept_whole_and_also_split():
    assert tokenize("INC-4412") == ["inc-4412", "inc", "4412"]
    assert tokenize("Ticket PO-55120 closed") == ["ticket", "po-55120", "po", "55120", "clos"]
    assert tokenize("v1.2.3") == ["v1.2.3", "v1", "2", "3"]


def test_stop_words_inside_compound_tokens_are_dropped_from_the_parts():
    assert tokenize("state-of-the-art") == ["state-of-the-art", "stat", "art"]


@pytest.mark.parametrize(
    "family",
    [
        ("decided", "decide", "deciding", "decides"),
        ("launch", "launched", "launches", "launching"),
        ("price", "prices", "pricing", "priced"),
        ("plan", "plans"),
    ],
)
def test_light_stemming_makes_word_forms_meet(family):
    stems = {tuple(tokenize(word)) for word in family}
    assert len(stems) == 1, stems


def test_stemming_leaves_short_words_and_numbers_alone():
    assert stem("bed") == "bed"
    assert stem("uses") == "uses"  # four letters or fewer: unchanged
    assert stem("2024s") == "2024s"  # not alphabetic
    assert tokenize("1200000 12.5") == ["1200000", "12.5", "12", "5"]


def test_punctuation_and_whitespace_only_give_no_tokens():
    assert tokenize("") == []
    assert tokenize(" ,;:!? -- ... ") == []


# -- BM25 --------------------------------------------------------------------------------------


def _index(*docs: str, **params: float) -> BM25Index:
    index = BM25Index(**params)
    for number, text in enumerate(docs):
        index.add(f"d{number}", text)
    return index


def test_empty_index_returns_nothing():
    index = BM25Index()
    assert len(index) == 0
    assert index.search("anything", k=5) == []


def test_exact_score_for_a_small_corpus():
    index = _index("pricing pricing churn", "churn", "database outage")
    # "pricing" (stem "pric") is in 1 of 3 documents; d0 has 3 tokens, the average is 6/3 = 2.
    idf = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    norm = 2 + 1.2 * (1 - 0.75 + 0.75 * 3 / 2)
    [(doc, score)] = index.search("pricing", k=5)
    assert doc == "d0"
    assert score == pytest.approx(idf * 2 * 2.2 / norm, rel=1e-12)


def test_a_rarer_term_weighs_more():
    index = _index(
        "churn pricing",
        "churn outage",
        "churn database",
        "churn billing",
    )
    # d0 holds the rare term "pricing" and the common "churn"; every document has "churn".
    results = dict(index.search("pricing churn", k=4))
    assert max(results, key=results.get) == "d0"
    only_common = dict(index.search("churn", k=4))
    only_rare = dict(index.search("pricing", k=4))
    assert only_rare["d0"] > only_common["d0"] * 3


def test_term_frequency_saturates():
    # b=0 removes length normalisation, so only term frequency differs between the documents.
    index = _index(*(" ".join(["churn"] * tf) for tf in (1, 2, 3, 10, 100)), "other", b=0.0)
    scores = dict(index.search("churn", k=10))
    tf1, tf2, tf3, tf10, tf100 = (scores[f"d{i}"] for i in range(5))
    assert tf1 < tf2 < tf3 < tf10 < tf100
    assert tf2 - tf1 > tf3 - tf2  # each repetition adds less
    assert tf10 < 10 * tf1
    idf = math.log(1 + (6 - 5 + 0.5) / (5 + 0.5))
    assert tf100 < idf * (1.2 + 1)  # bounded by idf * (k1 + 1)


def test_longer_documents_are_penalised():
    index = _index(
        "pricing review",
        "pricing review with many other words about budgets forecasts hiring roadmaps and offices",
        "unrelated",
    )
    (first, short), (second, long) = index.search("pricing", k=2)
    assert (first, second) == ("d0", "d1")
    assert short > long
    flat = _index("pricing review", "pricing review budgets forecasts hiring roadmaps offices", b=0.0)
    assert flat.search("pricing", k=2)[0][1] == pytest.approx(flat.search("pricing", k=2)[1][1])


def test_the_idf_mass_with_unheld_terms_counts_them_at_the_highest_idf():
    index = _index("pay-4031 card declined", "pay-4002 card expired", "travel by train")
    # "pay-4099" is "pay-4099", "pay" and "4099": only "pay" is held (by 2 of 3 documents)
    held = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    nowhere = math.log(1 + (3 + 0.5) / 0.5)
    assert index.idf_mass("pay-4099") == pytest.approx(held)
    assert index.idf_mass("pay-4099", unheld=True) == pytest.approx(held + 2 * nowhere)
    assert index.idf_mass("pay-4031", unheld=True) == pytest.approx(index.idf_mass("pay-4031"))
    assert index.idf_mass("espresso", unheld=True) == pytest.approx(nowhere)


def test_search_leaves_out_documents_sharing_no_term():
    index = _index("the billing api timed out", "we decided to launch freemium", "hiring plan for 2025")
    assert [doc for doc, _ in index.search("Deciding about the launch?", k=10)] == ["d1"]
    assert index.search("kubernetes", k=10) == []
    assert index.search("the of and", k=10) == []  # only stop words


def test_k_limits_the_results_best_first():
    index = _index("churn", "churn churn", "churn churn churn", "churn pricing", "nothing here")
    results = index.search("churn", k=2)
    assert len(results) == 2
    scores = [score for _, score in index.search("churn", k=10)]
    assert scores == sorted(scores, reverse=True) and len(scores) == 4
    assert index.search("churn", k=0) == []


def test_ticket_id_query_prefers_the_exact_ticket():
    index = _index("INC-9001 disk full on the cache host", "INC-4412 billing API timeout", "weekly report")
    results = index.search("What happened in INC-4412?", k=3)
    assert results[0][0] == "d1"
    assert {doc for doc, _ in results} == {"d0", "d1"}  # d0 only shares "inc"
    assert results[0][1] > results[1][1]


def test_ties_are_broken_by_insertion_order():
    index = _index("churn risk", "churn risk", "churn risk")
    assert [doc for doc, _ in index.search("churn", k=3)] == ["d0", "d1", "d2"]


def test_documents_added_later_are_searchable():
    index = _index("first document about pricing")
    assert [doc for doc, _ in index.search("outage", k=5)] == []
    index.add("late", "an outage of the billing API")
    assert [doc for doc, _ in index.search("outage", k=5)] == ["late"]
    assert len(index) == 2


# -- reciprocal rank fusion --------------------------------------------------------------------


def test_rrf_exact_scores():
    fused = reciprocal_rank_fusion(["a", "b"], ["b", "c"])
    assert [doc for doc, _ in fused] == ["b", "a", "c"]
    scores = dict(fused)
    assert scores["a"] == pytest.approx(1 / 61)
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["c"] == pytest.approx(1 / 62)


def test_rrf_k_parameter():
    scores = dict(reciprocal_rank_fusion(["a", "b", "c"], ["c"], k=0))
    assert scores == pytest.approx({"a": 1.0, "b": 1 / 2, "c": 1 / 3 + 1.0})
    scores = dict(reciprocal_rank_fusion(["a"], k=10))
    assert scores == pytest.approx({"a": 1 / 11})


def test_ids_in_both_lists_rank_first():
    dense = ["d1", "d2", "shared-low", "d3"]
    keyword = ["k1", "k2", "k3", "shared-low"]
    fused = [doc for doc, _ in reciprocal_rank_fusion(dense, keyword)]
    assert fused[0] == "shared-low"  # rank 3 + rank 4 beats any single rank 1 at k=60


def test_rrf_of_nothing():
    assert reciprocal_rank_fusion() == []
    assert reciprocal_rank_fusion([], []) == []


def test_rrf_ties_keep_first_seen_order():
    fused = reciprocal_rank_fusion(["a", "b"], ["b", "a"])
    assert [doc for doc, _ in fused] == ["a", "b"]
    assert fused[0][1] == pytest.approx(fused[1][1])


def test_non_ascii_words_stay_whole():
    assert tokenize("Zürich Müller") == ["zürich", "müller"]
    index = _index("Rich customers in Zug", "Meeting in Zürich")
    assert [doc for doc, _ in index.search("Zürich", k=5)] == ["d1"]


def test_cjk_text_is_indexed_as_character_pairs():
    """A run of CJK characters was one token: 返金 (refund) never matched 返金ポリシー (refund
    policy), nor a Korean or Chinese word inside a longer run (QA)."""
    assert tokenize("返金ポリシー") == ["返金", "金ポ", "ポリ", "リシ", "シー"]
    assert tokenize("返") == ["返"] and tokenize("INC-4412の返金") == [
        "inc-4412",
        "inc",
        "4412",
        "の返",
        "返金",
    ]
    index = _index("返金ポリシーは三十日です", "配送について", "환불 정책은 30일입니다", "退款政策")
    assert [doc for doc, _ in index.search("返金", k=5)] == ["d0"]
    assert [doc for doc, _ in index.search("환불", k=5)] == ["d2"]
    assert [doc for doc, _ in index.search("退款", k=5)] == ["d3"]


def test_cjk_marks_half_width_kana_and_rarer_ideographs_are_paired_too():
    """々 (the iteration mark), half-width katakana and ideographs beyond the basic block were
    left out of the pairs: 様々 split after 様, ｶﾀｶﾅ stayed one token (review)."""
    assert tokenize("様々な") == ["様々", "々な"]
    assert tokenize("ｶﾀｶﾅ") == ["ｶﾀ", "ﾀｶ", "ｶﾅ"]
    assert tokenize("𠮷野家") == ["𠮷野", "野家"]


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("cjk", [True, False])
def test_an_index_saved_before_cjk_pairs_is_rebuilt_only_when_it_holds_cjk_text(tmp_path, cjk, version):
    index = _index("返金ポリシー" if cjk else "refund policy", "delivery times")
    path = tmp_path / "old.npz"
    index.save(path)
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["format"] = np.array([version])
    if cjk:  # (as format 2 tokenized it: the whole run one term)
        terms = ["返金ポリシー", *tokenize("delivery times")]
        arrays.update(
            terms=np.array(terms, dtype=np.str_),
            offsets=np.array([0, 1, 2, 3]),
            docs=np.array([0, 1, 1]),
            tfs=np.array([1, 1, 1]),
        )
    np.savez(path, **arrays)
    if cjk:
        with pytest.raises(ValueError, match="CJK"):
            BM25Index.load(path)
    else:
        assert [doc for doc, _ in BM25Index.load(path).search("refund", k=5)] == ["d0"]


def test_searches_and_adds_from_several_threads_take_turns():
    """A run recalling while another run of the process remembers: a search that read the
    document lengths before an add and a new term's postings after it raised IndexError."""
    index = BM25Index()
    for n in range(500):
        index.add(f"d{n}", f"common word{n % 50} other")
    errors: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        n = 500
        while not stop.is_set():
            index.add(f"d{n}", f"common word{n % 50} extra{n}")
            n += 1

    def search() -> None:
        while not stop.is_set():
            try:
                index.search("common word3 extra", 5)
            except Exception as exc:  # any failure is the finding
                errors.append(exc)

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=write), threading.Thread(target=search)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(before)
    assert not errors, f"{len(errors)} failed searches, first: {errors[0]!r}"
    assert len(index) > 500 and index.search("extra600", 1)[0][0] == "d600"


def test_scores_of_named_documents_match_their_search_scores_however_they_rank():
    index = _index("pricing churn", "pricing", "database outage", "pricing pricing pricing")
    ranked = dict(index.search("pricing", k=10))
    assert index.scores("pricing", ["d1", "d3", "d2", "unknown"]) == {"d1": ranked["d1"], "d3": ranked["d3"]}
    assert index.scores("pricing", []) == {} and BM25Index().scores("pricing", ["d0"]) == {}


class _Collection:
    """A Chroma collection as CollectionKeywords reads it (count, and get by ids or by page)."""

    def __init__(self, docs: dict[str, str]) -> None:
        self.name, self.docs = "kb-test", dict(docs)

    def count(self) -> int:
        return len(self.docs)

    def get(self, ids=None, include=(), limit=None, offset=0):
        keys = [i for i in ids if i in self.docs] if ids is not None else list(self.docs)[offset:][:limit]
        return {"ids": keys, "documents": [self.docs[k] for k in keys] if "documents" in include else None}


def test_another_processs_deletion_is_seen_though_the_count_is_unchanged(tmp_path, monkeypatch):
    """An update into as many documents left a process's index with the old words for good."""
    from brainstack.memory.keyword import CollectionKeywords

    collection = _Collection({"a": "denim line", "b": "stock room"})
    this, other = CollectionKeywords(tmp_path), CollectionKeywords(tmp_path)
    assert this.index(collection).search("denim", 1)[0][0] == "a"
    other.index(collection)  # another process, with the index loaded
    del collection.docs["a"]
    collection.docs["a2"] = "velvet line"  # as many documents as before
    other.removed(collection.name, ["a"])
    other.added(collection.name, ["a2"], ["velvet line"])
    this.expire()
    assert [doc for doc, _ in this.index(collection).search("velvet denim", 5)] == ["a2"]


def test_another_processs_top_up_does_not_make_this_one_reload(tmp_path, monkeypatch):
    """Only a deletion sends a process back to the saved file: additions are topped up."""
    from brainstack.memory.keyword import CollectionKeywords

    collection = _Collection({"a": "denim line", "b": "stock room"})
    this, other = CollectionKeywords(tmp_path), CollectionKeywords(tmp_path)
    this.index(collection)
    collection.docs["c"] = "velvet line"
    other.index(collection)  # tops the saved index up and saves it
    loads: list[object] = []
    real_load = BM25Index.load
    monkeypatch.setattr(
        BM25Index, "load", classmethod(lambda cls, path: loads.append(path) or real_load(path))
    )
    this.expire()
    assert this.index(collection).search("velvet", 1)[0][0] == "c" and not loads


def test_a_replacement_by_a_process_without_an_index_in_memory_is_seen_by_the_others(tmp_path):
    """A replaced episode (a step run again after a crash, by a process that had not searched)
    left every other process's index with the old words: the count did not change."""
    from brainstack.memory.keyword import CollectionKeywords

    collection = _Collection({"a": "denim line", "b": "stock room"})
    this, writer = CollectionKeywords(tmp_path), CollectionKeywords(tmp_path)
    assert this.index(collection).search("denim", 1)[0][0] == "a"  # (and saved)
    collection.docs["a"] = "velvet line"
    writer.added(collection.name, ["a"], ["velvet line"])
    this.expire()
    assert [doc for doc, _ in this.index(collection).search("velvet", 5)] == ["a"]
    assert this.index(collection).search("denim", 5) == []


def test_a_replacement_by_a_process_whose_index_predates_anothers_keeps_both(tmp_path):
    """Two processes replacing episodes one after the other: the second saved its index, read
    before the first's replacement, over the first's file and marked it as its own, so every
    process (the first too, reloading) kept the replaced words for good (the count is unchanged)."""
    from brainstack.memory.keyword import CollectionKeywords

    collection = _Collection({"a": "denim line", "b": "stock room", "c": "till roll"})
    this, other = CollectionKeywords(tmp_path), CollectionKeywords(tmp_path)
    this.index(collection)
    other.index(collection)
    collection.docs["a"] = "velvet line"
    other.added(collection.name, ["a"], ["velvet line"])
    collection.docs["b"] = "cash desk"
    this.added(collection.name, ["b"], ["cash desk"])  # (its index still holds a's old words)
    for process in (this, other, CollectionKeywords(tmp_path)):
        process.expire()
        index = process.index(collection)
        assert index.search("denim", 5) == [] and index.search("stock", 5) == []
        assert sorted(doc for doc, _ in index.search("velvet cash", 5)) == ["a", "b"]


def test_an_index_read_before_anothers_change_is_not_saved_over_it(tmp_path):
    """A process topping its index up while another replaced a document saved its index, with
    the old words, over the other's file: every process loading it kept them for good."""
    from brainstack.memory.keyword import CollectionKeywords

    class Replaced(_Collection):
        def get(self, ids=None, include=(), limit=None, offset=0):
            if ids is not None and "c" in ids and self.docs["a"] == "denim line":
                self.docs["a"] = "velvet line"  # the other process's replacement, mid top-up
                other.added(self.name, ["a"], ["velvet line"])
            return super().get(ids, include, limit, offset)

    collection = Replaced({"a": "denim line", "b": "stock room"})
    this, other = CollectionKeywords(tmp_path), CollectionKeywords(tmp_path)
    other.index(collection)
    collection.docs["c"] = "till roll"
    this.index(collection)  # loads the saved index, tops c up
    fresh = CollectionKeywords(tmp_path).index(collection)
    assert fresh.search("denim", 5) == [] and fresh.search("velvet", 5)[0][0] == "a"
    this.expire()
    assert this.index(collection).search("denim", 5) == []


def test_new_documents_from_a_process_without_an_index_mark_nothing(tmp_path):
    """Only a replacement marks a change (others reload their index); new ids and same-text
    writes read nothing more than the saved file's absence or the ids it holds."""
    from brainstack.memory.keyword import CollectionKeywords

    collection = _Collection({"a": "denim line"})
    CollectionKeywords(tmp_path).index(collection)
    writer = CollectionKeywords(tmp_path)
    writer.added(collection.name, ["b"], ["stock room"])
    writer.added(collection.name, ["a"], ["denim line"], same_text=True)
    assert not (tmp_path / f"{collection.name}.deleted").exists()


# -- removal and replacement -----------------------------------------------------------------------


def test_a_removed_document_is_neither_found_nor_counted():
    index = BM25Index()
    for doc_id, text in (("a", "alpha common"), ("b", "bravo common"), ("c", "charlie common")):
        index.add(doc_id, text)
    assert index.remove(["b", "not-there"]) == 1
    assert len(index) == 2 and "b" not in index and "a" in index
    assert index.search("bravo", 5) == []
    assert [doc_id for doc_id, _ in index.search("common", 5)] == ["a", "c"]
    assert index.scores("bravo common", ["a", "b"]).keys() == {"a"}
    fresh = BM25Index()  # scored as if the removed one had never been there
    fresh.add("a", "alpha common")
    fresh.add("c", "charlie common")
    assert dict(index.search("alpha common", 2)) == pytest.approx(dict(fresh.search("alpha common", 2)))
    assert index.idf_mass("alpha common bravo") == pytest.approx(fresh.idf_mass("alpha common bravo"))


def test_adding_an_id_again_replaces_its_words():
    index = BM25Index()
    index.add("a", "the old price was 49 euros")
    index.add("b", "unrelated words")
    index.add("a", "the new price is 59 euros")
    assert len(index) == 2
    assert index.search("49", 5) == []
    assert [doc_id for doc_id, _ in index.search("59", 5)] == ["a"]


def test_removals_survive_a_save_and_a_load(tmp_path):
    index = BM25Index()
    for n in range(10):
        index.add(f"d{n}", f"word{n} shared")
    index.remove(["d3"])
    index.add("d4", "replaced shared")
    index.save(tmp_path / "kw.npz")
    loaded = BM25Index.load(tmp_path / "kw.npz")
    assert len(loaded) == len(index) == 9 and "d3" not in loaded
    assert loaded.search("word3", 5) == [] and loaded.search("word4", 5) == []
    assert loaded.search("shared replaced", 3) == index.search("shared replaced", 3)


def test_once_a_quarter_is_removed_the_index_scores_as_one_built_from_what_is_left():
    texts = {f"d{n}": f"term{n % 7} term{n % 11} filler{n % 3} word{n}" for n in range(300)}
    index, fresh = BM25Index(), BM25Index()
    for doc_id, text in texts.items():
        index.add(doc_id, text)
    gone = [f"d{n}" for n in range(0, 300, 2)]  # half: past a quarter, the postings are rewritten
    index.remove(gone)
    for doc_id, text in texts.items():
        if doc_id not in gone:
            fresh.add(doc_id, text)
    for query in ("term3 filler1", "term5 term10", "word7 filler2"):
        got, want = index.search(query, 10), fresh.search(query, 10)
        assert [d for d, _ in got] == [d for d, _ in want]
        assert [s for _, s in got] == pytest.approx([s for _, s in want])
    assert len(index.ids) == len(fresh.ids) == 150  # (the removed documents' postings are gone)


def test_building_one_collections_index_does_not_hold_up_another_collections(tmp_path):
    """One lock for every collection: a user's first search building its index from 100k
    episodes (6.4 s) held up every other user's recall for as long."""
    import threading

    from brainstack.memory.keyword import CollectionKeywords

    started, release = threading.Event(), threading.Event()

    class _Slow(_Collection):
        def get(self, *args, **kwargs):
            started.set()
            assert release.wait(10)
            return super().get(*args, **kwargs)

    slow, quick = _Slow({"a": "denim line"}), _Collection({"b": "stock room"})
    slow.name = "kb-slow"
    keywords = CollectionKeywords(tmp_path)
    builder = threading.Thread(target=keywords.index, args=(slow,))
    builder.start()
    try:
        assert started.wait(10)
        done = threading.Event()
        other = threading.Thread(target=lambda: keywords.index(quick) and done.set())
        other.start()
        assert done.wait(5), "the other collection waited for the build"
        assert keywords.index(quick).search("stock", 1)[0][0] == "b"
    finally:
        release.set()
        builder.join(10)
    assert keywords.index(slow).search("denim", 1)[0][0] == "a"


def test_a_long_index_build_is_logged_a_short_one_is_not(tmp_path, monkeypatch, caplog):
    """Reading a big collection takes seconds (3.2 s for 15,684 chunks) that a search or a
    `kb add` otherwise spends in silence; the CLI shows brainstack's INFO lines."""
    import logging

    from brainstack.memory import keyword
    from brainstack.memory.keyword import CollectionKeywords

    monkeypatch.setattr(keyword, "BUILD_NOTICE", 3)
    caplog.set_level(logging.INFO, logger="brainstack")
    CollectionKeywords(tmp_path / "small").index(_Collection({"a": "denim", "b": "stock"}))
    assert "building the keyword index" not in caplog.text
    CollectionKeywords(tmp_path / "big").index(_Collection({"a": "denim", "b": "stock", "c": "room"}))
    assert "building the keyword index of kb-test from its 3 documents" in caplog.text


def _resaved(path, **changes):
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    arrays.update(changes)
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "damage",
    [
        lambda a: {"docs": a["docs"] + 1000},  # postings past the documents
        lambda a: {"params": np.array([np.nan, 0.75])},
        lambda a: {"offsets": a["offsets"][::-1].copy()},
        lambda a: {"tfs": -a["tfs"]},
    ],
    ids=["docs past the end", "NaN parameter", "offsets backwards", "negative frequencies"],
)
def test_a_saved_index_that_loads_but_does_not_fit_is_rebuilt(tmp_path, damage):
    """A file that loads but points past its documents failed every search (IndexError) until
    it was deleted by hand; a NaN parameter found nothing for good."""
    from brainstack.memory.keyword import CollectionKeywords

    collection = _Collection({"a": "denim line", "b": "stock room"})
    CollectionKeywords(tmp_path).index(collection)  # saved
    path = tmp_path / f"{collection.name}.npz"
    with np.load(path, allow_pickle=False) as data:
        _resaved(path, **damage({key: data[key] for key in data.files}))
    with pytest.raises(ValueError, match="inconsistent keyword index"):
        BM25Index.load(path)
    assert CollectionKeywords(tmp_path).index(collection).search("denim", 5)[0][0] == "a"
    assert BM25Index.load(path).search("stock", 1)[0][0] == "b"  # (and saved again, whole)


@pytest.mark.parametrize("blocker", ["folder", "file for a folder"])
def test_a_saved_index_path_that_cannot_be_a_file_costs_only_the_saving(tmp_path, blocker):
    from brainstack.memory.keyword import CollectionKeywords

    collection = _Collection({"a": "denim line"})
    if blocker == "folder":
        (tmp_path / f"{collection.name}.npz").mkdir()
        keywords = CollectionKeywords(tmp_path)
    else:
        (tmp_path / "index").write_text("not a folder")
        keywords = CollectionKeywords(tmp_path / "index")
    assert keywords.index(collection).search("denim", 1)[0][0] == "a"
    assert CollectionKeywords(keywords.index_dir).index(collection).search("denim", 1)[0][0] == "a"


def test_a_collection_deleted_and_created_again_is_indexed_anew_and_its_files_go(tmp_path):
    """A forgotten user's collection left a `<collection>.deleted` file naming it (QA: a trace
    of the user after `memory forget`); without the mark, another process must still not take
    its index of the deleted collection for the new one's, as many documents as it holds."""
    from brainstack.memory.keyword import CollectionKeywords

    old = _Collection({"a": "denim line", "b": "stock room"})
    old.id = "first"
    this, other = CollectionKeywords(tmp_path), CollectionKeywords(tmp_path)
    assert this.index(old).search("denim", 1)[0][0] == "a"
    other.index(old)
    other.drop(old.name, saved=True)  # `memory forget` in the other process
    assert [path.name for path in tmp_path.iterdir() if path.name != LOCK] == []
    new = _Collection({"c": "velvet line", "d": "till roll"})  # as many documents
    new.id = "second"
    this.expire()
    assert this.index(new).search("denim", 5) == []
    assert [doc for doc, _ in this.index(new).search("velvet", 5)] == ["c"]
    other.index(old)  # a stale file of the deleted collection, saved after the forget...
    assert [doc for doc, _ in CollectionKeywords(tmp_path).index(new).search("velvet", 5)] == [
        "c"
    ]  # ...is not used


def test_a_newer_versions_saved_index_is_neither_deleted_nor_overwritten(tmp_path):
    """Workers of two versions on one folder (a rolling upgrade): the older one deleted the newer
    one's file as damaged and saved its own, which the newer one could not read either, so both
    rebuilt it in turn. The older one now builds its index in memory and leaves the file alone."""
    from brainstack.memory.keyword import CollectionKeywords, NewerFormatError

    collection = _Collection({"a": "denim line", "b": "stock room"})
    CollectionKeywords(tmp_path).index(collection)
    path = tmp_path / f"{collection.name}.npz"
    _resaved(path, format=np.array([BM25Index.FORMAT + 1]))
    newer = path.read_bytes()
    with pytest.raises(NewerFormatError):
        BM25Index.load(path)
    older = CollectionKeywords(tmp_path)
    assert older.index(collection).search("denim", 1)[0][0] == "a"  # (built from the collection)
    collection.docs["a"] = "velvet line"
    older.added(collection.name, ["a"], ["velvet line"])  # a replacement: saved, were it its file
    older.removed(collection.name, ["b"])
    assert path.read_bytes() == newer
    assert older.index(collection).search("velvet", 1)[0][0] == "a"
