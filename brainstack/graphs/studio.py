"""The graph that ``langgraph dev`` (LangGraph Studio) and the LangGraph server serve.

``langgraph.json`` at the repository root points at :data:`graph`. The server imports this module
once, in a worker thread, and brings its own checkpointer and thread store, so the graph is
compiled without one; everything else (settings from the ``BRAINSTACK_*`` environment, the agents
file, the model provider, memory) is what a :class:`~brainstack.Runtime` would use. The input form
is a ``task``, an optional ``user_id`` and an optional ``requested_agent`` (other keys are
dropped by the server); route, transcript and recalled memory are in the state, a paused
run's approval request is the thread's interrupt (resumed from Studio like any other), and the
nodes' progress events arrive in the ``custom`` stream mode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brainstack.runtime import Runtime

__all__ = ["graph", "make_graph"]


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
    return builder.compile(name="brainstack")


def _approval_off(state: Any) -> dict[str, Any]:
    """Refuse to continue a paused run on a server whose settings turn approval off."""
    from brainstack.errors import UsageError
    from brainstack.graphs.stranded import stranded_message

    raise UsageError(
        stranded_message(str(state.get("thread_id") or "?"), ["approve"])
        + " For langgraph dev: restart it with BRAINSTACK_APPROVAL=1."
    )


graph = make_graph()
