"""Human approval: a run pauses before its answer is final and continues with the human's decision."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from brainstack import RunError, Runtime, UsageError
from brainstack.errors import ConfigurationError, NotPausedError
from brainstack.events import GroupChatTurnEvent, InterruptEvent, ResultEvent

DECISION = "Should we launch a freemium tier next quarter?"
CALCULATION = "What is 17.5% of 2340?"


@pytest.fixture
def approving(backend_settings, embedder):
    """A runtime that asks for approval of group-chat answers, on both checkpoint backends."""
    with Runtime(backend_settings.model_copy(update={"approval": True}), embedder=embedder) as runtime:
        yield runtime


def thread() -> str:
    return f"approval-{uuid.uuid4().hex[:12]}"


def ai_messages(runtime: Runtime, thread_id: str) -> list[str]:
    return [m["content"] for m in runtime.messages(thread_id) if m["role"] == "ai"]


def test_group_chat_answer_waits_for_approval_then_is_approved(approving):
    tid = thread()
    events = list(approving.stream(DECISION, thread_id=tid))
    kinds = [e.type for e in events]
    assert kinds[-2:] == ["interrupt", "result"]
    assert any(isinstance(e, GroupChatTurnEvent) for e in events)
    request = next(e for e in events if isinstance(e, InterruptEvent)).request
    paused = events[-1].result
    assert paused.status == "awaiting_approval"
    assert paused.approval.status == "pending" and paused.approval.request == request
    assert request.route == "group_chat" and request.answer == paused.answer and request.thread_id == tid
    assert paused.remembered.episode_id is None  # nothing is remembered before the human decides
    assert "approve" not in paused.timings and "remember" not in paused.timings

    result = approving.run(thread_id=tid, resume="approve")
    assert result.status == "completed" and result.approval.status == "approved"
    assert result.answer == paused.answer
    assert result.transcript == paused.transcript  # the meeting did not run again
    assert result.timings["group_chat"] == paused.timings["group_chat"]
    assert result.remembered.episode_id is not None
    assert ai_messages(approving, tid) == [paused.answer]


def test_a_pruned_thread_still_waits_for_approval_and_continues(approving):
    tid = thread()
    paused = approving.run(DECISION, thread_id=tid)
    assert approving.prune_thread(tid) > 0
    assert len(approving.history(tid)) == 1
    with pytest.raises(UsageError, match="waiting for approval"):
        approving.run(CALCULATION, thread_id=tid)  # the pause survived: new tasks are still refused
    result = approving.run(thread_id=tid, resume="approve")
    assert result.status == "completed" and result.answer == paused.answer
    assert result.transcript == paused.transcript  # the meeting did not run again


def test_a_continued_run_and_a_replay_stay_the_runs_of_the_user_who_started_them(approving):
    """resume (and `brainstack resume`, which has no --user) once wrote user "default" into the
    checkpoints it added: `threads delete --user default` then deleted another user's thread."""
    tid, user = thread(), f"ada-{uuid.uuid4().hex[:8]}"
    approving.run(DECISION, thread_id=tid, user_id=user)
    assert approving.run(thread_id=tid, resume="approve").status == "completed"  # user_id: default
    history = approving.history(tid)
    assert {c.user_id for c in history} == {user}
    assert tid not in [t.thread_id for t in approving.threads("default")]
    listed = [t for t in approving.threads(user) if t.thread_id == tid]
    assert len(listed) == 1 and listed[0].checkpoints == len(history)

    before_review = next(c for c in history if c.next == ["review"])
    assert approving.replay(tid, before_review).status == "awaiting_approval"
    assert {c.user_id for c in approving.history(tid)} == {user}


def test_edit_replaces_the_answer_in_the_result_and_the_thread(approving):
    tid = thread()
    paused = approving.run(DECISION, thread_id=tid)
    edited = "Launch freemium in Q3, capped at 3 projects per account."
    result = approving.run(thread_id=tid, resume={"edit": edited})
    assert result.answer == edited
    assert result.approval.status == "edited" and result.approval.proposed == paused.answer
    assert ai_messages(approving, tid) == [edited]  # replaced, not appended


def test_reject_records_the_reason_and_learns_nothing(approving):
    tid = thread()
    approving.run(DECISION, thread_id=tid)
    result = approving.run(thread_id=tid, resume={"reject": "no pricing analysis yet"})
    assert result.approval.status == "rejected" and result.approval.note == "no pricing analysis yet"
    assert result.answer.startswith("Rejected by the reviewer: no pricing analysis yet.")
    assert ai_messages(approving, tid) == [result.answer]
    assert result.remembered.skill is None  # a rejected decision reinforces no procedure
    episodes = approving.memory.episodes.search("default", DECISION, k=5)
    assert [e.metadata["outcome"] for e in episodes if e.id == result.remembered.episode_id] == ["rejected"]


