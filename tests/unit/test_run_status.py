"""What a saved checkpoint's pending writes say about the last run, with no graph."""

from __future__ import annotations

import asyncio

import pytest

# The route node ran and triggered ``a``, which has not finished: the run stopped before or in ``a``.
DUE = {"channel_versions": {"branch:to:a": 2}, "channel_values": {"branch:to:a": None}, "versions_seen": {}}
ENDED = {"channel_versions": {"answer": 3}, "channel_values": {"answer": "4"}, "versions_seen": {}}


@pytest.mark.parametrize(
    ("checkpoint", "writes", "status"),
    [
        (ENDED, [], "completed"),
        (DUE, [], "unfinished"),  # killed: nothing saved of the step
        (DUE, [("t1", "__error__", "OpenAIAPIError('Error code: 500 - boom')")], "failed"),
        (DUE, [("t1", "__error__", ValueError("bad"))], "failed"),  # not yet serialized
        (DUE, [("t1", "x", 1), ("t1", "__error__", "ValueError('bad')")], "failed"),  # part written
        (DUE, [("t1", "__error__", "CancelledError()")], "unfinished"),  # stopped, not failed
        (DUE, [("t1", "__error__", asyncio.CancelledError())], "unfinished"),
        (DUE, [("t1", "__error__", "ValueError('a CancelledError()')")], "failed"),  # (its message)
        (DUE, [("t1", "__interrupt__", [{"value": "?"}])], "awaiting_approval"),
        (ENDED, [("00000000-0000-0000-0000-000000000000", "__error__", "ValueError('x')")], "completed"),
    ],
)
def test_the_pending_writes_tell_a_failed_run_from_a_stopped_one(checkpoint, writes, status):
    from brainstack.graphs.status import run_status

    assert run_status(checkpoint, writes) == status


@pytest.mark.parametrize(
    ("writes", "error"),
    [
        (
            [("t1", "__error__", "OpenAIAPIError('Error code: 500 - boom')")],
            "OpenAIAPIError('Error code: 500 - boom')",
        ),
        ([("t1", "__error__", ValueError("bad\n  input"))], "ValueError('bad\\n input')"),  # one line
        ([("t1", "__error__", "CancelledError()"), ("t2", "__error__", "KeyError('k')")], "KeyError('k')"),
        ([("t1", "__error__", "CancelledError()")], None),  # stopped, not failed
        ([("00000000-0000-0000-0000-000000000000", "__error__", "ValueError('x')")], None),
        ([("t1", "answer", "4")], None),
    ],
)
def test_the_error_a_failed_run_saved_is_its_reason(writes, error):
    from brainstack.graphs.status import run_error

    assert run_error(writes) == error


def test_a_long_error_is_cut_to_its_limit():
    from brainstack.graphs.status import run_error

    reason = run_error([("t1", "__error__", "RunError('" + "x" * 1000 + "')")])
    assert reason is not None and len(reason) == 300 and reason.endswith("…")


def test_the_sentence_naming_the_thread_is_left_out():
    """The listing shows the error under the thread's row: a group chat's failure repeated
    "The run's progress is saved on thread 'fail2'" inside a 330-character line (QA)."""
    from brainstack.errors import translate
    from brainstack.graphs.status import run_error

    for cause in (RuntimeError("boom"), ConnectionError("refused")):
        error = translate(cause, thread_id="fail2", backend="chromadb")
        assert "'fail2'" in str(error)
        reason = run_error([("t1", "__error__", repr(error))])
        assert reason is not None and "fail2" not in reason and reason.startswith(type(error).__name__)


def test_the_sentence_naming_the_thread_is_left_out_however_the_error_is_quoted():
    """A message holding a double quote (an endpoint's JSON body) is saved in a ``repr`` that
    escapes its single quotes (``run\\'s``), and a thread id holding one is named in double
    quotes: the sentence stayed in both."""
    from brainstack.errors import ModelError, translate
    from brainstack.graphs.status import run_error

    errors = [
        translate(RuntimeError('upstream said "overloaded"'), thread_id="fail2"),
        translate(ModelError('HTTP 500: {"error": "overloaded"}'), thread_id="fail2"),
        translate(RuntimeError("boom"), thread_id="ada's"),
        translate(ConnectionError('refused "x"'), thread_id="ada's", backend="chromadb"),
    ]
    for error in errors:
        if isinstance(error, ModelError):  # (already a brainstack error: its message as made)
            error = ModelError(f"{error} The run's progress is saved on thread 'fail2'.")
        assert "fail2" in repr(error) or "ada" in repr(error)
        reason = run_error([("t1", "__error__", repr(error))])
        assert reason is not None and "fail2" not in reason and "ada" not in reason, reason
