"""The CLI's one-line errors: `BRAINSTACK_DEBUG`'s tracebacks on demand, refusals in its own words."""

from __future__ import annotations

import pytest

from brainstack import cli
from brainstack.errors import ModelError


@pytest.fixture
def failing_doctor(monkeypatch):
    """`brainstack doctor` raising ``error`` (in-process; no logging handler left behind)."""
    monkeypatch.setattr(cli, "_show_progress_logs", lambda: None)

    def fail_with(error: Exception) -> None:
        def doctor(args):
            raise error

        monkeypatch.setattr(cli, "_doctor", doctor)

    return fail_with


def translated() -> ModelError:
    try:
        raise IndexError("list index out of range")
    except IndexError as cause:
        try:
            raise ModelError("The model answered badly. BRAINSTACK_DEBUG=1 shows where it failed.") from cause
        except ModelError as error:
            return error


def test_debug_shows_where_a_translated_error_came_from(failing_doctor, monkeypatch, capsys):
    # The hint "BRAINSTACK_DEBUG=1 shows where it failed" showed nothing: only untranslated
    # exceptions had their traceback shown (a new user's audit).
    failing_doctor(translated())
    monkeypatch.setenv("BRAINSTACK_DEBUG", "1")
    assert cli.main(["doctor"]) == cli.EXIT_RUN
    err = capsys.readouterr().err
    assert "Traceback" in err and "IndexError: list index out of range" in err
    assert err.splitlines()[-1].startswith("brainstack: The model answered badly.")


@pytest.mark.parametrize("value", [None, "0", "false", ""])
def test_without_debug_an_error_is_one_line(failing_doctor, monkeypatch, capsys, value):
    # BRAINSTACK_DEBUG=0 read as on: any value but empty showed the traceback
    if value is not None:
        monkeypatch.setenv("BRAINSTACK_DEBUG", value)
    for error in (translated(), RuntimeError("a bug")):
        failing_doctor(error)
        assert cli.main(["doctor"]) == cli.EXIT_RUN
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("brainstack: "), lines


def test_debug_raises_an_untranslated_error(failing_doctor, monkeypatch):
    failing_doctor(RuntimeError("a bug"))
    monkeypatch.setenv("BRAINSTACK_DEBUG", "yes")
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["doctor"])


def test_an_empty_edit_is_refused_in_the_cli_s_own_words(monkeypatch, capsys, tmp_path, cache_dir):
    """`brainstack resume --edit ""` answered with the Python form of the decision
    ("{'edit': ''} is not a decision"), after loading the models."""
    monkeypatch.setattr(cli, "_show_progress_logs", lambda: None)
    monkeypatch.setenv("BRAINSTACK_HOME", str(tmp_path))  # (where a resume would look, unrefused)
    monkeypatch.setenv("BRAINSTACK_CACHE_DIR", str(cache_dir))
    assert cli.main(["resume", "--thread", "t1", "--edit", "  "]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("brainstack: --edit needs the corrected answer") and "{" not in err
