"""The LangGraph graphs: state, nodes, the semantic router and the graph factories."""

from brainstack.graphs.router import RouteCheck, RouteMatch, SemanticRouter, check_routes

__all__ = ["RouteCheck", "RouteMatch", "SemanticRouter", "check_routes", "create_router_graph"]


def __getattr__(name: str) -> object:
    # The factory imports langgraph and langchain; keep `from brainstack.graphs import
    # SemanticRouter` light.
    if name == "create_router_graph":
        from brainstack.graphs.factory import create_router_graph

        return create_router_graph
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
