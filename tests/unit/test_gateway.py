"""The memory gateway's pure functions: sensory buffer, stated preferences, rendering and the budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.messages.utils import count_tokens_approximately

from brainstack.agents.offline import split_memory
from brainstack.memory.gateway import (
    MEMORY_HEADER,
    PREFERENCES_KEY,
    _within_budget,
    estimate_tokens,
    recent_messages,
    relevant_passages,
    render_memory,
    sentences,
    stated_preferences,
    supersedes,
    without_preferences,
)
from brainstack.memory.knowledge import Passage
from brainstack.memory.skills import SkillStore
from brainstack.results import MemoryRecall, RecalledEpisode, RecalledPassage, RecalledSkill

# -- estimate_tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "tokens"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100)])
def test_estimate_tokens_is_four_characters_a_token_rounded_up(text, tokens):
    assert estimate_tokens(text) == tokens


# -- relevant_passages -------------------------------------------------------------------------

SMS = "Every employee uses a hardware security key for single sign-on; SMS codes are not accepted."


def _passage(text: str, score: float) -> Passage:
    return Passage(text=text, source="/kb/security.md", score=score)


@pytest.mark.parametrize(
    ("task", "scores", "kept"),
    [
        # QA: the answer scored under 0.4 and recall gave nothing; it shares "codes", "accept"
        ("Do we accept text message codes for login?", [0.34, 0.13], [0.34]),
        ("Do we accept text message codes for login?", [0.42, 0.34], [0.42, 0.34]),  # within 0.1
        ("Do we accept text message codes for login?", [0.5, 0.38], [0.5]),  # beyond 0.1 of the best
        ("Do we accept text message codes for login?", [0.24], []),  # too far from the task
        ("What is the parental leave policy?", [0.35, 0.3], []),  # no word in common
        ("What is the parental leave policy?", [0.41], [0.41]),  # close enough without one
        ("Do we accept text message codes for login?", [], []),
    ],
)
def test_relevant_passages_keep_close_ones_and_low_ones_sharing_a_word(task, scores, kept):
    passages = [_passage(SMS, score) for score in scores]
    assert [p.score for p in relevant_passages(task, passages)] == kept


def test_a_shared_stop_word_is_no_shared_word():
    passage = _passage("What we do is what the team decides, and the rest is noise.", 0.3)
    assert relevant_passages("What is the parental leave policy?", [passage]) == []


ERRORS = "| PAY-4031 | Card declined by the issuer | Do not retry; the customer calls their bank |"
DIRECTORY = "| Amara Nwosu | Inventory | Product manager | 4309 | Lille |"
ROTA = "| Week 48 | primary on-call: Oskar Haugen | secondary: Ingrid Vasquez |"


def _matched(text: str, score: float, keyword: float, coverage: float) -> Passage:
    return Passage(text=text, source="/kb/table.md", score=score, keyword=keyword, coverage=coverage)


@pytest.mark.parametrize(
    ("task", "text", "coverage", "kept"),
    [
        # MiniLM scores a question naming a code or a person low against the table row holding it
        ("What does error PAY-4031 mean?", ERRORS, 0.7, True),
        ("Which team is Amara Nwosu in?", DIRECTORY, 1.1, True),
        ("Which team is Amara Nwosu in?", DIRECTORY, 0.4, False),  # holds too little of the task
        ("What does error PAY-4099 mean?", ERRORS, 0.7, False),  # not the code it names
        ("Who is the primary on-call in week 52?", ROTA, 0.8, False),  # nor the week it names
        ("Who is the primary on-call in week 48?", ROTA, 0.8, True),
    ],
)
def test_the_best_keyword_match_holding_most_of_the_task_is_kept_whatever_its_cosine(
    task, text, coverage, kept
):
    named = _matched(text, 0.18, 6.0, coverage)
    other = _matched("Prices include VAT and every item can be returned within 30 days.", 0.2, 1.0, 0.1)
    assert relevant_passages(task, [other, named]) == ([named] if kept else [])


@pytest.mark.parametrize("task", ["thanks", "Thanks!", "refunds"])
def test_a_task_of_one_word_is_not_named_by_the_chunk_that_holds_it(task):
    """One word held is all of a one-word task (coverage about 1): the clause kept whichever
    chunk had the word, whatever its cosine ("thanks" kept a chunk thanking a supplier)."""
    named = _matched("Thanks to our supplier, refunds now take 3 days.", 0.1, 2.0, 1.0)
    assert relevant_passages(task, [named]) == []
    assert relevant_passages(f"{task} policy", [named]) == []  # (the second word is not held)
    assert relevant_passages(f"{task} supplier", [named]) == [named]


def test_only_the_best_keyword_match_is_kept_for_its_coverage():
    first, second = _matched(ERRORS, 0.1, 6.0, 0.7), _matched(ERRORS + " ", 0.1, 5.0, 0.6)
    assert relevant_passages("What does error PAY-4031 mean?", [second, first]) == [first]


def test_passages_found_by_meaning_alone_are_kept_by_their_cosine_only():
    """A search by meaning gives no keyword score nor coverage: the cosine rule alone decides."""
    low = _passage(ERRORS, 0.18)
    assert low.keyword is None and low.coverage is None
    assert relevant_passages("What does error PAY-4031 mean?", [low]) == []


# -- recent_messages ---------------------------------------------------------------------------


def _thread(turns: int = 3) -> list:
    messages = []
    for n in range(1, turns + 1):
        messages += [HumanMessage(f"question {n} " * 10), AIMessage(f"answer {n} " * 10)]
    return messages


def _names(messages) -> list[str]:
    return [" ".join(m.content.split()[:2]) for m in messages]


def test_everything_fits():
    thread = _thread()
    assert recent_messages(thread, 10, 10_000) == thread


def test_max_messages_keeps_the_newest():
    thread = _thread()
    assert _names(recent_messages(thread, 4, 10_000)) == ["question 2", "answer 2", "question 3", "answer 3"]
    assert _names(recent_messages(thread, 2, 10_000)) == ["question 3", "answer 3"]


def test_max_messages_starts_on_a_human_message():
    thread = _thread()
    # the last 3 messages begin with an AI answer, which is dropped
    assert _names(recent_messages(thread, 3, 10_000)) == ["question 3", "answer 3"]
    assert recent_messages(thread, 1, 10_000) == []  # only an AI message is left: nothing


def test_token_budget_trims_the_oldest_whole_messages():
    thread = _thread()
    last_two = count_tokens_approximately(thread[-2:])
    last_four = count_tokens_approximately(thread[-4:])
    assert _names(recent_messages(thread, 6, last_two)) == ["question 3", "answer 3"]
    assert _names(recent_messages(thread, 6, last_four)) == [
        "question 2",
        "answer 2",
        "question 3",
        "answer 3",
    ]
    # one token short of four messages: the budget admits three, which would start on an answer
    assert _names(recent_messages(thread, 6, last_four - 1)) == ["question 3", "answer 3"]
    for message in recent_messages(thread, 6, last_four - 1):
        assert message.content in {m.content for m in thread}  # whole messages, never cut


def test_too_small_a_budget_gives_nothing():
    thread = _thread()
    assert recent_messages(thread, 6, count_tokens_approximately(thread[-1:]) - 1) == []


@pytest.mark.parametrize(("max_messages", "max_tokens"), [(0, 1000), (5, 0), (-1, 1000), (5, -5)])
def test_zero_budgets_give_nothing(max_messages, max_tokens):
    assert recent_messages(_thread(), max_messages, max_tokens) == []


def test_no_messages():
    assert recent_messages([], 5, 1000) == []


def test_a_system_message_is_not_where_the_buffer_starts():
    thread = [SystemMessage("you are helpful"), *_thread(1)]
    assert _names(recent_messages(thread, 10, 10_000)) == ["question 1", "answer 1"]


# -- stated_preferences ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "preferences"),
    [
        ("I prefer short answers.", ["short answers"]),
        ("I would prefer euros.", ["euros"]),
        ("please always cite sources", ["cite sources"]),
        ("Please always cite sources! What is our churn?", ["cite sources"]),
        ("From now on, answer in French.", ["answer in French"]),
        ("from now on answer in French", ["answer in French"]),
        ("I like bullet points. Also, from now on, use metric units.", ["bullet points", "use metric units"]),
        ("I prefer   short \t answers,", ["short answers"]),  # whitespace collapsed, trailing comma gone
    ],
)
def test_stated_preferences(task, preferences):
    assert stated_preferences(task) == preferences


@pytest.mark.parametrize("task", ["I'd prefer euros", "I'd prefer euros.", "i'd prefer euros"])
def test_contracted_i_would_prefer(task):
    assert stated_preferences(task) == ["euros"]


@pytest.mark.parametrize(
    "task",
    [
        "What is our churn rate?",
        "Should we raise prices by 20 percent?",
        "Do you like cats?",
        "What do I prefer?",
        "I prefer",
        "",
    ],
)
def test_plain_questions_state_no_preference(task):
    assert stated_preferences(task) == []


@pytest.mark.parametrize(
    "task",
    [
        "A customer complaint says: I prefer the old pricing page. Summarize it.",
        'The survey answer was "I prefer the old pricing page". Summarize it.',
        "The survey answer was \u201cI like the dark mode\u201d, from 40 people.",
        "Our top reviewer wrote that I like the dark mode more than anyone.",
        "The ticket reads 'I prefer email support' in bold.",
        "A customer said I prefer the annual plan.",
        "The survey answer: I prefer the old pricing page.",
        "You said I prefer tables, but show me the chart.",
        "Tell me if I prefer the annual plan, given my usage.",
        "I prefer not to say.",
        "I'd prefer not to answer that.",
        "I prefer not to share it",
    ],
)
def test_reported_speech_conditions_and_refusals_are_no_preference(task):
    """QA: quoted and reported speech was stored as the user's own preference, and "I prefer
    not to say" as the preference "not to say"."""
    assert stated_preferences(task) == []


