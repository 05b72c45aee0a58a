"""Cold start: wall time of fresh ``brainstack`` processes, against bare-Python and import-only baselines.

Every command runs in a new process with an environment free of ``OPENAI_*`` / ``BRAINSTACK_*`` except
``BRAINSTACK_HOME`` (a new empty folder per run) and ``BRAINSTACK_CACHE_DIR`` (the ONNX model cache).
The commands take turns (rotating order); each runs once first, untimed, to warm the OS file cache and to
build the model cache. The cold-cache runs each get a new empty cache folder (they include the ONNX export).

    .venv/bin/python benchmarks/bench_cold_start.py [--quick] [--runs N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine, machine_line, scrub_environment, summary, table, write_json

TASK = "What is 17.5% of 2340?"
IMPORTS = "import langgraph.graph, langchain_openai, autogen_agentchat"
TARGET_HELP_S = 0.5
TARGET_RUN_S = 5.0
IN_PROCESS = re.compile(r"· (\d+\.\d+)s\s*$")
"""The CLI's own timing of the run (after imports and Runtime setup), last line of stderr."""


@dataclass
class Command:
    label: str
    argv: list[str]
    runs: int
    fresh_cache: bool = False
    target_s: float | None = None
    env: dict[str, str | None] = field(default_factory=dict)
    """Extra variables for this command; ``None`` removes one."""
    seconds: list[float] = field(default_factory=list)
    in_process_s: list[float] = field(default_factory=list)


def base_environment() -> dict[str, str]:
    """The current environment without OPENAI_* / BRAINSTACK_* (nothing of the caller's setup leaks in)."""
    env = dict(os.environ)
    scrub_environment(env)
    return env


