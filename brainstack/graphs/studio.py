"""The graph that ``langgraph dev`` (LangGraph Studio) and the LangGraph server serve.

``langgraph.json`` at the repository root points at :data:`graph`. The server imports this module
once, in a worker thread, and brings its own checkpointer and thread store, so the graph is
compiled without one; everything else (settings from the ``BRAINSTACK_*`` environment, the agents
file, the model provider, memory) is what a :class:`~brainstack.Runtime` would use. The input form
is a task and an optional user; route, transcript and recalled memory are in the state, a paused
run's approval request is the thread's interrupt (resumed from Studio like any other), and the
nodes' progress events arrive in the ``custom`` stream mode.
"""

from __future__ import annotations

from typing import Any

__all__ = ["graph", "make_graph"]


def make_graph() -> Any:
    """The router graph compiled for a LangGraph server (settings from the environment)."""
    from brainstack.runtime import Runtime

    # The nodes hold the provider, router and memory gateway the Runtime built for them.
    return Runtime().graph.compile(name="brainstack")


graph = make_graph()
