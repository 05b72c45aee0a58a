"""What a thread's latest checkpoint says about its last run: finished, paused for approval,
failed on an error, or stopped part-way.

``threads list`` shows it for every thread, so it is read from the checkpoint tuple the listing
loads anyway, with no graph: ``StateSnapshot`` (``aget_state``) needs the compiled graph (its
models and memory) and reads the checkpoint again. The rules are LangGraph's own, applied to the
saved data:

- A task that recorded an ``__interrupt__`` write and no output is waiting for an answer
  (``langgraph.pregel._task_status``: a task is finished if and only if it has an output write).
  The only interrupt brainstack's graph raises is its approval request.
- A node is due while a channel that triggers it (``branch:to:<node>``, or ``__start__`` for
  the input) holds a value whose version the node has not seen (``_algo._triggers``; see
  :func:`~brainstack.graphs.stranded.missing_nodes`). A due node, or a task that finished without
  the checkpoint after its step, means the run stopped part-way: killed, stopped or closed.
  Continuing it goes on from there.
- A task that raised left an ``__error__`` write with the exception (its ``repr`` once saved;
  ``langgraph.pregel._runner.PregelRunner.commit``): the run failed there, and continuing it runs
  that task again. A cancelled task leaves one too, a ``CancelledError``: its run was stopped
  (closed, or its stream closed), it did not fail.
- Otherwise the last run has ended. Writes of the null task (a resume command sent to a finished
  thread, say) are input to a step that never ran, not a run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

__all__ = ["RunStatus", "cancelled", "due_nodes", "last_run", "run_error", "run_status"]

RunStatus = Literal["completed", "awaiting_approval", "failed", "unfinished"]

_NULL_TASK = "00000000-0000-0000-0000-000000000000"
_CONTROL = frozenset({"__interrupt__", "__resume__", "__error__", "__error_source_node__"})
_BRANCH = "branch:to:"
_START = "__start__"


def due_nodes(checkpoint: Mapping[str, Any]) -> list[str]:
    """The nodes ``checkpoint`` (a LangGraph ``Checkpoint`` dict) triggers and has not run yet,
    whichever graph reads it, sorted."""
    versions = checkpoint.get("channel_versions") or {}
    values = checkpoint.get("channel_values") or {}
    seen = checkpoint.get("versions_seen") or {}
    due = []
    for channel, version in versions.items():
        if channel == _START:
            node = _START
        elif channel.startswith(_BRANCH):
            node = channel.removeprefix(_BRANCH)
        else:
            continue
        if channel not in values:  # consumed: the step that ran the node cleared it
            continue
        last = (seen.get(node) or {}).get(channel)
        if last is None or version > last:
            due.append(node)
    return sorted(due)


def cancelled(error: object) -> bool:
    """Whether ``error``, the value of an ``__error__`` write (the exception, or its ``repr`` once
    saved: ``"CancelledError()"``), says the task was cancelled rather than failed."""
    name = error.partition("(")[0].strip() if isinstance(error, str) else type(error).__name__
    return name.rpartition(".")[2] == "CancelledError"


_THREAD = r"""(?:\\?'.*?\\?'|"[^"]*")"""
"""A thread id as the error names it (``repr``: ``'t1'``, or ``"it's"``), within the ``repr`` of
the error, where a message holding a double quote has its single quotes escaped (``\\'t1\\'``)."""
_ON_THREAD = re.compile(
    rf" (?:The run\\?'s progress is saved on thread {_THREAD}"
    rf"|Run again with thread {_THREAD} once it is back)\."
)
"""The sentences of a run error that name its thread (see :func:`brainstack.errors.translate`)."""


def run_error(pending_writes: Iterable[Any] | None, limit: int = 300) -> str | None:
    """Why the last run failed: the first error a task of it saved that is not a cancellation
    (``"ModelError('The model endpoint … answered HTTP 500 …')"``), without the sentence saying
    that its thread keeps its progress (it is said beside the thread), its first ``limit``
    characters; None when it did not fail."""
    for task_id, channel, value in pending_writes or ():
        if task_id != _NULL_TASK and channel == "__error__" and not cancelled(value):
            text = _ON_THREAD.sub("", " ".join((value if isinstance(value, str) else repr(value)).split()))
            return text if len(text) <= limit else text[: limit - 1] + "…"
    return None


def run_status(checkpoint: Mapping[str, Any], pending_writes: Iterable[Any] | None) -> RunStatus:
    """The status of the last run on a thread whose latest checkpoint is ``checkpoint`` with
    ``pending_writes`` (a ``CheckpointTuple``'s two fields)."""
    interrupted: set[str] = set()
    finished: set[str] = set()
    failed = False
    for task_id, channel, value in pending_writes or ():
        if task_id == _NULL_TASK:
            continue
        if channel == "__interrupt__":
            interrupted.add(task_id)
        elif channel == "__error__":
            failed = failed or not cancelled(value)
        elif channel not in _CONTROL:
            finished.add(task_id)  # (a failed task may have saved part of its writes: failed wins)
    if interrupted - finished:
        return "awaiting_approval"
    if failed:
        return "failed"
    if finished or due_nodes(checkpoint):
        return "unfinished"
    return "completed"


def last_run(checkpoint: Mapping[str, Any], pending_writes: Iterable[Any] | None) -> dict[str, Any]:
    """:func:`run_status` and, for a failed run, :func:`run_error`, as ``ThreadInfo``'s
    ``status`` and ``error``."""
    status = run_status(checkpoint, pending_writes)
    return {"status": status, "error": run_error(pending_writes) if status == "failed" else None}
