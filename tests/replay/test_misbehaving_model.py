"""Whole runs against an OpenAI-compatible model that answers oddly (QA with a fake server).

A handler stands in for the server (``httpx2.MockTransport``): the real langchain-openai and autogen
clients, the graph and the group chat run as against a real endpoint. Each case is something
a real model or proxy does: the termination word on a turn of its own, a word that contains the
termination word, empty turns, a route cut off at max tokens, a NaN, a body that is not a
completion.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from brainstack import ModelError, Runtime
from brainstack.testing import replay_settings

DECISION = "Should we launch a freemium tier?"
MARKETING = "How can we improve the conversion rate of our landing page?"
UNSURE = "What time zone is Tokyo in?"


def completion(content: str | None, **usage: int) -> httpx2.Response:
    return httpx2.Response(
        200,
        json={
            "id": "chatcmpl-odd",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        },
    )


class Model:
    """Answers by the request's kind: the group chat's speaker selection, a member's turn (by
    role), a route classification, or a specialist's answer. Each list is served in order."""

    def __init__(
        self,
        *,
        turns: dict[str, list[str | None]] | None = None,
        speakers: list[str] | None = None,
        routes: list[str] | None = None,
        answers: list[Callable[[], httpx2.Response] | str] | None = None,
    ) -> None:
        self.turns = {role: list(said) for role, said in (turns or {}).items()}
        self.speakers = list(speakers or [])
        self.routes = list(routes or [])
        self.answers = list(answers or [])
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        system = str(body["messages"][0].get("content", ""))
        if system.startswith("You are in a role play game"):
            return completion(self.speakers.pop(0))
        for role, said in self.turns.items():
            if system.startswith(f"You are the {role}"):
                return completion(said.pop(0) if said else "Nothing to add.")
        if (body.get("response_format") or {}).get("type") == "json_schema":
            return completion(self.routes.pop(0))
        answer = self.answers.pop(0)
        return completion(answer) if isinstance(answer, str) else answer()

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self)


@pytest.fixture
def run(tmp_path, cache_dir, embedder):
    runtimes: list[Runtime] = []

    def run_with(model: Model, task: str, **kwargs: Any) -> Any:
        settings = replay_settings(tmp_path / "home", cache_dir=cache_dir)
        runtime = Runtime(settings, embedder=embedder, transport=model.transport())
        runtimes.append(runtime)
        return runtime.run(task, **kwargs)

    yield run_with
    for runtime in runtimes:
        runtime.close()


def test_a_termination_word_on_a_turn_of_its_own_keeps_the_decision_before_it(run):
    """QA: a member said only "TERMINATE" after the decision (autogen's convention); that turn was
    taken as the decision, found empty, and the whole meeting ran again."""
    model = Model(
        speakers=["CTO", "CFO"],
        turns={"CTO": ["Decision: launch freemium in Q3 with a 3-project cap."], "CFO": ["TERMINATE"]},
    )
    result = run(model, DECISION)
    assert result.answer == "CTO: Decision: launch freemium in Q3 with a 3-project cap."
    assert result.review.status == "ok" and "without agreement" not in result.answer
    assert [t.speaker for t in result.transcript] == ["CTO", "CFO"]
    assert result.usage.model_calls == 4 and len(model.requests) == 4


def test_the_termination_word_inside_another_word_does_not_end_the_chat(run):
    """QA: "DETERMINATE" ended the chat as agreed and became "We are not yet DE on this."."""
    model = Model(
        speakers=["CTO", "CMO", "CFO"],
        turns={
            "CTO": ["We are not yet DETERMINATE on this."],
            "CMO": ["Competitors offer a free plan."],
            "CFO": ["Decision: launch with limits. TERMINATE."],
        },
    )
    result = run(model, DECISION)
    assert [t.speaker for t in result.transcript] == ["CTO", "CMO", "CFO"]
    assert result.transcript[0].content == "We are not yet DETERMINATE on this."
    assert result.answer == "CFO: Decision: launch with limits."  # (the word and its full stop gone)


def test_a_member_that_names_itself_is_not_named_twice(run):
    model = Model(speakers=["CFO"], turns={"CFO": ["CFO: we launch in May. TERMINATE"]})
    assert run(model, DECISION).answer == "CFO: we launch in May."


