"""How well the memory gateway tells a stated preference from an opinion about the task.

On the labelled sentences of ``tests/data/preferences.yaml`` (the set the rule was written with,
a held-out set whose misses were read once to revise it, and a fresh set written before that
revision and only measured), a sentence counts as stored when ``stated_preferences``
returns anything: precision is the share of stored sentences that state a preference, recall the
share of preferences stored, and "exact" the share whose stored text is the label's.

On the labelled pairs of ``tests/data/preference_pairs.yaml`` (a stored preference, a later one:
does the later one replace it?): the accuracy of ``supersedes``, and of MiniLM's cosine (float32,
as memory stores) above the threshold that does best on the pairs the rule was written with, on
those pairs and on the held-out ones.

    .venv/bin/python benchmarks/bench_preferences.py [--cache-dir DIR] [--json PATH]

To measure another version of the rule on the same sets, run this script with ``PYTHONPATH`` set to
that version's checkout (the script reads the sets from its own repository).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine, machine_line, table, write_json

DATA = ROOT / "tests" / "data"


def sentence_scores(preferences: dict[str, list[str]], opinions: list[str]) -> dict[str, Any]:
    """Precision, recall and exact matches of ``stated_preferences`` on one labelled set."""
    from brainstack.memory.gateway import stated_preferences

    stored = {task: stated_preferences(task) for task in [*preferences, *opinions]}
    hits = sum(bool(stored[task]) for task in preferences)
    false = sum(bool(stored[task]) for task in opinions)
    exact = sum(stored[t] == want for t, want in preferences.items()) + sum(not stored[t] for t in opinions)
    return {
        "sentences": len(stored),
        "preferences": len(preferences),
        "opinions": len(opinions),
        "stored_preferences": hits,
        "stored_opinions": false,
        "precision": round(hits / (hits + false), 3) if hits + false else None,
        "recall": round(hits / len(preferences), 3) if preferences else None,
        "exact": round(exact / len(stored), 3),
        "missed": [task for task in preferences if not stored[task]],
        "stored_opinion_texts": [task for task in opinions if stored[task]],
    }


Pair = tuple[str, str, bool]
"""A stored preference, a later one, and whether the later one replaces it (the label)."""


def labelled_pairs(sets: dict[str, Any], prefix: str = "") -> list[Pair]:
    return [
        (older, newer, label == "supersedes")
        for label in ("supersedes", "independent")
        for older, newer in sets.get(prefix + label, [])
    ]


def rule_accuracy(pairs: list[Pair]) -> dict[str, Any]:
    """How often ``supersedes`` agrees with the label, and the pairs where it does not."""
    try:
        from brainstack.memory.gateway import supersedes
    except ImportError:  # a version before it: a preference replaced only itself, in any case
        from brainstack.memory.gateway import _comparable

        def supersedes(newer: str, older: str) -> bool:
            return bool(_comparable(newer) == _comparable(older))

    wrong = [(older, newer, label) for older, newer, label in pairs if supersedes(newer, older) != label]
    return {"pairs": len(pairs), "accuracy": round(1 - len(wrong) / len(pairs), 3), "wrong": wrong}


def cosines(pairs: list[Pair], cache_dir: Path | None) -> list[float]:
    from brainstack.memory import MiniLMEmbedder

    embedder = MiniLMEmbedder(cache_dir)
    return [float(a @ b) for older, newer, _ in pairs for a, b in [embedder.embed([older, newer])]]


def best_threshold(scores: list[float], pairs: list[Pair]) -> float:
    """The cosine above which "replaces" agrees with the most labels (the lowest such)."""

    def right(threshold: float) -> int:
        return sum((score >= threshold) == label for score, (_, _, label) in zip(scores, pairs, strict=True))

    return max(sorted(scores), key=right)


def cosine_accuracy(scores: list[float], pairs: list[Pair], threshold: float) -> float:
    right = sum((score >= threshold) == label for score, (_, _, label) in zip(scores, pairs, strict=True))
    return round(right / len(pairs), 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", help="write the raw numbers here")
    parser.add_argument("--cache-dir", type=Path, help="MiniLM's cache folder (default: brainstack's)")
    args = parser.parse_args()
    import brainstack.memory.gateway as gateway

    sets = yaml.safe_load((DATA / "preferences.yaml").read_text())
    results = {
        "written with": sentence_scores(sets["preferences"], sets["opinions"]),
        "held out": sentence_scores(sets["held_out_preferences"], sets["held_out_opinions"]),
        "fresh": sentence_scores(sets["fresh_preferences"], sets["fresh_opinions"]),
    }
    info = machine()
    print(machine_line(info))
    print(f"rule: {gateway.__file__}\n")
    keys = ("sentences", "preferences", "opinions", "stored_preferences", "stored_opinions")
    print(
        table(
            ["set", *keys, "precision", "recall", "exact"],
            [
                [name, *(r[k] for k in keys), r["precision"], r["recall"], r["exact"]]
                for name, r in results.items()
            ],
        )
    )
    for name, r in results.items():
        for task in r["missed"]:
            print(f"- {name}: missed {task!r}")
        for task in r["stored_opinion_texts"]:
            print(f"- {name}: stored the opinion {task!r}")

    pairs = yaml.safe_load((DATA / "preference_pairs.yaml").read_text())
    sets = {
        "written with": labelled_pairs(pairs),
        "held out": labelled_pairs(pairs, "held_out_"),
        "sharing words": labelled_pairs(pairs, "sharing_words_"),
    }
    scores = {name: cosines(labelled, args.cache_dir) for name, labelled in sets.items()}
    threshold = best_threshold(scores["written with"], sets["written with"])
    replaces = {
        name: {**rule_accuracy(labelled), "minilm": cosine_accuracy(scores[name], labelled, threshold)}
        for name, labelled in sets.items()
    }
    print(f"\nA later preference replaces a stored one? (MiniLM: cosine >= {threshold:.3f}, best on set 1)\n")
    print(
        table(
            ["pairs", "n", "supersedes()", "MiniLM cosine"],
            [[name, r["pairs"], r["accuracy"], r["minilm"]] for name, r in replaces.items()],
        )
    )
    for name, r in replaces.items():
        for older, newer, label in r["wrong"]:
            print(f"- {name}: {newer!r} after {older!r}: labelled {'replaces' if label else 'independent'}")
    write_json(
        args.json,
        {"machine": info, "sentences": results, "replaces": replaces, "minilm_threshold": threshold},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
