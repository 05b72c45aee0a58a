"""`threads list` says what each thread's last run is doing, on both checkpoint backends."""

from __future__ import annotations

import asyncio
import threading
import uuid

import httpx2
import pytest

from brainstack import RunError, Runtime, UsageError
from brainstack.errors import NotPausedError

DECISION = "Should we launch a freemium tier next quarter?"


def unique(name: str) -> str:
    """Ids unique per test run: the PostgreSQL database outlives the test session."""
    return f"{name}-{uuid.uuid4().hex[:12]}"


def status(runtime: Runtime, user: str | None, thread_id: str) -> str:
    (listed,) = [t for t in runtime.threads(user) if t.thread_id == thread_id]
    return listed.status


def start_run(runtime: Runtime, task: str | None, **kwargs) -> tuple[threading.Thread, list[BaseException]]:
    """Run ``task`` in a thread of its own; the RunError of a Runtime closed mid-run is kept."""
    outcome: list[BaseException] = []

    def target() -> None:
        try:
            runtime.run(task, **kwargs)
        except RunError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=target)
    worker.start()
    return worker, outcome


class Gate:
    """The offline model behind a gate: each call says ``started`` and waits for ``release``."""

    def __init__(self) -> None:
        from brainstack.agents.offline import OfflineModel

        self.model = OfflineModel(termination_word="TERMINATE", team=["CTO", "CMO", "CFO"])
        self.started, self.release = threading.Event(), threading.Event()

    async def handle(self, request):  # (async: the Runtime's loop goes on serving its other calls)
        self.started.set()
        await asyncio.to_thread(self.release.wait, 60)
        return self.model.handle(request)


