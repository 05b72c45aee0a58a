"""The offline model, driven over the OpenAI chat-completions wire format through httpx2.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from brainstack.agents.group_chat import TEAM_RULES
from brainstack.agents.offline import OFFLINE_MODEL_NAME, OfflineModel
from brainstack.config.agents import load_agents
from brainstack.tools import get_tools

AGENTS = load_agents()
FINANCE = AGENTS.agents["finance"].system_prompt
MARKETING = AGENTS.agents["marketing"].system_prompt
TEAM = [role.name for role in AGENTS.group_chat.roles]  # CTO, CMO, CFO
LABEL = "[offline model, no LLM configured]"

CALCULATOR_TOOL = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate arithmetic exactly.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    },
}
OTHER_TOOL = {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}


@pytest.fixture
def model() -> OfflineModel:
    return OfflineModel(termination_word="TERMINATE", team=TEAM)


@pytest.fixture
def client(model: OfflineModel) -> Iterator[httpx2.Client]:
    with httpx2.Client(
        transport=httpx2.MockTransport(model.handle), base_url="http://offline.brainstack.invalid/v1"
    ) as client:
        yield client


def chat(client: httpx2.Client, messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    response = client.post(
        "/chat/completions", json={"model": OFFLINE_MODEL_NAME, "messages": messages, **extra}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def message_of(completion: dict[str, Any]) -> dict[str, Any]:
    (choice,) = completion["choices"]
    return choice["message"]


def system(prompt: str) -> dict[str, str]:
    return {"role": "system", "content": prompt}


def user(text: str, name: str | None = None) -> dict[str, str]:
    return {"role": "user", "content": text} | ({"name": name} if name else {})


# --- Plain answers ----------------------------------------------------------------------


def test_answer_is_labelled_and_built_from_task_and_role(client: httpx2.Client) -> None:
    task = "How should we account for deferred revenue on annual plans?"
    completion = chat(client, [system(FINANCE), user(task)])
    assert completion["object"] == "chat.completion"
    assert completion["model"] == OFFLINE_MODEL_NAME
    assert completion["choices"][0]["finish_reason"] == "stop"
    content = message_of(completion)["content"]
    assert message_of(completion)["role"] == "assistant"
    assert content.startswith(f"{LABEL} Finance specialist on: \u201c{task}\u201d")
    assert "What this agent weighs: work with numbers" in content
    assert "OPENAI_API_KEY" in content  # says how to get a real answer


def test_role_and_task_change_the_answer(client: httpx2.Client) -> None:
    finance = message_of(chat(client, [system(FINANCE), user("Plan next quarter.")]))["content"]
    marketing = message_of(chat(client, [system(MARKETING), user("Plan next quarter.")]))["content"]
    other_task = message_of(chat(client, [system(FINANCE), user("Prepare a budget.")]))["content"]
    assert "Finance specialist" in finance
    assert "Marketing specialist" in marketing
    assert "be concrete about audience" in marketing
    assert "Prepare a budget." in other_task
    assert len({finance, marketing, other_task}) == 3


def test_deterministic(client: httpx2.Client) -> None:
    messages = [system(FINANCE), user("What is our runway with 1.2 million and 85k burn?")]
    first, second = chat(client, messages), chat(client, messages)
    assert first == second
    fresh = OfflineModel(termination_word="TERMINATE", team=TEAM)
    with httpx2.Client(transport=httpx2.MockTransport(fresh.handle), base_url="http://other/v1") as other:
        assert chat(other, messages) == first


def test_without_system_prompt_it_is_an_assistant(client: httpx2.Client) -> None:
    content = message_of(chat(client, [user("Hello, what can you do?")]))["content"]
    assert content.startswith(f"{LABEL} Assistant on: \u201cHello, what can you do?\u201d")
    assert "What this agent weighs" not in content


def test_answers_the_last_user_message_and_mentions_the_earlier_one(client: httpx2.Client) -> None:
    messages = [
        system(FINANCE),
        user("What gross margin do we make on the enterprise plan?"),
        {"role": "assistant", "content": "an earlier answer"},
        user("And on the starter plan?"),
    ]
    content = message_of(chat(client, messages))["content"]
    assert "on: \u201cAnd on the starter plan?\u201d" in content
    assert (
        "Earlier in this thread: \u201cWhat gross margin do we make on the enterprise plan?\u201d" in content
    )


def test_content_parts_are_read(client: httpx2.Client) -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Summarise"}, {"type": "text", "text": "this"}]}
    ]
    assert "\u201cSummarise this\u201d" in message_of(chat(client, messages))["content"]


def test_long_task_is_clipped(client: httpx2.Client) -> None:
    task = "word " * 100
    content = message_of(chat(client, [user(task)]))["content"]
    quoted = content.split("\u201c", 1)[1].split("\u201d", 1)[0]
    assert len(quoted) == 200
    assert quoted.endswith("\u2026")


def test_usage_counts(client: httpx2.Client) -> None:
    completion = chat(client, [system("You are the tester."), user("one two three")])
    usage = completion["usage"]
    assert usage["prompt_tokens"] == 4 + 3  # words of the system prompt and of the task
    assert usage["completion_tokens"] == len(message_of(completion)["content"].split())
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_model_name_is_echoed(client: httpx2.Client) -> None:
    completion = chat(client, [user("hi")])
    assert completion["model"] == OFFLINE_MODEL_NAME
    response = client.post("/chat/completions", json={"model": "gpt-4o-mini", "messages": [user("hi")]})
    assert response.json()["model"] == "gpt-4o-mini"


# --- Refusals ---------------------------------------------------------------------------


def test_refuses_structured_output(client: httpx2.Client) -> None:
    response = client.post(
        "/chat/completions",
        json={
            "model": OFFLINE_MODEL_NAME,
            "messages": [system("Classify the request."), user("Should we launch a freemium tier?")],
            "response_format": {"type": "json_schema", "json_schema": {"name": "Route", "schema": {}}},
        },
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "offline_model"
    assert "does not classify or produce structured output" in error["message"]
    assert "OPENAI_API_KEY" in error["message"]


def test_only_serves_chat_completions(client: httpx2.Client) -> None:
    response = client.post("/embeddings", json={"model": "text-embedding-3-small", "input": "hello"})
    assert response.status_code == 404
    assert "/v1/embeddings" in response.json()["error"]["message"]


def test_null_response_format_is_a_plain_request(client: httpx2.Client) -> None:
    completion = chat(client, [user("hi")], response_format=None)
    assert message_of(completion)["content"].startswith(LABEL)


def test_plain_text_response_format_is_a_plain_request(client: httpx2.Client) -> None:
    completion = chat(client, [user("hi")], response_format={"type": "text"})
    assert message_of(completion)["content"].startswith(LABEL)


# --- Tool calls -------------------------------------------------------------------------


def test_calls_the_calculator_then_answers_from_the_result(client: httpx2.Client) -> None:
    task = "What is 17.5% of 2,340?"
    first = chat(client, [system(FINANCE), user(task)], tools=[CALCULATOR_TOOL])
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    call_message = message_of(first)
    assert call_message["content"] is None
    (call,) = call_message["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_offline_")
    assert call["function"]["name"] == "calculator"
    arguments = json.loads(call["function"]["arguments"])
    assert arguments == {"expression": "17.5% of 2,340"}
    assert first["usage"]["completion_tokens"] == 8

    (calculator,) = get_tools(["calculator"])
    result = calculator.invoke(arguments)
    assert result == "409.5"

    tool_message = {"role": "tool", "tool_call_id": call["id"], "content": result}
    second = chat(client, [system(FINANCE), user(task), call_message, tool_message], tools=[CALCULATOR_TOOL])
    assert second["choices"][0]["finish_reason"] == "stop"
    answer = message_of(second)["content"]
    assert answer == f"{LABEL} Finance specialist computed with the calculator: 17.5% of 2,340 = 409.5"


def test_tool_call_id_is_deterministic_per_expression(client: httpx2.Client) -> None:
    def call_id(task: str) -> str:
        return message_of(chat(client, [user(task)], tools=[CALCULATOR_TOOL]))["tool_calls"][0]["id"]

    assert call_id("What is 2 + 2?") == call_id("what is 2 + 2 ?")
    assert call_id("What is 2 + 2?") != call_id("What is 2 + 3?")


@pytest.mark.parametrize(
    ("task", "expression"),
    [
        ("What is 2 + 2?", "2 + 2"),
        ("Split 1,200,000 / 12 months", "1,200,000 / 12"),
        ("Runway: (1200000 / 85000) * 30 days", "(1200000 / 85000) * 30"),
        ("What is -3 * (4 + 5)?", "-3 * (4 + 5)"),
        ("Compute 2^10 please", "2^10"),
        ("Take 12.5% of 80 and tell me", "12.5% of 80"),
        ("What is 17.5% of 2340?", "17.5% of 2340"),
        ("What is 12 * 12?", "12 * 12"),
        ("What is 3 * 7?", "3 * 7"),
        ("Calculate 1,200,000 / 12", "1,200,000 / 12"),
        ("What is 2*21?", "2*21"),
        ("What is 10-4?", "10-4"),  # asked for, so unspaced minus counts
        ("Calculate 3/4 please", "3/4"),
        ("Compare our 2024-2025 plan: what is 2 + 2?", "2 + 2"),  # the range is skipped
        ("We grew 80k users; what is 12% of 80000?", "12% of 80000"),  # "80k" alone is skipped
        ("What is 12% of 80,000?", "12% of 80,000"),
        ("What is 2  +\n  2?", "2 + 2"),  # any run of whitespace reads as one space
        ("What is ( 3 +  4 )  *\t2?", "( 3 + 4 ) * 2"),
        # Long runs that once made the search quadratic (seconds) still end in the right answer.
        ("(" * 4000 + " what is 2 + 2?", "2 + 2"),
        ("-(" * 2000 + "x; what is 6 * 7?", "6 * 7"),
        ("1," * 2000 + "+ 2k; what is 6 * 7?", "6 * 7"),
        ("What is 1 +" + " " * 4000 + "2?", "1 + 2"),
    ],
)
def test_extracts_the_arithmetic_from_the_task(client: httpx2.Client, task: str, expression: str) -> None:
    (call,) = message_of(chat(client, [user(task)], tools=[CALCULATOR_TOOL]))["tool_calls"]
    assert json.loads(call["function"]["arguments"])["expression"] == expression


@pytest.mark.parametrize(
    ("task", "tools"),
    [
        ("What is 17.5% of 2340?", None),  # no tools offered
        ("What is 17.5% of 2340?", [OTHER_TOOL]),  # tools, but not the calculator
        ("Write a tagline for our analytics product.", [CALCULATOR_TOOL]),  # no arithmetic
        ("We have 3 offices and 40 people.", [CALCULATOR_TOOL]),  # numbers, but no operation
        ("Summarise our 2024-2025 roadmap.", [CALCULATOR_TOOL]),  # a year range
        ("What is the plan for 2024-2025?", [CALCULATOR_TOOL]),  # a year range, even when asked
        ("What did we ship in 2024-25?", [CALCULATOR_TOOL]),
        ("Launch on 2024-05-01 with the new pricing.", [CALCULATOR_TOOL]),  # a date
        ("What happened on 3/14/2024?", [CALCULATOR_TOOL]),
        ("Our support team works 24/7.", [CALCULATOR_TOOL]),  # no question, no spaces
        ("Hire a team of 5-10 people.", [CALCULATOR_TOOL]),
        # A number with a unit or suffix is not the number alone: "80k" is not 80.
        ("What is 12% of 80k?", [CALCULATOR_TOOL]),
        ("What is 2 + 3x?", [CALCULATOR_TOOL]),
        ("Is v2 + 3 ready?", [CALCULATOR_TOOL]),
    ],
)
def test_no_tool_call_without_calculator_or_arithmetic(
    client: httpx2.Client, task: str, tools: list[dict] | None
) -> None:
    extra = {"tools": tools} if tools is not None else {}
    completion = chat(client, [system(FINANCE), user(task)], **extra)
    message = message_of(completion)
    assert "tool_calls" not in message
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert message["content"].startswith(f"{LABEL} Finance specialist on: \u201c{task}\u201d")


@pytest.mark.parametrize(
    "task",
    # Runs of what an expression is made of, with no expression in them: these once made the
    # search quadratic (seconds for 8,000 characters); benchmarks/bench_text.py times them.
    ["(" * 7990 + "x", "-(" * 3995 + "x", "1," * 3995 + "+ 2k", "1 +" + " " * 7990 + "x", "7" * 7990 + "k"],
)
def test_long_runs_without_an_expression_get_no_tool_call(client: httpx2.Client, task: str) -> None:
    message = message_of(chat(client, [system(FINANCE), user(task)], tools=[CALCULATOR_TOOL]))
    assert "tool_calls" not in message
    shown = " ".join(task.split())[:20]  # the answer quotes the task with its whitespace collapsed
    assert message["content"].startswith(f"{LABEL} Finance specialist on: \u201c{shown}")


def test_answers_every_tool_result(client: httpx2.Client) -> None:
    calls = [
        {
            "id": "a",
            "type": "function",
            "function": {"name": "calculator", "arguments": '{"expression": "1+1"}'},
        },
        {
            "id": "b",
            "type": "function",
            "function": {"name": "calculator", "arguments": '{"expression": "2*3"}'},
        },
    ]
    messages = [
        user("1+1 and 2*3"),
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "a", "content": "2"},
        {"role": "tool", "tool_call_id": "b", "content": "6"},
    ]
    content = message_of(chat(client, messages, tools=[CALCULATOR_TOOL]))["content"]
    assert content.endswith("computed with the calculator: 1+1 = 2; 2*3 = 6")


# --- Group chat -------------------------------------------------------------------------


def team_system(name: str) -> dict[str, str]:
    role = next(role for role in AGENTS.group_chat.roles if role.name == name)
    others = ", ".join(n for n in TEAM if n != name)
    return system(f"{role.system_prompt}\n\n{TEAM_RULES.format(others=others, word='TERMINATE')}")


def run_meeting(client: httpx2.Client, task: str, order: list[str]) -> list[tuple[str, str]]:
    """Each member in turn sees the task and the earlier turns (as AutoGen sends them)."""
    turns: list[tuple[str, str]] = []
    for name in order:
        history = [user(text, speaker) for speaker, text in turns]
        completion = chat(client, [team_system(name), user(task, "user"), *history])
        turns.append((name, message_of(completion)["content"]))
    return turns


def test_team_turns_end_with_the_termination_word(client: httpx2.Client) -> None:
    task = "Should we launch a freemium tier?"
    turns = run_meeting(client, task, TEAM)
    assert [name for name, _ in turns] == TEAM
    cto, cmo, cfo = (text for _, text in turns)
    assert cto == (
        f"CTO (offline model) on \u201c{task}\u201d: my brief is to judge the proposal on technical "
        "feasibility, engineering effort, operational risk and timeline"
    )
    assert cmo.startswith(f"CMO (offline model) on \u201c{task}\u201d: my brief is to judge the proposal on")
    for text in (cto, cmo):
        assert "TERMINATE" not in text
    assert cfo.startswith(f"CFO (offline model) closing the discussion of \u201c{task}\u201d")
    assert cfo.endswith("TERMINATE")
    assert "CTO would judge the proposal on technical feasibility" in cfo
    assert "CMO would judge the proposal on customer demand" in cfo
    assert "CFO would judge the proposal on cost, revenue, margin and cash" in cfo
    assert "makes no recommendation" in cfo  # it does not pretend to decide


def test_whoever_speaks_last_concludes(client: httpx2.Client) -> None:
    turns = run_meeting(client, "Should we open-source our SDK?", ["CFO", "CMO", "CTO"])
    assert [name for name, _ in turns] == ["CFO", "CMO", "CTO"]
    assert "TERMINATE" not in turns[0][1] + turns[1][1]
    assert turns[2][1].startswith("CTO (offline model) closing the discussion")
    assert turns[2][1].endswith("TERMINATE")


def test_custom_termination_word(client: httpx2.Client) -> None:
    model = OfflineModel(termination_word="DONE_NOW", team=["Alice", "Bob"])
    with httpx2.Client(transport=httpx2.MockTransport(model.handle), base_url="http://x/v1") as other:
        first = message_of(chat(other, [system("You are Alice. Judge the code."), user("Ship it?", "user")]))
        second = message_of(
            chat(
                other,
                [
                    system("You are Bob. Judge the cost."),
                    user("Ship it?", "user"),
                    user(first["content"], "Alice"),
                ],
            )
        )
    assert first["content"] == "Alice (offline model) on \u201cShip it?\u201d: my brief is to judge the code"
    assert second["content"].endswith("DONE_NOW")
    assert "Alice would judge the code; Bob would judge the cost" in second["content"]


def test_a_one_sentence_role_is_not_given_the_team_rules_as_its_brief() -> None:
    """QA: "You are the CEO." plus the team's rules quoted "when the team has reached its
    decision, state the final decision …" as the CEO's brief."""
    model = OfflineModel(team=["CEO", "CTO"])
    rules = TEAM_RULES.format(others="CTO", word="TERMINATE")
    with httpx2.Client(transport=httpx2.MockTransport(model.handle), base_url="http://x/v1") as other:
        turn = message_of(chat(other, [system(f"You are the CEO.\n\n{rules}"), user("Ship it?", "user")]))
    assert turn["content"] == "CEO (offline model) on \u201cShip it?\u201d: my brief is to give my view"


