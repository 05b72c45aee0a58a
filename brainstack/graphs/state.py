"""The graph's state. Values are plain JSON-like data so every checkpointer stores them."""

from __future__ import annotations

from typing import Annotated, Any, Required

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict  # pydantic (the LangGraph server's schemas) needs it on 3.11

__all__ = ["RouterState", "RunInput", "add_usage"]


# The attribute docstrings become the schema's descriptions: LangGraph Studio's input form and
# state view showed bare field names (QA).
@with_config(ConfigDict(use_attribute_docstrings=True))
class RunInput(TypedDict, total=False):
    """What a run takes (the form LangGraph Studio shows): the task, and optionally who asks."""

    task: Required[str]
    """The question or instruction."""
    user_id: str
    """Whose memory to use (``default`` when empty)."""
    requested_agent: str | None
    """Force a route target (a specialist's name or ``group_chat``, as the agents file names
    them); leave empty to route."""


@with_config(ConfigDict(use_attribute_docstrings=True))
class RouterState(TypedDict, total=False):
    """One thread's state. Per-run fields are reset by each run's input."""

    messages: Annotated[list[AnyMessage], add_messages]
    """The thread's conversation across runs: each task and its final answer."""
    task: str
    user_id: str
    requested_agent: str | None
    """A route the caller forced, if any."""
    route: dict[str, Any] | None
    """A :class:`~brainstack.results.RouteDecision` as a dict."""
    active_agent: str
    """The node that produced (or is producing) the answer."""
    answer: str
    speakers: list[str]
    transcript: list[dict[str, str]]
    tool_calls: list[dict[str, Any]]
    usage: dict[str, int]
    timings: dict[str, float]
    review: dict[str, Any]
    model: str
    """The provider that answered (``openai``, ``offline``, ``local``): set when the run starts,
    and again by the node that answers, as a failed run may be continued with another."""
    thread_id: str
    memory: dict[str, Any]
    """A :class:`~brainstack.results.MemoryRecall` as a dict (what recall found)."""
    remembered: dict[str, Any]
    """A :class:`~brainstack.results.MemoryWrite` as a dict (what remember wrote)."""
    approval: dict[str, Any]
    """A human's decision on the answer (:class:`~brainstack.results.Approval` as a dict), if asked."""


def add_usage(total: dict[str, int] | None, delta: dict[str, int]) -> dict[str, int]:
    """Sum two usage dicts (prompt/completion/total tokens, model calls)."""
    out = dict(total or {})
    for key, value in delta.items():
        out[key] = out.get(key, 0) + value
    return out