async def test_async_resume(approving):
    tid = thread()
    paused = await approving.arun(DECISION, thread_id=tid)
    assert paused.status == "awaiting_approval"
    events = [e async for e in approving.astream(thread_id=tid, resume="reject")]
    assert isinstance(events[-1], ResultEvent) and events[-1].result.approval.status == "rejected"


def test_routes_without_approval_do_not_pause(approving):
    result = approving.run(CALCULATION)
    assert result.route.target == "finance"
    assert result.status == "completed" and result.approval is None


def test_approval_routes_are_configurable(settings, embedder):
    configured = settings.model_copy(update={"approval": True, "approval_routes": ("finance",)})
    with Runtime(configured, embedder=embedder) as runtime:
        assert runtime.run(CALCULATION).status == "awaiting_approval"
        assert runtime.run(DECISION).status == "completed"


def test_approval_off_by_default(settings, embedder):
    with Runtime(settings, embedder=embedder) as runtime:
        assert "approve" not in runtime.graph.nodes
        assert runtime.run(DECISION).status == "completed"


def test_unknown_approval_route_is_a_configuration_error(settings, embedder):
    configured = settings.model_copy(update={"approval": True, "approval_routes": ("legal",)})
    with pytest.raises(ConfigurationError, match="legal"):
        Runtime(configured, embedder=embedder).graph  # noqa: B018


def test_approval_with_no_route_is_a_configuration_error(settings, embedder, monkeypatch):
    monkeypatch.setenv("BRAINSTACK_APPROVAL_ROUTES", " , ")  # parses to no route at all
    configured = settings.model_copy(
        update={"approval": True, "approval_routes": type(settings).from_env().approval_routes}
    )
    assert configured.approval_routes == ()
    with pytest.raises(ConfigurationError, match=r"names no route; name one or more of .*group_chat"):
        Runtime(configured, embedder=embedder).graph  # noqa: B018
    off = settings.model_copy(update={"approval": False, "approval_routes": ()})
    assert "approve" not in Runtime(off, embedder=embedder).graph.nodes  # approval off: fine


def test_cli_says_an_unknown_approval_route_in_one_line_before_anything_else(env_home):
    """The check was made when the graph was built, after the CLI's banner (docs audit)."""
    env = {**env_home, "BRAINSTACK_APPROVAL": "1", "BRAINSTACK_APPROVAL_ROUTES": "legal"}
    done = subprocess.run(
        [sys.executable, "-m", "brainstack.cli", "run", "What is 2 + 2?"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "brainstack: BRAINSTACK_APPROVAL_ROUTES names legal, which is not a route; "
        "use technical, finance, marketing, general, group_chat."
    ]


def test_commands_that_load_no_agents_file_accept_the_routes_of_the_users_own(env_home, tmp_path):
    """Approval on a route of the user's agents file (passed as --agents): `threads list` loads the
    built-in agents file, so refusing unknown routes when a Runtime was made refused the listing,
    which builds no graph, with "names support, which is not a route"."""
    from importlib import resources

    builtin = resources.files("brainstack.config").joinpath("agents.yaml").read_text()
    agents = tmp_path / "agents.yaml"
    agents.write_text(builtin.replace("\n  marketing:\n", "\n  support:\n"))
    env = {**env_home, "BRAINSTACK_APPROVAL": "1", "BRAINSTACK_APPROVAL_ROUTES": "support"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "brainstack.cli", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    ran = cli("run", "--json", "--agents", str(agents), "--agent", "support", "Write a tagline.")
    assert ran.returncode == 0, ran.stderr
    thread = json.loads(ran.stdout)["thread_id"]
    listed = cli("threads", "list")
    assert listed.returncode == 0, listed.stderr
    assert thread in listed.stdout and "awaiting_approval" in listed.stdout
    refused = cli("run", "What is 2 + 2?")  # the built-in agents file has no such route
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        "brainstack: BRAINSTACK_APPROVAL_ROUTES names support, which is not a route; "
        "use technical, finance, marketing, general, group_chat."
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resume": "maybe"}, "not a decision"),
        ({"resume": {"edit": ""}}, "not a decision"),
        ({"resume": {"edit": "x", "reject": "y"}}, "not a decision"),
        ({"resume": {"approve": False}}, "not a decision"),  # it approved
        ({"resume": {"edit": "Launch.\x00"}}, r"edited answer contains the control character '\\x00'"),
        ({"resume": {"reject": "why\x1b[2J"}}, r"reason contains the control character '\\x1b'"),
        ({"resume": {"edit": "x" * 20_001}}, "20001 characters; the limit is 20000"),
    ],
)
def test_unreadable_decisions_are_refused_and_the_run_stays_paused(approving, kwargs, message):
    tid = thread()
    paused = approving.run(DECISION, thread_id=tid)
    with pytest.raises(UsageError, match=message):
        approving.run(thread_id=tid, **kwargs)
    assert approving.run(thread_id=tid, resume="yes").answer == paused.answer


