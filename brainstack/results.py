"""The typed values a run returns."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ChatTurn", "ReviewOutcome", "RouteDecision", "RunResult", "ToolCallRecord", "Usage"]


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RouteDecision(_Value):
    """Where a request went, who decided, and why."""

    target: str
    """A specialist's name, or ``group_chat``."""
    kind: Literal["specialist", "group_chat"]
    confidence: float = Field(ge=0, le=1)
    decided_by: Literal["semantic", "llm", "fallback", "caller"]
    reason: str


class ChatTurn(_Value):
    """One message of the group chat."""

    speaker: str
    content: str


class ToolCallRecord(_Value):
    """One tool call an agent made."""

    agent: str
    tool: str
    arguments: dict[str, Any]
    result: str


class Usage(_Value):
    """Tokens summed over every model call of the run."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    model_calls: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            model_calls=self.model_calls + other.model_calls,
        )


class ReviewOutcome(_Value):
    """What the review step concluded about the answer."""

    status: Literal["ok", "retried", "fallback", "failed"]
    attempts: int = 0
    notes: list[str] = Field(default_factory=list)


class RunResult(_Value):
    """Everything a finished run produced."""

    answer: str
    route: RouteDecision
    speakers: list[str]
    """The agents that spoke, in order."""
    transcript: list[ChatTurn] = Field(default_factory=list)
    """The group chat's messages (empty for a specialist run)."""
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    thread_id: str
    user_id: str
    model: str
    """Which provider answered: ``openai`` or ``offline``."""
    usage: Usage
    timings: dict[str, float]
    """Milliseconds spent in each graph node."""
    review: ReviewOutcome
