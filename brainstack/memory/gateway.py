"""The memory gateway: the one object the graph calls, once before routing and once after review.

``recall`` asks every layer at the same time (each on a worker thread, each timed) and builds one
:class:`~brainstack.results.MemoryRecall` within a token budget. ``remember`` writes the episode,
the session facts and any preference the user stated, and learns (or reinforces) a procedural
skill after a successful multi-step run. A layer that fails is recorded in ``degraded`` and the
run goes on without it: memory never costs a run its answer or its checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.messages import BaseMessage
from langchain_core.messages.utils import count_tokens_approximately, trim_messages

from brainstack.memory.embeddings import query_embedding
from brainstack.memory.pii import mask_pii
from brainstack.results import (
    MemoryRecall,
    MemoryWrite,
    RecalledEpisode,
    RecalledPassage,
    RecalledSkill,
)

if TYPE_CHECKING:
    from brainstack.config import Settings
    from brainstack.memory.embeddings import Embedder
    from brainstack.memory.episodic import EpisodicMemory
    from brainstack.memory.knowledge import KnowledgeBase, Passage
    from brainstack.memory.skills import SkillStore
    from brainstack.memory.working import WorkingMemory

__all__ = [
    "MemoryGateway",
    "estimate_tokens",
    "preference_topics",
    "recent_messages",
    "relevant_passages",
    "render_memory",
    "stated_preferences",
    "supersedes",
    "without_preferences",
]

EPISODES_K = 3
PASSAGES_K = 3
SKILLS_K = 1
ITEM_CHARS = 300
EPISODE_MIN_DENSE = 0.35
"""An episode is recalled when its cosine similarity reaches this, or when it also matched by
keyword with at least ``EPISODE_MIN_KEYWORD_DENSE``."""
EPISODE_MIN_KEYWORD_DENSE = 0.15
PASSAGE_MIN_SCORE = 0.4
"""A knowledge-base passage is recalled when its cosine similarity to the task reaches this, or
(see :func:`relevant_passages`) when it shares a word with the task, scores at least
``PASSAGE_MIN_KEYWORD_SCORE`` and is within ``PASSAGE_BEST_MARGIN`` of the best passage, or when
it is the best keyword match, holds at least ``PASSAGE_MIN_COVERAGE`` of the task, two of its words
at least and every word of it with a digit (an error code, a SKU, a version)."""
PASSAGE_MIN_KEYWORD_SCORE = 0.25
PASSAGE_BEST_MARGIN = 0.1
PASSAGE_MIN_COVERAGE = 0.5
"""Of :attr:`Passage.coverage <brainstack.memory.knowledge.Passage.coverage>`: how much of the
task the best keyword match must hold to be recalled whatever its cosine. Chosen on the identifier
set of ``benchmarks/bench_kb_search.py``: answers 0.68 and up, the rest 0.28 at most (both sets)."""
EPISODES_AHEAD = 8
"""Episodes embedded ahead (:meth:`MemoryGateway.prefetch_episode`) and not yet written, at most
(the oldest unclaimed go first)."""
PREFERENCES_KEY = "stated_preferences"
MAX_PREFERENCES = 5
MEMORY_HEADER = "What brainstack remembers (use it when relevant):"
NO_AGREEMENT = "no_agreement"
"""The outcome of a group chat that hit its round limit without the termination word."""

_ADVERB = r"(?: (?:really|much|also|generally|usually|still|definitely))?"
_PREFERENCE = re.compile(
    rf"(?:\b(?:(?P<prefer>i(?: would|'d|\u2019d)?{_ADVERB} prefer)|(?P<like>i{_ADVERB} like)|please always"
    r"|from now on,?)|^always)\s+(?P<what>\S.{2,})",
    re.IGNORECASE | re.DOTALL,
)
"""Matched within one sentence (see :func:`sentences`): what is preferred runs to its end. Not
"I would like", which asks for something in this task."""
MAX_PREFERENCE_CHARS = 120
_SENTENCE_END = re.compile(r"(?<![.!?])[.!?]++[\"')\]\u201d\u2019]*+(?=\s|$)")
"""Final punctuation and any closers, then white space or the end of the line.

