"""Whole runs against recorded OpenAI conversations (tests/replay/cassettes/*.yaml).

Every scenario goes through the real graph, the real langchain-openai and autogen
clients and the real HTTP layer; only the network is replaced (respx).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from brainstack import ModelError, Runtime
from brainstack.testing import replay, replay_settings

ROOT = Path(__file__).parent / "cassettes"


@pytest.fixture
def runtime(tmp_path, cache_dir, embedder):
    return Runtime(replay_settings(tmp_path, cache_dir=cache_dir), embedder=embedder)


def test_semantic_route_makes_no_classification_call(runtime):
    with replay(ROOT / "semantic_route.yaml") as cassette:
        result = runtime.run("How can we improve the conversion rate of our landing page?")
    assert result.route.decided_by == "semantic"
    assert result.route.target == "marketing"
    assert result.route.kind == "specialist"
    assert result.route.confidence >= runtime.settings.router_threshold
    assert len(cassette.played) == 1
    assert all("response_format" not in request for request in cassette.played)
    assert result.answer.startswith("Cut the form to two fields")
    assert result.speakers == ["marketing"]
    assert result.model == "openai"
    assert result.usage.prompt_tokens == 110 and result.usage.completion_tokens == 30


def test_llm_decided_route(runtime):
    with replay(ROOT / "llm_route.yaml") as cassette:
        result = runtime.run("What time zone is Tokyo in?")
    assert result.route.decided_by == "llm"
    assert result.route.target == "general"
    assert result.route.confidence == pytest.approx(0.92)
    assert "general knowledge" in result.route.reason
    assert cassette.played[0]["response_format"] == "json_schema"
    assert "UTC+9" in result.answer
    # usage sums both calls: the classification and the answer
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (180 + 95, 21 + 18)
    assert result.usage.model_calls == 2
    assert set(result.timings) == {"recall", "route", "specialist_general", "review", "remember"}


def test_group_chat_three_turns_ends_on_termination_word(runtime):
    with replay(ROOT / "group_chat.yaml") as cassette:
        result = runtime.run("Should we launch a freemium tier?")
    assert result.route.kind == "group_chat"
    assert result.speakers == ["CTO", "CMO", "CFO"]
    assert [turn.speaker for turn in result.transcript] == ["CTO", "CMO", "CFO"]
    assert result.transcript[-1].content.endswith("TERMINATE")
    assert "launch freemium next quarter" in result.answer
    assert "TERMINATE" not in result.answer
    assert result.usage.model_calls == 6  # three speaker selections, three turns
    assert len(cassette.played) == 6


def test_specialist_tool_call(runtime):
    with replay(ROOT / "tool_call.yaml") as cassette:
        result = runtime.run("What is 17.5% of 2340?")
    assert result.route.target == "finance"
    assert [(c.tool, c.arguments, c.result) for c in result.tool_calls] == [
        ("calculator", {"expression": "17.5% of 2340"}, "409.5")
    ]
    # the second request carried the tool's exact result back to the model
    tool_messages = [m for m in cassette.played[1]["messages"] if m["role"] == "tool"]
    assert tool_messages and tool_messages[0]["content"] == "409.5"
    assert result.answer == "17.5% of 2,340 is 409.5."


def test_specialist_searches_the_knowledge_base(runtime, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "revenue.md").write_text(
        "# Revenue recognition\n\nAnnual plans are paid up front and recognised monthly over the twelve "
        "months of the contract; the unearned part sits in deferred revenue.\n",
        encoding="utf-8",
    )
    runtime.memory.knowledge.add(docs)
    with replay(ROOT / "knowledge_search.yaml") as cassette:
        result = runtime.run("How should we account for deferred revenue on annual plans?")
    assert result.route.target == "finance" and result.route.decided_by == "semantic"
    (call,) = result.tool_calls
    assert (call.tool, call.arguments) == ("knowledge_search", {"query": "annual plans revenue recognition"})
    assert call.result.startswith("[1] revenue.md (chunk 0, similarity 0.")  # (no folders: as recall)
    tool_messages = [m for m in cassette.played[1]["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == [call.result]
    assert result.answer.endswith("(revenue.md).") and len(cassette.played) == 2


def test_without_memory_the_specialists_are_not_offered_the_knowledge_base(tmp_path, cache_dir, embedder):
    runtime = Runtime(replay_settings(tmp_path, cache_dir=cache_dir, memory=False), embedder=embedder)
    with replay(ROOT / "tool_call.yaml") as cassette:
        result = runtime.run("What is 17.5% of 2340?")
    assert result.answer == "17.5% of 2,340 is 409.5."
    assert [request["tools"] for request in cassette.played] == [["calculator"], ["calculator"]]


def test_malformed_classifier_output_is_retried_once(runtime):
    with replay(ROOT / "malformed_classifier.yaml") as cassette:
        result = runtime.run("What time zone is Tokyo in?")
    assert result.route.decided_by == "llm"
    assert result.route.target == "general"
    retry = cassette.played[1]
    assert "That answer was invalid" in retry["last_user"]
    assert "not the requested JSON" in retry["last_user"]


def test_invalid_classifier_output_twice_falls_back_to_general(runtime):
    with replay(ROOT / "invalid_classifier_twice.yaml"):
        result = runtime.run("What time zone is Tokyo in?")
    assert result.route.decided_by == "fallback"
    assert result.route.target == "general"
    assert "invalid twice" in result.route.reason and "lawyers" in result.route.reason


def test_an_empty_answer_is_retried_once_then_falls_back_to_general(runtime):
    with replay(ROOT / "empty_answer_fallback.yaml") as cassette:
        result = runtime.run("How can we improve the conversion rate of our landing page?")
    assert len(cassette.played) == 3
    assert result.route.target == "marketing"  # the route stays what was decided
    assert result.speakers == ["marketing", "marketing", "general"]
    assert result.answer == "Shorten the form and test one clear call to action."
    assert result.review.status == "fallback"
    assert result.review.notes == [
        "marketing returned an empty answer",
        "marketing returned an empty answer",
        "falling back to general",
    ]
    assert set(result.timings) >= {"specialist_marketing", "specialist_general", "review"}


def test_rate_limit_then_success(runtime):
    with replay(ROOT / "rate_limited.yaml") as cassette:
        result = runtime.run("How can we improve the conversion rate of our landing page?")
    assert len(cassette.played) == 2  # the 429, then the retried request
    assert cassette.played[0] == cassette.played[1]
    assert result.answer.startswith("Lead with the time saved")


def test_server_error_surfaces_as_model_error(runtime):
    with replay(ROOT / "server_error.yaml") as cassette, pytest.raises(ModelError) as caught:
        runtime.run("How can we improve the conversion rate of our landing page?", thread_id="t-500")
    error = caught.value
    assert error.status_code == 500
    assert "HTTP 500" in str(error)
    assert error.thread_id == "t-500"
    assert len(cassette.played) == 3  # first attempt + the two configured retries


def test_a_group_chat_members_rejected_call_is_a_model_error(runtime, capfd):
    with replay(ROOT / "group_chat_member_rejected.yaml") as cassette, pytest.raises(ModelError) as caught:
        runtime.run("Should we launch a freemium tier?", thread_id="t-gc-400")
    error = caught.value
    assert error.status_code == 400 and "HTTP 400" in str(error) and "context_length_exceeded" in str(error)
    assert "Traceback" not in str(error) and error.thread_id == "t-gc-400"
    assert "The run's progress is saved on thread 't-gc-400'" in str(error)  # as a specialist's says
    assert len(cassette.played) == 2
    printed = capfd.readouterr().err
    assert "Traceback" not in printed and "Error processing publish message" not in printed, printed


def test_thread_continuity_is_replayed(runtime):
    """The second run on a thread sends the first exchange to the model."""
    with replay(ROOT / "semantic_route.yaml"):
        first = runtime.run("How can we improve the conversion rate of our landing page?", thread_id="conv")
    with replay(ROOT / "follow_up.yaml") as cassette:
        second = runtime.run("Which channels should we use to reach small business owners?", thread_id="conv")
    assert second.thread_id == first.thread_id == "conv"
    contents = [m.get("content", "") for m in cassette.played[0]["messages"]]
    assert any("conversion rate of our landing page" in c for c in contents)
    assert any(c.startswith("Cut the form to two fields") for c in contents)


def test_a_closed_runtime_runs_again_with_fresh_model_clients(runtime):
    """close() stops the loop the model clients were bound to; the next run must not reuse them."""
    task = "How can we improve the conversion rate of our landing page?"
    with replay(ROOT / "semantic_route.yaml"):
        first = runtime.run(task)
    runtime.close()
    with replay(ROOT / "semantic_route.yaml"):
        second = runtime.run(task)
    runtime.close()
    assert second.answer == first.answer and second.thread_id != first.thread_id


def test_group_chat_without_agreement_is_remembered_but_teaches_no_skill(runtime):
    """Six turns, no TERMINATE: the chat stops at max_rounds. The episode records that the team did
    not agree; no skill is learned or reinforced (the same task with an agreement teaches one)."""
    task = "Should we launch a freemium tier?"
    with replay(ROOT / "group_chat_no_agreement.yaml") as cassette:
        result = runtime.run(task, user_id="ada", agent="group_chat")
    assert len(cassette.played) == 12 and len(result.transcript) == 6
    assert "TERMINATE" not in " ".join(turn.content for turn in result.transcript)
    assert "The meeting ended without agreement: Maximum number of messages" in result.answer
    assert result.remembered.episode_id and not result.remembered.degraded
    assert result.remembered.skill is None
    skills = runtime.memory.skills
    assert skills.stats() == {} and list(skills.user_dir.glob("*.yaml")) == []
    (episode,) = runtime.memory.episodes.search("ada", task, k=1)
    assert episode.metadata["outcome"] == "no_agreement"

    with replay(ROOT / "group_chat.yaml"):
        agreed = runtime.run(task, user_id="ada", agent="group_chat")
    assert agreed.remembered.skill is not None
    assert skills.success_count(agreed.remembered.skill) == 1
    outcomes = {
        e.metadata["thread_id"]: e.metadata["outcome"] for e in runtime.memory.episodes.search("ada", task)
    }
    assert outcomes == {result.thread_id: "no_agreement", agreed.thread_id: "ok"}
