"""One Runtime shared by many callers at once: closed while they run, and stopped between a step
and its checkpoint."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid

import httpx2
import pytest

from brainstack import RunError, Runtime, UsageError


def unique(name: str) -> str:
    """Thread ids unique per test run: the PostgreSQL database outlives the test session."""
    return f"{name}-{uuid.uuid4().hex[:12]}"


async def test_closing_the_runtime_tells_every_waiting_caller_and_leaves_resumable_threads(
    backend_settings, embedder
):
    """Six `arun` callers (specialists and group chats) wait on the model when the Runtime is
    closed: each gets the RunError that says so (not a bare CancelledError, which reads as if the
    caller itself were cancelled), nothing is left running on the closed loop, and each thread
    continues from its last checkpoint in a new Runtime."""
    started = threading.Semaphore(0)

    async def stalled(request):
        started.release()
        await asyncio.get_running_loop().create_future()  # answers only by being cancelled

    runtime = Runtime(backend_settings, embedder=embedder, transport=httpx2.MockTransport(stalled))
    tasks = {
        "marketing": "Write a tagline for our new product.",
        "group_chat": "Should we launch a freemium tier?",
    }
    threads = {unique("closing"): route for route in tasks for _ in range(3)}
    calls = [asyncio.ensure_future(runtime.arun(tasks[route], thread_id=t)) for t, route in threads.items()]
    loop = asyncio.get_running_loop()
    for _ in threads:  # every run is waiting for its model call
        assert await loop.run_in_executor(None, started.acquire, True, 60)
    closing = runtime._loop_state
    await loop.run_in_executor(None, runtime.close)
    # (LangGraph saves a step that ended as its run was cancelled in a task nobody waits for)
    assert [task for task in asyncio.all_tasks(closing.loop) if not task.done()] == []
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(o, RunError) and "was closed while the run" in str(o) for o in outcomes), outcomes

    with Runtime(backend_settings, embedder=embedder) as again:
        for thread, route in threads.items():
            result = await again.arun(thread_id=thread)  # continue the stopped run
            assert result.status == "completed" and result.route.target == route
            assert [m["role"] for m in await again.amessages(thread)] == ["human", "ai"]


def test_a_call_that_reaches_the_loop_after_close_began_is_told_nothing_ran(settings, embedder):
    """A call handed to the loop just before close() (queued behind other work) is refused when
    its turn comes: its caller learns that nothing ran, not that a run was cut short and should be
    continued, and the thread has no run to continue."""
    runtime = Runtime(settings.model_copy(update={"memory": False}), embedder=embedder)
    runtime.run("What is 1 + 1?")  # the loop is up
    loop = runtime._loop_state.loop
    busy, release = threading.Event(), threading.Event()
    loop.call_soon_threadsafe(lambda: (busy.set(), release.wait(60)))  # the loop is held
    assert busy.wait(60)
    thread = unique("late")
    outcome: list[BaseException | str] = []

    def call() -> None:
        try:
            outcome.append(runtime.run("What is 2 + 2?", thread_id=thread).answer)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    while not runtime._loop_state.calls:  # the call is queued on the held loop
        caller.join(0.01)
    closer = threading.Thread(target=runtime.close)
    closer.start()
    while runtime._loop_state is not None:  # close() has retired the loop the call waits on
        closer.join(0.01)
    release.set()
    caller.join(60)
    closer.join(60)
    [error] = outcome
    assert isinstance(error, RunError) and "closed before the run started; nothing ran" in str(error)
    with Runtime(settings.model_copy(update={"memory": False}), embedder=embedder) as again:
        assert again.messages(thread) == []


def test_callers_racing_close_get_a_result_or_a_clear_error_and_none_waits_forever(settings, embedder):
    """Four threads run tasks back to back while the Runtime is closed again and again (each close
    starts a new loop for the next run). A call that reaches the loop while it shuts down must not
    be left waiting on a loop that has stopped, nor run against a checkpointer that was closed."""
    runtime = Runtime(settings.model_copy(update={"memory": False}), embedder=embedder)
    runtime.run("What is 1 + 1?")
    finished = threading.Semaphore(0)
    stop = threading.Event()
    outcomes: list[str] = []

    def caller(k: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            thread = f"close-{k}-{n}-{uuid.uuid4().hex[:6]}"
            try:
                runtime.run(f"What is {k} + {n}?", thread_id=thread if n % 2 else None)
            except RunError as exc:
                outcomes.append(str(exc).split(";")[0])
                if exc.thread_id is None or (n % 2 and exc.thread_id != thread):
                    outcomes.append(f"no thread id: {exc.thread_id!r} {exc}")
                elif "under way" in str(exc) and f"run(thread_id={exc.thread_id!r})" not in str(exc):
                    outcomes.append(f"the hint does not name the thread: {exc}")
            else:
                outcomes.append("ok")
                finished.release()

    workers = [threading.Thread(target=caller, args=(k,), daemon=True) for k in range(4)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(8):
            for _ in range(3):  # a few runs succeed between two closes
                assert finished.acquire(timeout=60), "no run succeeds any more"
            runtime.close()
    finally:
        stop.set()
    for worker in workers:
        worker.join(60)
    assert not [w for w in workers if w.is_alive()], "a caller was left waiting on a closed Runtime"
    assert set(outcomes) <= {
        "ok",
        "The Runtime was closed while the run was under way",
        "The Runtime was closed before the run started",
    }, set(outcomes)
    assert "4" in runtime.run("What is 2 + 2?").answer
    runtime.close()


def test_a_run_its_caller_left_that_close_then_ends_leaves_no_unread_error(
    settings, embedder, monkeypatch, caplog
):
    """Ctrl-C in `brainstack run` cancels its run, then the exiting CLI closes the Runtime. A run
    still stopping when close() began ended with the "closed" RunError that no caller was left to
    read, and asyncio printed "Task exception was never retrieved" with its traceback after the
    CLI's one line."""
    import gc

    from brainstack.graphs import nodes

    async def slow_to_stop(self, state):
        try:
            await asyncio.get_running_loop().create_future()  # answers only by being cancelled
        finally:
            await asyncio.shield(asyncio.sleep(0.3))  # still stopping when close() begins

    monkeypatch.setattr(nodes.Route, "__call__", slow_to_stop)
    runtime = Runtime(settings, embedder=embedder)
    events = runtime.stream("What is 2 + 2?")
    assert next(events).type == "memory_recalled"  # the run waits in route now
    events.close()  # the caller leaves (Ctrl-C): its run is cancelled
    runtime.close()
    gc.collect()
    assert "never retrieved" not in caplog.text, caplog.text