def test_team_turns_are_deterministic(client: httpx2.Client) -> None:
    task = "Should we raise prices by 20 percent for new customers?"
    assert run_meeting(client, task, TEAM) == run_meeting(client, task, TEAM)


def test_without_a_team_a_role_prompt_gets_a_plain_answer() -> None:
    model = OfflineModel()  # no team configured
    with httpx2.Client(transport=httpx2.MockTransport(model.handle), base_url="http://x/v1") as other:
        content = message_of(chat(other, [team_system("CTO"), user("Should we rebuild the app?")]))["content"]
    assert content.startswith(f"{LABEL} Cto on:")
    assert "TERMINATE" not in content


def test_every_reply_says_it_is_offline(client: httpx2.Client) -> None:
    replies = [message_of(chat(client, [system(FINANCE), user("Prepare a budget.")]))["content"]]
    replies += [text for _, text in run_meeting(client, "Should we acquire a competitor?", TEAM)]
    assert all("offline model" in reply for reply in replies)


def test_the_real_openai_client_understands_it(model: OfflineModel) -> None:
    import openai

    http = httpx2.Client(transport=httpx2.MockTransport(model.handle))
    with openai.OpenAI(
        api_key="offline", base_url="http://offline.brainstack.invalid/v1", http_client=http
    ) as api:
        calling = api.chat.completions.create(
            model=OFFLINE_MODEL_NAME,
            messages=[{"role": "system", "content": FINANCE}, {"role": "user", "content": "What is 2 * 21?"}],
            tools=[CALCULATOR_TOOL],  # type: ignore[list-item]
        )
        (call,) = calling.choices[0].message.tool_calls or []
        assert call.function.name == "calculator"
        assert json.loads(call.function.arguments) == {"expression": "2 * 21"}
        assert calling.usage is not None and calling.usage.total_tokens > 0

        with pytest.raises(openai.BadRequestError) as refused:
            api.chat.completions.create(
                model=OFFLINE_MODEL_NAME,
                messages=[{"role": "user", "content": "Classify this."}],
                response_format={"type": "json_schema", "json_schema": {"name": "Route", "schema": {}}},
            )
    assert refused.value.status_code == 400
    assert "structured output" in refused.value.message


