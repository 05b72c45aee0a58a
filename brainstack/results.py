"""The typed values a run returns."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Approval",
    "ApprovalRequest",
    "ChatTurn",
    "Checkpoint",
    "MemoryRecall",
    "MemoryWrite",
    "RecalledEpisode",
    "RecalledPassage",
    "RecalledSkill",
    "ReviewOutcome",
    "RouteDecision",
    "RunResult",
    "ThreadInfo",
    "ThreadStatus",
    "ToolCallRecord",
    "Usage",
]


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
    checks: list[dict[str, Any]] = Field(default_factory=list)
    """Outcomes of recalled skills' checks on the answer (``skill``, ``check``, ``passed``)."""


class RecalledEpisode(_Value):
    """An earlier episode the run was reminded of."""

    id: str
    text: str
    score: float
    thread_id: str | None = None
    route: str | None = None


class RecalledPassage(_Value):
    """A knowledge-base passage, with the file it comes from."""

    source: str
    text: str
    score: float


class RecalledSkill(_Value):
    """A procedural skill that matched the task, as the agent was given it."""

    name: str
    score: float
    success_count: int = 0
    source: str = "builtin"
    instructions: str = ""
    """The steps as the agent was given them (tool steps already run, with their results)."""
    checks: list[dict[str, Any]] = Field(default_factory=list)
    """The skill's check steps (``text``, ``contains``, ``min_chars``), applied by review."""


class MemoryRecall(_Value):
    """What the memory layers contributed to a run (before routing)."""

    episodes: list[RecalledEpisode] = Field(default_factory=list)
    passages: list[RecalledPassage] = Field(default_factory=list)
    skills: list[RecalledSkill] = Field(default_factory=list)
    preferences: dict[str, Any] = Field(default_factory=dict)
    """The user's working memory (stated preferences and other per-user facts)."""
    session: dict[str, Any] = Field(default_factory=dict)
    """The thread's working memory (session facts)."""
    history_messages: int = 0
    """Earlier messages of the thread given to a specialist (the sensory buffer); the group
    chat's brief takes at most the last 4 of them."""
    tokens: int = 0
    """Estimated tokens the recalled context adds to the prompt."""
    timings: dict[str, float] = Field(default_factory=dict)
    """Milliseconds per layer."""
    degraded: list[str] = Field(default_factory=list)
    """Layers that could not be used, and why; the run went on without them."""

    @property
    def empty(self) -> bool:
        return not (self.episodes or self.passages or self.skills or self.preferences or self.session)


class MemoryWrite(_Value):
    """What the run left in memory (after review)."""

    episode_id: str | None = None
    skill: str | None = None
    skill_created: bool = False
    preferences: dict[str, Any] = Field(default_factory=dict)
    """Preferences stated in this task and stored for the user."""
    session: dict[str, Any] = Field(default_factory=dict)
    degraded: list[str] = Field(default_factory=list)


class Checkpoint(_Value):
    """One saved step of a thread (see ``Runtime.history``)."""

    checkpoint_id: str
    step: int
    """The graph step within its run (-1 is the input)."""
    created_at: str
    next: list[str]
    """The nodes that run next from here (empty at the end of a run)."""
    missing: list[str] = Field(default_factory=list)
    """Nodes due next from here that the reading Runtime's graph does not have: the thread ran
    with another agents file or other settings (``next`` lists only the graph's own nodes)."""
    task: str | None = None
    route: str | None = None
    answer: str | None = None
    user_id: str | None = None
    """The user whose run wrote it."""


ThreadStatus = Literal["completed", "running", "awaiting_approval", "failed", "unfinished"]
"""What a thread's last run is doing (:attr:`ThreadInfo.status`)."""


class ThreadInfo(_Value):
    """One thread, as ``Runtime.threads`` lists it (a user's runs on it, or all of them)."""

    thread_id: str
    user_id: str | None = None
    """The user of the newest listed checkpoint's run."""
    checkpoints: int
    """How many checkpoints it has of the listed user's runs (all of them when listing every
    thread); ``Runtime.prune_thread`` keeps one."""
    updated_at: str
    """When the newest of them was written (ISO 8601, UTC)."""
    last_task: str | None = None
    """The task of that checkpoint's run (its first 200 characters)."""
    status: ThreadStatus
    """What the thread's last run (by any user) is doing, from its latest checkpoint:
    ``completed`` (it ended), ``awaiting_approval`` (paused for a human decision: ``resume`` with
    ``--approve|--reject|--edit``), ``running`` (under way: a process holds the thread's lease),
    ``failed`` (ended on an error, which the run raised as its ``RunError``: ``resume`` runs the
    step that failed again, once its cause is fixed) or ``unfinished`` (stopped part-way without
    an error and nobody runs it: killed, stopped or closed; ``resume`` goes on from its last
    checkpoint). A ``failed`` or ``unfinished`` thread refuses new tasks until it is continued."""
    error: str | None = None
    """For a ``failed`` thread, why: the error its last run saved, as the checkpoint holds it (the
    exception's type and message, at most 300 characters)."""


class ApprovalRequest(_Value):
    """What a paused run asks a human to decide (the interrupt's value)."""

    question: str
    route: str | None = None
    answer: str
    """The answer that waits for approval."""
    speakers: list[str] = Field(default_factory=list)
    thread_id: str | None = None
    options: str = ""
    """The accepted answers to ``resume``."""
    problem: str = ""
    """Why the previous answer to this request was not understood, if it was not."""
    type: Literal["approval"] = "approval"


class Approval(_Value):
    """A human's decision on the run's answer."""

    status: Literal["pending", "approved", "rejected", "edited"]
    proposed: str
    """The answer the agents proposed."""
    note: str = ""
    """The edited answer or the reason for rejecting."""
    request: ApprovalRequest | None = None
    """While pending: what is being decided."""


class RunResult(_Value):
    """Everything a finished (or paused) run produced."""

    answer: str
    """The final answer; while ``status`` is ``awaiting_approval``, the proposed one."""
    route: RouteDecision
    speakers: list[str]
    """The agents that spoke, in order."""
    transcript: list[ChatTurn] = Field(default_factory=list)
    """The group chat's messages (empty for a specialist run)."""
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    thread_id: str
    user_id: str
    model: str
    """Which provider answered: ``openai``, ``local`` (llama.cpp on loopback) or ``offline``."""
    usage: Usage
    timings: dict[str, float]
    """Milliseconds spent in each graph node."""
    review: ReviewOutcome
    memory: MemoryRecall = Field(default_factory=MemoryRecall)
    """What was recalled before routing."""
    remembered: MemoryWrite = Field(default_factory=MemoryWrite)
    """What was written to memory after the answer."""
    status: Literal["completed", "awaiting_approval"] = "completed"
    """``awaiting_approval``: the run is paused; continue it with ``run(thread_id=…, resume=…)``."""
    approval: Approval | None = None
    """The human decision, when the route needed one."""