class Failing(Gate):
    """The offline model behind a gate that answers HTTP 500 until ``failing`` is cleared."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = True

    async def handle(self, request):
        if self.failing:
            return httpx2.Response(500, json={"error": {"message": "the model server broke"}})
        return await super().handle(request)


def failing_model(request) -> httpx2.Response:
    return httpx2.Response(500, json={"error": {"message": "the model server broke"}})


def test_each_thread_is_listed_completed_awaiting_approval_running_or_unfinished(backend_settings, embedder):
    settings = backend_settings.model_copy(update={"approval": True})
    user = unique("status")
    gate = Gate()
    runtime = Runtime(settings, embedder=embedder)
    stalled = Runtime(settings, embedder=embedder, transport=httpx2.MockTransport(gate.handle))
    try:
        done = runtime.run("What is 2 + 2?", user_id=user)
        paused = runtime.run(DECISION, user_id=user)
        assert paused.status == "awaiting_approval"

        stopped = unique("stopped")
        worker, outcome = start_run(
            stalled, "Write a tagline.", user_id=user, thread_id=stopped, agent="marketing"
        )
        assert gate.started.wait(60)
        listed = {t.thread_id: t.status for t in runtime.threads(user)}
        assert listed == {
            done.thread_id: "completed",
            paused.thread_id: "awaiting_approval",
            stopped: "running",  # its checkpoints alone say it stopped part-way
        }
        assert status(stalled, user, stopped) == "running"  # the process running it says so too
        stalled.close()  # stops the run: the thread keeps its last checkpoint
        worker.join(60)
        assert outcome and "closed while the run was under way" in str(outcome[0])
        assert status(runtime, user, stopped) == "unfinished"
        assert status(runtime, None, stopped) == "unfinished"  # every user's threads alike

        assert runtime.run(thread_id=stopped).status == "completed"  # continued
        assert runtime.run(thread_id=paused.thread_id, resume="approve").status == "completed"
        assert {t.status for t in runtime.threads(user)} == {"completed"}
    finally:
        gate.release.set()
        runtime.close()
        stalled.close()


def test_a_run_that_failed_on_an_error_is_listed_failed_until_it_is_continued(backend_settings, embedder):
    """A run that failed (the model endpoint answered HTTP 500) is not one that was stopped: it
    runs its failed step again once the cause is fixed. Continued, it is running, then completed."""
    settings = backend_settings.model_copy(update={"model_max_retries": 0})
    user, thread = unique("failed"), unique("failed")
    model = Failing()
    runtime = Runtime(settings, embedder=embedder, transport=httpx2.MockTransport(model.handle))
    try:
        with pytest.raises(RunError, match="HTTP 500"):
            runtime.run("Write a tagline.", user_id=user, thread_id=thread, agent="marketing")
        assert status(runtime, user, thread) == "failed"
        assert status(runtime, None, thread) == "failed"  # every user's threads alike
        (listed,) = [t for t in runtime.threads(user) if t.thread_id == thread]
        assert listed.error is not None and "500" in listed.error  # why, as the run saved it
        with pytest.raises(UsageError, match=r"has an unfinished run \(failed in specialist_marketing\)"):
            runtime.run("Another task.", user_id=user, thread_id=thread)  # refused, as the table says
        with pytest.raises(NotPausedError, match="its last run failed in specialist_marketing, so"):
            runtime.run(thread_id=thread, resume="approve")

        model.failing = False  # the cause fixed: continuing runs the failed step again
        worker, outcome = start_run(runtime, None, user_id=user, thread_id=thread)
        assert model.started.wait(60)
        assert status(runtime, user, thread) == "running"  # (its checkpoint still holds the error)
        assert [t.error for t in runtime.threads(user) if t.thread_id == thread] == [None]
        model.release.set()
        worker.join(60)
        assert not outcome
        assert status(runtime, user, thread) == "completed"
        assert runtime.threads(user)[0].error is None
        assert runtime.messages(thread)[-1]["content"].startswith("[offline model")  # the answer
    finally:
        model.release.set()
        runtime.close()


def test_a_users_listing_shows_the_status_of_the_threads_last_run_by_anyone(backend_settings, embedder):
    """The listed checkpoint is the user's newest; another user may have run the thread since."""
    settings = backend_settings.model_copy(update={"approval": True})
    ada, bob = unique("ada"), unique("bob")
    with Runtime(settings, embedder=embedder) as runtime:
        thread = runtime.run("What is 2 + 2?", user_id=ada).thread_id
        runtime.run(DECISION, user_id=bob, thread_id=thread)
        (listed,) = runtime.threads(ada)
        assert listed.last_task == "What is 2 + 2?" and listed.user_id == ada  # ada's run…
        assert listed.status == "awaiting_approval"  # …on a thread that now waits for bob's answer
        runtime.run(thread_id=thread, resume="reject")
        assert runtime.threads(ada)[0].status == "completed"


async def test_the_status_of_every_checkpoint_is_what_langgraph_makes_of_it(
    backend_settings, embedder, stalled_model
):
    """The status is read from the saved checkpoint without the graph; LangGraph's state snapshot
    (next steps, tasks, interrupts) of each checkpoint of a thread's history must agree with it,
    paused, stopped after each step, cut short mid-step, failed and finished."""
    from brainstack.graphs.checkpointers import open_checkpointer
    from brainstack.graphs.status import run_status

    def expected(snapshot) -> str:
        if snapshot.interrupts:
            return "awaiting_approval"
        if any(task.error and not str(task.error).startswith("CancelledError") for task in snapshot.tasks):
            return "failed"
        return "unfinished" if snapshot.next or snapshot.tasks else "completed"

    settings = backend_settings.model_copy(update={"approval": True, "model_max_retries": 0})
    runtime = Runtime(settings, embedder=embedder)
    slow = Runtime(settings, embedder=embedder, transport=stalled_model.transport)
    broken = Runtime(settings, embedder=embedder, transport=httpx2.MockTransport(failing_model))
    thread = unique("history")
    config = {"configurable": {"thread_id": thread}}
    try:
        async with open_checkpointer(settings) as saver:
            graph = runtime.graph.compile(checkpointer=saver)
            await graph.ainvoke({"task": "What is 2 + 2?"}, config)
            await graph.ainvoke({"task": DECISION}, config)
            await graph.ainvoke({"task": "approve"}, config)  # no: a new task drops the approval
            with pytest.raises(Exception, match="500"):
                await broken.graph.compile(checkpointer=saver).ainvoke(
                    {"task": "What is 17.5% of 2340?"}, config
                )
            await graph.ainvoke(None, config)  # continued: the failed step runs again
            stopped = slow.graph.compile(checkpointer=saver)
            run = asyncio.ensure_future(
                stopped.ainvoke({"task": "Write a tagline.", "requested_agent": "marketing"}, config)
            )
            await asyncio.wait_for(stalled_model.started.wait(), 60)
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
            seen = []
            async for snapshot in graph.aget_state_history(config):
                saved = await saver.aget_tuple(snapshot.config)
                seen.append(run_status(saved.checkpoint, saved.pending_writes))
                assert seen[-1] == expected(snapshot), (snapshot.next, snapshot.tasks, snapshot.metadata)
            assert {"completed", "awaiting_approval", "failed", "unfinished"} <= set(seen)
            assert seen[0] == "unfinished"  # the cancelled run, the newest: stopped, not failed
    finally:
        runtime.close()
        slow.close()
        broken.close()