@pytest.mark.parametrize(
    ("task", "preferences"),
    [
        ("Note: I prefer short answers.", ["short answers"]),
        ("I prefer not to use jargon.", ["not to use jargon"]),
        ("Honestly, I prefer tables over prose.", ["tables over prose"]),
        ("I don't mind either way. I prefer euros.", ["euros"]),  # an apostrophe opens no quote
        ("Because I prefer euros, convert the totals.", ["euros, convert the totals"]),
        ('I prefer "metric units".', ["metric units"]),  # quotes around all of it go, as after "x." does
        ("I prefer 'short answers'", ["short answers"]),  # QA: the closing quote went, the opening stayed
        (
            "I prefer answers sent to [email] or a call on [phone]",
            ["answers sent to [email] or a call on [phone]"],
        ),
        ("I prefer 'short' and 'long' lists", ["'short' and 'long' lists"]),
        ("I prefer answers with (a) and (b)", ["answers with (a) and (b)"]),
        # the review's cases: a user restating a preference, a lead-in, a condition of their own
        ("As I said, I prefer short answers.", ["short answers"]),
        ("Like I told you before, I prefer answers in euros.", ["answers in euros"]),
        ("Going forward: I prefer short answers.", ["short answers"]),
        ("If possible, I prefer tables.", ["tables"]),
    ],
)
def test_the_users_own_preferences_around_those_cases_are_kept(task, preferences):
    assert stated_preferences(task) == preferences


