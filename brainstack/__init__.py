"""brainstack: a LangGraph multi-agent runtime with an AutoGen group chat and layered memory.

>>> from brainstack import run                                  # doctest: +SKIP
>>> result = run("Should we launch a freemium tier?")           # doctest: +SKIP
>>> result.route.target, result.speakers                        # doctest: +SKIP
('group_chat', ['CTO', 'CMO', 'CFO'])
"""

from __future__ import annotations

import importlib
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brainstack.config import AgentsConfig, Settings
    from brainstack.errors import (
        BackendError,
        BrainstackError,
        ConfigurationError,
        InvalidTaskError,
        ModelError,
        ModelUnavailableError,
        RunError,
        ThreadBusyError,
        UnknownAgentError,
        UsageError,
    )
    from brainstack.events import Event
    from brainstack.results import (
        ChatTurn,
        Checkpoint,
        RouteDecision,
        RunResult,
        ThreadInfo,
        ToolCallRecord,
        Usage,
    )
    from brainstack.runtime import Runtime

# onnxruntime (1.32, on Linux too) posts usage telemetry to Microsoft a few seconds after a session
# starts unless this is set before it is imported; brainstack makes no outbound call on its own.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

# Exports resolve on first use, so `import brainstack` (and `brainstack --help`) stays fast.
_LAZY = {
    "AgentsConfig": "brainstack.config",
    "Settings": "brainstack.config",
    "BackendError": "brainstack.errors",
    "BrainstackError": "brainstack.errors",
    "ConfigurationError": "brainstack.errors",
    "InvalidTaskError": "brainstack.errors",
    "ModelError": "brainstack.errors",
    "ModelUnavailableError": "brainstack.errors",
    "RunError": "brainstack.errors",
    "ThreadBusyError": "brainstack.errors",
    "UnknownAgentError": "brainstack.errors",
    "UsageError": "brainstack.errors",
    "ChatTurn": "brainstack.results",
    "Checkpoint": "brainstack.results",
    "ThreadInfo": "brainstack.results",
    "RouteDecision": "brainstack.results",
    "RunResult": "brainstack.results",
    "ToolCallRecord": "brainstack.results",
    "Usage": "brainstack.results",
    "Runtime": "brainstack.runtime",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'brainstack' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
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


def run(
    task: str | None = None,
    *,
    user_id: str = "default",
    thread_id: str | None = None,
    agents: str | Path | AgentsConfig | None = None,
    agent: str | None = None,
    resume: Any = None,
) -> RunResult:
    """Run one task with settings from the environment (see :meth:`Runtime.run`).

    ``run(thread_id=T, resume="approve" | "reject" | {"edit": ...})`` continues a run that waits
    for approval; ``run(thread_id=T)`` continues one whose process stopped mid-run.
    """
    return _runtime(agents).run(task, user_id=user_id, thread_id=thread_id, agent=agent, resume=resume)


async def arun(
    task: str | None = None,
    *,
    user_id: str = "default",
    thread_id: str | None = None,
    agents: str | Path | AgentsConfig | None = None,
    agent: str | None = None,
    resume: Any = None,
) -> RunResult:
    """Async :func:`run`."""
    runtime = _runtime(agents)
    return await runtime.arun(task, user_id=user_id, thread_id=thread_id, agent=agent, resume=resume)


def stream(
    task: str | None = None,
    *,
    user_id: str = "default",
    thread_id: str | None = None,
    agents: str | Path | AgentsConfig | None = None,
    agent: str | None = None,
    resume: Any = None,
) -> Generator[Event, None, None]:
    """Like :func:`run`, yielding typed events as they happen; the last is the result."""
    runtime = _runtime(agents)
    return runtime.stream(task, user_id=user_id, thread_id=thread_id, agent=agent, resume=resume)


def astream(
    task: str | None = None,
    *,
    user_id: str = "default",
    thread_id: str | None = None,
    agents: str | Path | AgentsConfig | None = None,
    agent: str | None = None,
    resume: Any = None,
) -> AsyncGenerator[Event, None]:
    """Async :func:`stream`."""
    runtime = _runtime(agents)
    return runtime.astream(task, user_id=user_id, thread_id=thread_id, agent=agent, resume=resume)


def _runtime(agents: str | Path | AgentsConfig | None) -> Runtime:
    from brainstack.config import AgentsConfig, Settings
    from brainstack.runtime import Runtime, check_agents_argument

    check_agents_argument(agents)  # before the cache, which would raise TypeError on a list
    settings = Settings.from_env()
    if isinstance(agents, AgentsConfig):
        key: Any = ("config", agents.model_dump_json())
    else:  # an edited file is a new key, so it is read again (its old Runtime ages out)
        key = ("file", _stamp(agents if agents is not None else settings.agents_file))
    with _RUNTIMES_LOCK:
        runtime = _RUNTIMES.get((settings, key))
        if runtime is not None:
            _RUNTIMES.move_to_end((settings, key))
            return runtime
    built = Runtime(settings, agents=agents)  # outside the lock: it loads models
    with _RUNTIMES_LOCK:
        runtime = _RUNTIMES.setdefault((settings, key), built)
        while len(_RUNTIMES) > MAX_RUNTIMES:
            # Not closed: a caller may still be running on it (close would cancel that run). The
            # Runtime closes its loop and checkpointer when nothing holds it any more.
            _RUNTIMES.popitem(last=False)
    if runtime is not built:  # another thread built the same one first; nobody has this one
        built.close()
    return runtime


def _stamp(path: str | os.PathLike[str] | None) -> tuple[Any, ...] | None:
    """What tells an agents file's versions apart (``None``: the built-in one)."""
    if path is None:
        return None
    resolved = Path(path).expanduser().resolve()
    try:
        stat = resolved.stat()
    except OSError:
        return (str(resolved),)  # Runtime() names the problem
    return (str(resolved), stat.st_ino, stat.st_mtime_ns, stat.st_size)


MAX_RUNTIMES = 8
"""How many Runtimes the module-level functions keep (one per settings and agents file or
config: the router's example embeddings are computed once for each); the least recently used
beyond that is dropped (closed once no caller holds it)."""
_RUNTIMES: OrderedDict[tuple[Any, Any], Runtime] = OrderedDict()
_RUNTIMES_LOCK = threading.Lock()
