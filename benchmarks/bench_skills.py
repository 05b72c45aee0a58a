"""Procedural memory: what `SkillStore.match` costs as the skills folder grows, and after it changes.

A run with memory on matches its task against every skill's when-to-use examples. The store keeps
the examples' vectors and reloads when a skill file changes (a skill learned by this process or by
another one on the same folder). Measured, per number of learned skills (3 examples each, plus the
built-in skills), with the default embedder (the local MiniLM):

- ``steady``: a match when no file changed (the task's embedding, the file check, the scoring);
- ``after a change``: a match right after another store saved one new skill;
- ``new store``: the first match of a new store on the folder (a new process), which starts from
  the vectors saved in the folder;
- ``full build`` (the baseline, same run): the same with the saved vectors deleted, which embeds
  every example; before session 11, every match after a change and every new process paid this.

    .venv/bin/python benchmarks/bench_skills.py [--quick] [--sizes 10,100,250] [--repeats 9] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, scrub_environment, summary, table, write_json

TOPICS = (
    "the quarterly pricing review",
    "an outage postmortem",
    "the hiring plan",
    "a vendor contract renewal",
    "the cloud hosting bill",
    "a product launch",
    "the churn analysis",
    "a security audit",
    "the marketing budget",
    "an API deprecation",
    "the board update",
    "a data migration",
)
TEAMS = ("sales", "platform", "finance", "support", "growth", "legal", "design")
REGIONS = ("Europe", "North America", "Japan", "Brazil", "India")
FORMS = (
    "How should we prepare {topic} for the {team} team in {region}?",
    "Draft a checklist for {topic} with the {team} team ({region}).",
    "What went wrong last time with {topic} in {region}, and how do we avoid it for {team}?",
)
HEADERS = ["skills", "examples", "steady", "after a change", "new store", "full build"]
HEADERS += ["after ÷ full", "new ÷ full"]
TASK = "How should we prepare the quarterly pricing review for the sales team in Japan?"


def skill_document(k: int) -> dict[str, Any]:
    topic, team, region = TOPICS[k % len(TOPICS)], TEAMS[k // 3 % len(TEAMS)], REGIONS[k // 7 % len(REGIONS)]
    return {
        "name": f"bench-skill-{k:04d}",
        "description": f"Bench skill {k}.",
        "when_to_use": [f"{form.format(topic=topic, team=team, region=region)} (case {k})" for form in FORMS],
        "steps": [{"kind": "prompt", "text": f"Follow procedure {k}."}],
    }


def timed(call: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = call()
    return (time.perf_counter() - start) * 1000, value


def measure(size: int, repeats: int, embedder: Any) -> dict[str, Any]:
    from brainstack.memory.skills import Skill, SkillStore

    with tempfile.TemporaryDirectory(prefix="bench-skills-") as folder:
        writer = SkillStore(folder, embedder=embedder)
        for k in range(size):
            writer.save(Skill.model_validate(skill_document(k)))
        store = SkillStore(folder, embedder=embedder)
        store.match(TASK)  # built once
        steady, changed, reopened, full = [], [], [], []
        for r in range(repeats):
            for i in range(20):  # a new task each time: the embedder caches recent queries
                task = f"{TASK} (request {size}-{r}-{i})"
                steady.append(timed(lambda: store.match(task))[0])  # noqa: B023 - called at once
            task = f"{TASK} (after change {size}-{r})"
            writer.save(Skill.model_validate(skill_document(size + r)))  # another store learns one
            ms, after = timed(lambda: store.match(task))  # noqa: B023 - called at once
            changed.append(ms)
            new_process = SkillStore(folder, embedder=embedder)
            ms, again = timed(lambda: new_process.match(task))  # noqa: B023 - called at once
            reopened.append(ms)
            for saved in Path(folder).glob("_vectors.*.npz"):
                saved.unlink()
            fresh = SkillStore(folder, embedder=embedder)
            ms, baseline = timed(lambda: fresh.match(task))  # noqa: B023 - called at once
            full.append(ms)
            if not after == again == baseline:
                raise SystemExit(f"the stores disagree at {size} skills: {after}, {again}, {baseline}")
        examples = sum(len(s.when_to_use) for s in store.all())
    return {
        "skills": size,
        "examples": examples,
        "steady_ms": summary(steady),
        "after_change_ms": summary(changed),
        "new_store_ms": summary(reopened),
        "full_build_ms": summary(full),
        "ratio_after_change_vs_full": statistics.median(changed) / statistics.median(full),
        "ratio_new_store_vs_full": statistics.median(reopened) / statistics.median(full),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,250", help="learned skills per size (default 10,100,250)")
    parser.add_argument("--repeats", type=int, default=9, help="changes per size (default 9)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 skills, 2 changes")
    parser.add_argument("--json", metavar="PATH", help="write the raw numbers here")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats = "10", 2
    scrub_environment()
    from brainstack.memory.embeddings import default_embedder

    embedder = default_embedder()
    embedder.warm_up()  # both models (documents and queries) loaded before anything is timed
    embedder.embed_query("warm up")
    results = [measure(int(n), args.repeats, embedder) for n in args.sizes.split(",")]
    print(f"Machine: {machine_line(machine())}\n")
    print(
        f"### `SkillStore.match` p50 ms by number of learned skills (3 examples each, plus the built-in "
        f"skills; {args.repeats} changes per size, 20 steady matches before each)\n"
    )
    print(
        table(
            HEADERS,
            [
                [
                    r["skills"],
                    r["examples"],
                    f"{r['steady_ms']['p50']:.2f}",
                    f"{r['after_change_ms']['p50']:.1f}",
                    f"{r['new_store_ms']['p50']:.1f}",
                    f"{r['full_build_ms']['p50']:.1f}",
                    f"{r['ratio_after_change_vs_full']:.3f}×",
                    f"{r['ratio_new_store_vs_full']:.3f}×",
                ]
                for r in results
            ],
        )
    )
    print(
        "\n`steady`: a match when nothing changed (a new task each time: mostly its embedding, which "
        "a run shares with its router; then the file check and the scoring). `after a change`: the "
        "first match after another store saved one new skill (3 new examples). `new store`: the first"
        " match of a new store on the folder (a new process), which starts from the vectors saved in "
        "the folder. `full build`: the same with the saved vectors deleted, which embeds every "
        "example (the baseline, same run): before session 11, every match after a change and every "
        "new process paid it. All three return the same skills (checked)."
    )
    write_json(args.json, {"benchmark": "skills", "repeats": args.repeats, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