def test_a_reported_preference_stays_in_the_task():
    task = "A customer complaint says: I prefer the old pricing page. Summarize it."
    assert without_preferences(task) == task


@pytest.mark.parametrize("task", ["Should we always raise prices?", "Why is the build always red?"])
def test_always_inside_a_question_is_no_preference(task):
    assert stated_preferences(task) == []


@pytest.mark.parametrize(
    ("task", "preferences"),
    [
        ("I prefer answers sent to ada.lovelace@example.com", ["answers sent to ada.lovelace@example.com"]),
        (
            "I prefer answers sent to ada.lovelace@example.com. What is our churn?",
            ["answers sent to ada.lovelace@example.com"],
        ),
        (
            "I like answers that link to https://example.com/q3.pdf. Thanks",
            ["answers that link to https://example.com/q3.pdf"],
        ),
        (
            "From now on, use the v2.5 price list and round to 0.01 euros.",
            ["use the v2.5 price list and round to 0.01 euros"],
        ),
        ("I prefer examples, e.g. tables, over prose.", ["examples, e.g. tables, over prose"]),
        ("Please always cc Dr. Lovelace. What is our churn?", ["cc Dr. Lovelace"]),
        ("I prefer short answers\nWhat is our churn", ["short answers"]),  # a line break ends it
    ],
)
def test_dots_inside_addresses_numbers_and_abbreviations_do_not_end_a_preference(task, preferences):
    assert stated_preferences(task) == preferences