Linear: it never starts inside a run of ``.!?`` and never gives back what it took. Without that,
finditer retried a failed run from each of its positions ("." * 8000 + "x": half a second).
Neither changes a match: one starting inside a run is also one from the run's start, which is
tried first, and giving back punctuation or a closer leaves one before the lookahead."""
_DOTTED_LETTERS = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")
_CLOSERS = "\"')]\u201d\u2019"
"""Closing quotes and brackets that may follow a sentence's final punctuation."""
_ABBREVIATIONS = frozenset(
    {"e.g", "i.e", "vs", "cf", "approx", "incl", "esp", "dept", "fig", "mr", "mrs", "ms", "dr", "prof"}
    | {"st", "jr", "sr", "inc", "ltd", "corp", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep"}
    | {"sept", "oct", "nov", "dec"}
)
"""Words whose full stop does not end a sentence (lower case, without that dot). Not "etc": it
ends a sentence as often as not."""


def estimate_tokens(text: str) -> int:
    """About four characters per token (the budget needs an estimate, not a tokenizer)."""
    return (len(text) + 3) // 4


def relevant_passages(task: str, passages: Sequence[Passage]) -> list[Passage]:
    """The passages worth recalling for ``task``, of the best ``passages`` a search returned.

    MiniLM scores a short question against a 200-token passage low: the passage that answers it
    scored 0.29-0.39 for 7 of the 20 answerable questions of the handbook set in
    ``benchmarks/bench_kb_search.py``, under the 0.4 that alone decided before (QA: 6 of 18). Such
    a passage shares words with the question, as unrelated passages and answers to questions the
    knowledge base cannot answer mostly do not: it is kept down to ``PASSAGE_MIN_KEYWORD_SCORE``
    when it shares a word with the task (stemmed, without stop words: :func:`keyword.tokenize`)
    and is within ``PASSAGE_BEST_MARGIN`` of the best passage. On that set: 20 of 20 answers kept
    instead of 13, no passage for 0 of 8 unanswerable questions, as before.

    A question that names an error code, a SKU, a version, a person or a store number scores
    lower still against the table or list that holds it, though a hybrid search ranks that
    passage first: on the script's identifier set the cosine rule dropped the answer to 8 of 20
    such questions (cosine 0.16-0.24). So the best keyword match of ``passages`` is also kept
    when it holds at least ``PASSAGE_MIN_COVERAGE`` of the task (:attr:`Passage.coverage
    <brainstack.memory.knowledge.Passage.coverage>`, which counts the task's words no chunk
    holds, so "error PAY-4099" is not covered by a table of other PAY codes) and every word of
    the task with a digit in it (a code, a version, a week: "4.15.0" shares its parts with every
    other version), and two of the task's words at least: a task of one word ("thanks") holds
    all of itself in any chunk that has the word, which names nothing (every answer the clause
    keeps on the set holds 2-5). On that set: 20 of 20 answers kept instead of 12; its unanswerable
    questions given a passage 5 of 8, as before (by cosine: the error table's chunks score
    0.45-0.57 for "What does error PAY-4099 mean?"); on the handbook set nothing changes. The coverages that
    decide were 0.68 and up for answers, 0.28 at most otherwise (benchmarks/RESULTS.md). Passages
    from a search by meaning alone have no coverage and are kept by cosine only.
    """
    from brainstack.memory.keyword import tokenize

    if not passages:
        return []
    best = max(p.score for p in passages)
    words = set(tokenize(task))
    numbers = {word for word in words if any(c.isdigit() for c in word)}
    named = max(passages, key=lambda p: p.keyword or 0.0)

    def names_the_task(p: Passage) -> bool:  # (two words at least: one word is no name)
        held = words.intersection(tokenize(p.text))
        return (p.coverage or 0.0) >= PASSAGE_MIN_COVERAGE and numbers <= held and len(held) >= 2

    return [
        p
        for p in passages
        if p.score >= PASSAGE_MIN_SCORE
        or (
            p.score >= max(PASSAGE_MIN_KEYWORD_SCORE, best - PASSAGE_BEST_MARGIN)
            and not words.isdisjoint(tokenize(p.text))
        )
        or (p is named and names_the_task(p))
    ]


def recent_messages(messages: Sequence[BaseMessage], max_messages: int, max_tokens: int) -> list[BaseMessage]:
    """The sensory buffer: the thread's last ``max_messages`` messages, trimmed to ``max_tokens``.

    Trimming keeps whole messages, newest first, and starts on a human message.
    """
    if max_messages <= 0 or max_tokens <= 0 or not messages:
        return []
    recent = list(messages)[-max_messages:]
    trimmed: list[BaseMessage] = trim_messages(
        recent,
        max_tokens=max_tokens,
        token_counter=count_tokens_approximately,
        strategy="last",
        start_on="human",
        allow_partial=False,
    )
    return trimmed


def sentences(text: str) -> list[str]:
    """``text`` split into sentences, each with its final punctuation.

    A sentence ends at a line break, or at ``.``, ``!`` or ``?`` (and any closing quote or
    bracket) followed by white space or the end of the text. So the dots inside an e-mail
    address, a URL, a version or a number never end one, and neither does the dot of an
    abbreviation ("e.g.", "Dr.") or of an initial ("A. Lovelace").
    """
    found = []
    for line in text.splitlines():
        start = 0
        for end in _SENTENCE_END.finditer(line):
            if end.group().startswith(".") and _abbreviation(_last_word(line, start, end.start())):
                continue
            found.append(line[start : end.end()].strip())
            start = end.end()
        found.append(line[start:].strip())
    return [sentence for sentence in found if sentence]


def _last_word(line: str, start: int, end: int) -> str:
    """The last white-space-separated word of ``line[start:end]`` ("" if there is none).

    Read backwards from ``end``: splitting all of ``line[start:end]`` at each full stop was
    quadratic while no sentence ended ("e.g. " * 1600 took 20 ms, 64k characters 1.2 s).
    """
    stop = end
    while stop > start and line[stop - 1].isspace():
        stop -= 1
    begin = stop
    while begin > start and not line[begin - 1].isspace():
        begin -= 1
    return line[begin:stop]


def _abbreviation(word: str) -> bool:
    """Whether ``word``, just before a full stop, is an abbreviation or an initial."""
    word = word.lstrip("(\"'\u201c\u2018")
    return (
        word.lower() in _ABBREVIATIONS
        or (len(word) == 1 and word.isupper())  # an initial: "A. Lovelace"
        or _DOTTED_LETTERS.fullmatch(word) is not None  # "U.S.", "U.K.", "a.m."
    )


_REPORTING = re.compile(
    r"\b(?:says?|said|writes?|wrote|tells?|told|asks?|asked|complains?|complained|claims?|claimed"
    r"|repl(?:y|ies|ied)|quotes?|quoted|reads|according to)\b",
    re.IGNORECASE,
)
"""Before "I prefer" in a sentence: someone else's words reported ("A customer says I prefer the
old page"), unless the user says it of themselves ("As I said, I prefer short answers")."""
_BY_ME = re.compile(r"\bi\s+$", re.IGNORECASE)
_CONDITION = re.compile(r"\b(?:if|whether|unless)\s+$", re.IGNORECASE)
"""Right before "I prefer": a condition, not a statement ("Tell me if I prefer the annual plan")."""
_SOURCE = re.compile(
    r"\b(?:complaint|review|feedback|survey|ticket|e-?mail|message|comment|quote|post|tweet|letter"
    r"|transcript|answer|response|reply|customer|client|caller)s?\b",
    re.IGNORECASE,
)
"""Before a colon that introduces "I prefer": where the words come from ("The survey answer: …")."""
_OPENING_QUOTE = re.compile(r"(?:^|[\s(\[:])['\u2018]")
_CLOSING_QUOTE = re.compile(r"['\u2019](?=[\s.,!?;:)\]]|$)")
_REFUSAL = re.compile(
    r"not to (?:say|answer|share|tell|disclose|comment|reveal|specify)"
    r"(?:\s+(?:it|that|this|which|why|now|here|yet))?",
    re.IGNORECASE,
)
""""I prefer not to say": declining to answer, not a way to be answered."""
_TO_US = re.compile(r"(?:it )?(?:when|if) you\b|you to\b|that you\b", re.IGNORECASE)
"""At the start of what is liked or preferred: what the runtime should do ("I like it when you cite
sources", "I prefer that you answer in German")."""
_IT_WHEN = re.compile(r"^it (?=(?:when|if) you\b)", re.IGNORECASE)
"""The "it" of "I like it when you …": the preference is "when you …"."""
_SPECIFIC = re.compile(
    r"(?:the|this|that|these|those|it|its|our|your|their|his|her)\b|\S+['\u2019]s\b", re.IGNORECASE
)
"""At the start of what is liked or preferred: a particular thing ("I like the new logo", "I prefer
our current supplier", "I like Ada's plan"), so an opinion about the task, not a way to answer."""
_ANSWER_WORDS = (
    "answer answers reply replies response responses summary summaries tl;dr tl;drs bullet bullets"
    " list lists table tables chart charts graph graphs diagram diagrams visuals example examples"
    " explanation explanations detail details numbers figures sources citation citations references"
    " links code snippet snippets units metric imperial currency currencies euro euros dollar"
    " dollars decimal decimals format formats formatted formatting tone language jargon words"
    " sentences paragraph paragraphs prose emoji emojis markdown heading headings step steps"
    " step-by-step pdf pdfs csv call calls email emails e-mail phone sms message messages"
)
_ANSWER_FORM = frozenset(_ANSWER_WORDS.split())
"""What "I like …" or "I prefer …" may name to be a preference: how an answer looks ("I like short
answers", "I like bullet points") or how to reach the user ("I prefer a call on …"); or else a
way to answer (:data:`_CHOICES`). Liking anything else ("I like remote work", "I like Python") is
an opinion on the subject."""
_WORD = re.compile(r"tl;drs?|[\w-]+")
"""A word of what is liked, looked up in ``_ANSWER_FORM`` (a set: one alternation of those words
searched at each position was 5 times slower on 8,000 characters of "I like ")."""


def _own_preferences(sentence: str) -> Iterator[re.Match[str]]:
    """The preference phrases of ``sentence`` that are the user's own statement: not inside a
    quotation, not someone else's words reported (by a verb, or a colon after their source) and
    not in a condition, and not an opinion (:func:`_an_opinion`). "As I said, …", "Going forward:
    …" and "If possible, …" are the user's."""
    for match in _PREFERENCE.finditer(sentence):
        before = sentence[: match.start()]
        quoted = (
            before.count('"') % 2 == 1
            or before.count("\u201c") > before.count("\u201d")
            or before.count("\u00ab") > before.count("\u00bb")
            or len(_OPENING_QUOTE.findall(before)) > len(_CLOSING_QUOTE.findall(before))
        )
        reported = any(not _BY_ME.search(before[: verb.start()]) for verb in _REPORTING.finditer(before))
        head, colon, _ = before.rpartition(":")
        sourced = bool(colon) and len(head.split()) > 1 and _SOURCE.search(head) is not None
        if quoted or reported or sourced or _CONDITION.search(before) or _an_opinion(match):
            continue
        yield match


def _an_opinion(match: re.Match[str]) -> bool:
    """Whether a matched "I like …" or "I prefer …" is an opinion about the task's subject ("I like
    the new logo", "I like our pricing page but conversions dropped", "I prefer AWS over GCP for
    this project"), not how the user wants to be answered: every later prompt would carry it (QA).
    Either verb needs what it names to be a form of answer ("short answers", "tables") or a way
    to give one (:data:`_CHOICES`: "euros", "metric", "French"); after "the", "our", … only the
    latter ("the answers in euros", not "the answer you gave"). "Always …" and "From now on, …"
    are instructions."""
    if match.group("like") is None and match.group("prefer") is None:
        return False
    what = match.group("what")
    if _TO_US.match(what):
        return False
    if _CLAUSE.match(what):
        return True
    # Decided on what would be stored (a long one is cut): searching 8,000 characters for the
    # choices' words took 10 ms (benchmarks/bench_text.py).
    head = what[: MAX_PREFERENCE_CHARS + 1]
    answer = not _ANSWER_FORM.isdisjoint(_WORD.findall(head.casefold()))
    topics = preference_topics(head)
    chosen = bool(topics & _CHOICES) or (
        bool(topics & _QUALITIES) and (answer or _IT.match(what) is not None)
    )
    if _SPECIFIC.match(what):
        return not chosen
    return not chosen and not answer


_CLAUSE = re.compile(r"that\b", re.IGNORECASE)
"""At the start of what is liked (after :data:`_TO_US`): a fact about the subject ("I like that
the new onboarding flow is shorter")."""
_CHOICES = frozenset({"currency", "language", "units", "temperature", "rounding", "jargon", "dates"})
"""The topics of :data:`_TOPICS` whose words say how to answer on their own. "I prefer X" with none
of them and no answer word was an opinion as often as not ("I prefer Stripe to PayPal for
payments", "I prefer a phased rollout": 6 of 14 opinions in one set were stored)."""
_QUALITIES = frozenset({"length", "tone"})
"""Topics whose words qualify anything: "short", "detailed" or "formal" say how to answer only of
an answer ("short answers", "a formal tone", "I like it short"). On their own they made opinions
preferences ("I prefer shorter sprints", "I prefer a formal contract with the supplier"), which
then replaced the user's stored preference on that topic (:func:`supersedes`)."""
_IT = re.compile(r"it\b", re.IGNORECASE)
"""At the start of what is liked or preferred: the answer ("I like it short")."""


def stated_preferences(task: str) -> list[str]:
    """Preferences the user states in a task ("I prefer short answers", "always use euros"): how
    to answer, not an opinion on the subject ("I like the new logo"; see :func:`_an_opinion`)."""
    found = []
    for sentence in sentences(task):
        if _a_question(sentence):
            continue
        for match in _own_preferences(sentence):
            what = _trimmed(_IT_WHEN.sub("", " ".join(match.group("what").split())))
            if len(what) > MAX_PREFERENCE_CHARS:  # whole words only
                what = what[: MAX_PREFERENCE_CHARS + 1].rsplit(" ", 1)[0].rstrip(" ,;:\u200d")
            if len(what) >= 3 and not _REFUSAL.fullmatch(what):
                found.append(what)
    return found


_PAIRS = {'"': '"', "\u201c": "\u201d", "'": "'", "\u2018": "\u2019", "(": ")", "[": "]"}
_OPENERS = {closer: opener for opener, closer in _PAIRS.items()}


def _unbalanced(text: str, opener: str, closer: str) -> bool:
    """Whether ``text`` holds an opener without its closer or a closer without its opener."""
    if opener == closer:
        return text.count(opener) % 2 == 1
    return text.count(opener) != text.count(closer)


def _wraps(text: str, opener: str, closer: str) -> bool:
    """Whether ``text``'s first character opens the pair its last one closes (not "(a) and (b)")."""
    if len(text) < 2 or text[0] != opener or text[-1] != closer:
        return False
    inner = text[1:-1]
    if opener == closer:
        return opener not in inner
    depth = 0
    for char in inner:
        depth += (char == opener) - (char == closer)
        if depth < 0:
            return False
    return depth == 0


def _trimmed(what: str) -> str:
    """A preference without its final punctuation and the quotes or brackets around it: a pair
    around all of it goes ('"short answers."' → short answers), a stray closer goes ('euros.)' →
    euros), and a pair inside stays ("answers sent to [email]")."""
    # rstrip, not re.sub(r"[.!,;:]+$"): re.sub retried a run that does not end the text from each
    # of its characters ("I prefer x" + "," * 8000 + "x": 0.13 s; 64k: 7 s).
    for _ in range(4):
        what = what.rstrip(".!,;:").strip()
        last = what[-1:]
        if last in _OPENERS:
            opener = _OPENERS[last]
            if _wraps(what, opener, last):
                what = what[1:-1]  # around all of it
                continue
            if _unbalanced(what, opener, last):
                what = what[:-1]  # a stray closer
                continue
        first = what[:1]
        if first in _PAIRS and _unbalanced(what, first, _PAIRS[first]):
            what = what[1:]  # an opener whose closer went with the full stop
            continue
        break
    return what


def _a_question(sentence: str) -> bool:
    """Whether ``sentence`` asks (even quoted: 'tables?"'): no preference is taken from it."""
    return sentence.rstrip(_CLOSERS).endswith("?")


def without_preferences(task: str) -> str:
    """The task with its preference sentences removed (they say how to answer, not what about).
    A question stays, as :func:`stated_preferences` stores nothing from it: "We lost 3 customers.
    I prefer short answers, what is our churn?" had become "We lost 3 customers." (review)."""
    kept = [s for s in sentences(task) if _a_question(s) or next(_own_preferences(s), None) is None]
    return " ".join(kept) if kept else task


def _comparable(preference: str) -> str:
    """A preference as ``memory forget --preference`` compares it: case, spacing and the quotes
    around it do not matter."""
    return _trimmed(" ".join(preference.split())).casefold()  # (_trimmed strips what it unwraps)


_TOPICS: dict[str, re.Pattern[str]] = {
    topic: re.compile(pattern, re.IGNORECASE)
    for topic, pattern in {
        # one choice each: any two preferences on it disagree, or say the same thing again
        "length": r"\b(?:short(?:er)?(?!-)|brief(?:er)?|concise|succinct|terse|compact|detailed"
        r"|long(?:er)?(?!-)|thorough|in-depth|comprehensive|verbose|exhaustive|elaborate|lengthy"
        r"|\d+ words)\b",
        "currency": r"\b(?:currenc(?:y|ies)|euros?|eur|dollars?|usd|gbp|sterling|pounds|yen|jpy"
        r"|francs?|chf)\b|[$\u20ac\u00a3\u00a5]",
        "language": r"\b(?:english|french|german|spanish|italian|portuguese|dutch|polish|swedish"
        r"|danish|norwegian|finnish|greek|turkish|russian|ukrainian|arabic|hebrew|hindi|japanese"
        r"|chinese|mandarin|korean)\b",
        "units": r"\b(?:metric|imperial|kilomet(?:re|er)s?|km|miles|kilograms?|kg|lbs)\b",
        "temperature": r"\b(?:celsius|fahrenheit)\b",
        "tone": r"\b(?:formal|informal|casual|friendly|professional|playful|warm|neutral|tone)\b",
        "code": r"\b(?:python|typescript|javascript|java|golang|rust|ruby|php|kotlin|swift|scala)\b",
        "rounding": r"\b(?:rounded|rounding|round (?:to|up|down|off)|decimals?|whole numbers"
        r"|significant figures)\b",
        "dates": r"\bdates?\b",
        "jargon": r"\b(?:jargon|technical terms|plain (?:language|english|words)|layman)",
        "order": r"\b(?:first|(?:start|begin|lead|open)s? with|at the (?:top|start)|up top)\b",
        # answer parts: one is about another only when it names the same part
        "tables": r"\btables?\b",
        "bullets": r"\bbullets?\b",
        "prose": r"\b(?:prose|paragraphs?)\b",
        "charts": r"\b(?:charts?|graphs?)\b",
        "emojis": r"\bemojis?\b",
        "sources": r"\b(?:sources|citations?|cite)\b",
    }.items()
}
"""What a preference is about, for :func:`supersedes`: a topic is a thing a user chooses one way
for (answer length, currency, language, …) or a part of an answer they want or not (tables, …)."""


def preference_topics(preference: str) -> frozenset[str]:
    """The topics (keys of ``_TOPICS``) a stored preference is about; none for "cc Dr. Lovelace"."""
    return frozenset(topic for topic, pattern in _TOPICS.items() if pattern.search(preference))


def supersedes(newer: str, older: str) -> bool:
    """Whether the preference ``newer`` replaces the stored ``older``: the same words (in any case,
    see :func:`_comparable`), or a choice on every topic of ``older`` ("detailed answers" replaces
    "short answers", "dollars" replaces "answers in euros"; "use euros" leaves "short answers").
    Only every topic: "answers in dollars" leaves "short answers in euros", whose length it does
    not restate (review: sharing one topic replaced it whole, and the length was lost).

    Topic words, not MiniLM's cosine: at its best threshold on the labelled pairs the cosine also
    replaced unrelated preferences that share words ("answers in euros" by "answers in French"),
    which loses one without a word, and it would tie a stored preference's fate to the embedder
    (benchmarks/bench_preferences.py). A missed replacement keeps both, as before."""
    if _comparable(newer) == _comparable(older):
        return True
    before = preference_topics(older)
    return bool(before) and before <= preference_topics(newer)


def render_memory(recall: MemoryRecall) -> str:
    """The recalled context as a prompt section (empty when nothing was recalled)."""
    lines: list[str] = []
    preferences = recall.preferences.get(PREFERENCES_KEY) or []
    if preferences:
        lines.append("User preferences: " + "; ".join(str(p) for p in preferences) + ".")
    other = {k: v for k, v in recall.preferences.items() if k != PREFERENCES_KEY}
    if other:
        lines.append(
            "About the user: "
            + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in other.items())
        )
    if recall.session:
        lines.append("This conversation: " + ", ".join(f"{k}={v}" for k, v in recall.session.items()))
    if recall.episodes:
        lines.append("Earlier episodes with this user:")
        lines += [f"- {_one_line(e.text)}" for e in recall.episodes]
    if recall.passages:
        lines.append("From the knowledge base (cite the source):")
        lines += [f"- [{p.source.rsplit('/', 1)[-1]}] {_one_line(p.text)}" for p in recall.passages]
    for skill in recall.skills:
        n = skill.success_count  # (a built-in skill no run has followed yet has none)
        lines.append(f"A procedure that worked before ({successes(n)}):" if n else "A procedure to follow:")
        lines.append(skill.instructions)
    return (MEMORY_HEADER + "\n" + "\n".join(lines)) if lines else ""