async def test_a_run_stopped_after_a_step_saved_its_result_is_continued_not_dropped(
    backend_settings, embedder, monkeypatch
):
    """The process stops after review saved its result (the answer) but before the checkpoint after
    it was written. LangGraph's state then lists no next step (review's result is there), yet the
    run is not over: continuing it finishes it without running review again, and a new task is
    refused as for any unfinished run, instead of starting over the saved answer and losing it."""
    import brainstack.graphs.checkpointers as checkpointers
    from brainstack.graphs.stranded import missing_nodes

    real = checkpointers.open_checkpointer

    class Died(Exception):
        """The process ended here."""

    @contextlib.asynccontextmanager
    async def dying_after_review(settings):
        async with real(settings) as saver:
            put = saver.aput

            async def aput(config, checkpoint, metadata, new_versions):
                if "remember" in missing_nodes(checkpoint, ()):  # the checkpoint after review
                    raise Died
                return await put(config, checkpoint, metadata, new_versions)

            saver.aput = aput
            yield saver

    thread = unique("after-review")
    monkeypatch.setattr(checkpointers, "open_checkpointer", dying_after_review)
    with Runtime(backend_settings, embedder=embedder) as first, pytest.raises(RunError):
        await first.arun("What is 17.5% of 2340?", thread_id=thread)
    monkeypatch.setattr(checkpointers, "open_checkpointer", real)

    with Runtime(backend_settings, embedder=embedder) as second:
        assert (await second.ahistory(thread))[0].next == ["review"]
        with pytest.raises(UsageError, match="unfinished run") as refused:
            await second.arun("What is 2 + 2?", thread_id=thread)
        # the error a host catches to resume carries the thread, and its hint names it (QA)
        assert refused.value.thread_id == thread and f"run(thread_id={thread!r})" in str(refused.value)
        result = await second.arun(thread_id=thread)
        assert result.status == "completed" and "409.5" in result.answer
        assert result.remembered.episode_id
        messages = await second.amessages(thread)
        assert [m["role"] for m in messages] == ["human", "ai"] and "409.5" in messages[1]["content"]
        assert (await second.ahistory(thread))[0].next == []
        assert second.memory is not None and second.memory.episodes.count("default") == 1