def test_a_meeting_of_empty_turns_is_an_empty_answer_and_falls_back(run):
    """QA: members that all said nothing passed review with only the "ended without agreement"
    note as the answer, and the CLI exited 0."""
    model = Model(
        speakers=["CTO", "CMO", "CFO"] * 4,  # two meetings of six turns
        turns={"CTO": [""] * 4, "CMO": [None] * 4, "CFO": [" "] * 4},
        answers=["Launch a capped free tier and measure conversion."],
    )
    result = run(model, DECISION)
    assert result.review.status == "fallback"
    assert result.review.notes[:2] == ["group_chat returned an empty answer"] * 2
    assert result.answer == "Launch a capped free tier and measure conversion."
    assert result.speakers[-1] == "general"


@pytest.mark.parametrize(
    ("first", "problem"),
    [
        ('{"target": "finance", "confid', "lacks 'confidence', 'reason'"),  # cut at max tokens
        ('{"target": "finance", "reason": "money"}', "lacks 'confidence'"),
        (
            '{"target": "finance", "confidence": NaN, "reason": "money"}',
            "confidence nan is not between 0 and 1",
        ),
        (
            '{"target": "finance", "confidence": 17, "reason": "money"}',
            "confidence 17 is not between 0 and 1",
        ),
        ('{"target": "finance", "confidence": "high", "reason": "money"}', "'high' is not a number"),
        ("I would say finance.", "not the requested JSON (Invalid json output: I would say finance."),
    ],
)
def test_an_incomplete_or_out_of_range_route_is_sent_back_once(run, first, problem):
    """QA: the JSON parser completes a cut-off object, so a route cut at max tokens was taken as
    the model's decision (confidence 0.00), and a NaN failed the run with pydantic's error."""
    model = Model(
        routes=[first, '{"target": "general", "confidence": 0.8, "reason": "a time zone"}'],
        answers=["Japan Standard Time, UTC+9."],
    )
    result = run(model, UNSURE)
    assert result.route.decided_by == "llm" and result.route.target == "general"
    assert result.route.confidence == 0.8
    retry = model.requests[1]["messages"][-1]["content"]
    assert retry.startswith("That answer was invalid") and problem in retry
    assert "troubleshooting" not in retry  # (LangChain's link, QA)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (lambda: httpx2.Response(200, text="<html>502 Bad Gateway</html>"), "502 Bad Gateway"),
        (
            lambda: httpx2.Response(200, json={"id": "x", "object": "chat.completion", "choices": []}),
            "IndexError",
        ),
        (
            lambda: httpx2.Response(200, json={"error": {"message": "upstream overloaded"}}),
            "upstream overloaded",
        ),
    ],
    ids=["html", "no-choices", "error-object"],
)
def test_a_specialist_answer_that_is_not_a_completion_is_a_model_error_naming_the_endpoint(run, body, kind):
    """QA: these reached the caller as "The run failed: IndexError: list index out of range"."""
    with pytest.raises(ModelError) as caught:
        run(Model(answers=[body]), MARKETING, thread_id="t-odd")
    message = str(caught.value)
    assert message.startswith(
        "The model endpoint https://api.openai.com/v1 answered with something that is not a usable chat "
        "completion ("
    )
    assert kind in message and "OPENAI_BASE_URL" in message
    assert caught.value.thread_id == "t-odd" and "saved on thread 't-odd'" in message


def test_a_group_chat_member_answer_that_is_not_a_completion_is_one_error_line(run, capfd):
    """QA: a member's unreadable answer printed autogen's 60-line traceback before the run's error."""

    class Garbled(Model):
        def __call__(self, request: httpx2.Request) -> httpx2.Response:
            body = json.loads(request.content)
            if str(body["messages"][0].get("content", "")).startswith("You are the CTO"):
                self.requests.append(body)
                return httpx2.Response(200, text="<html>502 Bad Gateway</html>")
            return super().__call__(request)

    with pytest.raises(ModelError) as caught:
        run(Garbled(speakers=["CTO"]), DECISION, thread_id="t-gc-odd")
    assert "answered with something that is not a usable chat completion (" in str(caught.value)
    printed = capfd.readouterr().err
    assert "Traceback" not in printed and "Error processing publish message" not in printed, printed


