"""brainstack: a LangGraph multi-agent runtime with an AutoGen group chat and layered memory.

>>> from brainstack import run                                  # doctest: +SKIP
>>> result = run("Should we launch a freemium tier?")           # doctest: +SKIP
>>> result.route.target, result.speakers                        # doctest: +SKIP
('group_chat', ['CTO', 'CMO', 'CFO'])
"""

from __future__ import annotations

import functools
from pathlib import Path

from brainstack.config import AgentsConfig, Settings
from brainstack.errors import (
    BrainstackError,
    ConfigurationError,
    InvalidTaskError,
    ModelError,
    RunError,
    UnknownAgentError,
    UsageError,
)
from brainstack.results import ChatTurn, RouteDecision, RunResult, ToolCallRecord, Usage
from brainstack.runtime import Runtime

__all__ = [
    "AgentsConfig",
    "BrainstackError",
    "ChatTurn",
    "ConfigurationError",
    "InvalidTaskError",
    "ModelError",
    "RouteDecision",
    "RunError",
    "RunResult",
    "Runtime",
    "Settings",
    "ToolCallRecord",
    "UnknownAgentError",
    "Usage",
    "UsageError",
    "arun",
    "run",
]

AgentsArg = str | Path | AgentsConfig | None


def run(
    task: str,
    *,
    user_id: str = "default",
    thread_id: str | None = None,
    agents: AgentsArg = None,
    agent: str | None = None,
) -> RunResult:
    """Run one task with settings from the environment (see :class:`Runtime`)."""
    return _runtime(agents).run(task, user_id=user_id, thread_id=thread_id, agent=agent)


async def arun(
    task: str,
    *,
    user_id: str = "default",
    thread_id: str | None = None,
    agents: AgentsArg = None,
    agent: str | None = None,
) -> RunResult:
    """Async :func:`run`."""
    return await _runtime(agents).arun(task, user_id=user_id, thread_id=thread_id, agent=agent)


def _runtime(agents: AgentsArg) -> Runtime:
    settings = Settings.from_env()
    if isinstance(agents, AgentsConfig):
        return Runtime(settings, agents=agents)
    return _cached_runtime(settings, agents)


@functools.lru_cache(maxsize=8)
def _cached_runtime(settings: Settings, agents: str | Path | None) -> Runtime:
    # One Runtime per (settings, agents file): the router's example embeddings are computed once.
    return Runtime(settings, agents=agents)
