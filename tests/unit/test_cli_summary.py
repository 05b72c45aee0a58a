"""The one-line memory summary the CLI prints after a run: each degraded layer with its first
sentence of reason."""

from __future__ import annotations

import pytest

from brainstack.cli import _layers


@pytest.mark.parametrize(
    ("degraded", "summary"),
    [
        (
            [
                "working: The Redis backend at redis://127.0.0.1:6390/0 cannot be reached "
                "(ConnectionError: Error 111 connecting to 127.0.0.1:6390. Connection refused.). "
                "Start it or fix BRAINSTACK_REDIS_URL."
            ],
            "working (The Redis backend at redis://127.0.0.1:6390/0 cannot be reached "
            "(ConnectionError: Error 111 connecting to 127.0.0.1:6390. Connection refused.))",
        ),
        (["episodic: Chroma failed. Check the folder.", "episodic: again."], "episodic (Chroma failed)"),
        (["skills: no reason given", "kb:"], "skills (no reason given) | kb"),
        (["working: unclosed (bracket. And more."], "working (unclosed (bracket. And more)"),
    ],
)
def test_each_layer_once_with_its_first_sentence_and_balanced_brackets(degraded, summary):
    """QA: the cut fell inside the quoted error's brackets, so the summary lost its ')'."""
    assert _layers(degraded) == summary