PREFERENCES = yaml.safe_load((Path(__file__).resolve().parents[1] / "data" / "preferences.yaml").read_text())


@pytest.mark.parametrize(
    ("task", "preferences"),
    [*PREFERENCES["preferences"].items(), *((task, []) for task in PREFERENCES["opinions"])],
)
def test_preferences_are_how_to_answer_not_opinions_on_the_subject(task, preferences):
    """QA: "I like the new logo" or "I like our pricing page but conversions dropped" went into
    every later prompt as a preference (the labelled set, tests/data/preferences.yaml)."""
    assert stated_preferences(task) == preferences


@pytest.mark.parametrize(
    ("task", "preferences"),
    [
        ("I prefer shorter sprints.", []),
        ("I prefer a formal contract with the new supplier.", []),
        ("I like comprehensive onboarding flows.", []),
        ("I prefer detailed invoices from our vendors.", []),
        ("I like it short.", ["it short"]),
        ("I prefer the answers short.", ["the answers short"]),
        ("I prefer concise answers.", ["concise answers"]),
        ("I like a friendly tone.", ["a friendly tone"]),
    ],
)
def test_a_length_or_tone_word_is_a_preference_only_of_an_answer(task, preferences):
    """ "Short", "detailed" or "formal" qualify anything: alone they made "I prefer shorter sprints"
    a preference, which then replaced the stored "short answers" (one topic, :func:`supersedes`)."""
    assert stated_preferences(task) == preferences


@pytest.mark.parametrize(
    ("labelled", "hits_at_least", "opinions_at_most"),
    [("held_out", 12, 2), ("fresh", 13, 0)],
)
def test_unseen_preferences_keep_their_precision_and_recall(labelled, hits_at_least, opinions_at_most):
    """Measured, not tuned on (benchmarks/bench_preferences.py). Held out: 9 of 14 preferences and
    5 of 13 opinions stored by the first rule, 12 and 2 since a bare "I prefer …" needs an answer
    form or a way to answer; fresh (written before that): 13 of 14 and none of 14. Fewer hits or
    more opinions fail."""
    hits = sum(bool(stated_preferences(t)) for t in PREFERENCES[f"{labelled}_preferences"])
    stored_opinions = sum(bool(stated_preferences(t)) for t in PREFERENCES[f"{labelled}_opinions"])
    assert hits >= hits_at_least and stored_opinions <= opinions_at_most


def test_a_question_stating_a_preference_stays_in_the_task_the_router_reads():
    """Nothing is stored from a question, so nothing is taken out of it either: the router had
    read "We lost 3 customers." alone."""
    task = "We lost 3 customers. I prefer short answers, what is our churn?"
    assert stated_preferences(task) == []
    assert without_preferences(task) == task


def test_an_opinion_stays_in_the_task_the_router_reads():
    """The router reads the task without its preference sentences: an opinion is the subject."""
    task = "I like the new logo. What do you think of the colour?"
    assert without_preferences(task) == task
    assert without_preferences("I like short answers. What do you think of the colour?") == (
        "What do you think of the colour?"
    )


PAIRS = yaml.safe_load((Path(__file__).resolve().parents[1] / "data" / "preference_pairs.yaml").read_text())


