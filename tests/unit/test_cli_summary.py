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


def test_history_lines_keep_their_columns_when_a_step_is_not_in_the_graph():
    """A new user's audit: "approve (not in this graph)" overflowed its column, so that line's
    time and task stood further right than the others'."""
    from brainstack.cli import _history_lines
    from brainstack.results import Checkpoint

    def checkpoint(step: int, next_: list[str], missing: tuple[str, ...] = ()) -> Checkpoint:
        return Checkpoint(
            checkpoint_id=f"id-{step}",
            step=step,
            created_at="2026-11-25T06:04:43.123+00:00",
            next=next_,
            missing=list(missing),
            task="Should we launch?",
        )

    lines = _history_lines([checkpoint(5, ["remember"]), checkpoint(4, [], ("approve",)), checkpoint(3, [])])
    assert [line.index("2026-11-25T06:04:43") for line in lines] == [lines[0].index("2026")] * 3, lines
    assert "next: approve (not in this graph) 2026" in lines[1]
    assert "next: (end of run)" in lines[2]


# -- kb add's progress inside a big file -----------------------------------------------------------


def test_a_big_file_shows_its_chunks_every_two_seconds(capsys):
    from brainstack.cli import _ChunkProgress

    now = [100.0]
    progress = _ChunkProgress(clock=lambda: now[0])
    for at, stored in ((100.5, 64), (102.1, 128), (103.0, 192), (104.2, 256), (106.5, 300)):
        now[0] = at
        progress("/kb/big.md", stored, 300)
    assert capsys.readouterr().err.splitlines() == [
        "  embedding /kb/big.md (128 of 300 chunks)",
        "  embedding /kb/big.md (256 of 300 chunks)",  # not the last: its "added" line follows
    ]
    now[0] = 110.0
    progress.start()  # the next file
    now[0] = 111.0
    progress("/kb/small.md", 64, 128)
    assert capsys.readouterr().err == ""


def test_a_tool_call_shows_its_result_on_one_line():
    """A knowledge_search result is whole passages: the progress shows its first line and how
    much more the agent got."""
    import io

    from brainstack.cli import _show
    from brainstack.events import ToolCallEvent

    def shown(result: str) -> str:
        out = io.StringIO()
        _show(
            ToolCallEvent(agent="finance", tool="knowledge_search", arguments={"query": "q"}, result=result),
            out,
        )
        return out.getvalue()

    passages = (
        "[1] /kb/revenue.md (chunk 0, similarity 0.62)\nAnnual plans...\n\n"
        "[2] /kb/b.md (chunk 1, similarity 0.5)\nB"
    )
    assert shown(passages) == (
        "  · finance called knowledge_search(query='q') → [1] /kb/revenue.md (chunk 0, similarity 0.62)"
        " … (3 more lines)\n"
    )
    assert shown("409.5") == "  · finance called knowledge_search(query='q') → 409.5\n"
    assert shown("x" * 500).endswith("x…\n") and len(shown("x" * 500)) < 250
