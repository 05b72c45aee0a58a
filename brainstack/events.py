"""Typed events that a run streams as it happens."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from brainstack.results import ApprovalRequest, MemoryRecall, MemoryWrite, RouteDecision, RunResult

__all__ = [
    "AgentMessageEvent",
    "Event",
    "GroupChatTurnEvent",
    "InterruptEvent",
    "MemoryRecalledEvent",
    "MemoryWrittenEvent",
    "ResultEvent",
    "RouteEvent",
    "ToolCallEvent",
    "event_from_custom",
]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)


class RouteEvent(_Event):
    type: Literal["route"] = "route"
    decision: RouteDecision


class ToolCallEvent(_Event):
    type: Literal["tool_call"] = "tool_call"
    agent: str
    tool: str
    arguments: dict[str, Any]
    result: str


class AgentMessageEvent(_Event):
    type: Literal["agent_message"] = "agent_message"
    agent: str
    content: str


class GroupChatTurnEvent(_Event):
    type: Literal["group_chat_turn"] = "group_chat_turn"
    speaker: str
    content: str


class MemoryRecalledEvent(_Event):
    type: Literal["memory_recalled"] = "memory_recalled"
    recall: MemoryRecall


class MemoryWrittenEvent(_Event):
    type: Literal["memory_written"] = "memory_written"
    written: MemoryWrite


class InterruptEvent(_Event):
    """The run paused for a human decision (then a ``ResultEvent`` with ``awaiting_approval``)."""

    type: Literal["interrupt"] = "interrupt"
    request: ApprovalRequest


class ResultEvent(_Event):
    type: Literal["result"] = "result"
    result: RunResult


Event = (
    MemoryRecalledEvent
    | RouteEvent
    | ToolCallEvent
    | AgentMessageEvent
    | GroupChatTurnEvent
    | MemoryWrittenEvent
    | InterruptEvent
    | ResultEvent
)


def event_from_custom(payload: Any) -> Event | None:
    """Turn a node's ``get_stream_writer()`` payload into a typed event."""
    if not isinstance(payload, dict):
        return None
    data = dict(payload)
    kind = data.pop("type", None)
    if kind == "route":
        return RouteEvent(decision=RouteDecision(**data))
    if kind == "tool_call":
        return ToolCallEvent(**data)
    if kind == "agent_message":
        return AgentMessageEvent(**data)
    if kind == "group_chat_turn":
        return GroupChatTurnEvent(**data)
    if kind == "memory_recalled":
        return MemoryRecalledEvent(recall=MemoryRecall(**data))
    if kind == "memory_written":
        return MemoryWrittenEvent(written=MemoryWrite(**data))
    return None
