"""parse_resume: the answers a paused run accepts, and the ones it refuses with the accepted forms."""

from __future__ import annotations

import pytest

from brainstack.approval import parse_resume


@pytest.mark.parametrize(
    ("value", "decision"),
    [
        ("approve", ("approved", "")),
        (" Yes ", ("approved", "")),
        ({"approve": True}, ("approved", "")),
        ({"approve": None}, ("approved", "")),
        ("no", ("rejected", "")),
        ({"reject": " too risky "}, ("rejected", "too risky")),
        ({"reject": None}, ("rejected", "")),
        ({"edit": " Launch in May.\fThen review. "}, ("edited", "Launch in May.\nThen review.")),
    ],
)
def test_accepted_answers(value, decision):
    assert parse_resume(value) == decision


@pytest.mark.parametrize(
    "value",
    [
        {"approve": False},
        {"approve": "no, reject this"},
        {"approve": 0},
        {"edit": "Launch.\x00"},
        {"edit": "\x1b[2J Launch."},
        {"reject": "why\x07"},
        {"edit": "x" * 20_001},
        {"edit": "bad \udcff bytes"},
        "maybe",
        {"edit": "   "},
        None,
    ],
)
def test_refused_answers_name_the_accepted_forms(value):
    with pytest.raises(ValueError, match=r"is not a decision|the (edited answer|reason)"):
        parse_resume(value)
