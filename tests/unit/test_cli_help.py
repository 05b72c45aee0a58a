"""`brainstack … --help`: every argument of every command says what it takes."""

from __future__ import annotations

import argparse

from brainstack.cli import build_parser


def commands(parser: argparse.ArgumentParser, path: str = "brainstack") -> dict[str, argparse.ArgumentParser]:
    """Each (sub)command's parser by its command line: "brainstack kb add", …"""
    found = {path: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= commands(sub, f"{path} {name}")
    return found


def test_every_argument_has_a_help_text():
    # `kb add path`, `memory search query`, `skills show name` showed a bare name (a new user's audit)
    bare = [
        f"{command} {action.dest}"
        for command, parser in commands(build_parser()).items()
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction) and not action.help
    ]
    assert not bare, f"arguments without a help text: {bare}"