def test_a_reply_in_content_parts_is_its_text(run):
    """A reply whose content is a list of parts was answered as their JSON dump (QA)."""
    parts = [{"type": "text", "text": "Cut the form "}, {"type": "text", "text": "to two fields."}]
    model = Model(answers=[lambda: completion(parts)])  # type: ignore[arg-type]
    assert run(model, MARKETING).answer == "Cut the form to two fields."


def test_an_answer_that_trickles_in_fails_at_the_model_timeout(tmp_path, cache_dir, embedder):
    """QA: BRAINSTACK_MODEL_TIMEOUT_S bounded each wait for the next bytes, not the answer: a body
    sent ten bytes a second held one call for 36 s under a 3 s timeout."""
    import asyncio

    from brainstack import ModelUnavailableError

    body = completion("Cut the form to two fields.").content

    async def trickle():
        for start in range(0, len(body), 20):
            await asyncio.sleep(0.25)
            yield body[start : start + 20]

    requests = []

    def slow(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=trickle())

    settings = replay_settings(tmp_path, cache_dir=cache_dir, model_timeout_s=1.0, model_max_retries=1)
    runtime = Runtime(settings, embedder=embedder, transport=httpx2.MockTransport(slow))
    with runtime, pytest.raises(ModelUnavailableError, match="did not answer in time"):
        runtime.run(MARKETING)
    assert len(requests) == 2  # retried once, as a timeout is
    assert len(body) / 20 * 0.25 > 2  # (the whole body would take longer than both attempts)


def tool_call(arguments: str) -> Callable[[], httpx2.Response]:
    def respond() -> httpx2.Response:
        response = completion(None)
        body = json.loads(response.content)
        body["choices"][0]["message"]["tool_calls"] = [
            {"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": arguments}}
        ]
        body["choices"][0]["finish_reason"] = "tool_calls"
        return httpx2.Response(200, json=body)

    return respond


def test_a_tool_call_with_arguments_that_are_not_json_is_sent_back_to_the_model(run):
    """QA: the call was dropped unanswered; the agent's answer was empty and the task went back."""
    model = Model(
        answers=[
            tool_call('{"expression": "17.5% of 2340"'),
            tool_call('{"expression": "17.5% of 2340"}'),
            "409.5.",
        ]
    )
    result = run(model, "What is 17.5% of 2340?")
    told = [m for m in model.requests[1]["messages"] if m["role"] == "tool"]
    assert told[0]["content"].startswith('error: the arguments \'{"expression": "17.5% of 2340"\' are not')
    assert [(c.tool, c.result) for c in result.tool_calls] == [("calculator", "409.5")]
    assert result.answer == "409.5." and result.review.status == "ok"


def test_an_answer_cut_at_the_token_limit_is_kept_with_a_note(run):
    def cut() -> httpx2.Response:
        body = json.loads(completion("Cut the form to").content)
        body["choices"][0]["finish_reason"] = "length"
        return httpx2.Response(200, json=body)

    result = run(Model(answers=[cut]), MARKETING)
    assert result.answer == "Cut the form to"
    assert result.review.notes == ["marketing's answer was cut off at the model's token limit"]


def test_a_huge_group_chat_turn_is_cut_in_the_transcript(run):
    """QA: a member's 50,000 characters stayed whole in the transcript and every checkpoint."""
    model = Model(speakers=["CTO", "CFO"], turns={"CTO": ["word " * 10_000], "CFO": ["We launch. TERMINATE"]})
    result = run(model, DECISION)
    assert len(result.transcript[0].content) < 20_100
    assert result.transcript[0].content.endswith("… (cut from 50000 characters)")
    assert result.answer == "CFO: We launch."


def test_a_long_last_turn_that_ends_the_chat_counts_as_agreed(run):
    """Review: the agreement was read from the turn as cut in the transcript, which lost the word
    at its end: the chat ended on the word yet was reported "without agreement"."""
    long_turn = "Decision: launch. " + "detail " * 4_000 + "TERMINATE"
    model = Model(speakers=["CFO"], turns={"CFO": [long_turn]})
    result = run(model, DECISION)
    assert result.review.status == "ok"
    assert result.remembered.skill is not None  # only an agreed chat teaches a skill
