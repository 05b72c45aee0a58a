"""Review: accept the answer, or send the task back once, then to the default agent."""

from __future__ import annotations

import pytest

from brainstack.graphs.nodes import AfterReview, Review


@pytest.mark.parametrize(
    ("active", "attempts", "expected_next", "expected_status"),
    [
        ("marketing", 0, "specialist_marketing", "retried"),  # an agent name, sent to its node
        ("marketing", 1, "specialist_general", "fallback"),
        ("group_chat", 0, "group_chat", "retried"),
        ("group_chat", 1, "specialist_general", "fallback"),
        ("general", 0, "specialist_general", "retried"),
        ("general", 1, None, "failed"),  # the default agent itself came back empty: no loop
        ("general", 2, None, "failed"),
    ],
)
def test_an_empty_answer_goes_to_a_node_of_the_graph(active, attempts, expected_next, expected_status):
    update = Review("general")({"answer": "  ", "active_agent": active, "review": {"attempts": attempts}})
    review = update["review"]
    assert (review["next"], review["status"], review["attempts"]) == (
        expected_next,
        expected_status,
        attempts + 1,
    )
    assert AfterReview()({"review": review}) == (expected_next or "remember")


def test_an_answer_is_accepted_and_joins_the_conversation():
    update = Review("general")({"answer": " Ship it. ", "active_agent": "technical", "review": {}})
    assert update["answer"] == "Ship it."
    assert update["review"]["status"] == "ok" and update["review"]["next"] is None
    assert update["messages"][0].content == "Ship it." and update["messages"][0].name == "technical"
