"""Helpers shared by the benchmark scripts: statistics, markdown tables, machine facts, raw output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
"""The repository (the folder that holds ``brainstack/`` and ``benchmarks/``)."""

PACKAGES = (
    "brainstack",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "aiosqlite",
    "langchain-core",
    "langchain-openai",
    "openai",
    "httpx2",
    "autogen-agentchat",
    "onnxruntime",
    "tokenizers",
    "numpy",
    "pydantic",
)


def scrub_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Drop every ``OPENAI_*`` and ``BRAINSTACK_*`` variable (from ``os.environ`` unless given).

    Returns the removed variables' names mapped to ``"<removed>"`` (values are never kept).
    """
    env = os.environ if environ is None else environ
    removed = {}
    for name in list(env):
        if name.startswith(("OPENAI_", "BRAINSTACK_")):
            del env[name]
            removed[name] = "<removed>"
    return removed


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100), like numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, mean, p50, p95, min, max of ``values`` (in whatever unit they are)."""
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "min": min(values),
        "max": max(values),
    }


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats get two decimals unless already formatted."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.2f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"') + f" (kernel {platform.release()})"
    except OSError:
        pass
    return platform.platform()


def _git_state() -> str:
    """The commit and how many files outside benchmarks/ differ from it (others edit concurrently)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    changed = [line for line in status if not line[3:].startswith("benchmarks/")]
    return f"{head} + {len(changed)} changed files" if changed else head


def machine() -> dict[str, Any]:
    """CPU, cores, RAM, OS, Python and the versions of the packages that matter here."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "date": date.today().isoformat(),
        "loadavg_1_5_15": load,
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "os": _os_name(),
        "python": platform.python_version(),
        "git": _git_state(),
        "packages": versions,
    }


def machine_line(info: Mapping[str, Any]) -> str:
    return (
        f"{info['date']} · {info['cpu']} · {info['cores']} cores · {info['ram_gib']} GiB · "
        f"{info['os']} · Python {info['python']} · git {info['git']} · load average {info['loadavg_1_5_15']}"
    )


def write_json(path: str | Path | None, payload: Mapping[str, Any]) -> None:
    """Write the raw numbers (and the machine) to ``path`` when one was given."""
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=str) + "\n")
    print(f"\nraw numbers written to {path}")
