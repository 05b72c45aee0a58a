"""Runs stranded by a graph change: a thread's checkpoint waits for a node the graph lacks.

A thread started with one agents file (say, one adding a ``legal`` specialist) and stopped inside
``specialist_legal`` keeps that node as its next step. LangGraph computes
``StateSnapshot.next`` from the compiled graph's own nodes, so read with a graph that has no such
node the run looks finished: ``next`` is empty and continuing it does nothing. The checkpoint
itself still says what is due: a StateGraph triggers node ``X`` by writing the channel
``branch:to:X``, and ``X`` is due while that channel holds a value whose version ``X`` has not seen
(``versions_seen``; the rule LangGraph applies in ``langgraph.pregel._algo._triggers``). A step
cut short after one of its tasks finished keeps that task's writes as pending writes, and those can
trigger a node the graph lacks too.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

__all__ = ["cut_short", "missing_nodes", "missing_nodes_at", "pending_missing_nodes", "stranded_message"]

_BRANCH = "branch:to:"


def missing_nodes(checkpoint: Any, nodes: Collection[str]) -> list[str]:
    """The nodes ``checkpoint`` (a LangGraph ``Checkpoint`` dict) would run next that are not in
    ``nodes`` (the graph's node names), sorted; empty when the graph has every due node."""
    from brainstack.graphs.status import due_nodes

    return [node for node in due_nodes(checkpoint) if node not in nodes]


async def missing_nodes_at(compiled: Any, config: Any) -> list[str]:
    """:func:`missing_nodes` of the checkpoint ``config`` names (the thread's last one without a
    ``checkpoint_id``) for ``compiled``, a graph compiled with a checkpointer, and the nodes it lacks
    that the checkpoint's pending writes trigger (see :func:`pending_missing_nodes`)."""
    saved = await compiled.checkpointer.aget_tuple(config)
    if saved is None:
        return []
    due = missing_nodes(saved.checkpoint, compiled.nodes)
    return sorted({*due, *pending_missing_nodes(saved.pending_writes or (), compiled.nodes)})


def pending_missing_nodes(pending_writes: Any, nodes: Collection[str]) -> list[str]:
    """The nodes not in ``nodes`` that a step cut short would trigger: a task of the step that
    finished (the route, say) had its writes saved as the checkpoint's pending writes, and the run
    goes on by applying them, not by running the task again. A write to ``branch:to:X`` there
    makes ``X`` the next node; a graph without ``X`` drops that write ("wrote to unknown channel")
    and ends the run with no answer."""
    return sorted(
        {
            channel.removeprefix(_BRANCH)
            for _task, channel, _value in pending_writes
            if isinstance(channel, str)
            and channel.startswith(_BRANCH)
            and channel.removeprefix(_BRANCH) not in nodes
        }
    )


def cut_short(pending_writes: Any, tasks: Mapping[str, str], builder: Any) -> list[str]:
    """The tasks (``tasks``: task id → node name) that were cancelled while their writes were being
    made (the caller stopped reading the run, or cancelled it), by node name, sorted.

    LangGraph saves a cancelled task's writes so far with the error, and later applies them as if
    the task had finished. A task cancelled after its state update but before its edge's
    ``branch:to:`` write thus looks done, and the run goes nowhere from it: it ends with no answer.
    Such a task of ``builder`` (the ``StateGraph``) that has a node after it must run again.
    """
    from brainstack.graphs.status import cancelled as was_cancelled

    cancelled: set[str] = set()
    written: dict[str, list[str]] = {}
    for task_id, channel, value in pending_writes:
        if channel == "__error__":
            if was_cancelled(value):
                cancelled.add(task_id)
        elif not channel.startswith("__"):
            written.setdefault(task_id, []).append(channel)
    followed = set(builder.branches) | {start for start, end in builder.edges if end != "__end__"}
    return sorted(
        tasks[task_id]
        for task_id in cancelled
        if tasks.get(task_id) in followed
        and written.get(task_id)
        and not any(channel.startswith(_BRANCH) for channel in written[task_id])
    )


def stranded_message(thread_id: str, nodes: Sequence[str]) -> str:
    """Why a thread's run cannot go on with this graph, and what to do about it."""
    if list(nodes) == ["approve"]:  # the graph has an approve node whenever approval is on
        return (
            f"Thread {thread_id!r} is waiting for approval, which the current settings turn off; "
            "answer it with approval on, as it ran: BRAINSTACK_APPROVAL=1 (Python: "
            "Settings(approval=True))."
        )
    which = "node " if len(nodes) == 1 else "nodes "
    which += ", ".join(repr(node) for node in nodes)
    if all(node.startswith("specialist_") for node in nodes):
        why = (
            "which the current agents file does not define; pass the agents file it ran with: "
            "--agents FILE (or BRAINSTACK_AGENTS_FILE; Python: Runtime(agents=FILE))"
        )
    else:
        why = (
            "which the current graph does not have; continue it with the agents file and settings it "
            "ran with (--agents FILE, BRAINSTACK_MEMORY, BRAINSTACK_APPROVAL)"
        )
    return f"Thread {thread_id!r} stopped before {which}, {why}."