@pytest.mark.parametrize(
    ("older", "newer", "replaces"),
    [
        *((older, newer, True) for older, newer in PAIRS["supersedes"]),
        *(
            (older, newer, False)
            for older, newer in [*PAIRS["independent"], *PAIRS["sharing_words_independent"]]
        ),
    ],
)
def test_a_later_preference_replaces_the_one_on_its_topic(older, newer, replaces):
    """QA: "I prefer short answers", then "I prefer detailed answers", left both in every prompt
    (the labelled pairs, tests/data/preference_pairs.yaml)."""
    assert supersedes(newer, older) is replaces


def test_held_out_pairs_keep_their_accuracy_and_replace_nothing_unrelated():
    """Measured, never tuned on: 8 of the 12 replacing pairs were told when the rule was written,
    7 since a preference must restate every topic of the one it replaces ("a long report with
    sections" no longer replaces "one short paragraph": its paragraph); an unrelated preference
    must never be dropped (benchmarks/bench_preferences.py)."""
    assert sum(supersedes(newer, older) for older, newer in PAIRS["held_out_supersedes"]) >= 7
    assert not any(supersedes(newer, older) for older, newer in PAIRS["held_out_independent"])


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("short answers in euros", "answers in dollars"),  # the length is not restated
        ("round to the nearest $1,000", "answer in euros"),
    ],
)
def test_a_preference_that_restates_one_of_a_stored_ones_topics_leaves_it(older, newer):
    """Review: sharing one topic replaced the stored preference whole, and what else it said was
    lost without a word. Keeping both is what a missed replacement does too."""
    assert not supersedes(newer, older)
    assert supersedes("detailed answers in dollars", "short answers in euros")


@pytest.mark.parametrize("preference", ["cc Dr. Lovelace", "short answers", "use euros", "tables over prose"])
def test_a_preference_replaces_itself_in_another_case(preference):
    assert supersedes(f'"{preference.upper()}."', preference)


def test_a_long_preference_is_cut_at_a_word():
    (preference,) = stated_preferences("I prefer " + "answers " * 30)
    assert len(preference) <= 120 and preference.endswith("answers")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mail ada.lovelace@example.com. Then call.", ["Mail ada.lovelace@example.com.", "Then call."]),
        ("See https://example.com/a.b?c=1 now! Why?", ["See https://example.com/a.b?c=1 now!", "Why?"]),
        ("Revenue grew 3.5% vs. last year. Ok.", ["Revenue grew 3.5% vs. last year.", "Ok."]),
        ('He said "done." Then left', ['He said "done."', "Then left"]),
        ("A. Lovelace wrote it.", ["A. Lovelace wrote it."]),
        ("", []),
    ],
)
def test_sentences(text, expected):
    assert sentences(text) == expected


def test_without_preferences_keeps_the_question_whole():
    task = "I prefer answers sent to ada.lovelace@example.com. Should we open an office in St. Louis?"
    assert without_preferences(task) == "Should we open an office in St. Louis?"


# -- render_memory -----------------------------------------------------------------------------

EPISODE = RecalledEpisode(id="e1", text="We chose a freemium tier with usage limits.", score=0.9)
PASSAGE = RecalledPassage(source="/kb/docs/pricing.md", text="The Pro plan costs 49 euros.", score=0.8)


def _skill(successes: int = 3) -> RecalledSkill:
    skill = SkillStore("/nonexistent/brainstack-skills").get("pricing-change-review")  # a built-in skill
    return RecalledSkill(name=skill.name, score=0.9, success_count=successes, instructions=skill.render())


def test_empty_recall_renders_nothing():
    assert render_memory(MemoryRecall()) == ""
    assert render_memory(MemoryRecall(preferences={PREFERENCES_KEY: []})) == ""


def test_each_section_appears_only_when_present():
    cases = {
        "preferences": (
            MemoryRecall(preferences={PREFERENCES_KEY: ["short answers", "euros"]}),
            "User preferences",
        ),
        "about": (MemoryRecall(preferences={"timezone": "Europe/London"}), "About the user"),
        "session": (MemoryRecall(session={"last_task": "pricing"}), "This conversation"),
        "episodes": (MemoryRecall(episodes=[EPISODE]), "Earlier episodes"),
        "passages": (MemoryRecall(passages=[PASSAGE]), "From the knowledge base"),
        "skills": (MemoryRecall(skills=[_skill()]), "A procedure that worked before"),
    }
    markers = [marker for _, marker in cases.values()]
    for recall, marker in cases.values():
        text = render_memory(recall)
        assert text.startswith(MEMORY_HEADER + "\n")
        assert [m for m in markers if m in text] == [marker]