def test_a_paused_thread_refuses_new_tasks_and_plain_continuation(approving):
    tid = thread()
    approving.run(DECISION, thread_id=tid)
    with pytest.raises(UsageError, match="waiting for approval"):
        approving.run("Another question", thread_id=tid)
    with pytest.raises(UsageError, match="waiting for approval: pass resume="):
        approving.run(thread_id=tid)
    with pytest.raises(UsageError, match="either a task"):
        approving.run("Another question", thread_id=tid, resume="approve")
    approving.run(thread_id=tid, resume="approve")
    with pytest.raises(
        NotPausedError, match=f"Thread '{tid}' is not waiting for an approval: its last run has ended"
    ) as ended:
        approving.run(thread_id=tid, resume="approve")  # approved twice
    assert f"Pass a task to start a new run (CLI: `brainstack run --thread {tid} TASK`)." in str(ended.value)
    assert ended.value.thread_id == tid
    with pytest.raises(NotPausedError, match="it has no run yet, so a resume") as never:
        approving.run(thread_id=thread(), resume="approve")
    assert "has nothing to answer. Pass a task to start a new run" in str(never.value)
    assert approving.run("What is 2 + 2?", thread_id=tid).status == "completed"


def test_a_decision_for_a_run_stopped_part_way_says_to_continue_it_without_one(approving, embedder):
    """A run stopped before its answer was asked about (here: its Runtime closed mid group chat)
    is not waiting for an approval: the decision is refused, naming the command that goes on."""
    import asyncio
    import threading

    import httpx2

    started = threading.Event()

    async def stalled(request):
        started.set()
        await asyncio.sleep(60)

    tid = thread()
    stopping = Runtime(approving.settings, embedder=embedder, transport=httpx2.MockTransport(stalled))
    outcome: list[BaseException] = []

    def stopped_run() -> None:
        try:
            stopping.run(DECISION, thread_id=tid)
        except RunError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=stopped_run)
    worker.start()
    assert started.wait(60)
    stopping.close()  # the thread keeps its last checkpoint
    worker.join(60)
    with pytest.raises(
        NotPausedError, match="not waiting for an approval: its last run stopped before group_chat"
    ) as cut:
        approving.run(thread_id=tid, resume="approve")
    assert (
        f"Continue it without a decision: `brainstack resume --thread {tid}` (Python: run(thread_id='{tid}'))"
        in str(cut.value)
    )
    assert approving.run(thread_id=tid).status == "awaiting_approval"  # continued: it asks now


def test_resume_needs_a_thread(approving):
    with pytest.raises(UsageError, match="thread_id"):
        approving.run(resume="approve")


async def test_a_raw_client_with_an_unreadable_decision_is_asked_again(approving):
    """Studio and SDK clients resume with Command(resume=...) directly: the node asks again."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    graph = approving.graph.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": thread()}}
    await graph.ainvoke({"task": DECISION}, config)
    await graph.ainvoke(Command(resume="perhaps"), config)
    (interrupt,) = (await graph.aget_state(config)).interrupts
    assert "not a decision" in interrupt.value["problem"]
    final = await graph.ainvoke(Command(resume={"edit": "Go."}), config)
    assert final["answer"] == "Go." and final["approval"]["status"] == "edited"


@pytest.mark.slow
def test_cli_pauses_and_resumes_in_another_process(env_home):
    env = {**env_home, "BRAINSTACK_APPROVAL": "1"}
    tid = thread()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "brainstack.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    paused = cli("run", DECISION, "--thread", tid)
    assert paused.returncode == 0, paused.stderr
    assert f"brainstack resume --thread {tid} --approve" in paused.stderr
    assert "⏸ Approve the group_chat's answer?" in paused.stdout
    busy = cli("run", "What is 2 + 2?", "--thread", tid)
    assert busy.returncode == 2 and "waiting for approval" in busy.stderr and "Traceback" not in busy.stderr
    done = cli("resume", "--thread", tid, "--reject", "too early", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["approval"]["status"] == "rejected"
    assert result["approval"]["note"] == "too early"
