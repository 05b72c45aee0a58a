"""The README's code examples run as written (a reader copies them): the quickstart's first runs
from Python, and the replay example (its cassette and its test)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import brainstack

README = (Path(__file__).parents[2] / "README.md").read_text("utf-8")


def block(language: str, containing: str) -> str:
    """The README's one ```language block that contains ``containing``."""
    found = [b for b in re.findall(rf"```{language}\n(.*?)```", README, re.S) if containing in b]
    assert len(found) == 1, f"{len(found)} ```{language} blocks contain {containing!r}"
    return found[0]


@pytest.fixture
def environment(monkeypatch, tmp_path, cache_dir):
    """The README's reader: settings from the environment, state in tmp_path, no Runtime cached."""
    monkeypatch.setenv("BRAINSTACK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BRAINSTACK_CACHE_DIR", str(cache_dir))
    monkeypatch.setattr(brainstack, "_RUNTIMES", type(brainstack._RUNTIMES)())
    yield
    for runtime in brainstack._RUNTIMES.values():
        runtime.close()


def test_the_first_runs_from_python_run_as_written(environment):
    # Up to the Runtime built with model="gpt-4o" and "my_agents.yaml", which the reader supplies.
    # The follow-up, on a thread user "ada" ran, was refused without her user id (a new user's audit).
    example = block("python", "from brainstack import run, Runtime, Settings")
    runnable = example[: example.index("\nruntime = Runtime(")]
    names: dict[str, object] = {}
    exec(compile(runnable, "README.md", "exec"), names)
    result, follow_up = names["result"], names["follow_up"]
    assert result.speakers == ["CTO", "CMO", "CFO"]  # as the README shows
    assert follow_up.thread_id == result.thread_id and follow_up.user_id == "ada"


def test_the_replay_example_runs_as_written(environment, tmp_path):
    cassette = block("yaml", "interactions:")
    assert cassette.startswith("# tests/replay/cassettes/tool_call.yaml")
    (tmp_path / "cassettes").mkdir()
    (tmp_path / "cassettes" / "tool_call.yaml").write_text(cassette, "utf-8")
    names: dict[str, object] = {"__file__": str(tmp_path / "test_example.py")}
    exec(compile(block("python", "def test_tool_call"), "README.md", "exec"), names)
    names["test_tool_call"](tmp_path / "state")  # type: ignore[operator]
