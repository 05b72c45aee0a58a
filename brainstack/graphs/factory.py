"""``create_router_graph``: wires the named nodes into an uncompiled StateGraph."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from langgraph.graph import END, START, StateGraph

from brainstack.agents.group_chat import GroupChat
from brainstack.agents.specialist import Specialist
from brainstack.config.agents import GROUP_CHAT, check_approval_routes
from brainstack.graphs.nodes import (
    AfterReview,
    Approve,
    Recall,
    Remember,
    Review,
    Route,
    after_route,
    node_name,
    start_run,
)
from brainstack.graphs.state import RouterState, RunInput

if TYPE_CHECKING:
    from brainstack.agents.providers import ModelProvider
    from brainstack.config import AgentsConfig, Settings
    from brainstack.graphs.router import SemanticRouter
    from brainstack.memory.gateway import MemoryGateway

__all__ = ["create_router_graph", "embedding_ahead"]

Node = Callable[[RouterState], Any]


def create_router_graph(
    agents: AgentsConfig,
    *,
    provider: ModelProvider,
    router: SemanticRouter,
    settings: Settings,
    memory: MemoryGateway | None = None,
) -> StateGraph[Any]:
    """START → recall → route → specialist_<name> | group_chat → review → [approve] → remember → END.

    ``memory`` is the gateway recall and remember use; without one (``BRAINSTACK_MEMORY=0``)
    the graph is START → route → … → review → END. With ``settings.approval`` the answers of
    ``settings.approval_routes`` wait in ``approve`` for a human. The input is
    :class:`~brainstack.graphs.state.RunInput` (a task, optionally a user and an agent to force); the
    first node resets
    the thread's previous run. Returns the graph uncompiled, so the caller chooses the checkpointer.
    """
    graph: StateGraph[Any] = StateGraph(RouterState, input_schema=RunInput)

    def first(name: str, node: Node) -> Any:
        history = None if memory is not None else (settings.history_messages, settings.history_token_budget)
        return start_run(
            timed(name, node), provider.name, settings.max_task_chars, history, [*agents.agents, GROUP_CHAT]
        )

    if memory is not None:
        graph.add_node("recall", first("recall", Recall(memory)))
    route = Route(agents, router, provider)
    graph.add_node("route", timed("route", route) if memory is not None else first("route", route))
    approval = settings.approval_routes if settings.approval else ()
    # A human may still change an approved route's answer: its episode is embedded by remember.
    ahead = {name: memory if name not in approval else None for name in [*agents.agents, GROUP_CHAT]}
    targets: dict[Hashable, str] = {}
    for name, spec in agents.agents.items():
        node = node_name(name)
        specialist = Specialist(name, spec, provider, settings, memory)
        graph.add_node(node, embedding_ahead(timed(node, specialist), ahead[name]))
        targets[node] = node
    group_chat = GroupChat(agents.group_chat, provider, settings)
    graph.add_node(GROUP_CHAT, embedding_ahead(timed(GROUP_CHAT, group_chat), ahead[GROUP_CHAT]))
    targets[GROUP_CHAT] = GROUP_CHAT
    graph.add_node("review", timed("review", Review(agents.default_agent, approval)))
    finish = "remember" if memory is not None else END
    if memory is not None:
        graph.add_node("remember", timed("remember", Remember(memory)))
        graph.add_edge(START, "recall")
        graph.add_edge("recall", "route")
        graph.add_edge("remember", END)
    else:
        graph.add_edge(START, "route")
    graph.add_conditional_edges("route", after_route, targets)
    for target in agents.agents:
        graph.add_edge(node_name(target), "review")
    graph.add_edge(GROUP_CHAT, "review")
    check_approval_routes(settings, agents)
    ends: dict[Hashable, str] = {**targets, "remember": finish}
    if approval:
        graph.add_node("approve", timed("approve", Approve()))
        graph.add_edge("approve", finish)
        ends["approve"] = "approve"
    graph.add_conditional_edges("review", AfterReview(approval, memory), ends)
    return graph


def timed(name: str, node: Node) -> Any:  # Any: LangGraph's node protocols don't type-check TypedDicts
    """Wrap a node so its wall time (ms) is added to ``state['timings'][name]``."""

    async def run(state: RouterState) -> dict[str, Any]:
        start = time.perf_counter()
        update = node(state)
        if inspect.isawaitable(update):
            update = await update
        elapsed = (time.perf_counter() - start) * 1000
        timings = dict(state.get("timings") or {})
        timings[name] = round(timings.get(name, 0.0) + elapsed, 3)
        return {**update, "timings": timings}

    run.__name__ = run.__qualname__ = name
    run.__doc__ = getattr(node, "__doc__", None)
    return run


def embedding_ahead(node: Node, memory: MemoryGateway | None) -> Any:
    """Wrap an answering node so that, once it has answered, the episode ``remember`` will write
    starts embedding (:meth:`~brainstack.memory.gateway.MemoryGateway.prefetch_episode`) while
    the graph checkpoints this step and reviews the answer (``node`` as is without ``memory``).

    Review keeps a non-empty answer's words (it may cut one beyond 20,000 characters; the episode
    holds its first 400), so remember usually takes this vector; when it does not, the vector
    is only unused.
    """
    if memory is None:
        return node

    async def run(state: RouterState) -> dict[str, Any]:
        update = await node(state)
        if (update.get("answer") or "").strip():
            memory.prefetch_episode({**state, **update})
        return update

    run.__name__ = run.__qualname__ = getattr(node, "__name__", "answering")
    run.__doc__ = getattr(node, "__doc__", None)
    return run
