"""`brainstack memory forget` asks first, and a layer that is down does not stop the others;
`brainstack skills forget` asks first too."""

from __future__ import annotations

import argparse
import sys
import types

from brainstack import cli


class Down:
    def count(self, user):
        raise ConnectionError("Chroma is down")

    def forget(self, user):
        raise ConnectionError("Chroma is down")


class Working:
    def clear(self, scope, user):
        return 2


def test_the_confirmation_is_asked_when_episodic_memory_is_down(monkeypatch, capsys):
    asked = []
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or "y")
    gateway = types.SimpleNamespace(episodes=Down(), working=Working())
    code = cli._forget(gateway, argparse.Namespace(user="ada", yes=False), threads_of=lambda user: [])
    assert asked == [
        "Delete the episodes (episodic memory is not answering) and the working memory of user 'ada'? [y/N] "
    ]
    out, err = capsys.readouterr()
    assert out == "Forgot user 'ada': 2 working-memory key(s).\n"
    assert "episodic memory not deleted" in err and code == cli.EXIT_RUN


def test_skills_forget_asks_first_and_keeps_the_skill_on_no(monkeypatch, capsys, tmp_path, embedder):
    from brainstack.memory.skills import Skill, SkillStore

    store = SkillStore(tmp_path / "skills", embedder=embedder)
    skill = Skill.model_validate(
        {
            "name": "offsite-planning",
            "description": "Plan an offsite.",
            "when_to_use": ["Plan the offsite."],
            "steps": [{"kind": "prompt", "text": "List the attendees."}],
            "provenance": {"source": "learned"},
        }
    )
    store.save(skill)
    store.record_success("offsite-planning", "t1")
    asked = []
    replies = iter(["n", "y"])
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or next(replies))

    assert cli._forget_skill(store, skill, yes=False) == 0
    assert store.get("offsite-planning") == skill
    assert capsys.readouterr().err == "Nothing deleted.\n"
    assert cli._forget_skill(store, skill, yes=False) == 0
    assert asked == ["Delete the learned skill 'offsite-planning' (1 success)? [y/N] "] * 2
    assert "Forgot skill 'offsite-planning'" in capsys.readouterr().out
    assert "offsite-planning" not in {s.name for s in store.all()}


def test_end_of_input_at_the_question_is_a_no(monkeypatch, capsys):
    def ctrl_d(prompt):
        raise EOFError

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", ctrl_d)
    assert cli._confirmed(False, lambda: "Delete thread 't'?") is False
    assert capsys.readouterr().err == "\nNothing deleted.\n"


def test_forget_with_in_process_working_memory_says_running_processes_keep_theirs(capsys):
    """QA: "0 working-memory key(s)" and exit 0 while a live worker still had the preference in its
    own memory: the command cannot reach it, and now says so."""
    from brainstack.memory.working import InProcessWorkingMemory

    class Episodes:
        def forget(self, user):
            return 1

    gateway = types.SimpleNamespace(episodes=Episodes(), working=InProcessWorkingMemory())
    code = cli._forget(gateway, argparse.Namespace(user="ip", yes=True), threads_of=lambda user: [])
    out, err = capsys.readouterr()
    assert code == 0 and out == "Forgot user 'ip': 1 episode(s), 0 working-memory key(s).\n"
    assert "Working memory is in-process" in err and "BRAINSTACK_REDIS_URL" in err
