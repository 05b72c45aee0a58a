"""`brainstack memory forget` asks first, and a layer that is down does not stop the others."""

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
    code = cli._forget(gateway, argparse.Namespace(user="ada", yes=False))
    assert asked == [
        "Delete the episodes (episodic memory is not answering) and the working memory of user 'ada'? [y/N] "
    ]
    out, err = capsys.readouterr()
    assert out == "Forgot user 'ada': 2 working-memory key(s).\n"
    assert "episodic memory not deleted" in err and code == cli.EXIT_RUN
