"""The public API is a contract: changing it must be a deliberate act (update this file)."""

from __future__ import annotations

import inspect

import pytest

import brainstack
import brainstack.graphs
import brainstack.testing

PUBLIC = [
    "AgentsConfig",
    "BackendError",
    "BrainstackError",
    "ChatTurn",
    "Checkpoint",
    "ConfigurationError",
    "InvalidTaskError",
    "ModelError",
    "ModelUnavailableError",
    "RouteDecision",
    "RunError",
    "RunResult",
    "Runtime",
    "Settings",
    "ThreadBusyError",
    "ThreadInfo",
    "ToolCallRecord",
    "UnknownAgentError",
    "Usage",
    "UsageError",
    "arun",
    "astream",
    "run",
    "stream",
]


def test_all_is_pinned():
    assert sorted(brainstack.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(brainstack, name) is not None


def test_run_and_arun_signatures():
    for fn in (brainstack.run, brainstack.arun, brainstack.Runtime.run, brainstack.Runtime.arun):
        params = inspect.signature(fn).parameters
        assert list(params)[:2] in (["task", "user_id"], ["self", "task"])
        assert params["user_id"].default == "default"
        assert params["thread_id"].default is None
        assert all(p.kind is p.KEYWORD_ONLY for n, p in params.items() if n not in ("self", "task"))
    assert inspect.iscoroutinefunction(brainstack.arun)
    assert "agents" in inspect.signature(brainstack.run).parameters


def test_run_result_fields():
    fields = set(brainstack.RunResult.model_fields)
    assert {"answer", "route", "speakers", "transcript", "thread_id", "model", "usage", "timings"} <= fields
    route = set(brainstack.RouteDecision.model_fields)
    assert {"target", "kind", "confidence", "decided_by", "reason"} <= route
    assert {"prompt_tokens", "completion_tokens"} <= set(brainstack.Usage.model_fields)


def test_graph_package_exports():
    assert {"SemanticRouter", "RouteMatch", "create_router_graph", "check_routes", "RouteCheck"} <= set(
        brainstack.graphs.__all__
    )
    params = inspect.signature(brainstack.graphs.SemanticRouter).parameters
    assert list(params)[:3] == ["routes", "embedder", "threshold"]
    assert params["embedder"].default is None and params["threshold"].default is None


def test_testing_package_exports():
    assert {"replay", "replay_settings", "Cassette", "ReplayError"} <= set(brainstack.testing.__all__)


@pytest.mark.parametrize("with_memory", [True, False])
def test_create_router_graph_returns_an_uncompiled_state_graph(settings, embedder, with_memory):
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import StateGraph

    from brainstack.agents.providers import ModelProvider
    from brainstack.config import load_agents
    from brainstack.graphs import SemanticRouter, create_router_graph
    from brainstack.memory.gateway import MemoryGateway

    agents = load_agents(None)
    graph = create_router_graph(
        agents,
        provider=ModelProvider(settings, agents),
        router=SemanticRouter(agents.routes, embedder),
        settings=settings,
        memory=MemoryGateway(settings, embedder=embedder) if with_memory else None,
    )
    assert isinstance(graph, StateGraph)
    expected = {"route", "review", "group_chat"} | {f"specialist_{n}" for n in agents.agents}
    if with_memory:
        expected |= {"recall", "remember"}
    assert set(graph.nodes) == expected
    compiled = graph.compile(checkpointer=InMemorySaver())
    edges = {(e.source, e.target) for e in compiled.get_graph().edges}
    if with_memory:
        assert ("__start__", "recall") in edges and ("recall", "route") in edges
        assert ("remember", "__end__") in edges
    else:
        assert ("__start__", "route") in edges
    assert all((f"specialist_{n}", "review") in edges for n in agents.agents)
    assert ("group_chat", "review") in edges


def test_memory_package_exports():
    import brainstack.memory as memory

    for name in memory.__all__:
        assert getattr(memory, name) is not None
    assert {"EpisodicMemory", "Episode", "WorkingMemory", "KnowledgeBase", "SkillStore"} <= set(
        memory.__all__
    )
    params = inspect.signature(memory.EpisodicMemory.search).parameters
    assert list(params)[:4] == ["self", "user_id", "query", "k"] and params["k"].default == 5
    assert list(inspect.signature(memory.EpisodicMemory.add).parameters)[:4] == [
        "self",
        "user_id",
        "text",
        "metadata",
    ]
    assert {"id", "text", "score", "metadata"} <= set(memory.Episode.__dataclass_fields__)
