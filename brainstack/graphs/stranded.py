"""Runs stranded by a graph change: a thread's checkpoint waits for a node the graph lacks.

A thread started with one agents file (say, one adding a ``legal`` specialist) and stopped inside
``specialist_legal`` keeps that node as its next step. LangGraph computes
``StateSnapshot.next`` from the compiled graph's own nodes, so read with a graph that has no such
node the run looks finished: ``next`` is empty and continuing it does nothing. The checkpoint
itself still says what is due: a StateGraph triggers node ``X`` by writing the channel
``branch:to:X``, and ``X`` is due while that channel holds a value whose version ``X`` has not seen
(``versions_seen``; the rule LangGraph applies in ``langgraph.pregel._algo._triggers``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

__all__ = ["missing_nodes", "missing_nodes_at", "stranded_message"]

_BRANCH = "branch:to:"


def missing_nodes(checkpoint: Any, nodes: Collection[str]) -> list[str]:
    """The nodes ``checkpoint`` (a LangGraph ``Checkpoint`` dict) would run next that are not in
    ``nodes`` (the graph's node names), sorted; empty when the graph has every due node."""
    versions = checkpoint.get("channel_versions") or {}
    values = checkpoint.get("channel_values") or {}
    seen = checkpoint.get("versions_seen") or {}
    due = []
    for channel, version in versions.items():
        if not channel.startswith(_BRANCH) or channel not in values:
            continue
        node = channel.removeprefix(_BRANCH)
        if node in nodes:
            continue  # the graph has it: StateSnapshot.next already says whether it is due
        last = (seen.get(node) or {}).get(channel)
        if last is None or version > last:
            due.append(node)
    return sorted(due)


async def missing_nodes_at(compiled: Any, config: Any) -> list[str]:
    """:func:`missing_nodes` of the checkpoint ``config`` names (the thread's last one without a
    ``checkpoint_id``) for ``compiled``, a graph compiled with a checkpointer."""
    saved = await compiled.checkpointer.aget_tuple(config)
    return [] if saved is None else missing_nodes(saved.checkpoint, compiled.nodes)


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