# -- streaming (LangGraph's `messages` stream mode, Studio's chat view) -------------------------------


def test_a_streaming_request_gets_server_sent_events_that_add_up_to_the_answer(client: httpx2.Client) -> None:
    """QA: the offline model answered `"stream": true` with plain JSON, which langchain-openai read
    as no chunks ("No generations found in stream"): every specialist run failed in Studio's
    `messages` modes."""
    from brainstack.agents.sse import completion_from_events

    messages = [system(MARKETING), user("Write a tagline for our coffee shop")]
    whole = chat(client, messages)
    response = client.post(
        "/v1/chat/completions",
        json={
            "model": OFFLINE_MODEL_NAME,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    events = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) > 5  # word by word
    chunks = [json.loads(line[6:]) for line in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    assert completion_from_events(response.text)["choices"][0]["message"] == message_of(whole)


def test_a_streamed_tool_call_is_one_whole_call(client: httpx2.Client) -> None:
    from brainstack.agents.sse import completion_from_events

    messages = [system(FINANCE), user("What is 17.5% of 2340?")]
    response = client.post(
        "/v1/chat/completions",
        json={"model": OFFLINE_MODEL_NAME, "messages": messages, "tools": [CALCULATOR_TOOL], "stream": True},
    )
    streamed = completion_from_events(response.text)
    assert "usage" not in streamed  # not asked for (no stream_options.include_usage)
    (choice,) = streamed["choices"]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "calculator"
    assert json.loads(call["function"]["arguments"]) == {"expression": "17.5% of 2340"}
    assert call == message_of(chat(client, messages, tools=[CALCULATOR_TOOL]))["tool_calls"][0]


async def test_langchain_streams_the_offline_answer_and_its_tool_call(model: OfflineModel) -> None:
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model=OFFLINE_MODEL_NAME,
        api_key="offline",
        base_url="http://offline.test/v1",
        http_async_client=httpx2.AsyncClient(transport=httpx2.MockTransport(model.handle)),
        stream_usage=True,
    )
    prompt = [SystemMessage(MARKETING), HumanMessage("Write a tagline for our coffee shop")]
    chunks = [chunk async for chunk in llm.astream(prompt)]
    assert len(chunks) > 5
    streamed = chunks[0]
    for chunk in chunks[1:]:
        streamed += chunk
    whole = await llm.ainvoke(prompt)
    assert streamed.content == whole.content and LABEL in str(whole.content)
    assert streamed.usage_metadata == whole.usage_metadata

    tools = llm.bind_tools(get_tools(["calculator"]))
    asked = [SystemMessage(FINANCE), HumanMessage("What is 17.5% of 2340?")]
    called = None
    async for chunk in tools.astream(asked):
        called = chunk if called is None else called + chunk
    assert called is not None
    assert [(c["name"], c["args"]) for c in called.tool_calls] == [
        ("calculator", {"expression": "17.5% of 2340"})
    ]