def test_render_memory_full_text():
    recall = MemoryRecall(
        preferences={PREFERENCES_KEY: ["short answers", "euros"], "timezone": "Europe/London"},
        session={"last_task": "pricing"},
        episodes=[EPISODE],
        passages=[PASSAGE],
        skills=[_skill(successes=2)],
    )
    lines = render_memory(recall).splitlines()
    assert lines[:8] == [
        MEMORY_HEADER,
        "User preferences: short answers; euros.",
        'About the user: timezone="Europe/London"',
        "This conversation: last_task=pricing",
        "Earlier episodes with this user:",
        "- We chose a freemium tier with usage limits.",
        "From the knowledge base (cite the source):",
        "- [pricing.md] The Pro plan costs 49 euros.",  # the file name, not the whole path
    ]
    assert lines[8] == "A procedure that worked before (2 successes):"
    assert lines[9].startswith("Procedure 'pricing-change-review' (")
    assert MEMORY_HEADER == "What brainstack remembers (use it when relevant):"


@pytest.mark.parametrize(
    ("count", "line"),
    [
        (0, "A procedure to follow:"),  # a built-in skill no run has followed: it has not worked yet
        (1, "A procedure that worked before (1 success):"),
        (5, "A procedure that worked before (5 successes):"),
    ],
)
def test_a_recalled_skill_says_how_often_it_worked(count, line):
    lines = render_memory(MemoryRecall(skills=[_skill(successes=count)])).splitlines()
    assert lines[1] == line and lines[2].startswith("Procedure 'pricing-change-review' (")


# -- _within_budget ----------------------------------------------------------------------------


def _big_recall() -> MemoryRecall:
    return MemoryRecall(
        preferences={PREFERENCES_KEY: ["short answers"]},
        episodes=[
            RecalledEpisode(id=f"e{i}", text=f"episode {i} " + "e" * 200, score=1 - i / 10) for i in range(3)
        ],
        passages=[
            RecalledPassage(source=f"/kb/p{i}.md", text=f"passage {i} " + "p" * 200, score=1 - i / 10)
            for i in range(3)
        ],
        skills=[_skill()],
    )


def _tokens(recall: MemoryRecall) -> int:
    return estimate_tokens(render_memory(recall))


def test_a_recall_within_budget_is_unchanged_and_counted():
    recall = _big_recall()
    fitted = _within_budget(recall, 100_000)
    assert (fitted.episodes, fitted.passages, fitted.skills) == (
        recall.episodes,
        recall.passages,
        recall.skills,
    )
    assert fitted.tokens == _tokens(recall) > 0


def test_passages_go_first_from_the_end():
    recall = _big_recall()
    budget = _tokens(recall.model_copy(update={"passages": recall.passages[:1]}))
    fitted = _within_budget(recall, budget)
    assert [p.source for p in fitted.passages] == ["/kb/p0.md"]  # the least relevant went first
    assert fitted.episodes == recall.episodes and fitted.skills == recall.skills
    assert fitted.tokens == _tokens(fitted) <= budget


def test_then_episodes_then_skills():
    recall = _big_recall()
    budget = _tokens(recall.model_copy(update={"passages": [], "episodes": recall.episodes[:2]}))
    fitted = _within_budget(recall, budget)
    assert fitted.passages == [] and [e.id for e in fitted.episodes] == ["e0", "e1"]
    assert fitted.skills == recall.skills

    budget = _tokens(recall.model_copy(update={"passages": [], "episodes": []}))
    fitted = _within_budget(recall, budget)
    assert fitted.passages == [] and fitted.episodes == [] and fitted.skills == recall.skills

    fitted = _within_budget(recall, budget - 1)
    assert fitted.passages == [] and fitted.episodes == [] and fitted.skills == []


