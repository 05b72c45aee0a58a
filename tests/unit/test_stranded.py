"""missing_nodes: which due nodes of a checkpoint a graph lacks (LangGraph's trigger rule); cut_short: which
cancelled tasks left a partial result."""

from __future__ import annotations

import asyncio

import pytest

from brainstack.graphs.stranded import missing_nodes, stranded_message

V1, V2, V3 = (f"{n:032}.0.5" for n in (1, 2, 3))


def checkpoint(versions, seen, values=None):
    return {
        "channel_versions": versions,
        "versions_seen": seen,
        "channel_values": {k: None for k in versions} if values is None else values,
    }


def test_a_due_node_the_graph_lacks_is_missing():
    saved = checkpoint(
        {"branch:to:route": V2, "branch:to:specialist_legal": V3}, {"route": {"branch:to:route": V2}}
    )
    assert missing_nodes(saved, {"route", "review"}) == ["specialist_legal"]
    assert missing_nodes(saved, {"route", "specialist_legal"}) == []  # the graph has it: not missing


def test_a_node_that_already_ran_or_whose_trigger_is_spent_is_not_due():
    ran = checkpoint(
        {"branch:to:specialist_legal": V2}, {"specialist_legal": {"branch:to:specialist_legal": V2}}
    )
    assert missing_nodes(ran, {"route"}) == []
    retriggered = checkpoint(
        {"branch:to:specialist_legal": V3}, {"specialist_legal": {"branch:to:specialist_legal": V2}}
    )
    assert missing_nodes(retriggered, {"route"}) == ["specialist_legal"]
    spent = checkpoint({"branch:to:specialist_legal": V3}, {}, values={})  # no value left in the channel
    assert missing_nodes(spent, {"route"}) == []
    assert missing_nodes(checkpoint({"messages": V1, "join:a+b:c": V1}, {}), set()) == []


def test_the_message_says_which_file_to_pass():
    message = stranded_message("t1", ["specialist_legal"])
    assert message.startswith("Thread 't1' stopped before node 'specialist_legal', which the current agents")
    assert "--agents FILE" in message
    assert "settings it ran with" in stranded_message("t1", ["remember"])  # BRAINSTACK_MEMORY=0 now


def test_a_run_waiting_for_approval_says_to_turn_approval_on():
    # `brainstack run` prints "Continue with: brainstack resume --thread T --approve"; in a shell
    # where BRAINSTACK_APPROVAL=1 was set only for that run, the resume must say what is missing.
    message = stranded_message("t1", ["approve"])
    assert message.startswith("Thread 't1' is waiting for approval, which the current settings turn off")
    assert "BRAINSTACK_APPROVAL=1" in message and "Settings(approval=True)" in message


def _builder():
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        x: int

    builder = StateGraph(State)
    for name in ("a", "b", "c"):
        builder.add_node(name, lambda state: {"x": 1})
    builder.add_edge(START, "a")
    builder.add_conditional_edges("a", lambda state: "b", ["b"])
    builder.add_edge("b", "c")
    builder.add_edge("c", END)
    return builder


@pytest.mark.parametrize(
    ("writes", "cut"),
    [
        ([("t1", "x", 1), ("t1", "__error__", "CancelledError()")], ["a"]),  # the edge's write is missing
        ([("t1", "x", 1), ("t1", "__error__", asyncio.CancelledError())], ["a"]),  # not yet serialized
        ([("t1", "x", 1), ("t1", "branch:to:b", None), ("t1", "__error__", "CancelledError()")], []),
        ([("t1", "__error__", "CancelledError()")], []),  # nothing written: LangGraph runs it again
        ([("t1", "x", 1), ("t1", "__error__", "ValueError('bad')")], []),  # failed, not cancelled
        ([("t1", "x", 1), ("t1", "__error__", "ValueError('CancelledError()')")], []),  # (its message)
        ([("t1", "x", 1)], []),  # finished
        ([("t3", "x", 1), ("t3", "__error__", "CancelledError()")], []),  # c: nothing after it to lose
    ],
)
def test_cut_short_finds_a_cancelled_task_whose_edge_was_never_written(writes, cut):
    from brainstack.graphs.stranded import cut_short

    assert cut_short(writes, {"t1": "a", "t3": "c"}, _builder()) == cut


def test_pending_writes_to_a_node_the_graph_lacks_make_it_due():
    from brainstack.graphs.stranded import pending_missing_nodes

    writes = [("t1", "route", {}), ("t1", "branch:to:specialist_legal", None), ("t1", "branch:to:x", None)]
    assert pending_missing_nodes(writes, {"route", "x"}) == ["specialist_legal"]
    assert pending_missing_nodes(writes, {"route", "x", "specialist_legal"}) == []
