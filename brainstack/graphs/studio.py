"""The graph that ``langgraph dev`` (LangGraph Studio) and the LangGraph server serve.

``langgraph.json`` at the repository root points at :data:`graph`. The server imports this module
once, in a worker thread, and brings its own checkpointer and thread store, so the graph is
compiled without one; everything else (settings from the ``BRAINSTACK_*`` environment, the agents
file, the model provider, memory) is what a :class:`~brainstack.Runtime` would use. The input form
is a ``task``, an optional ``user_id`` and an optional ``requested_agent`` (other keys are
dropped by the server); route, transcript and recalled memory are in the state, a paused
run's approval request is the thread's interrupt (resumed from Studio like any other), and the
nodes' progress events arrive in the ``custom`` stream mode.

A resume command (``Command(resume=…)``) for a thread that is not paused fails with a
:class:`~brainstack.errors.NotPausedError` saying what the thread's last run did and what to send
instead. LangGraph accepts such a resume by design (it also resumes static breakpoints, which this
graph has none of): on a finished thread the run "succeeds" doing nothing, and on a run that
stopped part-way it goes on and drops the decision (the run then asks for the approval the
client thought it had given). The check is in :meth:`ResumeCheckedGraph.astream` (and
``stream``), through which every way of running a compiled graph goes (``invoke``, ``ainvoke``,
``astream_events``, the server's runs).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from brainstack.approval import not_paused

if TYPE_CHECKING:
    from langgraph.types import StateSnapshot

    from brainstack.runtime import Runtime

__all__ = ["ResumeCheckedGraph", "graph", "make_graph"]


def make_graph(runtime: Runtime | None = None) -> Any:
    """The router graph compiled for a LangGraph server (a Runtime with settings from the
    environment unless one is given; its graph is changed, as below, so it serves only this).

    With approval off the graph still has an ``approve`` node, reached by nothing but a resume of
    a thread paused while approval was on: it refuses, saying how to answer it. Without it the
    server ignored the decision and ended the run with the unapproved answer (QA); ``run()``
    refuses the same way (:func:`~brainstack.graphs.stranded.stranded_message`)."""
    from brainstack.runtime import Runtime

    # The nodes hold the provider, router and memory gateway the Runtime built for them.
    builder = (runtime or Runtime()).graph
    if "approve" not in builder.nodes:
        builder.add_node("approve", _approval_off)
    compiled = builder.compile(name="brainstack")
    # (as CompiledStateGraph.copy makes a graph from another: its attributes are its arguments)
    return ResumeCheckedGraph(**{k: v for k, v in vars(compiled).items() if k != "__orig_class__"})


class ResumeCheckedGraph(CompiledStateGraph[Any, Any, Any, Any]):
    """The compiled router graph, refusing a resume command for a thread that is not paused."""

    async def astream(self, input: Any, config: Any = None, **kwargs: Any) -> AsyncIterator[Any]:
        if _is_resume(input) and _has_thread(self, config):
            _refuse_unless_paused(await self.aget_state(config), config)
        async for chunk in super().astream(input, config, **kwargs):
            yield chunk

    def stream(self, input: Any, config: Any = None, **kwargs: Any) -> Iterator[Any]:
        if _is_resume(input) and _has_thread(self, config):
            _refuse_unless_paused(self.get_state(config), config)
        yield from super().stream(input, config, **kwargs)


def _is_resume(input: Any) -> bool:
    return isinstance(input, Command) and input.resume is not None


def _has_thread(graph: CompiledStateGraph[Any, Any, Any, Any], config: Any) -> bool:
    """Whether the run names a thread of the graph's checkpointer (otherwise LangGraph refuses a
    resume itself: "Cannot use Command(resume=...) without checkpointer")."""
    return bool(graph.checkpointer) and bool(((config or {}).get("configurable") or {}).get("thread_id"))


def _refuse_unless_paused(snapshot: StateSnapshot, config: Any) -> None:
    """NotPausedError unless the thread's run waits for an answer (an interrupt)."""
    if snapshot.interrupts:
        return
    thread_id = str(config["configurable"]["thread_id"])
    if snapshot.created_at is None:  # no checkpoint: a new thread
        raise not_paused(thread_id, None, 'Start a run with an input: {"task": "…"}.')
    if snapshot.next or snapshot.tasks:
        steps = ", ".join(snapshot.next) or ", ".join(t.name for t in snapshot.tasks)
        raise not_paused(
            thread_id,
            f"stopped before it ended (at {steps}: cancelled, failed or killed)",
            "To go on with it, start a run on the thread with no input and no command (SDK: "
            "runs.create(thread_id, assistant_id, input=None)); or send a new task as the input.",
        )
    raise not_paused(thread_id, "has ended", 'Send a new task as the input: {"task": "…"}.')


def _approval_off(state: Any) -> dict[str, Any]:
    """Refuse to continue a paused run on a server whose settings turn approval off."""
    from brainstack.errors import UsageError
    from brainstack.graphs.stranded import stranded_message

    raise UsageError(
        stranded_message(str(state.get("thread_id") or "?"), ["approve"])
        + " For langgraph dev: restart it with BRAINSTACK_APPROVAL=1."
    )


graph = make_graph()
