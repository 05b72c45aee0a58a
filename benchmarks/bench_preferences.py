"""How well the memory gateway tells a stated preference from an opinion about the task.

On the labelled sentences of ``tests/data/preferences.yaml`` (the set the rule was written with,
and a held-out set only ever measured), a sentence counts as stored when ``stated_preferences``
returns anything: precision is the share of stored sentences that state a preference, recall the
share of preferences stored, and "exact" the share whose stored text is the label's.

    .venv/bin/python benchmarks/bench_preferences.py [--json PATH]

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", help="write the raw numbers here")
    args = parser.parse_args()
    import brainstack.memory.gateway as gateway

    sets = yaml.safe_load((DATA / "preferences.yaml").read_text())
    results = {
        "written with": sentence_scores(sets["preferences"], sets["opinions"]),
        "held out": sentence_scores(sets["held_out_preferences"], sets["held_out_opinions"]),
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
    write_json(args.json, {"machine": info, "sentences": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