def test_callers_starting_a_runtime_at_once_share_one_memory_gateway(settings, embedder, monkeypatch):
    """Four threads make a new Runtime's first runs at the same moment. Each used to build the
    memory gateway it did not see yet (here: the first one built waits a moment for another to
    start), so the runs wrote to one gateway while ``runtime.memory`` was another, with its own
    in-process working memory: the preference the runs stored was not in ``runtime.memory``."""
    import brainstack.memory.gateway as gateway

    built: list[object] = []
    another = threading.Barrier(2)
    real = gateway.MemoryGateway.__init__

    def slowly(self, *args, **kwargs):
        built.append(self)
        with contextlib.suppress(threading.BrokenBarrierError):
            another.wait(timeout=1)  # a second gateway being built meanwhile meets this one
        real(self, *args, **kwargs)

    monkeypatch.setattr(gateway.MemoryGateway, "__init__", slowly)
    import brainstack.graphs.factory  # noqa: F401 - imported, and the router built, beforehand:

    runtime = Runtime(settings)  # (memory's embedder built from the settings, like a user's)
    runtime.router  # noqa: B018 - the callers go straight on to the memory gateway
    start = threading.Barrier(4)

    def first_run(n: int) -> None:
        start.wait()
        runtime.run(f"I prefer short answers. What is {n} + 1?", user_id="ada")

    callers = [threading.Thread(target=first_run, args=(n,)) for n in range(4)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(built) == 1, built
    assert runtime.memory is not None
    assert runtime.memory.working.items("user", "ada") == {"stated_preferences": ["short answers"]}
    runtime.close()


def test_concurrent_first_runs_build_one_graph(settings, embedder, monkeypatch):
    """Four threads start the first runs of a new Runtime at once: one graph is built (each used
    to build its own, with its own model clients, and all but one were thrown away)."""
    import time

    from brainstack.graphs import factory

    built = []
    create = factory.create_router_graph

    def slow_create(*args, **kwargs):
        built.append(threading.current_thread().name)
        time.sleep(0.2)  # the window the other callers arrive in
        return create(*args, **kwargs)

    monkeypatch.setattr(factory, "create_router_graph", slow_create)
    barrier = threading.Barrier(4)
    results = []

    def first_run(n: int) -> None:
        barrier.wait()
        results.append(runtime.run(f"What is {n} + {n}?", thread_id=unique("first")))

    with Runtime(settings, embedder=embedder) as runtime:
        callers = [threading.Thread(target=first_run, args=(n,)) for n in range(4)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(120)
    assert len(built) == 1, built
    assert len(results) == 4 and all(r.status == "completed" for r in results)


def test_a_first_arun_does_not_hold_up_the_callers_event_loop(tmp_path, cache_dir):
    """QA: the first arun of a process built the graph (imports, models, memory) in the caller, so
    a host's event loop (every other request of a web app) froze for about 2 s. It is built on a
    thread of its own now: a heartbeat on the caller's loop keeps ticking meanwhile."""
    import json
    import os
    import subprocess
    import sys

    script = """
import asyncio, json, sys, time
from brainstack import Runtime, Settings

async def main():
    runtime = Runtime(Settings(home=sys.argv[1], cache_dir=sys.argv[2], provider="offline"))
    ticks = []

    async def heartbeat():
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    beating = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.1)
    start = time.monotonic()
    result = await runtime.arun("What is 2 + 2?")
    end = time.monotonic()
    beating.cancel()
    during = [start, *[t for t in ticks if start < t < end], end]
    gaps = [b - a for a, b in zip(during, during[1:])]
    await runtime.aclose()
    print(json.dumps({"seconds": end - start, "longest_gap": max(gaps), "answer": result.answer}))

asyncio.run(main())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAINSTACK_", "OPENAI_"))}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "home"), str(cache_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout.splitlines()[-1])
    assert "4" in measured["answer"]
    # The first run takes its imports and model loading (seconds); the loop was never held for
    # most of it (before: one gap as long as the whole build, 4.3 of 5.1 s).
    assert measured["longest_gap"] < 0.5 * measured["seconds"], measured


async def test_an_async_host_closes_the_runtime_with_async_with_and_stops_a_stream_with_aclose(
    settings, embedder
):
    """QA: no async close (close() blocked the host's loop), and astream's declared type had no
    aclose(), the way to stop a stream and its run early."""
    thread = unique("early")
    async with Runtime(settings, embedder=embedder) as runtime:
        events = runtime.astream("What is 2 + 2?", thread_id=thread)
        first = await events.__anext__()
        assert first.type in ("memory_recalled", "route")
        await events.aclose()  # the run stops too: the thread keeps it, unfinished
        with pytest.raises(UsageError, match="has an unfinished run"):
            await runtime.arun("What is 3 + 3?", thread_id=thread)
        result = await runtime.arun(thread_id=thread)  # continued to its one answer
        assert "4" in result.answer
    assert runtime._loop_state is None  # closed on the way out


def test_a_process_that_ends_while_the_models_load_exits_cleanly(tmp_path, cache_dir):
    """A script that made a Runtime and ended at once (an early error, say) was aborted at exit
    while warm_up's daemon threads were inside onnxruntime: "terminate called without an active
    exception", exit 134. The interpreter now waits for them."""
    import os
    import subprocess
    import sys

    script = (
        "import sys, time\n"
        "from brainstack import Runtime, Settings\n"
        "runtime = Runtime(Settings(home=sys.argv[1], cache_dir=sys.argv[2], provider='offline'))\n"
        "runtime.warm_up()\n"
        "if sys.argv[3] == 'build':\n"
        "    runtime.router, runtime.memory.episodes.count('default')  # (waits for the models)\n"
        "else:\n"
        "    time.sleep(float(sys.argv[3]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAINSTACK_", "OPENAI_"))}
    # the first builds the models (a fresh cache), the others end while they load
    for wait in ("build", "0.1", "0.3", "0.6"):
        done = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / "home"), str(cache_dir), wait],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert done.returncode == 0 and "terminate called" not in done.stderr, done.stderr
