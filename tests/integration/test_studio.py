"""`langgraph dev` serves langgraph.json's graph; a langgraph-sdk client runs, streams and resumes it.

The server runs as a real subprocess on a free loopback port with the offline model. Every
outbound HTTP(S) connection it could make goes through a proxy this test owns, which counts them:
the test requires zero.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GRAPH_ID = "brainstack"
CALCULATION = "What is 17.5% of 2340?"
DECISION = "Should we launch a freemium tier next quarter?"


class CountingProxy:
    """A TCP listener standing in for HTTP(S)_PROXY: it records each connection and closes it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(1)
                try:
                    self.requests.append(conn.recv(200))
                except OSError:
                    self.requests.append(b"?")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, port_factory
) -> Iterator[tuple[str, CountingProxy, float]]:
    langgraph = shutil.which("langgraph", path=str(Path(sys.executable).parent))
    assert langgraph, "langgraph-cli is not installed: `uv sync` installs it with the dev group"
    work = tmp_path_factory.mktemp("studio")
    proxy = CountingProxy()
    port = port_factory()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAINSTACK_", "OPENAI_", "LANGSMITH"))}
    env.update(
        BRAINSTACK_HOME=str(work / "home"),
        BRAINSTACK_CACHE_DIR=str(cache_dir),
        BRAINSTACK_APPROVAL="1",
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGGRAPH_NO_VERSION_CHECK="true",
        LANGSMITH_TRACING="false",
        HTTP_PROXY=f"http://127.0.0.1:{proxy.port}",
        HTTPS_PROXY=f"http://127.0.0.1:{proxy.port}",
        ALL_PROXY=f"http://127.0.0.1:{proxy.port}",
        NO_PROXY="127.0.0.1,localhost",
    )
    log = (work / "server.log").open("w")
    process = subprocess.Popen(
        [langgraph, "dev", "--port", str(port), "--host", "127.0.0.1", "--no-browser", "--no-reload"],
        cwd=ROOT,  # graph paths in langgraph.json are relative to it (.langgraph_api/ is git-ignored)
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()

    def output() -> str:
        return (work / "server.log").read_text()

    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"langgraph dev exited ({process.returncode}):\n{(work / 'server.log').read_text()}"
                )
            try:
                with urllib.request.urlopen(f"{url}/ok", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev did not answer in 90 s:\n{output()}")
            time.sleep(0.3)
        yield url, proxy, started
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()
        proxy.close()


@pytest.fixture
def client(server):
    from langgraph_sdk import get_client

    return get_client(url=server[0])


async def stream(client, thread_id: str, **kwargs) -> list:
    return [
        chunk
        async for chunk in client.runs.stream(
            thread_id, GRAPH_ID, stream_mode=["custom", "updates"], **kwargs
        )
    ]


async def test_the_graph_is_served_with_a_task_form(client):
    (assistant,) = await client.assistants.search(graph_id=GRAPH_ID)
    schemas = await client.assistants.get_schemas(assistant["assistant_id"])
    form = schemas["input_schema"]
    assert form["required"] == ["task"]
    assert set(form["properties"]) == {"task", "user_id", "requested_agent"}
    # each field says what it is (QA: the form showed bare names)
    assert form["properties"]["task"]["description"] == "The question or instruction."
    assert "group_chat" in form["properties"]["requested_agent"]["description"]
    visible = set(schemas["state_schema"]["properties"])
    assert {"route", "transcript", "memory", "answer", "approval"} <= visible


async def test_a_run_streams_typed_events_and_leaves_its_state(client):
    thread = await client.threads.create()
    chunks = await stream(client, thread["thread_id"], input={"task": CALCULATION, "user_id": "studio"})
    custom = [c.data for c in chunks if c.event == "custom"]
    assert [e["type"] for e in custom] == [
        "memory_recalled",
        "route",
        "tool_call",
        "agent_message",
        "memory_written",
    ]
    route = custom[1]
    assert route["target"] == "finance" and route["decided_by"] == "semantic"
    assert custom[2]["result"] == "409.5"
    updates = [next(iter(c.data)) for c in chunks if c.event == "updates"]
    assert updates == ["recall", "route", "specialist_finance", "review", "remember"]

    state = await client.threads.get_state(thread["thread_id"])
    values = state["values"]
    assert state["next"] == []
    assert values["route"]["target"] == "finance" and "409.5" in values["answer"]
    assert values["user_id"] == "studio" and values["thread_id"] == thread["thread_id"]
    assert values["memory"]["timings"] and values["remembered"]["episode_id"]
    assert [m["type"] for m in values["messages"]] == ["human", "ai"]


async def test_a_second_run_on_the_thread_starts_clean(client):
    thread = await client.threads.create()
    await client.runs.wait(thread["thread_id"], GRAPH_ID, input={"task": CALCULATION})
    final = await client.runs.wait(thread["thread_id"], GRAPH_ID, input={"task": "What is 2 + 2?"})
    assert final["task"] == "What is 2 + 2?" and "4" in final["answer"]
    # only this run's route, speaker and tool call: nothing left over from the first run
    assert final["speakers"] == [final["route"]["target"]] and len(final["tool_calls"]) == 1
    assert final["memory"]["history_messages"] == 2  # …but the conversation carries on
    assert [m["type"] for m in final["messages"]] == ["human", "ai", "human", "ai"]


async def test_approval_pauses_in_studio_and_a_resume_command_finishes_it(client):
    thread = await client.threads.create()
    chunks = await stream(client, thread["thread_id"], input={"task": DECISION})
    custom = [c.data for c in chunks if c.event == "custom"]
    turns = [e["speaker"] for e in custom if e["type"] == "group_chat_turn"]
    assert turns == ["CTO", "CMO", "CFO"]
    interrupted = [
        c.data["__interrupt__"] for c in chunks if c.event == "updates" and "__interrupt__" in c.data
    ]
    (request,) = interrupted[0]
    assert request["value"]["type"] == "approval" and request["value"]["route"] == "group_chat"

    state = await client.threads.get_state(thread["thread_id"])
    assert state["next"] == ["approve"]

    final = await client.runs.wait(
        thread["thread_id"], GRAPH_ID, command={"resume": {"edit": "Ship it in Q3."}}
    )
    assert final["answer"] == "Ship it in Q3." and final["approval"]["status"] == "edited"
    assert final["remembered"]["episode_id"]
    assert (await client.threads.get_state(thread["thread_id"]))["next"] == []


async def test_the_server_refuses_a_resume_for_a_thread_that_is_not_paused(client):
    """The resume "succeeded" and did nothing (a finished thread), or failed with "TypeError:
    'NoneType' object is not iterable" (a new one)."""
    thread = (await client.threads.create())["thread_id"]
    chunks = await stream(client, thread, command={"resume": "approve"})
    errors = [c.data for c in chunks if c.event == "error"]
    assert errors and errors[0]["error"] == "NotPausedError"
    assert f"Thread '{thread}' is not waiting for an approval: it has no run yet" in errors[0]["message"]

    await client.runs.wait(thread, GRAPH_ID, input={"task": CALCULATION})
    chunks = await stream(client, thread, command={"resume": "approve"})
    errors = [c.data for c in chunks if c.event == "error"]
    assert errors and "its last run has ended" in errors[0]["message"]
    assert "Send a new task as the input" in errors[0]["message"]
    assert (await client.threads.get_state(thread))["values"]["task"] == CALCULATION  # unchanged


async def test_a_new_task_on_a_paused_thread_does_not_adopt_the_unapproved_answer(client):
    """The server starts a new task on a thread that waits for approval (Runtime refuses it) and
    drops the pending approval: the unapproved answer stayed in the conversation as if accepted,
    and the next runs took it as the thread's history (QA)."""
    from brainstack.graphs.nodes import NOT_ADOPTED

    thread = await client.threads.create()
    await client.runs.wait(thread["thread_id"], GRAPH_ID, input={"task": DECISION})
    paused = await client.threads.get_state(thread["thread_id"])
    assert paused["next"] == ["approve"]
    proposed = [m for m in paused["values"]["messages"] if m["type"] == "ai"][-1]

    final = await client.runs.wait(thread["thread_id"], GRAPH_ID, input={"task": "What is 2 + 2?"})
    assert "4" in final["answer"] and final["approval"] == {}
    messages = [(m["type"], m["content"]) for m in final["messages"]]
    assert messages == [
        ("human", DECISION),
        ("ai", NOT_ADOPTED),
        ("human", "What is 2 + 2?"),
        ("ai", final["answer"]),
    ]
    assert proposed["content"] not in str(final["messages"])
    assert final["messages"][1]["id"] == proposed["id"]  # replaced in place, as a rejection is


async def test_a_server_with_approval_off_refuses_to_resume_a_paused_run(settings, embedder):
    """QA: restarted without BRAINSTACK_APPROVAL, the server's graph had no approve node, so a
    resume ignored the decision and ended the run with the unapproved answer."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    from brainstack import Runtime, UsageError
    from brainstack.graphs.studio import make_graph

    saver = InMemorySaver()
    config = {"configurable": {"thread_id": "paused"}}
    on = Runtime(settings.model_copy(update={"approval": True}), embedder=embedder)
    paused_graph = on.graph.compile(checkpointer=saver)
    await paused_graph.ainvoke({"task": DECISION}, config)
    assert (await paused_graph.aget_state(config)).next == ("approve",)

    off = Runtime(settings, embedder=embedder)
    make_graph(off)  # as the server builds it, with approval off
    served = off.graph.compile(checkpointer=saver)
    with pytest.raises(
        UsageError, match="waiting for approval, which the current settings turn off"
    ) as caught:
        await served.ainvoke(Command(resume={"reject": "too early"}), config)
    assert "restart it with BRAINSTACK_APPROVAL=1" in str(caught.value)
    assert (await served.aget_state(config)).next == ("approve",)  # still waiting, nothing lost

    final = await paused_graph.ainvoke(Command(resume={"reject": "too early"}), config)
    assert final["approval"]["status"] == "rejected" and final["answer"].startswith(
        "Rejected by the reviewer"
    )
    on.close()
    off.close()


async def test_a_new_task_after_a_stopped_run_marks_the_stopped_task_not_answered(
    settings, embedder, stalled_model
):
    """QA: a run cancelled in Studio left its question in the conversation with no answer, and the
    server starts a new task on such a thread (Runtime refuses it): the next run's agents read two
    questions in a row. The stopped one now gets an answer that says it was not answered."""
    from langgraph.checkpoint.memory import InMemorySaver

    from brainstack import Runtime
    from brainstack.graphs.nodes import NOT_ANSWERED

    saver = InMemorySaver()
    config = {"configurable": {"thread_id": "stopped"}}
    slow = Runtime(settings, embedder=embedder, transport=stalled_model.transport)
    fast = Runtime(settings, embedder=embedder)
    try:
        graph = slow.graph.compile(checkpointer=saver)
        run = asyncio.ensure_future(
            graph.ainvoke({"task": "Write a tagline.", "requested_agent": "marketing"}, config)
        )
        await asyncio.wait_for(stalled_model.started.wait(), 60)
        run.cancel()  # the user cancels the run in Studio
        with pytest.raises(asyncio.CancelledError):
            await run
        stopped = (await graph.aget_state(config)).values["messages"]
        assert [(m.type, m.content) for m in stopped] == [("human", "Write a tagline.")]

        final = await fast.graph.compile(checkpointer=saver).ainvoke({"task": "What is 2 + 2?"}, config)
        assert "4" in final["answer"]
        assert [(m.type, m.content) for m in final["messages"]] == [
            ("human", "Write a tagline."),
            ("ai", NOT_ANSWERED),
            ("human", "What is 2 + 2?"),
            ("ai", final["answer"]),
        ]
    finally:
        slow.close()
        fast.close()


async def test_an_input_without_a_task_does_not_run_the_previous_one_again(client):
    """QA: the thread's state keeps the last task, so an input without one ran it again."""
    thread = await client.threads.create()
    first = await client.runs.wait(thread["thread_id"], GRAPH_ID, input={"task": "What is 2 + 2?"})
    assert "4" in first["answer"]
    chunks = await stream(client, thread["thread_id"], input={"user_id": "bob"})
    errors = [c.data for c in chunks if c.event == "error"]
    assert errors and errors[0]["error"] == "InvalidTaskError"
    assert "The input has no task" in errors[0]["message"]
    again = await client.runs.wait(thread["thread_id"], GRAPH_ID, input={"task": "What is 2 + 2?"})
    assert "4" in again["answer"]  # the same task sent again runs
    asked = [m["content"] for m in again["messages"] if m["type"] == "human"]
    assert asked == ["What is 2 + 2?", "What is 2 + 2?"]


async def test_an_empty_task_fails_the_run_with_a_clear_error(client):
    thread = await client.threads.create()
    chunks = await stream(client, thread["thread_id"], input={"task": "   "})
    errors = [c.data for c in chunks if c.event == "error"]
    assert errors and errors[0]["error"] == "InvalidTaskError"
    assert "The task is empty" in errors[0]["message"]  # shown: a UsageError is a ValueError


async def test_an_unknown_agent_fails_the_run_naming_the_agents(client):
    thread = await client.threads.create()
    chunks = await stream(client, thread["thread_id"], input={"task": "hi", "requested_agent": "nope"})
    errors = [c.data for c in chunks if c.event == "error"]
    assert errors and errors[0]["error"] == "UnknownAgentError"
    assert "No agent named 'nope'" in errors[0]["message"] and "finance" in errors[0]["message"]


async def test_an_input_naming_an_unknown_agent_leaves_the_thread_as_it_was(client):
    """QA: the route node refused it after the task had joined the conversation, so the next task
    marked it "Not answered: the run … stopped", and one without an agent hit the refused name."""
    thread = (await client.threads.create())["thread_id"]
    first = await client.runs.wait(thread, GRAPH_ID, input={"task": "What is 2 + 2?"})
    chunks = await stream(client, thread, input={"task": "Write a tagline", "requested_agent": "markting"})
    assert [c.data["error"] for c in chunks if c.event == "error"] == ["UnknownAgentError"]
    state = await client.threads.get_state(thread)
    assert [m["content"] for m in state["values"]["messages"]] == [m["content"] for m in first["messages"]]

    final = await client.runs.wait(thread, GRAPH_ID, input={"task": CALCULATION})  # no agent asked
    assert final["route"]["decided_by"] == "semantic" and final["route"]["target"] == "finance"
    assert [(m["type"], m["content"]) for m in final["messages"]] == [
        ("human", "What is 2 + 2?"),
        ("ai", first["answer"]),
        ("human", CALCULATION),
        ("ai", final["answer"]),
    ]


@pytest.mark.parametrize("mode", ["messages-tuple", "messages", "events"])
async def test_a_run_streams_the_answer_in_every_token_mode(client, mode):
    """QA: the offline model answered a streaming request with plain JSON, so every specialist run
    in Studio's token stream modes failed ("No generations found in stream")."""
    thread = (await client.threads.create())["thread_id"]
    chunks = [
        chunk
        async for chunk in client.runs.stream(
            thread, GRAPH_ID, input={"task": CALCULATION}, stream_mode=[mode, "values"]
        )
    ]
    assert not [c.data for c in chunks if c.event == "error"]
    final = [c.data for c in chunks if c.event == "values"][-1]
    assert "409.5" in final["answer"]
    if mode == "messages-tuple":
        tokens = [
            message["content"]
            for message, meta in (c.data for c in chunks if c.event == "messages")
            if meta["langgraph_node"] == "specialist_finance" and message["content"]
        ]
        assert len(tokens) > 3 and "".join(tokens) == final["answer"]


def test_the_server_made_no_outbound_connection(server):
    _, proxy, started = server
    time.sleep(max(0.0, started + 15 - time.monotonic()))  # onnxruntime's telemetry came after ~5-10 s
    assert proxy.requests == []


async def test_a_resume_for_a_thread_that_is_not_paused_is_refused_saying_what_to_send(
    backend_settings, embedder, stalled_model
):
    """LangGraph accepts a resume command for a thread with no pending interrupt: on a finished
    thread the run "succeeded" and did nothing (and left the decision in the checkpoint), on a
    new one it failed with "The task is empty", and on a run stopped part-way it went on, dropped
    the decision and paused to ask for it again."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    from brainstack import Runtime
    from brainstack.errors import NotPausedError
    from brainstack.graphs.checkpointers import open_checkpointer
    from brainstack.graphs.studio import make_graph

    settings = backend_settings.model_copy(update={"approval": True})
    runtime = Runtime(settings, embedder=embedder)
    slow = Runtime(settings, embedder=embedder, transport=stalled_model.transport)
    ids = {name: f"{name}-{os.urandom(6).hex()}" for name in ("new", "done", "stopped")}
    config = {name: {"configurable": {"thread_id": thread}} for name, thread in ids.items()}
    try:
        async with open_checkpointer(settings) as saver:
            served = make_graph(runtime).copy(update={"checkpointer": saver})  # as the server serves it

            with pytest.raises(
                NotPausedError, match="is not waiting for an approval: it has no run yet"
            ) as no:
                await served.ainvoke(Command(resume="approve"), config["new"])
            assert 'Start a run with an input: {"task": "…"}' in str(no.value)
            assert await saver.aget_tuple(config["new"]) is None  # nothing written
            synchronous = make_graph(runtime).copy(update={"checkpointer": InMemorySaver()})
            with pytest.raises(NotPausedError, match="it has no run yet"):
                synchronous.invoke(Command(resume="approve"), config["new"])  # (stream, not astream)

            await served.ainvoke({"task": "What is 2 + 2?"}, config["done"])
            before = await saver.aget_tuple(config["done"])
            with pytest.raises(NotPausedError, match="its last run has ended") as ended:
                await served.ainvoke(Command(resume={"edit": "5"}), config["done"])
            assert "Send a new task as the input" in str(ended.value)
            after = await saver.aget_tuple(config["done"])
            assert after.config == before.config and after.pending_writes == []  # no decision kept

            stopping = make_graph(slow).copy(update={"checkpointer": saver})
            run = asyncio.ensure_future(
                stopping.ainvoke({"task": DECISION, "requested_agent": "group_chat"}, config["stopped"])
            )
            await asyncio.wait_for(stalled_model.started.wait(), 60)
            run.cancel()  # the user cancels the run in Studio
            with pytest.raises(asyncio.CancelledError):
                await run
            with pytest.raises(
                NotPausedError, match=r"its last run stopped before it ended \(at group_chat"
            ) as cut:
                await served.ainvoke(Command(resume="approve"), config["stopped"])
            assert "runs.create(thread_id, assistant_id, input=None)" in str(cut.value)
            assert (await served.aget_state(config["stopped"])).next == ("group_chat",)  # as it was

            await served.ainvoke(None, config["stopped"])  # what the error says to send
            paused = await served.aget_state(config["stopped"])
            assert paused.next == ("approve",) and paused.interrupts  # it asks for the decision
            final = await served.ainvoke(Command(resume="approve"), config["stopped"])
            assert final["approval"]["status"] == "approved"
    finally:
        runtime.close()
        slow.close()