def execute(command: Command, env: dict[str, str], workdir: Path, warm_cache: Path) -> tuple[float, str]:
    """Run ``command`` once in a fresh process; returns (wall seconds, stderr)."""
    home = Path(tempfile.mkdtemp(prefix="home-", dir=workdir))
    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=workdir)) if command.fresh_cache else warm_cache
    env = {**env, "BRAINSTACK_HOME": str(home), "BRAINSTACK_CACHE_DIR": str(cache)}
    for name, value in command.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    start = time.perf_counter()
    done = subprocess.run(command.argv, env=env, cwd=workdir, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{command.label} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    if "brainstack" in command.argv[0] and "run" in command.argv and "409.5" not in done.stdout:
        raise SystemExit(f"{command.label}: unexpected answer:\n{done.stdout}")
    return seconds, done.stderr


def measure(commands: Sequence[Command], env: dict[str, str], workdir: Path, warm_cache: Path) -> None:
    """Warm-up once each, then rotate through the commands until each has its number of runs."""
    for command in commands:
        execute(command, env, workdir, warm_cache)  # untimed: OS file cache, model cache built
    rounds = max(c.runs for c in commands)
    for index in range(rounds):
        active = [c for c in commands if len(c.seconds) < c.runs]
        shift = index % len(active)
        for command in active[shift:] + active[:shift]:
            seconds, stderr = execute(command, env, workdir, warm_cache)
            command.seconds.append(seconds)
            lines = stderr.strip().splitlines()
            if lines and (found := IN_PROCESS.search(lines[-1])):
                command.in_process_s.append(float(found.group(1)))


def import_profile(brainstack: Path, env: dict[str, str], workdir: Path, warm_cache: Path) -> list[tuple]:
    """``python -X importtime`` of one ``brainstack run``: the top-level imports by cumulative time."""
    python = brainstack.parent / "python"
    probe = Command("importtime", [str(python), "-X", "importtime", str(brainstack), "run", TASK], 1)
    _, stderr = execute(probe, env, workdir, warm_cache)
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        raw_name = line.rsplit("|", 1)[1]
        if cumulative.isdigit() and raw_name.startswith(" ") and not raw_name.startswith("  "):
            rows.append((name, int(cumulative) / 1e6))
    return sorted(rows, key=lambda row: -row[1])


PHASES = """
import json, sys, time
marks = [("start", time.perf_counter())]
def mark(name):
    marks.append((name, time.perf_counter()))
import brainstack.cli
mark("import brainstack.cli")
from brainstack.runtime import Runtime
rt = Runtime()
mark("Runtime(): settings, agents.yaml, provider")
import langgraph.graph, langchain_core.messages
mark("import langgraph.graph + langchain_core")
import brainstack.graphs.factory
mark("import the graph factory (nodes, agents)")
import onnxruntime, tokenizers
mark("import onnxruntime + tokenizers")
from brainstack.memory.embeddings import default_embedder, router_embedder
router_embedder(rt.settings)._ensure()  # the shared instances the router and memory will use
mark("ONNX session: the router's int8 MiniLM (cached)")
default_embedder(rt.settings).documents._ensure()  # float32: what memory stores with
mark("ONNX session: memory's float32 MiniLM (cached)")
rt.router
mark("router: embed the route examples")
if rt.memory is not None:
    rt.memory.warm_up()
mark("memory backends: open Chroma + working memory")
rt.graph
mark("build the graph (runtime.graph)")
import langchain_openai
mark("import langchain_openai (specialists build their ChatOpenAI on first use)")
import asyncio
result = asyncio.run(rt.arun(sys.argv[1]))
mark("first run (loop thread, checkpointer, compile, recall, route, specialist, tool, remember)")
asyncio.run(rt.arun(sys.argv[1]))
mark("second run, same process (for comparison)")
print(json.dumps([(b[0], b[1] - a[1]) for a, b in zip(marks, marks[1:])]))
"""
"""Times the phases of a first ``brainstack run`` in a fresh process, one after another. The CLI does not
run them in this order: ``Runtime.warm_up`` loads both ONNX sessions, embeds the route examples and opens
memory on background threads while the graph's modules import, so the sum exceeds its wall time."""


def phase_profile(bin_dir: Path, runs: int, env: dict[str, str], workdir: Path, warm_cache: Path) -> dict:
    probe = Command("phases", [str(bin_dir / "python"), "-c", PHASES, TASK], runs)
    phases: dict[str, list[float]] = {}
    for _ in range(runs):
        home = Path(tempfile.mkdtemp(prefix="home-", dir=workdir))
        run_env = {**env, "BRAINSTACK_HOME": str(home), "BRAINSTACK_CACHE_DIR": str(warm_cache)}
        done = subprocess.run(
            probe.argv, env=run_env, cwd=workdir, capture_output=True, text=True, check=True
        )
        for name, seconds in json.loads(done.stdout.strip().splitlines()[-1]):
            phases.setdefault(name, []).append(seconds)
    return phases


def commands(bin_dir: Path, runs: int, help_runs: int, run_runs: int, cold_runs: int, prefix: Path) -> list:
    python, brainstack = str(bin_dir / "python"), str(bin_dir / "brainstack")
    # Bytecode of everything (brainstack too) written to and read from a temp tree, never the repo.
    all_pyc: dict[str, str | None] = {"PYTHONPYCACHEPREFIX": str(prefix), "PYTHONDONTWRITEBYTECODE": None}
    run = [brainstack, "run", TASK]
    return [
        Command("python -c pass", [python, "-c", "pass"], runs),
        Command(f'python -c "{IMPORTS}"', [python, "-c", IMPORTS], runs),
        Command('python -c "import brainstack"', [python, "-c", "import brainstack"], runs),
        Command("brainstack --help", [brainstack, "--help"], help_runs, target_s=TARGET_HELP_S),
        # the thread commands open the checkpointer only: no graph, model or memory (fixed 26)
        Command("brainstack threads list --all (none yet)", [brainstack, "threads", "list", "--all"], runs),
        Command(f'brainstack run "{TASK}" (warm model cache)', run, run_runs, target_s=TARGET_RUN_S),
        Command("… same, all bytecode cached (PYTHONPYCACHEPREFIX)", run, run_runs, env=all_pyc),
        Command("… same, COLD model cache (first ever run: ONNX export)", run, cold_runs, fresh_cache=True),
    ]


def phase_rows(phases: dict[str, list[float]]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    total = 0.0
    for name, values in phases.items():
        s = summary(values)
        if not name.startswith("second run"):
            total += s["p50"]
        rows.append([name, s["n"], f"{s['p50']:.3f}", f"{s['min']:.3f}"])
    rows.insert(
        -1, ["sum up to the end of the first run (interpreter start not included)", "", f"{total:.3f}", ""]
    )
    return rows


HEADERS = [
    "command",
    "n",
    "median s",
    "p95 s",
    "min s",
    "target",
    "vs `python -c pass`",
    "vs import baseline",
    "after Runtime() (CLI's own timer), median s",
]


def report(cmds: Sequence[Command], profile: list[tuple], phases: dict, info: dict[str, Any]) -> str:
    base = {c.label: summary(c.seconds)["p50"] for c in cmds}
    bare, imports = base[cmds[0].label], base[cmds[1].label]
    rows = []
    verdicts = []
    for c in cmds:
        s = summary(c.seconds)
        target = f"≤ {c.target_s:g} s" if c.target_s else ""
        if c.target_s:
            ok = s["p50"] <= c.target_s
            verdict = "met" if ok else "NOT met"
            verdicts.append(f"{c.label}: median {s['p50']:.2f} s, target {target} — {verdict}")
        inner = f"{summary(c.in_process_s)['p50']:.2f}" if c.in_process_s else ""
        times = [f"{s[k]:.3f}" for k in ("p50", "p95", "min")]
        ratios = [f"{s['p50'] / bare:.1f}×", f"{s['p50'] / imports:.2f}×"]
        rows.append([c.label, s["n"], *times, target, *ratios, inner])
    out = [
        "### Fresh-process wall time (seconds)",
        "",
        table(HEADERS, rows),
        "",
        *(f"- {v}" for v in verdicts),
        "",
        f"PYTHONDONTWRITEBYTECODE in the environment: {info['pythondontwritebytecode']!r} "
        "(site-packages were byte-compiled at install; brainstack itself is an editable install).",
        "",
        "### Top-level imports of one `brainstack run` (`python -X importtime`, cumulative s)",
        "",
        table(["module", "cumulative s"], [[name, f"{secs:.3f}"] for name, secs in profile[:12]]),
        "",
        "### Phases of a first `brainstack run` in a fresh process (warm model cache, median s)",
        "",
        table(["phase", "n", "median s", "min s"], phase_rows(phases)),
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each baseline (default 15)")
    parser.add_argument("--help-runs", type=int, default=15, help="runs of brainstack --help (default 15)")
    parser.add_argument("--run-runs", type=int, default=8, help="runs of brainstack run (default 8)")
    parser.add_argument("--cold-runs", type=int, default=3, help="cold-cache runs (default 3)")
    parser.add_argument("--phase-runs", type=int, default=5, help="in-process phase profiles (default 5)")
    parser.add_argument("--bin", type=Path, default=ROOT / ".venv" / "bin", help="the venv's bin folder")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 runs each, 1 cold")
    parser.add_argument("--json", metavar="PATH", help="write the raw numbers here")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = args.help_runs = args.run_runs = 2
        args.cold_runs = args.phase_runs = 1
    env = base_environment()
    with tempfile.TemporaryDirectory(prefix="brainstack-cold-") as tmp:
        workdir = Path(tmp)
        warm_cache = workdir / "model-cache"
        cmds = commands(args.bin, args.runs, args.help_runs, args.run_runs, args.cold_runs, workdir / "pyc")
        measure(cmds, env, workdir, warm_cache)
        profile = import_profile(args.bin / "brainstack", env, workdir, warm_cache)
        phases = phase_profile(args.bin, args.phase_runs, env, workdir, warm_cache)
    info = machine()
    info["pythondontwritebytecode"] = env.get("PYTHONDONTWRITEBYTECODE")
    print(f"Machine: {machine_line(info)}\n")
    print(report(cmds, profile, phases, info))
    raw = {
        c.label: {"seconds": c.seconds, "in_process_s": c.in_process_s, "target": c.target_s} for c in cmds
    }
    write_json(
        args.json, {"benchmark": "cold_start", "commands": raw, "importtime": profile, "phases_s": phases}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