def test_a_run_that_ends_while_the_threads_are_listed_is_not_listed_unfinished(backend_settings, embedder):
    """The listing reads the checkpoints, then the leases of the threads that look unfinished: a
    run that ended in between has a free lease and was listed "unfinished" (resume then said there
    was nothing to continue)."""
    user, thread = unique("race"), unique("race")
    runtime = Runtime(backend_settings, embedder=embedder)
    other = Runtime(backend_settings, embedder=embedder)
    gate = Gate()
    stalled = Runtime(backend_settings, embedder=embedder, transport=httpx2.MockTransport(gate.handle))
    try:
        worker, outcome = start_run(stalled, "Write a tagline.", user_id=user, thread_id=thread)
        assert gate.started.wait(60)
        stalled.close()  # a run stopped part-way…
        worker.join(60)
        assert outcome  # (the "closed" RunError)
        runtime.threads(user)  # (opens the leases)
        leases = runtime._loop_state.leases
        asked = leases.running

        async def ended_meanwhile(thread_ids):
            await other.arun(thread_id=thread)  # …continued and ended by another process meanwhile
            return await asked(thread_ids)

        leases.running = ended_meanwhile
        assert [t.status for t in runtime.threads(user)] == ["completed"]
    finally:
        gate.release.set()
        for each in (runtime, other, stalled):
            each.close()


def test_a_failed_run_continued_with_another_model_is_the_answering_models(settings, embedder, port_factory):
    """A run that failed on its model endpoint and was continued with the offline model (the
    cause "fixed" by unsetting the key, as the error says) kept the model its first process had:
    the result said `openai` for the offline model's answer, and remember, which learns and
    reinforces no skill from an offline answer, counted it as a success of the skill it recalled
    (skills are shared by every user)."""
    from pydantic import SecretStr

    thread = unique("moved")
    broken = settings.model_copy(
        update={
            "provider": "openai",
            "openai_base_url": f"http://127.0.0.1:{port_factory()}/v1",  # nothing listens there
            "openai_api_key": SecretStr("sk-test-not-a-real-key"),
            "model_max_retries": 0,
        }
    )
    with Runtime(broken, embedder=embedder) as runtime, pytest.raises(RunError, match="Cannot reach"):
        runtime.run(DECISION, thread_id=thread, agent="group_chat")
    with Runtime(settings, embedder=embedder) as runtime:
        assert runtime.threads()[0].status == "failed"
        result = runtime.run(thread_id=thread)
        assert result.status == "completed" and result.answer
        assert result.model == "offline"
        assert result.memory.skills and result.remembered.skill is None
        assert runtime.memory.skills.success_count(result.memory.skills[0].name) == 0