def test_preferences_are_kept_even_over_budget():
    recall = _big_recall()
    fitted = _within_budget(recall, 1)
    assert (fitted.episodes, fitted.passages, fitted.skills) == ([], [], [])
    assert fitted.preferences == recall.preferences
    assert fitted.tokens == _tokens(fitted) > 1
    assert "short answers" in render_memory(fitted)


def test_within_budget_does_not_modify_its_input():
    recall = _big_recall()
    _within_budget(recall, 1)
    assert len(recall.passages) == 3 and len(recall.episodes) == 3 and len(recall.skills) == 1


def test_empty_recall_costs_nothing():
    fitted = _within_budget(MemoryRecall(), 0)
    assert fitted.tokens == 0 and fitted.empty


# -- split_memory (the offline model reads the rendered section back) ---------------------------


def test_split_memory_round_trip():
    recall = MemoryRecall(
        preferences={PREFERENCES_KEY: ["short answers", "euros"], "timezone": "Europe/London"},
        session={"last_task": "pricing"},
        episodes=[EPISODE, RecalledEpisode(id="e2", text="Prices went up 10% in 2024.", score=0.7)],
        passages=[PASSAGE, RecalledPassage(source="/kb/churn.txt", text="Churn is 3% a month.", score=0.6)],
        skills=[_skill()],
    )
    prompt = "You are the CFO.\n\n" + render_memory(recall) + "\n\nEarlier in this conversation:\nuser: hi"
    rest, memory = split_memory(prompt)
    assert rest == "You are the CFO.\n\nEarlier in this conversation:\nuser: hi"
    assert memory.preferences == ["short answers", "euros"]
    assert memory.episodes == [EPISODE.text, "Prices went up 10% in 2024."]
    assert memory.passages == [
        "[pricing.md] The Pro plan costs 49 euros.",
        "[churn.txt] Churn is 3% a month.",
    ]
    assert memory.procedures == ["pricing-change-review"]


def test_split_memory_without_a_memory_section():
    rest, memory = split_memory("You are the CFO.")
    assert rest == "You are the CFO."
    assert (memory.preferences, memory.episodes, memory.passages, memory.procedures) == ([], [], [], [])
    assert memory.summary() == ""


def test_split_memory_of_each_section_alone():
    _, memory = split_memory(render_memory(MemoryRecall(passages=[PASSAGE])))
    assert (memory.preferences, memory.episodes, memory.passages) == (
        [],
        [],
        [f"[pricing.md] {PASSAGE.text}"],
    )
    _, memory = split_memory(render_memory(MemoryRecall(skills=[_skill()])))
    assert memory.procedures == ["pricing-change-review"] and memory.episodes == memory.passages == []


def test_split_memory_round_trip_with_multi_line_items():
    recall = MemoryRecall(
        episodes=[
            RecalledEpisode(
                id="e1", text="Should we launch freemium?\n→ group_chat (CTO, CFO): yes", score=0.9
            ),
            RecalledEpisode(id="e2", text="Raise prices?\n→ cfo (CFO): no", score=0.8),
        ],
        passages=[
            RecalledPassage(source="/kb/a.md", text="# Pricing\n\nPro is 49 euros.", score=0.8),
            RecalledPassage(source="/kb/b.md", text="Enterprise is custom.", score=0.7),
        ],
    )
    _, memory = split_memory(render_memory(recall))
    assert len(memory.episodes) == 2
    assert len(memory.passages) == 2


def test_an_address_at_the_clip_boundary_is_masked_not_cut(monkeypatch):
    """Masking runs before clipping: a cut address no longer looks like one and would escape."""
    from brainstack.memory.gateway import _procedure

    filler = "We should decide " + "x" * 243 + " and write to "
    turn = filler + "ada.lovelace@example.com today."
    assert len("CTO: " + filler + "ada.lovelace@example") == 299  # the cut falls inside the address
    state = {"transcript": [{"speaker": "CTO", "content": turn}, {"speaker": "CFO", "content": "Agreed."}]}
    texts = [getattr(step, "text", "") for step in _procedure(state)]
    assert not any("lovelace" in text or "example" in text for text in texts), texts


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ('I prefer tables?" he asked. Summarize the report.', []),  # a quoted question states nothing
        ('I prefer "short answers." Summarize the report.', ["short answers"]),  # no quote kept
        ('"I prefer short answers." Summarize the report.', []),  # a quotation, not the user's own words
        ("(I prefer euros.) Price the plan.", ["euros"]),
    ],
)
def test_preferences_ignore_closing_quotes_and_quoted_questions(task, expected):
    assert stated_preferences(task) == expected