class MemoryGateway:
    """Opens the memory layers lazily from settings and serves the graph's recall/remember."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        working: WorkingMemory | None = None,
        episodes: EpisodicMemory | None = None,
        knowledge: KnowledgeBase | None = None,
        skills: SkillStore | None = None,
    ) -> None:
        self.settings = settings
        self._embedder = embedder
        self._working = working
        self._episodes = episodes
        self._knowledge = knowledge
        self._skills = skills
        self._chroma: Any = None
        self._lock = threading.Lock()
        self._ahead: OrderedDict[tuple[Any, ...], Future[tuple[str, Any]]] = OrderedDict()
        self._ahead_lock = threading.Lock()

    # -- layers (opened on first use) ----------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from brainstack.memory.embeddings import default_embedder

            self._embedder = default_embedder(self.settings)
        return self._embedder

    @property
    def chroma(self) -> Any:
        with self._lock:
            if self._chroma is None:
                from brainstack.memory.episodic import open_chroma

                if self.settings.chroma_url:
                    self._chroma = open_chroma(url=self.settings.chroma_url)
                else:
                    self._chroma = open_chroma(path=self.settings.chroma_path)
            return self._chroma

    @property
    def working(self) -> WorkingMemory:
        if self._working is None:
            from brainstack.memory.working import open_working_memory

            self._working = open_working_memory(self.settings)
        return self._working

    @property
    def episodes(self) -> EpisodicMemory:
        if self._episodes is None:
            from brainstack.memory.episodic import EpisodicMemory

            self._episodes = EpisodicMemory(
                self.chroma, embedder=self.embedder, index_dir=self._keyword_index_dir()
            )
        return self._episodes

    def _keyword_index_dir(self) -> Path:
        """Saved keyword indexes: per Chroma location (the local folder, or one server's URL)."""
        url = self.settings.chroma_url
        where = "local" if not url else "server-" + hashlib.sha256(url.encode()).hexdigest()[:16]
        return self.settings.home / "keyword-index" / where

    @property
    def knowledge(self) -> KnowledgeBase:
        if self._knowledge is None:
            from brainstack.memory.knowledge import KnowledgeBase

            self._knowledge = KnowledgeBase(
                self.chroma, embedder=self.embedder, index_dir=self._keyword_index_dir()
            )
        return self._knowledge

    @property
    def skills(self) -> SkillStore:
        if self._skills is None:
            from brainstack.memory.skills import SkillStore

            self._skills = SkillStore(self.settings.skills_path, embedder=self.embedder)
        return self._skills

    def warm_up(self) -> None:
        """Open the Chroma client and the working memory now (they are otherwise opened by the
        first recall); failures are left for recall to report."""
        try:
            self.chroma  # noqa: B018 - opening is the point
            self.working  # noqa: B018
        except Exception:
            return

    # -- recall --------------------------------------------------------------------------------

    async def recall(self, user_id: str, thread_id: str, task: str) -> MemoryRecall:
        """Ask every layer at once; what fails is listed in ``degraded``."""
        layers: dict[str, Callable[[], Any]] = {
            "working": lambda: (
                self.working.items("user", user_id),
                self.working.items("session", thread_id),
            ),
            "episodic": lambda: self.episodes.search(user_id, task, k=EPISODES_K + 2),
            "knowledge": lambda: self.knowledge.search(task, k=PASSAGES_K),
            "procedural": lambda: self._recall_skills(task),
        }
        # Embed the task once, before the layers start: they then share the embedder's cache
        # instead of each computing the same vector at the same moment (with the default int8
        # queries, the router's model and cache: its prefetch of the same text is waited for).
        embedded = await _timed("embedding", lambda: query_embedding(self.embedder, task))
        results = await asyncio.gather(*(_timed(name, fn) for name, fn in layers.items()))
        results.insert(0, embedded)
        out: dict[str, Any] = {"timings": {}, "degraded": []}
        values: dict[str, Any] = {}
        for name, value, ms, error in results:
            out["timings"][name] = ms
            if error is not None:
                out["degraded"].append(f"{name}: {error}")
            else:
                values[name] = value
        preferences, session = values.get("working", ({}, {}))
        recall = MemoryRecall(
            preferences=preferences,
            session=session,
            episodes=[
                RecalledEpisode(
                    id=e.id,
                    text=_clip(e.text),
                    score=round(e.score, 4),
                    thread_id=e.metadata.get("thread_id"),
                    route=e.metadata.get("route"),
                )
                for e in values.get("episodic", [])
                if (e.dense_score or 0) >= EPISODE_MIN_DENSE
                or (e.keyword_score is not None and (e.dense_score or 0) >= EPISODE_MIN_KEYWORD_DENSE)
            ][:EPISODES_K],
            passages=[
                RecalledPassage(source=p.source, text=_clip(p.text), score=round(p.score, 4))
                for p in relevant_passages(task, values.get("knowledge", []))
            ],
            skills=values.get("procedural", []),
            timings=out["timings"],
            degraded=out["degraded"],
        )
        return _within_budget(recall, self.settings.memory_token_budget)

    def _recall_skills(self, task: str) -> list[RecalledSkill]:
        """Matching skills, run: tool steps executed now, checks handed to review."""
        from brainstack.memory.skills import CheckStep, run_skill

        recalled = []
        for match in self.skills.match(task, k=SKILLS_K):
            skill = self.skills.get(match.name)
            run = run_skill(skill)
            instructions = run.instructions
            if run.tool_results:
                results = [
                    f"{r['tool']}({_arguments(r['arguments'])}) = {r['result']}" for r in run.tool_results
                ]
                instructions += "\nResults of its tool steps: " + "; ".join(results)
            recalled.append(
                RecalledSkill(
                    name=match.name,
                    score=match.score,
                    success_count=match.success_count,
                    source=match.source,
                    instructions=instructions,
                    checks=[s.model_dump(exclude={"kind"}) for s in skill.steps if isinstance(s, CheckStep)],
                )
            )
        return recalled

    # -- remember ------------------------------------------------------------------------------

    def prefetch_episode(self, state: dict[str, Any]) -> None:
        """Start embedding the episode :meth:`remember` will write for ``state`` on a worker thread:
        ``remember`` then waits for that vector instead of computing it.

        The graph calls it once an agent has answered (and again when review sends the run on to
        remember: the same episode is not embedded twice), so the embedding, most of remember's
        time, runs while those steps are checkpointed. Nothing is opened for it: without an
        episode store already open it does nothing. Everything but a look-up happens on the worker
        thread; what fails there is done again (and reported) by ``remember``.
        """
        episodes = self._episodes
        if episodes is None:
            return
        parts = {key: state.get(key) for key in _EPISODE_PARTS}
        try:
            key = _episode_key(parts)
        except TypeError:  # not a state remember can describe either: it reports that itself
            return
        with self._ahead_lock:
            if key in self._ahead:
                return
            while len(self._ahead) >= EPISODES_AHEAD:
                self._ahead.popitem(last=False)
            self._ahead[key] = _pool().submit(_embed_episode, episodes, parts)

    def _embedded_ahead(self, state: dict[str, Any], text: str) -> Any:
        """The vector :meth:`prefetch_episode` computed for the episode ``text`` of ``state``
        (taken: each is used once), or ``None`` when there is none, or it failed."""
        from brainstack.memory.episodic import episode_document

        try:
            key = _episode_key(state)
        except TypeError:
            return None
        with self._ahead_lock:
            ahead = self._ahead.pop(key, None)
        if ahead is None or ahead.cancel():  # still waiting for a thread: quicker to embed it now
            return None
        try:
            document, vector = ahead.result()
        except Exception:  # computed again by the store, which reports what fails
            return None
        return vector if document == episode_document(text) else None

    async def remember(self, state: dict[str, Any], thread_id: str, run: str | None = None) -> MemoryWrite:
        """Write what this run should leave behind; failures are recorded, never raised.

        ``run`` names this write (the graph passes its remember step's task id, the same when the
        step runs again after a crash): writing it again replaces its episode, and does not count
        its skill's success twice. Without it, every call writes a new episode.

        The layers share nothing, so they are written at the same time: the episode (its embedding
        and the store's write, most of the time) on one worker thread, the working memory
        (preferences, then session facts) and the skill on another. What a layer fails to write is
        listed in ``degraded`` (in that order); the others are written all the same. Returns once
        every layer is done.
        """
        return await asyncio.to_thread(self._remember, state, thread_id, run)

    def _remember(self, state: dict[str, Any], thread_id: str, run: str | None = None) -> MemoryWrite:
        user_id = state.get("user_id") or "default"
        key = None if run is None else uuid.uuid5(uuid.NAMESPACE_URL, f"brainstack:{thread_id}:{run}").hex
        with contextlib.suppress(Exception):  # opened here, not by two layers at once; a failure
            self.embedder  # noqa: B018 - is reported by the layers that need it

        def others() -> tuple[_Written, _Written]:
            working = self._remember_working(state, user_id, thread_id)
            return working, self._remember_skill(state, thread_id, key)

        # The short writes go to the pool, the long one stays here: they are usually done when it
        # is, so the loop is woken once, as when the layers were written one after another.
        meanwhile = _pool().submit(others)
        try:
            episode = self._remember_episode(state, user_id, thread_id, key)
        except BaseException:  # a bug, not a layer failing: raised once the other layers are done
            wait([meanwhile])
            raise
        working, skill = meanwhile.result()
        write: dict[str, Any] = {"degraded": []}
        for fields, degraded in (working, episode, skill):
            write.update(fields)
            write["degraded"] += degraded
        return MemoryWrite(**write)

    def forget_preference(self, user_id: str, preference: str) -> list[str]:
        """Delete a stated preference of the user (compared ignoring case, spacing, the quotes
        around it and a final full stop; every stored form of it goes); returns those left.
        ``KeyError`` naming the stored ones when it is not one."""
        return self.forget_preference_as_stored(user_id, preference)[1]

    def forget_preference_as_stored(self, user_id: str, preference: str) -> tuple[str, list[str]]:
        """:meth:`forget_preference`, also returning the preference as it was stored (its first
        stored form: 'short answers' for "Short Answers"), read in the same update."""
        wanted = _comparable(preference)
        found: list[str] = []

        def without(stored: Any) -> list[str] | None:
            found[:] = [str(p) for p in stored or []]
            left = [p for p in found if _comparable(p) != wanted]
            return (found or None) if len(left) == len(found) else (left or None)  # absent: unchanged

        # (keep_ttl: forgetting one must not make the others last longer)
        left = self._update_working("user", user_id, PREFERENCES_KEY, without, keep_ttl=True) or []
        if len(left) == len(found):
            stored = "; ".join(repr(p) for p in found) if found else "none"
            raise KeyError(
                f"User {user_id!r} has no stated preference {preference.strip()!r} (stored: {stored})."
            )
        return next(p for p in found if _comparable(p) == wanted), left

    def _update_working(
        self,
        scope: Literal["user", "session"],
        owner: str,
        key: str,
        change: Callable[[Any], Any],
        *,
        keep_ttl: bool = False,
    ) -> Any:
        """``change`` applied to a working-memory value at once: no other write comes between the
        read and the write (two processes stating preferences for one user lost one, QA). A working
        memory of your own without ``update`` gets a read, then a write."""
        update = getattr(self.working, "update", None)
        if update is not None:
            return update(scope, owner, key, change, keep_ttl=keep_ttl)
        value = change(self.working.get(scope, owner, key))
        if value is None:
            self.working.delete(scope, owner, key)
        else:
            self.working.set(scope, owner, key, value)
        return value

    def _remember_working(self, state: dict[str, Any], user_id: str, thread_id: str) -> _Written:
        """Preferences the task states (for the user) and this run's facts (for the session)."""
        written: dict[str, Any] = {}
        attempt = _Attempts()
        # Personal data is masked in everything written here, as the episode store masks episodes:
        # working memory is shared by the user's sessions (and, with Redis, machines). Masked before
        # anything is cut, so no cut address escapes.
        masked_task = mask_pii(state.get("task", ""))
        preferences = stated_preferences(masked_task)
        if preferences:

            def store_preferences() -> dict[str, Any]:
                def merged(known: Any) -> list[Any]:
                    kept = list(known or [])
                    for preference in preferences:  # newest wins, also within the task
                        kept = [p for p in kept if not supersedes(preference, str(p))] + [preference]
                    return kept[-MAX_PREFERENCES:]

                return {PREFERENCES_KEY: self._update_working("user", user_id, PREFERENCES_KEY, merged)}

            written["preferences"] = attempt("working", store_preferences) or {}

        route = state.get("route") or {}
        session = {"last_task": _clip(masked_task, 120), "last_route": route.get("target", "")}

        def store_session() -> bool:
            for key, value in session.items():
                self.working.set("session", thread_id, key, value)
            return True

        if attempt("working", store_session):
            written["session"] = session
        return written, attempt.degraded

    def _remember_episode(
        self, state: dict[str, Any], user_id: str, thread_id: str, key: str | None = None
    ) -> _Written:
        """The run as one episode of the user's (the episode store masks it), stored under ``key``
        (see :meth:`remember`)."""
        attempt = _Attempts()
        text, metadata = _episode_text(state), _episode_metadata(state, thread_id)
        once = {} if key is None else {"episode_id": key}
        episode_id = attempt(
            "episodic",
            lambda: self.episodes.add(
                user_id, text, metadata, embedding=self._embedded_ahead(state, text), **once
            ),
        )
        return {"episode_id": episode_id}, attempt.degraded

    def _remember_skill(self, state: dict[str, Any], thread_id: str, key: str | None = None) -> _Written:
        """After a successful run: reinforce the skills it followed, or learn its procedure.

        A group chat that ran out of rounds without its termination word reached no decision: it
        neither teaches nor reinforces a skill. Nor does a run the offline model answered: its
        answers only echo the run's inputs, so there is no procedure to keep and no success to
        count (skills are shared by every user).
        """
        if state.get("model") == "offline":
            return {}, []
        task = state.get("task", "")
        route = state.get("route") or {}
        approval = (state.get("approval") or {}).get("status")
        review = state.get("review") or {}
        succeeded = (
            review.get("status", "ok") in ("ok", "retried")
            and bool(state.get("answer", ""))
            and approval != "rejected"
            and review.get("agreed") is not False
        )
        written: dict[str, Any] = {}
        attempt = _Attempts()
        once = {} if key is None else {"run": key}  # (stores that do not take the key still work)
        recalled = [s.get("name") for s in (state.get("memory") or {}).get("skills", [])]
        if succeeded and recalled:
            # The run followed a recalled skill: reinforce it rather than learn a near-copy.
            def reinforce() -> tuple[str, bool]:
                for name in recalled:
                    self.skills.record_success(name, thread_id, **once)
                return recalled[0], False

            reinforced = attempt("procedural", reinforce)
            if reinforced:
                written["skill"], written["skill_created"] = reinforced
        elif succeeded and (steps := _procedure(state)):
            # Learned skills are shared by every user: the description is masked (before it is cut)
            # like everything else the skill store writes, and the task loses the preferences its
            # user stated ("I prefer short answers" is theirs, kept in their working memory).
            subject = without_preferences(task)
            learned = attempt(
                "procedural",
                lambda: self.skills.learn(
                    task=subject,
                    route=route.get("target", "general"),
                    steps=steps,
                    description=f"Learned from a successful {route.get('kind', 'run')}: "
                    + _clip(mask_pii(subject), 200),
                    thread_id=thread_id,
                    **once,
                ),
            )
            if learned:
                written["skill"], written["skill_created"] = learned
        return written, attempt.degraded


_Written = tuple[dict[str, Any], list[str]]
"""What one layer wrote (``MemoryWrite`` fields), and what it failed to write."""


class _Attempts:
    """Runs a layer's writes; a write that fails is described in ``degraded``, not raised."""

    def __init__(self) -> None:
        self.degraded: list[str] = []

    def __call__(self, layer: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            self.degraded.append(f"{layer}: {_describe(exc)}")
            return None


def _episode_text(state: dict[str, Any]) -> str:
    """The text of the episode ``remember`` writes for a run (the store masks it)."""
    route = state.get("route") or {}
    speakers = ", ".join(state.get("speakers") or []) or "no agent"
    summary = _clip(mask_pii(" ".join(state.get("answer", "").split())), 400)  # masked before it is cut
    return f"{state.get('task', '')}\n→ {route.get('target', '?')} ({speakers}): {summary}"


_EPISODE_PARTS = ("task", "route", "speakers", "answer")
"""What an episode's text is made of (:func:`_episode_text`)."""


def _episode_key(state: dict[str, Any]) -> tuple[Any, ...]:
    """An episode's text, identified by its parts without building it (that masks the answer)."""
    route = state.get("route")
    target = route.get("target") if isinstance(route, dict) else route
    key = (state.get("task"), target, tuple(state.get("speakers") or ()), state.get("answer"))
    hash(key)  # TypeError when something in it cannot be a key
    return key


def _embed_episode(episodes: EpisodicMemory, parts: dict[str, Any]) -> tuple[str, Any]:
    """The document the episode store keeps of an episode, and its vector."""
    from brainstack.memory.episodic import episode_document

    document = episode_document(_episode_text(parts))
    return document, episodes.embedder.embed([document])[0]


def _episode_metadata(state: dict[str, Any], thread_id: str) -> dict[str, Any]:
    """The metadata of the episode ``remember`` writes for a run (the store masks it)."""
    route = state.get("route") or {}
    review = state.get("review") or {}
    approval = (state.get("approval") or {}).get("status")
    return {
        "thread_id": thread_id,
        "route": route.get("target", ""),
        "kind": route.get("kind", ""),
        "speakers": state.get("speakers") or [],
        # A group chat that ran out of rounds without its termination word reached no decision.
        "outcome": _outcome(approval or review.get("status", "ok"), review.get("agreed") is not False),
        "task": _clip(mask_pii(state.get("task", "")), 500),
    }


_workers: ThreadPoolExecutor | None = None
_workers_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """Threads for the gateway's own background work (episodes embedded ahead, the short layer
    writes while remember writes the episode), sized like asyncio's default executor."""
    global _workers
    with _workers_lock:
        if _workers is None:
            workers = min(32, (os.cpu_count() or 1) + 4)
            _workers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="brainstack-memory")
        return _workers


def _outcome(status: str, agreed: bool) -> str:
    """An episode's outcome: the review's (or the approver's) status, and whether the team agreed."""
    if agreed:
        return status
    return NO_AGREEMENT if status == "ok" else f"{status}, {NO_AGREEMENT}"


def _procedure(state: dict[str, Any]) -> list[Any]:
    """Steps worth keeping from a successful multi-step run (a group chat, or tool use)."""
    from brainstack.memory.skills import CheckStep, PromptStep, ToolStep

    transcript = state.get("transcript") or []
    tool_calls = state.get("tool_calls") or []
    steps: list[Any] = []
    if len(transcript) >= 2:
        for turn in transcript:
            first = re.split(r"(?<=[.!?])\s", " ".join(turn["content"].split()), maxsplit=1)[0]
            text = mask_pii(f"{turn['speaker']}: {first}")  # before clipping: a cut address is not masked
            steps.append(PromptStep(kind="prompt", text=_clip(text, 300)))
        steps.append(CheckStep(kind="check", text="The answer states the team's decision.", min_chars=20))
    elif len(tool_calls) >= 2:  # one tool call is a look-up, not a procedure
        for call in tool_calls[:5]:
            arguments = {
                k: v for k, v in call.get("arguments", {}).items() if isinstance(v, str | int | float | bool)
            }
            try:
                steps.append(
                    ToolStep(
                        kind="tool",
                        tool=call["tool"],
                        arguments=arguments,
                        note="as in the run this was learned from",
                    )
                )
            except ValueError:
                continue
        if steps:
            steps.insert(
                0, PromptStep(kind="prompt", text="Work the numbers out with the tools, then answer.")
            )
    return steps


async def _timed(name: str, fn: Callable[[], Any]) -> tuple[str, Any, float, str | None]:
    start = time.perf_counter()
    try:
        value = await asyncio.to_thread(fn)
        error = None
    except Exception as exc:
        value, error = None, _describe(exc)
    return name, value, round((time.perf_counter() - start) * 1000, 3), error


def _arguments(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in arguments.items())


def _describe(exc: BaseException) -> str:
    from brainstack.errors import BrainstackError, translate

    error = exc if isinstance(exc, BrainstackError) else translate(exc)
    return str(error)


def successes(count: int) -> str:
    """``1 success``, ``2 successes``: a skill's success count, in words."""
    return "1 success" if count == 1 else f"{count} successes"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clip(text: str, limit: int = ITEM_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def _within_budget(recall: MemoryRecall, budget: int) -> MemoryRecall:
    """Drop the least important items (passages, then episodes, then skills) until it fits."""
    episodes, passages, skills = list(recall.episodes), list(recall.passages), list(recall.skills)

    def build() -> MemoryRecall:
        return recall.model_copy(update={"episodes": episodes, "passages": passages, "skills": skills})

    current = build()
    while estimate_tokens(render_memory(current)) > budget and (passages or episodes or skills):
        for items in (passages, episodes, skills):
            if items:
                items.pop()
                break
        current = build()
    return current.model_copy(update={"tokens": estimate_tokens(render_memory(current))})
