"""The runtime: one configured instance that runs tasks through the router graph."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import os
import queue
import re
import shlex
import threading
import uuid
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from brainstack.approval import RESUME_FORMS, parse_resume
from brainstack.config import AgentsConfig, Settings, load_agents
from brainstack.config.agents import GROUP_CHAT
from brainstack.errors import (
    ConfigurationError,
    InvalidTaskError,
    RunError,
    UnknownAgentError,
    UsageError,
    translate,
)
from brainstack.events import Event, InterruptEvent, ResultEvent, event_from_custom
from brainstack.results import (
    Approval,
    ApprovalRequest,
    ChatTurn,
    Checkpoint,
    MemoryRecall,
    MemoryWrite,
    ReviewOutcome,
    RouteDecision,
    RunResult,
    ThreadInfo,
    ToolCallRecord,
    Usage,
)

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

    from brainstack.agents.providers import ModelProvider
    from brainstack.graphs.leases import Leases
    from brainstack.graphs.router import SemanticRouter
    from brainstack.memory.embeddings import Embedder
    from brainstack.memory.gateway import MemoryGateway

__all__ = ["Runtime"]

log = logging.getLogger(__name__)

_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
_STOPPED = frozenset({"unfinished", "failed"})
"""The statuses a checkpoint gives a run that has not ended, which may be under way."""


class Runtime:
    """A configured brainstack: settings, agents, model provider and graph, reused across runs.

    >>> rt = Runtime()                                   # doctest: +SKIP
    >>> rt.run("What is 17.5% of 2340?").answer          # doctest: +SKIP

    ``embedder`` is what memory embeds with (default: ``BRAINSTACK_EMBEDDINGS``);
    ``router_embedder`` what the semantic router embeds with (default:
    ``BRAINSTACK_ROUTER_EMBEDDINGS``, int8 MiniLM).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        agents: str | Path | AgentsConfig | None = None,
        transport: Any | None = None,
        embedder: Embedder | None = None,
        router_embedder: Embedder | None = None,
        memory: MemoryGateway | None = None,
    ) -> None:
        if settings is not None and not isinstance(settings, Settings):
            raise UsageError(
                f"settings must be a brainstack.Settings, not {type(settings).__name__} "
                "(e.g. Settings(memory=False), or Settings.from_env())."
            )
        check_agents_argument(agents)
        self.settings = settings if settings is not None else Settings.from_env()
        if embedder is None and memory is None:  # otherwise the settings' embedder is never built
            _check_embeddings(self.settings)
        if isinstance(agents, AgentsConfig):
            self.agents = agents
        else:
            self.agents = load_agents(agents if agents is not None else self.settings.agents_file)
        self.agents_file = None if isinstance(agents, AgentsConfig) else agents or self.settings.agents_file
        """The agents file this runtime loaded (``None``: the built-in one, or ``agents`` given as a
        config); the CLI commands it suggests pass it as ``--agents``."""
        from brainstack.agents.providers import ModelProvider

        self.provider: ModelProvider = ModelProvider(self.settings, self.agents, transport=transport)
        self._embedder = embedder
        self._router_embedder = router_embedder
        self._router: SemanticRouter | None = None
        self._router_lock = threading.Lock()
        self._warm_lock = threading.Lock()
        self._warming = False
        self._graph: StateGraph[Any] | None = None
        self._graph_lock = threading.Lock()
        self._closes = 0  # close() calls so far: a graph build that a close overtook is not kept
        self._memory: MemoryGateway | None = memory
        self._memory_lock = threading.RLock()
        self._loop_lock = threading.Lock()
        self._loop_state: _LoopState | None = None
        """The runtime loop in use (``None`` before the first run and after :meth:`close`)."""

    @property
    def model(self) -> str:
        """The provider that answers: ``openai``, ``local`` or ``offline``."""
        return self.provider.name

    @property
    def router(self) -> SemanticRouter:
        with self._router_lock:  # warm_up may be building it on another thread
            if self._router is None:
                from brainstack.graphs.router import SemanticRouter

                self._router = SemanticRouter(
                    self.agents.routes,
                    self._route_embedder(),
                    self.settings.router_threshold,
                    margin=self.settings.router_margin,
                )
            return self._router

    def warm_up(self) -> None:
        """Start preparing what the first run needs on background threads, and return at once.

        One thread loads the router's embedding model and embeds the route examples, then
        loads memory's embedding model; another opens the memory backends. onnxruntime releases
        the GIL while it loads and runs, so this overlaps with the imports that building the
        graph does anyway. The graph's first use starts it; ``brainstack run`` starts it as soon
        as the Runtime exists. Failures are left to the run that needs the part to report.
        """
        with self._warm_lock:
            if self._warming:
                return
            self._warming = True
        memory = self.memory
        # Not daemon threads: a process that ends while one is inside onnxruntime (loading or
        # building a model) was aborted at exit ("terminate called without an active exception",
        # exit 134); the interpreter waits for them instead. The CLI, stopped, does not wait.
        threading.Thread(target=self._warm_models, name="brainstack-warm-up").start()
        if memory is not None:
            threading.Thread(target=memory.warm_up, name="brainstack-memory-warm-up").start()

    def _warm_models(self) -> None:
        with contextlib.suppress(Exception):
            self.router  # noqa: B018 - building it is the point
            if self.memory is not None:
                warm = getattr(self._default_embedder(), "warm_up", None)
                if warm is not None:
                    warm()

    def _route_embedder(self) -> Embedder:
        if self._router_embedder is None:
            from brainstack.memory.embeddings import router_embedder

            self._router_embedder = router_embedder(self.settings, self._embedder)
        return self._router_embedder

    def _default_embedder(self) -> Embedder:
        from brainstack.memory.embeddings import default_embedder

        with self._memory_lock:
            self._embedder = self._embedder or default_embedder(self.settings)
            return self._embedder

    @property
    def memory(self) -> MemoryGateway | None:
        """The memory gateway (``None`` when ``BRAINSTACK_MEMORY=0``); its layers open on first use."""
        if self._memory is None and self.settings.memory:
            # One gateway, whichever caller gets here first: the warm-up thread and the first
            # runs of several callers all ask for it, and a second one would have its own
            # in-process working memory (what the runs remember would not be in `memory`).
            with self._memory_lock:
                if self._memory is None:
                    from brainstack.memory.gateway import MemoryGateway

                    self._memory = MemoryGateway(self.settings, embedder=self._default_embedder())
        return self._memory

    @property
    def graph(self) -> StateGraph[Any]:
        """The uncompiled router graph."""
        return self._built_graph(warm=True)

    def _built_graph(self, *, warm: bool) -> StateGraph[Any]:
        """The graph, built on first use; ``warm`` also starts :meth:`warm_up` (what runs need:
        the models, memory), which reading a thread's checkpoints does not."""
        if warm:
            self.warm_up()  # load the models and open memory while the graph's modules import
        with self._graph_lock:  # concurrent first calls build one graph, not one each
            if self._graph is None:
                from brainstack.graphs.factory import create_router_graph

                closes = self._closes
                graph = create_router_graph(
                    self.agents,
                    provider=self.provider,
                    router=self.router,
                    settings=self.settings,
                    memory=self.memory,
                )
                if closes != self._closes:  # close() ran meanwhile: this build is not kept (review)
                    return graph
                self._graph = graph
            return self._graph

    # Running -----------------------------------------------------------------
    #
    # Every run executes on the runtime's own event loop, in a daemon thread. The checkpointer
    # (a SQLite connection or a PostgreSQL pool) is opened once on that loop and the graph is
    # compiled once, so runs pay neither again; `run`, `stream`, `arun` and `astream` all hand
    # their work to that loop, from plain code, from another event loop or from Jupyter alike.
    #
    # What belongs to one loop (its thread, checkpointer, leases, compiled graph, the calls handed
    # to it) is kept together in a _LoopState. close() retires that state as a whole, under the
    # same lock that hands calls to a loop: a call is handed to the loop before it is retired (and
    # then ends with its result or the "closed" RunError) or to the next loop, never to a loop
    # that is stopping, where nobody would ever answer it.

    def _current(self) -> _LoopState:
        """The loop in use, started if there is none (the caller holds ``_loop_lock``)."""
        if self._loop_state is None:
            state = _LoopState()
            state.thread.start()
            self._loop_state = state
            self._finalizer = weakref.finalize(self, _shutdown, state, self.provider)
        return self._loop_state

    def _runtime_loop(self) -> asyncio.AbstractEventLoop:
        with self._loop_lock:
            return self._current().loop

    def _state(self) -> _LoopState:
        """The state of the runtime loop running the caller; the "closed" RunError once close()
        has retired it (a call that reached a loop just as it was being closed)."""
        state = self._loop_state
        if state is None or state.closing or state.loop is not asyncio.get_running_loop():
            raise _closed()
        return state

    def _schedule(
        self,
        coro: Any,
        refused: str = "blocking Runtime methods cannot be called from the runtime's own loop",
    ) -> concurrent.futures.Future[Any]:
        """Hand ``coro`` to the runtime loop; its future ends with its result, its error, or the
        "closed" RunError (see :func:`_shutdown`). ``refused``: the RuntimeError's message when
        the caller is the loop's own thread (it would wait for itself)."""
        with self._loop_lock:
            state = self._current()
            if threading.current_thread() is state.thread:
                coro.close()
                raise RuntimeError(refused)
            future = asyncio.run_coroutine_threadsafe(_guarded(state, coro), state.loop)
            state.calls.add(future)
        future.add_done_callback(state.calls.discard)
        return future

    async def _compiled_graph(self, *, warm: bool = True) -> Any:
        """The graph compiled with the open checkpointer (on the runtime loop); ``warm=False``
        for calls that only read checkpoints (no models loaded for them)."""
        state = self._state()
        if state.compiled is None:
            saver = await self._checkpointer()
            if state.compiled is None:  # (another call may have compiled it meanwhile)
                state.compiled = self._built_graph(warm=warm).compile(checkpointer=saver)
        return state.compiled

    async def _checkpointer(self) -> Any:
        """The open checkpointer (on the runtime loop), with the leases: what the thread commands
        (:meth:`threads`, :meth:`prune_thread`, :meth:`delete_thread`) need, without the graph,
        its models or memory."""
        state = self._state()
        if state.saver is None:
            # Concurrent first calls wait for one opening. It is a task of its own, which a
            # cancelled run does not cut short: a connection cancelled while it opens would be
            # finished by its driver's thread after close() has stopped the loop.
            if state.opening is None or state.opening.done():  # (a failed opening is tried again)
                state.opening = asyncio.ensure_future(self._open(state))
                state.opening.add_done_callback(_retrieved)
            await asyncio.shield(state.opening)
        return state.saver

    async def _open(self, state: _LoopState) -> None:
        """Open the checkpointer and the leases on the loop of ``state``."""
        from brainstack.graphs.checkpointers import open_checkpointer
        from brainstack.graphs.leases import open_leases

        stack = contextlib.AsyncExitStack()
        before = asyncio.all_tasks()
        try:
            saver = await stack.enter_async_context(open_checkpointer(self.settings))
            leases = await stack.enter_async_context(open_leases(self.settings))
        except BaseException:
            await stack.aclose()
            raise
        state.resources.append(stack)
        state.background |= asyncio.all_tasks() - before  # (a pool's workers: they end with it)
        state.leases, state.saver = leases, saver

    @contextlib.asynccontextmanager
    async def _running(self, thread_id: str) -> AsyncIterator[None]:
        """Hold ``thread_id`` for a run: after the thread's earlier runs in this process (they
        take turns), and with its lease against other processes (ThreadBusyError if one has it).

        A thread the Runtime has just named itself (a random id) is leased too: once its first
        checkpoint is written, :meth:`threads` lists it to other processes, which may delete it.
        """
        state = self._state()
        task = asyncio.current_task()
        assert task is not None
        added = task not in state.runs  # (a call handed to the loop is registered already)
        state.runs.add(task)
        try:
            async with state.turn(thread_id):
                try:
                    await self._checkpointer()  # opens it and the leases
                except Exception as exc:
                    _reraise(exc, thread_id)
                assert state.leases is not None
                async with state.leases.hold(thread_id):
                    yield
        finally:
            if added:
                state.runs.discard(task)

    async def _events(self, run: _Run, *, live: bool = True) -> AsyncIterator[Event]:
        """The run itself, on the runtime loop, once the thread's previous run in this process
        has ended. ``live=False`` yields only the result (and an interrupt): the nodes' progress
        events are not collected at all."""
        async with self._running(run.thread_id):
            async for event in self._thread_events(run, live=live):
                yield event

    async def _thread_events(self, run: _Run, *, live: bool) -> AsyncIterator[Event]:
        config: Any = {
            "configurable": {"thread_id": run.thread_id},
            "recursion_limit": 25,
            "metadata": {"user_id": run.user_id},
        }
        inputs: Any
        pending = None
        if run.task is None or run.existing:
            pending, owner = await self._pending(run.thread_id)
            if run.task is None and owner:
                # Continuing a run goes on as the user who started it (the caller's user_id is
                # only the default): its checkpoints must not be listed, and deleted, as another's.
                config["metadata"]["user_id"] = owner
            elif run.task is not None and run.user_id == "default" and owner and owner != "default":
                # Run as "default", a follow-up without a user_id put the thread's user's
                # conversation into the memory every caller without a user_id shares, and listed
                # the thread under "default" (QA); run as its user, it would give whoever knows a
                # thread id that user's memory. The caller says which user it is.
                raise UsageError(
                    f"Thread {run.thread_id!r} was last run by user {owner!r}: pass user_id={owner!r} "
                    f"(CLI: --user {shlex.quote(owner)}) to continue it as that user, or the id of the "
                    "user you run it for.",
                    thread_id=run.thread_id,
                )
            if run.task is not None and pending is not None:
                # (with the thread's id, in the hint and the error: the error a host catches to
                # resume had thread_id None and "run(thread_id=…)", QA)
                how = (
                    f"answer it with `{self._cli('resume', run.thread_id)} --approve|--reject|--edit "
                    f"TEXT` (Python: run(thread_id={run.thread_id!r}, resume=…))"
                    if "approval" in pending
                    else f"continue it with `{self._cli('resume', run.thread_id)}` "
                    f"(Python: run(thread_id={run.thread_id!r}))"
                )
                raise UsageError(
                    f"Thread {run.thread_id!r} has an unfinished run ({pending}): {how}, or use a new "
                    "thread.",
                    thread_id=run.thread_id,
                )
        if run.task is not None:
            inputs = {"task": run.task, "user_id": run.user_id, "requested_agent": run.agent}
        elif run.resume is not None and (pending is None or "approval" not in pending):
            raise await self._not_paused(run.thread_id, pending)
        elif pending is None:
            raise UsageError(
                f"Thread {run.thread_id!r} has no unfinished run to continue; pass a task to start one.",
                thread_id=run.thread_id,
            )
        elif run.resume is not None:
            from langgraph.types import Command

            inputs = Command(resume=run.resume)
        elif "approval" in pending:
            raise UsageError(
                f"Thread {run.thread_id!r} is waiting for approval: pass resume={RESUME_FORMS} "
                f"(CLI: `{self._cli('resume', run.thread_id)} --approve|--reject|--edit TEXT`).",
                thread_id=run.thread_id,
            )
        else:
            inputs = None  # a run stopped by a crash: go on from its last checkpoint
        async for event in self._drive(inputs, config, run.thread_id, live=live):
            yield event

    async def _not_paused(self, thread_id: str, pending: str | None) -> UsageError:
        """The error for a decision (``resume=``) on a thread whose run does not wait for one
        (``pending``: what it waits for instead, ``None`` when it ended or never ran)."""
        from brainstack.approval import not_paused

        new_task = f"pass a task to start a new run (CLI: `{self._cli('run', thread_id)} TASK`)"
        if pending is not None:
            return not_paused(
                thread_id,
                pending,  # "stopped before review"
                f"Continue it without a decision: `{self._cli('resume', thread_id)}` (Python: "
                f"run(thread_id={thread_id!r})); or {new_task}.",
            )
        try:
            saver = await self._checkpointer()
            ran = await saver.aget_tuple({"configurable": {"thread_id": thread_id}}) is not None
        except Exception as exc:
            _reraise(exc, thread_id)
        return not_paused(thread_id, "has ended" if ran else None, new_task[0].upper() + new_task[1:] + ".")

    async def _pending(self, thread_id: str) -> tuple[str | None, str | None]:
        """What the thread's last run is waiting for (``None`` when it finished or never ran), and
        the user whose run wrote the thread's last checkpoint."""
        from brainstack.graphs.status import cancelled

        try:
            compiled = await self._compiled_graph()
            snapshot = await compiled.aget_state({"configurable": {"thread_id": thread_id}})
        except Exception as exc:
            _reraise(exc, thread_id)
        owner = _user_of(snapshot.metadata)
        if snapshot.interrupts:
            return "waiting for approval", owner
        if snapshot.tasks and await self._run_cut_short_again(compiled, thread_id, snapshot):
            snapshot = await compiled.aget_state({"configurable": {"thread_id": thread_id}})
        # Not "finished" if it stopped before a node this graph lacks, and not to be continued: the
        # graph would drop the step's result and end the run with no answer.
        await self._refuse_stranded(thread_id)
        failed = [t.name for t in snapshot.tasks if t.error is not None and not cancelled(t.error)]
        if failed:  # (as ``threads list`` says it: the error's RunError said why)
            return f"failed in {', '.join(failed)}", owner
        if snapshot.next:
            return f"stopped before {', '.join(snapshot.next)}", owner
        if snapshot.tasks:
            # Every step due at the last checkpoint has run and saved its result, but the process
            # stopped before the checkpoint after it: LangGraph's `next` leaves such steps out,
            # yet the run is not over. Continuing it applies their results and goes on; a new
            # task would start from the last checkpoint without them (the answer would be lost).
            steps = [t.name for t in snapshot.tasks if t.name != "__start__"]
            return (f"stopped after {', '.join(steps)}" if steps else "stopped as it started"), owner
        return None, owner

    async def _run_cut_short_again(self, compiled: Any, thread_id: str, snapshot: Any) -> bool:
        """Make the steps a cancelled run cut short while their results were being saved run again
        (see :func:`~brainstack.graphs.stranded.cut_short`): the last checkpoint is copied without
        their partial results. Called with the thread's lease held; True when it copied one."""
        from brainstack.graphs.stranded import cut_short

        config = {"configurable": {"thread_id": thread_id}}
        try:
            saved = await compiled.checkpointer.aget_tuple(config)
            tasks = {task.id: task.name for task in snapshot.tasks}
            cut = [] if saved is None else cut_short(saved.pending_writes or (), tasks, compiled.builder)
            if not cut:
                return False
            await compiled.aupdate_state(config, None, as_node="__copy__")
        except Exception as exc:
            _reraise(exc, thread_id)
        log.warning(
            "thread %r: the run was stopped while %s saved its result; it runs again",
            thread_id,
            ", ".join(cut),
        )
        return True

    async def _refuse_stranded(self, thread_id: str, checkpoint_id: str | None = None) -> None:
        """UsageError naming the nodes the checkpoint is due to run that this graph lacks, if any."""
        missing = await self._stranded(thread_id, checkpoint_id)
        if missing:
            from brainstack.graphs.stranded import stranded_message

            raise UsageError(stranded_message(thread_id, missing))

    def stranded(self, thread_id: str, checkpoint_id: str | None = None) -> list[str]:
        """The nodes the thread's last checkpoint (or ``checkpoint_id``) is due to run that this
        runtime's graph does not have: it ran with another agents file (or other settings). Empty
        when there are none; see :mod:`brainstack.graphs.stranded`."""
        result: list[str] = self._submit(self._stranded(_check_id("thread_id", thread_id), checkpoint_id))
        return result

    async def astranded(self, thread_id: str, checkpoint_id: str | None = None) -> list[str]:
        """Async :meth:`stranded`."""
        result: list[str] = await self._on_loop(
            self._stranded(_check_id("thread_id", thread_id), checkpoint_id)
        )
        return result

    async def _stranded(self, thread_id: str, checkpoint_id: str | None = None) -> list[str]:
        configurable = {"thread_id": thread_id}
        if checkpoint_id is not None:
            configurable["checkpoint_id"] = checkpoint_id
        from brainstack.graphs.stranded import missing_nodes_at

        try:
            compiled = await self._compiled_graph(warm=False)
            return await missing_nodes_at(compiled, {"configurable": configurable})
        except Exception as exc:
            _reraise(exc, thread_id)

    async def _drive(
        self, inputs: dict[str, Any] | None, config: Any, thread_id: str, *, live: bool = True
    ) -> AsyncIterator[Event]:
        """Stream the compiled graph from ``inputs`` (``None``: resume from ``config``'s checkpoint).

        ``live`` streams the nodes' progress events (LangGraph's ``custom`` mode) too; without it
        their writers are no-ops, which saves about 0.9 ms per run (benchmarks/RESULTS.md).
        """
        # The final state comes from the `values` stream (the state after each step), so a run
        # that ends normally needs no read of its checkpoint; a paused one reads it for the
        # interrupt's payload.
        values: dict[str, Any] = {}
        interrupted = False
        modes: list[Any] = ["custom", "values"] if live else ["values"]
        try:
            compiled = await self._compiled_graph()
            async for mode, payload in compiled.astream(inputs, config, stream_mode=modes, durability="sync"):
                if mode == "values":
                    if "__interrupt__" in payload:
                        interrupted = True
                    else:
                        values = payload
                    continue
                event = event_from_custom(payload)
                if event is not None:
                    yield event
            request = None
            if interrupted or not values:
                snapshot = await compiled.aget_state({"configurable": {"thread_id": thread_id}})
                values = snapshot.values
                if snapshot.interrupts:
                    request = _approval_request(snapshot.interrupts[0].value, values)
        except Exception as exc:
            _reraise(exc, thread_id)
        if request is not None:
            yield InterruptEvent(request=request)
        yield ResultEvent(result=self._result(values, thread_id, request))

    # Time travel ---------------------------------------------------------------

    async def _history(self, thread_id: str) -> list[Checkpoint]:
        from brainstack.graphs.checkpointers import long_commands

        try:
            compiled = await self._compiled_graph(warm=False)
            with long_commands(compiled.checkpointer):  # a long thread's whole history takes its time
                snapshots = [
                    s async for s in compiled.aget_state_history({"configurable": {"thread_id": thread_id}})
                ]
        except Exception as exc:
            _reraise(exc, thread_id)
        from brainstack.graphs.stranded import missing_nodes_at

        checkpoints = []
        for snapshot in snapshots:
            values = snapshot.values or {}
            route = values.get("route") or {}
            missing: list[str] = []
            if not snapshot.next:  # the end of a run, or a step due in another graph (one more read)
                try:
                    missing = await missing_nodes_at(compiled, snapshot.config)
                except Exception as exc:
                    _reraise(exc, thread_id)
            checkpoints.append(
                Checkpoint(
                    checkpoint_id=snapshot.config["configurable"]["checkpoint_id"],
                    step=int((snapshot.metadata or {}).get("step", -1)),
                    created_at=str(snapshot.created_at or ""),
                    next=list(snapshot.next),
                    missing=missing,
                    task=values.get("task"),
                    route=route.get("target"),
                    answer=(values.get("answer") or "")[:200] or None,
                    user_id=_user_of(snapshot.metadata),
                )
            )
        return checkpoints

    def history(self, thread_id: str) -> list[Checkpoint]:
        """The thread's checkpoints, newest first: one per graph step of every run on it."""
        result: list[Checkpoint] = self._submit(self._history(_check_id("thread_id", thread_id)))
        return result

    async def ahistory(self, thread_id: str) -> list[Checkpoint]:
        """Async :meth:`history`."""
        result: list[Checkpoint] = await self._on_loop(self._history(_check_id("thread_id", thread_id)))
        return result

    async def _replay(self, thread_id: str, checkpoint_id: str) -> RunResult:
        self.warm_up()  # it runs nodes: their models load while the history is read
        async with self._running(thread_id):
            return await self._replay_from(thread_id, checkpoint_id)

    async def _replay_from(self, thread_id: str, checkpoint_id: str) -> RunResult:
        known = {c.checkpoint_id: c for c in await self._history(thread_id)}
        if checkpoint_id not in known:
            raise UsageError(
                f"Thread {thread_id!r} has no checkpoint {checkpoint_id!r}; "
                f"list them with `{self._cli('history', thread_id)}`."
            )
        if not known[checkpoint_id].next:
            await self._refuse_stranded(thread_id, checkpoint_id)  # not the end of a run after all
            raise UsageError(
                f"Checkpoint {checkpoint_id!r} is the end of a run: nothing is left to re-run from it; "
                "choose an earlier one."
            )
        config: Any = {
            "configurable": {"thread_id": thread_id, "checkpoint_id": checkpoint_id},
            "recursion_limit": 25,
        }
        owner = known[checkpoint_id].user_id
        if owner:  # the re-run is that user's run again (threads lists it under them)
            config["metadata"] = {"user_id": owner}
        return await _final_result(self._drive(None, config, thread_id, live=False))

    def replay(self, thread_id: str, checkpoint_id: str | Checkpoint) -> RunResult:
        """Re-run a thread from one of its checkpoints (an id, or a :class:`Checkpoint` from
        :meth:`history`); the steps after it run again and the thread continues from the new result
        (the old branch stays in the history)."""
        if isinstance(checkpoint_id, Checkpoint):
            checkpoint_id = checkpoint_id.checkpoint_id
        result: RunResult = self._submit(self._replay(_check_id("thread_id", thread_id), checkpoint_id))
        return result

    async def areplay(self, thread_id: str, checkpoint_id: str | Checkpoint) -> RunResult:
        """Async :meth:`replay`."""
        if isinstance(checkpoint_id, Checkpoint):
            checkpoint_id = checkpoint_id.checkpoint_id
        result: RunResult = await self._on_loop(
            self._replay(_check_id("thread_id", thread_id), checkpoint_id)
        )
        return result

    def astream(
        self,
        task: str | None = None,
        *,
        user_id: str = "default",
        thread_id: str | None = None,
        agent: str | None = None,
        resume: Any = None,
    ) -> AsyncGenerator[Event, None]:
        """Run ``task`` and yield events as they happen; the last one is the result.

        Without a task, continue ``thread_id``'s unfinished run: with ``resume`` (``"approve"``,
        ``"reject"``, ``{"reject": why}``, ``{"edit": text}``) when it waits for approval, or from
        its last checkpoint when its process stopped mid-run.

        The arguments are checked here, when it is called (an unknown agent or an empty task
        raises at once, as :meth:`arun` does), not at the first event. Stop it early with
        ``await events.aclose()`` (or by leaving an ``async for``): its run stops too.
        """
        return self._astream(self._check(task, user_id, thread_id, agent, resume))

    async def _astream(self, run: _Run) -> AsyncGenerator[Event, None]:
        await self._ready(run)
        caller = asyncio.get_running_loop()
        if caller is self._runtime_loop():
            async for event in self._events(run):
                yield event
            return
        events: asyncio.Queue[Any] = asyncio.Queue()
        done = object()

        def hand(item: Any) -> None:
            # The caller's loop may already be closed (Ctrl-C ended its asyncio.run): nobody is
            # left to read the item, and raising here would only log a stray traceback.
            with contextlib.suppress(RuntimeError):
                caller.call_soon_threadsafe(events.put_nowait, item)

        async def pump() -> None:
            async for event in self._events(run):
                hand(event)

        future = self._schedule(pump())
        future.add_done_callback(functools.partial(_last_item, hand, done))
        try:
            while (item := await events.get()) is not done:
                if isinstance(item, BaseException):
                    raise _on_thread(item, run.thread_id)
                yield item
        finally:
            if not future.done():  # the caller stopped early: stop the run too
                future.cancel()

    async def arun(
        self,
        task: str | None = None,
        *,
        user_id: str = "default",
        thread_id: str | None = None,
        agent: str | None = None,
        resume: Any = None,
    ) -> RunResult:
        """Run ``task`` to completion (or until it waits for approval; see :meth:`astream`)."""
        run = self._check(task, user_id, thread_id, agent, resume)
        await self._ready(run)
        try:
            result: RunResult = await self._on_loop(self._result_of(run))
        except RunError as exc:
            _on_thread(exc, run.thread_id)
            raise
        return result

    async def _result_of(self, run: _Run) -> RunResult:
        return await _final_result(self._events(run, live=False))  # nobody watches: no progress events

    def run(
        self,
        task: str | None = None,
        *,
        user_id: str = "default",
        thread_id: str | None = None,
        agent: str | None = None,
        resume: Any = None,
    ) -> RunResult:
        """Blocking :meth:`arun`; works inside a running event loop (Jupyter) too."""
        run = self._start(task, user_id, thread_id, agent, resume)
        try:
            result: RunResult = self._submit(self._result_of(run))
        except RunError as exc:
            _on_thread(exc, run.thread_id)
            raise
        return result

    def stream(
        self,
        task: str | None = None,
        *,
        user_id: str = "default",
        thread_id: str | None = None,
        agent: str | None = None,
        resume: Any = None,
    ) -> Generator[Event, None, None]:
        """Blocking :meth:`astream`: events are yielded as they happen (the arguments are
        checked when it is called; ``events.close()`` stops it and its run early)."""
        return self._stream(self._start(task, user_id, thread_id, agent, resume))

    def _stream(self, run: _Run) -> Generator[Event, None, None]:
        done = object()
        events: queue.Queue[Any] = queue.Queue()

        async def pump() -> None:
            async for event in self._events(run):
                events.put(event)

        future = self._schedule(
            pump(),
            refused="Runtime.stream/run cannot be called from the runtime's own loop; use astream/arun",
        )
        future.add_done_callback(functools.partial(_last_item, events.put, done))
        try:
            while (item := events.get()) is not done:
                if isinstance(item, BaseException):
                    raise _on_thread(item, run.thread_id)
                yield item
        finally:
            if not future.done():
                future.cancel()

    def _submit(self, coro: Any) -> Any:
        """Run a coroutine on the runtime loop and wait for it (from any thread but the loop's)."""
        future = self._schedule(coro)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C in the caller (Jupyter: "interrupt"): the run stops too
            raise

    async def _on_loop(self, coro: Any) -> Any:
        """Await a coroutine on the runtime loop from any event loop (only the result crosses)."""
        if asyncio.get_running_loop() is self._runtime_loop():
            return await coro
        return await asyncio.wrap_future(self._schedule(coro))

    async def amessages(self, thread_id: str) -> list[dict[str, str]]:
        """The conversation stored for ``thread_id`` (``role``, ``content``, ``name``), oldest first."""
        result: list[dict[str, str]] = await self._on_loop(self._messages(_check_id("thread_id", thread_id)))
        return result

    async def _messages(self, thread_id: str) -> list[dict[str, str]]:
        try:
            compiled = await self._compiled_graph(warm=False)
            snapshot = await compiled.aget_state({"configurable": {"thread_id": thread_id}})
        except Exception as exc:
            _reraise(exc, thread_id)
        return [
            {"role": m.type, "content": str(m.content), "name": getattr(m, "name", None) or ""}
            for m in snapshot.values.get("messages", [])
        ]

    def messages(self, thread_id: str) -> list[dict[str, str]]:
        """Blocking :meth:`amessages`."""
        result: list[dict[str, str]] = self._submit(self._messages(_check_id("thread_id", thread_id)))
        return result

    # Threads -------------------------------------------------------------------

    def threads(self, user_id: str | None = None, *, idle_days: float | None = None) -> list[ThreadInfo]:
        """The threads ``user_id`` ran tasks on (every thread when ``None``), the most recently
        used first, each with what its last run is doing (:attr:`ThreadInfo.status`); with
        ``idle_days``, only those unused for at least that many days.

        Found through the user id every run records in its checkpoints' metadata, so a thread is
        listed under each user who ran a task on it.
        """
        call = self._threads(*_thread_filter(user_id, idle_days))
        result: list[ThreadInfo] = self._submit(call)
        return result

    async def athreads(
        self, user_id: str | None = None, *, idle_days: float | None = None
    ) -> list[ThreadInfo]:
        """Async :meth:`threads`."""
        result: list[ThreadInfo] = await self._on_loop(self._threads(*_thread_filter(user_id, idle_days)))
        return result

    async def _threads(self, user_id: str | None, idle_days: float | None) -> list[ThreadInfo]:
        import datetime as dt

        from brainstack.graphs.checkpointers import find_threads
        from brainstack.graphs.status import last_run

        since = None if idle_days is None else dt.datetime.now(dt.UTC) - dt.timedelta(days=idle_days)
        threads = []
        try:
            saver = await self._checkpointer()
            for thread_id, checkpoints, newest, latest in await find_threads(saver, user_id):
                item = await saver.aget_tuple(_checkpoint_config(thread_id, newest))
                # The thread's last run says its status; with a user given, the user's newest
                # checkpoint may be older (another user ran the thread since).
                last = (
                    item
                    if latest == newest
                    else await saver.aget_tuple(_checkpoint_config(thread_id, latest))
                )
                if item is None or last is None:  # deleted since
                    continue
                updated = str(item.checkpoint["ts"])
                if since is not None and dt.datetime.fromisoformat(str(last.checkpoint["ts"])) > since:
                    continue  # used since: by this user, or by another on the same thread
                task = item.checkpoint["channel_values"].get("task")
                if item.metadata.get("source") == "input":  # a run that started here: its task is the input
                    task = next((v for _, key, v in item.pending_writes or () if key == "task"), task)
                threads.append(
                    ThreadInfo(
                        thread_id=thread_id,
                        user_id=_user_of(item.metadata),
                        checkpoints=checkpoints,
                        updated_at=updated,
                        last_task=task[:200] if isinstance(task, str) else None,
                        **last_run(last.checkpoint, last.pending_writes),
                    )
                )
            return await self._running_or_stopped(saver, threads)
        except Exception as exc:
            raise translate(exc) from exc

    async def _running_or_stopped(self, saver: Any, threads: list[ThreadInfo]) -> list[ThreadInfo]:
        """``threads`` with those whose checkpoints say ``unfinished`` or ``failed`` told apart: a
        run under way looks stopped part-way in its checkpoints (a failed run being continued still
        shows its error until the step that failed is done), and its lease says it is not. (Only
        those are asked: the other threads' runs have ended.) One whose lease is free is read
        again: its run may have ended since its checkpoint was read, and a free lease means its
        last checkpoint is written."""
        from brainstack.graphs.status import last_run

        state = self._state()
        assert state.leases is not None
        stopped = [t.thread_id for t in threads if t.status in _STOPPED]
        running = await state.leases.running(stopped) if stopped else set()
        told = []
        for info in threads:
            if info.thread_id in running:
                info = info.model_copy(update={"status": "running", "error": None})
            elif info.status in _STOPPED:
                last = await saver.aget_tuple(
                    {"configurable": {"thread_id": info.thread_id, "checkpoint_ns": ""}}
                )
                if last is not None:
                    info = info.model_copy(update=last_run(last.checkpoint, last.pending_writes))
            told.append(info)
        return told

    def delete_thread(self, thread_id: str) -> bool:
        """Delete the thread's checkpoints: its conversation, its history and any paused or
        unfinished run on it. False if it had none.

        Waits for this process's runs on the thread; :class:`ThreadBusyError` if another process
        is running it. The thread's session facts in working memory go too (a working memory that
        is down keeps them until they expire: logged). What memory kept of its runs (episodes,
        skills) stays: ``memory forget`` deletes a user's episodes.
        """
        result: bool = self._submit(self._holding(_check_id("thread_id", thread_id), self._delete))
        return result

    async def adelete_thread(self, thread_id: str) -> bool:
        """Async :meth:`delete_thread`."""
        result: bool = await self._on_loop(self._holding(_check_id("thread_id", thread_id), self._delete))
        return result

    async def _delete(self, saver: Any, thread_id: str) -> bool:
        from brainstack.graphs.checkpointers import delete_thread

        deleted = await delete_thread(saver, thread_id)
        memory = self.memory
        if memory is not None:
            try:
                await asyncio.to_thread(memory.working.clear, "session", thread_id)
            except Exception as exc:
                log.warning(
                    "thread %r deleted, but its session facts stay in working memory until they expire: %s",
                    thread_id,
                    translate(exc),
                )
        return deleted

    def prune_thread(self, thread_id: str) -> int:
        """Delete all of the thread's checkpoints but its latest; how many were deleted.

        The conversation goes on and a paused or unfinished run still continues; only its history
        (what :meth:`history` lists and :meth:`replay` re-runs from) goes. A SQLite checkpoint
        stores the whole conversation, so a long thread's history grows with the square of its
        length. Holds the thread as :meth:`delete_thread` does.
        """
        from brainstack.graphs.checkpointers import prune_thread

        result: int = self._submit(self._holding(_check_id("thread_id", thread_id), prune_thread))
        return result

    async def aprune_thread(self, thread_id: str) -> int:
        """Async :meth:`prune_thread`."""
        from brainstack.graphs.checkpointers import prune_thread

        result: int = await self._on_loop(self._holding(_check_id("thread_id", thread_id), prune_thread))
        return result

    async def _holding(self, thread_id: str, change: Callable[[Any, str], Awaitable[Any]]) -> Any:
        """``change(checkpointer, thread_id)`` while holding the thread as a run does (after this
        process's runs on it; ThreadBusyError while another process runs it)."""
        async with self._running(thread_id):
            try:
                return await change(await self._checkpointer(), thread_id)
            except Exception as exc:
                raise translate(exc) from exc

    def close(self) -> None:
        """Close the checkpointer connection and stop the runtime's loop (also done at exit).

        Runs under way are cancelled (each keeps its thread's last checkpoint, to continue) and
        their callers get a :class:`RunError` that says so; a run started after ``close`` starts a
        new loop.
        """
        with self._loop_lock:
            state, self._loop_state = self._loop_state, None
            if state is not None:
                state.closing = True  # calls that reach it from now on are refused (_state)
            finalizer = getattr(self, "_finalizer", None)
            self._graph = None  # its nodes' model clients were bound to the stopped loop
            self._closes += 1
        if finalizer is not None:
            finalizer()
        self.provider.close()  # the local model server, when the provider started one

    async def aclose(self) -> None:
        """:meth:`close` for async hosts: it waits on a thread of its own, not on the caller's loop
        (closing joins the runtime's loop thread, for up to seconds while runs are cancelled)."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _cli(self, command: str, thread_id: str) -> str:
        return cli_command(command, thread_id, self.agents_file)

    def _start(
        self, task: str | None, user_id: str, thread_id: str | None, agent: str | None, resume: Any
    ) -> _Run:
        """Check a run's arguments in the caller, build (and validate) the graph there, and start
        embedding the task for the router, all before the hop to the runtime loop: the embedding
        then runs while the run crosses threads, starts the graph and writes its first checkpoint
        (and, with memory on, while memory is recalled)."""
        run = self._check(task, user_id, thread_id, agent, resume)
        self.graph  # noqa: B018
        self._prefetch(run)
        return run

    async def _ready(self, run: _Run) -> None:
        """:meth:`_start` for the async calls: the graph (imports, models, memory: seconds on a
        process's first run) is built on a thread of its own, awaited, so the caller's loop goes
        on meanwhile. Built in the caller, it froze a host's loop for about 2 s (QA), and a
        cancellation (Ctrl-C in the CLI) waited for the models."""
        if self._graph is None:
            loop = asyncio.get_running_loop()
            built: asyncio.Future[None] = loop.create_future()

            def settle(error: BaseException | None) -> None:
                if not built.done():  # (the caller stopped waiting)
                    if error is None:
                        built.set_result(None)
                    else:
                        built.set_exception(error)

            def build() -> None:
                error: BaseException | None = None
                try:
                    self.graph  # noqa: B018 - building it is the point
                except BaseException as exc:  # raised to the caller, as a build in it would be
                    error = exc
                with contextlib.suppress(RuntimeError):  # (the caller's loop is closed: it left)
                    loop.call_soon_threadsafe(settle, error)

            # (not a daemon thread, as warm_up's: the CLI, stopped, does not wait for it)
            threading.Thread(target=build, name="brainstack-build").start()
            await built
        self._prefetch(run)

    def _prefetch(self, run: _Run) -> None:
        if run.task is not None and run.agent is None:
            from brainstack.graphs.nodes import routing_text

            self.router.prefetch(routing_text(run.task))

    def _check(
        self, task: str | None, user_id: str, thread_id: str | None, agent: str | None, resume: Any
    ) -> _Run:
        for label, value in (("user_id", user_id), ("thread_id", thread_id)):
            if value is not None:
                _check_id(label, value)
        targets = [*self.agents.agents, GROUP_CHAT]
        if agent is not None and agent not in targets:
            raise UnknownAgentError.naming(agent, targets)
        if task is None or (resume is not None and isinstance(task, str) and not task.strip()):
            if thread_id is None:
                raise InvalidTaskError(
                    "The task is empty: pass the question or instruction to run (or a thread_id to "
                    "continue that thread's unfinished run)."
                )
            if agent is not None:  # it would be ignored: the run's route was decided when it started
                raise UsageError(
                    f"agent={agent!r} chooses the route of a new task; continuing thread "
                    f"{thread_id!r} keeps the route its run took. Drop agent=, or pass a task."
                )
            if resume is not None:
                try:
                    parse_resume(resume)
                except ValueError as exc:
                    raise UsageError(f"resume: {exc}.") from None
            return _Run(None, user_id, thread_id, agent, resume, existing=True)
        if resume is not None:
            raise UsageError("Pass either a task (a new run) or resume (to continue a paused one), not both.")
        task = InvalidTaskError.check(task, self.settings.max_task_chars)
        return _Run(task, user_id, thread_id or uuid.uuid4().hex, agent, None, existing=thread_id is not None)

    def _result(
        self, state: dict[str, Any], thread_id: str, pending: ApprovalRequest | None = None
    ) -> RunResult:
        review = state.get("review") or {}
        if review.get("status") == "failed":
            raise RunError(
                "No agent produced an answer: "
                + "; ".join(review.get("notes", []))
                + f". The thread {thread_id!r} keeps what happened; try again or check the model.",
                thread_id=thread_id,
            )
        return RunResult(
            answer=state["answer"],
            route=RouteDecision(**state["route"]),
            speakers=state.get("speakers", []),
            transcript=[ChatTurn(**turn) for turn in state.get("transcript", [])],
            tool_calls=[ToolCallRecord(**call) for call in state.get("tool_calls", [])],
            thread_id=thread_id,
            user_id=state.get("user_id", "default"),
            model=state.get("model", self.provider.name),
            usage=Usage(**state.get("usage", {})),
            timings=state.get("timings", {}),
            review=ReviewOutcome(
                status=review.get("status", "ok"),
                attempts=review.get("attempts", 0),
                notes=review.get("notes", []),
                checks=review.get("checks", []),
            ),
            memory=MemoryRecall(**(state.get("memory") or {})),
            remembered=MemoryWrite(**(state.get("remembered") or {})),
            status="awaiting_approval" if pending is not None else "completed",
            approval=(
                Approval(status="pending", proposed=pending.answer, request=pending)
                if pending is not None
                else Approval(**state["approval"])
                if state.get("approval")
                else None
            ),
        )


def _check_embeddings(settings: Settings) -> None:
    """OpenAI embeddings without a key or endpoint would fail on every run, one memory layer at a
    time ("degraded"); say so once, before anything starts."""
    used = settings.memory or settings.router_embeddings == "memory"
    if used and settings.embeddings == "openai" and not settings.openai_configured:
        raise ConfigurationError(
            "BRAINSTACK_EMBEDDINGS=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a server that "
            "takes no key); set one, or unset BRAINSTACK_EMBEDDINGS to embed with the local MiniLM."
        )


def _closed(*, started: bool = True) -> RunError:
    """What a caller still waiting on a run gets when its Runtime is closed (the run was cancelled;
    a caller that stopped reading a stream itself gets nothing). ``started=False``: the call
    reached the loop after close() began, and nothing of it ran."""
    if not started:
        return RunError(
            "The Runtime was closed before the run started; nothing ran and the thread is "
            "unchanged (call again: a closed Runtime opens again on its next call)."
        )
    return RunError(
        "The Runtime was closed while the run was under way; the thread keeps what the run saved: "
        "continue it with run(thread_id=…), and if that finds no unfinished run, the run had saved "
        "nothing yet: run the task again."  # (it may have been closed before the first checkpoint, QA)
    )


def _on_thread(error: BaseException, thread_id: str) -> BaseException:
    """``error`` with ``thread_id`` when it is a RunError that could not know it (the "closed" one:
    close() cancels a run from outside it), its hint naming the thread."""
    if isinstance(error, RunError):
        if error.thread_id is None:
            error.thread_id = thread_id
        if "run(thread_id=…)" in error.message:
            error.message = error.message.replace("run(thread_id=…)", f"run(thread_id={error.thread_id!r})")
            error.args = (error.message,)
    return error


class _LoopState:
    """One runtime loop and what it coordinates: its thread, opening the checkpointer once (and
    what was opened: the saver's resources, the leases, the compiled graph), the calls handed to
    it, and one run at a time per thread (a second run on a thread waits for the first, then sees
    its conversation; two at once would each write a branch from the same checkpoint and one
    turn would be lost)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="brainstack-runtime", daemon=True)
        self.opening: asyncio.Future[None] | None = None
        """Opening the checkpointer and the leases (see Runtime._checkpointer)."""
        self.saver: Any = None
        self.compiled: Any = None
        self.leases: Leases | None = None
        self.resources: list[contextlib.AsyncExitStack] = []
        self.background: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        """Tasks the resources run for as long as they are open (a PostgreSQL pool's workers; any
        other task that started while they opened, which then holds nothing alive)."""
        self.runs: set[asyncio.Task[Any]] = set()
        """The tasks of the calls under way (close() cancels them)."""
        self.calls: set[concurrent.futures.Future[Any]] = set()
        """The futures of the calls handed to this loop that have not ended."""
        self.closing = False
        """Set once close() has retired this loop: nothing new starts on it."""
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, thread_id: str) -> AsyncIterator[None]:
        lock, users = self._turns.get(thread_id, (asyncio.Lock(), 0))
        self._turns[thread_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._turns[thread_id]
            if users == 1:
                del self._turns[thread_id]  # nobody waits: keep no lock per finished thread
            else:
                self._turns[thread_id] = (lock, users - 1)


def _check_id(label: str, value: object) -> str:
    """``value`` if it is a user or thread id (the CLI and the stores accept the same), else a
    UsageError that names it."""
    if not (isinstance(value, str) and _ID.fullmatch(value)):
        raise UsageError(f"{label} {value!r} must be 1-128 letters, digits or _.:@-")
    return value


def check_agents_argument(agents: object) -> None:
    """Refuse an ``agents`` argument that is neither a path to an agents file nor a config."""
    if agents is not None and not isinstance(agents, str | os.PathLike | AgentsConfig):
        raise UsageError(
            f"agents must be the path of an agents file (str or Path) or an AgentsConfig, "
            f"not {type(agents).__name__}."
        )
    if isinstance(agents, str) and not agents.strip():  # Path("") is the current folder
        raise UsageError(
            "agents is an empty path: pass the path of an agents file, or None for the built-in one."
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _Run:
    """One checked request: a new run (``task``) or the continuation of a thread's run."""

    task: str | None
    user_id: str
    thread_id: str
    agent: str | None
    resume: Any
    existing: bool
    """Whether the caller named the thread (it may hold an unfinished run)."""


async def _final_result(events: AsyncIterator[Event]) -> RunResult:
    """The result a run's events end with (a run always ends with one, or raises)."""
    result: RunResult | None = None
    async for event in events:
        if isinstance(event, ResultEvent):
            result = event.result
    assert result is not None
    return result


def _approval_request(value: Any, values: dict[str, Any]) -> ApprovalRequest:
    if isinstance(value, dict) and value.get("type") == "approval":
        return ApprovalRequest(**value)
    return ApprovalRequest(question=str(value), answer=values.get("answer", ""))


def cli_command(command: str, thread_id: str, agents_file: str | Path | None) -> str:
    """``brainstack COMMAND --thread T``, with ``--agents FILE`` when the thread ran with an agents
    file: its graph has that file's agents, and without them the run cannot go on."""
    quoted = shlex.quote(thread_id)
    # (an id that starts with "-" would be read as an option: `--thread=-t1`, not `--thread -t1`)
    line = f"brainstack {command} --thread{'=' if thread_id.startswith('-') else ' '}{quoted}"
    return f"{line} --agents {shlex.quote(str(agents_file))}" if agents_file is not None else line


def _thread_filter(user_id: str | None, idle_days: float | None) -> tuple[str | None, float | None]:
    """Check :meth:`Runtime.threads`'s arguments (UsageError naming the wrong one)."""
    if user_id is not None:
        _check_id("user_id", user_id)
    if idle_days is not None and (
        isinstance(idle_days, bool) or not isinstance(idle_days, int | float) or not 0 <= idle_days < 100_000
    ):
        raise UsageError(
            f"idle_days must be a number of days, at least 0 and below 100000, not {idle_days!r}"
        )
    return user_id, idle_days


def _checkpoint_config(thread_id: str, checkpoint_id: str) -> Any:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": checkpoint_id}}


def _user_of(metadata: Any) -> str | None:
    """The user id a run recorded in a checkpoint's metadata, if any."""
    user = (metadata or {}).get("user_id")
    return user if isinstance(user, str) and user else None


def _reraise(exc: Exception, thread_id: str) -> NoReturn:
    """Raise ``exc`` as a brainstack error carrying ``thread_id`` (brainstack errors keep their identity)."""
    error = translate(exc, thread_id=thread_id)
    if error is exc:
        raise exc
    raise error from exc


async def _guarded(state: _LoopState, coro: Any) -> Any:
    """``coro`` as a call of the loop of ``state``: refused once the loop is retired, registered
    for close() to cancel, and ended by close() with the "closed" RunError."""
    if state.closing:
        coro.close()
        raise _closed(started=False)
    task = asyncio.current_task()
    assert task is not None
    state.runs.add(task)
    try:
        return await coro
    except asyncio.CancelledError:
        if state.closing:  # cancelled by close(), not by its caller: tell the caller why
            task.add_done_callback(_retrieved)  # (the caller may have left already: Ctrl-C)
            raise _closed() from None
        raise
    finally:
        state.runs.discard(task)


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Mark a task's error as seen (its waiters were told; it may have none left)."""
    if not task.cancelled():
        task.exception()


def _last_item(hand: Any, done: object, future: concurrent.futures.Future[Any]) -> None:
    """Hand a stream's reader what ended its run (an error, if any) and the end marker."""
    if not future.cancelled() and (error := future.exception()) is not None:
        hand(error)
    hand(done)


def _shutdown(state: _LoopState, provider: ModelProvider) -> None:
    """Close what the runtime opened on the loop of ``state`` (and the model clients' shared HTTP
    connections there), then stop the loop."""
    state.closing = True
    loop, thread = state.loop, state.thread

    async def close_all() -> None:
        # Runs still under way end first (cancelled), so they give back their thread's turn and
        # lease and their callers are told, before the checkpointer they write to is closed. A
        # call that starts after this is refused (``closing``), so none is left to use it.
        deadline = loop.time() + 5
        running = list(state.runs)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=5)
        if state.opening is not None and not state.opening.done():
            await asyncio.wait([state.opening])  # then closed with the rest
        # What the cancelled runs left going: LangGraph saves the result of a step that ended as
        # its run was cancelled in a task of its own that nobody waits for. It ends before the
        # checkpointer it writes to is closed, not cut off mid-write by the loop stopping.
        left = asyncio.all_tasks() - set(state.background) - {asyncio.current_task()}
        if left:
            await asyncio.wait(left, timeout=max(0.0, deadline - loop.time()))
        for stack in reversed(state.resources):
            with contextlib.suppress(Exception):
                await stack.aclose()
        with contextlib.suppress(Exception):
            await provider.aclose_http()

    if loop.is_running():
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close_all(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
    if not loop.is_running():
        # A call still waiting (a run that ignored its cancellation for longer than close_all
        # waits) would never be answered by a stopped loop: tell its caller now.
        for future in list(state.calls):
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                future.set_exception(_closed())
        loop.close()