def test_dotted_letter_abbreviations_do_not_end_a_sentence():
    task = "I prefer prices in the U.S. format. Summarize."
    assert stated_preferences(task) == ["prices in the U.S. format"]
    assert sentences("Meet at 9 a.m. tomorrow. Then lunch.") == ["Meet at 9 a.m. tomorrow.", "Then lunch."]


# -- long runs: inputs that once took quadratic time ---------------------------------------------
# Only results are checked here; how long they take is measured by benchmarks/bench_text.py.


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Wait... what?! Really.", ["Wait...", "what?!", "Really."]),
        ("Hm..ok then", ["Hm..ok then"]),  # punctuation followed by a letter ends nothing
        ("Stop!!!) Go.", ["Stop!!!)", "Go."]),
        ('She asked "why?!"\u201d Then left', ['She asked "why?!"\u201d', "Then left"]),
        ("x.)y and .)z stay", ["x.)y and .)z stay"]),
        ("Dots at the end...", ["Dots at the end..."]),
    ],
)
def test_runs_of_final_punctuation(text, expected):
    assert sentences(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("." * 8000 + "x", ["." * 8000 + "x"]),
        ("!?" * 4000 + "x", ["!?" * 4000 + "x"]),
        ("a" + "." * 8000 + " b", ["a" + "." * 8000, "b"]),
        ("Yes" + "!" * 7990 + ") no", ["Yes" + "!" * 7990 + ")", "no"]),
    ],
)
def test_long_punctuation_runs_split_as_before(text, expected):
    assert sentences(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("e.g. " * 1600, [("e.g. " * 1600).strip()]),  # abbreviations never end the sentence
        ("A. " * 2660 + "Done. Next", ["A. " * 2660 + "Done.", "Next"]),
        ("U.S. " * 1600 + "x", ["U.S. " * 1600 + "x"]),
        ("Dr. " * 2000 + "\nNext. Done", [("Dr. " * 2000).strip(), "Next.", "Done"]),
        ("See (e.g." + " " * 8000 + ". Next", ["See (e.g." + " " * 8000 + ".", "Next"]),
        ("x" + " " * 8000 + ". Next", ["x" + " " * 8000 + ".", "Next"]),
    ],
)
def test_long_runs_of_abbreviations_split_as_before(text, expected):
    assert sentences(text) == expected


def test_long_runs_of_abbreviations_keep_a_preference_whole():
    task = "I prefer tables, " + "e.g. " * 1600 + "tables. What is our churn?"
    (preference,) = stated_preferences(task)
    assert preference.startswith("tables, e.g. e.g.") and len(preference) <= 120
    assert without_preferences(task) == "What is our churn?"


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("I prefer metric units" + "." * 8000 + "!", ["metric units"]),  # trailing run dropped
        ("I prefer metric units, " + ",;" * 4000 + " please", ["metric units"]),  # cut at a word
        ("I prefer x" + "," * 8000 + "x", []),  # one 8002-character word: cut to nothing
        ("I prefer tables,;:!.", ["tables"]),
        ("I prefer tables.)", ["tables"]),
    ],
)
def test_punctuation_runs_in_a_preference(task, expected):
    assert stated_preferences(task) == expected


@pytest.mark.parametrize(
    "typed", ['"Postgres"', "postgres", "  POSTGRES. ", "\u201cPostgres\u201d", "'Postgres'"]
)
def test_a_preference_is_forgotten_however_its_quotes_case_spaces_and_full_stop_are_typed(typed):
    from brainstack.memory.gateway import _comparable

    assert _comparable(typed) == _comparable('"Postgres"') == "postgres"
