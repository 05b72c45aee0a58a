"""ONNX thread count of the local MiniLM on a host running several worker processes.

Question (RESULTS.md, open 6): on a host shared by W brainstack worker processes, does
``BRAINSTACK_EMBED_THREADS=1`` serve more runs than the default (unset: 2 intra-op threads on a 2+ core
host), and by how much? W is 1, 2 and 4; on a 2-core machine W=4 oversubscribes the cores on purpose.

For each W, W fresh processes (multiprocessing, spawn) each build two memory-off ``Runtime``\\ s on the
zero-latency model of ``bench_overhead.py`` (``InstantModel``, ``brainstack_runtime``), each with its own
temp home: one with ``BRAINSTACK_EMBED_THREADS`` unset (the default, the baseline) and one with
``BRAINSTACK_EMBED_THREADS=1``, both read by ``Settings`` from the environment as a deployment would set
it. Each runtime builds its router's int8 MiniLM session from those settings (the script checks the
session's thread count). Only one of the two runtimes works at any time; the other's threads sleep
(onnxruntime's pool does not spin in brainstack). Keeping both in one process lets the two configurations
alternate in blocks (ABBA ABBA ...) on the same processes, so drift on a shared host hits both alike.

Every block, all W workers wait on one barrier, then each:

* runs N back-to-back ``Runtime.arun`` calls (route → specialist_marketing → review, one instant model
  call, SQLite checkpoints), recording each run's wall time and ``RunResult.timings["route"]``;
* waits on the barrier again, then routes N texts with ``runtime.router.route`` alone (the embedding and
  scoring under contention, no graph).

Every text is new to its process (the task plus a request number), so no run or routing is served by
MiniLM's single-text cache; every run must route semantically to marketing with one model call. Host
throughput is the W workers' runs of a block over the block's span (first worker's start to the last
one's end, ``time.monotonic``: one clock for all processes on Linux), summed over the blocks of a
configuration. CPU ms per run is the workers' process CPU time (all threads) over their runs. The ratios
compare the two configurations measured on the same processes in the same invocation.

    .venv/bin/python benchmarks/bench_workers.py [--quick] [--workers 1,2,4] [--runs N] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import queue
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, scrub_environment, summary, table, write_json
from bench_overhead import InstantModel, brainstack_runtime, task_text

ENV = "BRAINSTACK_EMBED_THREADS"
DEFAULT = "default"
"""The configuration with ``BRAINSTACK_EMBED_THREADS`` unset (2 threads on a 2+ core host): the baseline."""
ONE = "1"
"""The configuration with ``BRAINSTACK_EMBED_THREADS=1``."""
CONFIGS = (DEFAULT, ONE)
BARRIER_TIMEOUT_S = 600.0


def schedule(blocks: int) -> list[str]:
    """``blocks`` blocks of each configuration in ABBA order: default, 1, 1, default, default, 1, ..."""
    order: list[str] = []
    for pair in range(blocks):
        order += [DEFAULT, ONE] if pair % 2 == 0 else [ONE, DEFAULT]
    return order


# -- one worker process -------------------------------------------------------------------------------


def build_runtime(config: str, home: Path, cache_dir: Path, model: InstantModel) -> Any:
    """A memory-off Runtime whose settings read ``BRAINSTACK_EMBED_THREADS`` as ``config`` has it."""
    if config == DEFAULT:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = config
    try:
        # embedder=None: the router's embedder comes from the settings (int8 MiniLM, embed_threads).
        runtime = brainstack_runtime(home, cache_dir, model, None, memory=False)
        runtime.router  # noqa: B018 - builds the session (and embeds the route examples) now
    finally:
        os.environ.pop(ENV, None)
    return runtime


async def work(index: int, cache_dir: Path, home: Path, plan: dict[str, Any], barrier: Any) -> dict[str, Any]:
    model = InstantModel()
    runtimes = {
        config: build_runtime(config, home / f"threads-{config}", cache_dir, model) for config in CONFIGS
    }
    threads = {config: int(rt.router.embedder.threads) for config, rt in runtimes.items()}
    if threads[ONE] != 1:
        raise RuntimeError(f"{ENV}=1 built a {threads[ONE]}-thread session: the setting was not read")
    counter = iter(range(10**9))  # every text new to this process: no single-text cache hits
    off_route: list[str] = []

    async def one_run(rt: Any) -> tuple[float, float]:
        text = task_text(next(counter), index)
        calls = model.calls
        start = time.perf_counter()
        result = await rt.arun(text)
        elapsed = (time.perf_counter() - start) * 1000
        route = result.route
        if (route.target, route.decided_by, model.calls - calls) != ("marketing", "semantic", 1):
            off_route.append(f"{text!r}: {route.target}/{route.decided_by}, {model.calls - calls} calls")
        return elapsed, float(result.timings.get("route", float("nan")))

    def one_routing(rt: Any) -> float:
        text = task_text(next(counter), index)
        start = time.perf_counter()
        rt.router.route(text)
        return (time.perf_counter() - start) * 1000

    try:
        for rt in runtimes.values():  # loop thread, checkpointer, compiled graph, sessions' first runs
            for _ in range(plan["warmup"]):
                await one_run(rt)
                one_routing(rt)
        blocks = []
        for config in plan["schedule"]:
            rt = runtimes[config]
            barrier.wait(BARRIER_TIMEOUT_S)  # all workers start each phase together
            run_ms, route_ms = [], []
            cpu, start = time.process_time(), time.monotonic()
            for _ in range(plan["runs"]):
                elapsed, route = await one_run(rt)
                run_ms.append(elapsed)
                route_ms.append(route)
            runs_span = (start, time.monotonic())
            runs_cpu = time.process_time() - cpu
            barrier.wait(BARRIER_TIMEOUT_S)
            cpu, start = time.process_time(), time.monotonic()
            routing_ms = [one_routing(rt) for _ in range(plan["routes"])]
            routes_span = (start, time.monotonic())
            routes_cpu = time.process_time() - cpu
            blocks.append(
                {
                    "config": config,
                    "run_ms": run_ms,
                    "route_node_ms": route_ms,
                    "runs_span": runs_span,
                    "runs_cpu_s": runs_cpu,
                    "routing_ms": routing_ms,
                    "routes_span": routes_span,
                    "routes_cpu_s": routes_cpu,
                }
            )
    finally:
        for rt in runtimes.values():
            rt.close()
    if off_route:
        raise RuntimeError(f"{len(off_route)} runs did not route semantically with one call: {off_route[:3]}")
    return {"worker": index, "pid": os.getpid(), "threads": threads, "blocks": blocks}


def worker(index: int, cache_dir: str, plan: dict[str, Any], barrier: Any, results: Any) -> None:
    """A worker process: reports its samples, or its traceback, on ``results``."""
    scrub_environment()
    try:
        with tempfile.TemporaryDirectory(prefix=f"brainstack-worker-{index}-") as home:
            out = asyncio.run(work(index, Path(cache_dir), Path(home), plan, barrier))
        results.put(out)
    except BaseException:
        barrier.abort()  # the others would wait for this worker at the next barrier
        results.put({"worker": index, "error": traceback.format_exc()})


# -- the host -----------------------------------------------------------------------------------------


def measure(workers: int, plan: dict[str, Any], cache_dir: Path) -> list[dict[str, Any]]:
    """Start ``workers`` processes, let them run the plan in lockstep, return their samples."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=worker, args=(i, str(cache_dir), plan, barrier, results), daemon=True)
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    out: list[dict[str, Any]] = []
    try:
        while len(out) < workers:
            try:
                item = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in processes if p.exitcode not in (None, 0)]
                if dead:
                    raise SystemExit(f"a worker died (exit code {dead[0].exitcode})") from None
                continue
            if "error" in item:
                raise SystemExit(f"worker {item['worker']} failed:\n{item['error']}")
            out.append(item)
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():  # only after a failure: this script's own children
                process.terminate()
                process.join()
    return sorted(out, key=lambda item: item["worker"])


def phase_rate(samples: list[dict[str, Any]], block: int, key: str, span: str) -> tuple[int, float]:
    """(calls, seconds) of one block on the whole host: all workers' calls over the block's span."""
    starts = [w["blocks"][block][span][0] for w in samples]
    ends = [w["blocks"][block][span][1] for w in samples]
    calls = sum(len(w["blocks"][block][key]) for w in samples)
    return calls, max(ends) - min(starts)


def aggregate(samples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per configuration: pooled latencies, host throughput, CPU per call, per-block host rates."""
    out: dict[str, dict[str, Any]] = {}
    n_blocks = len(samples[0]["blocks"])
    for config in CONFIGS:
        blocks = [b for b in range(n_blocks) if samples[0]["blocks"][b]["config"] == config]

        def pooled(key: str, blocks: list[int] = blocks) -> list[float]:
            return [v for w in samples for b in blocks for v in w["blocks"][b][key]]

        runs = [phase_rate(samples, b, "run_ms", "runs_span") for b in blocks]
        routes = [phase_rate(samples, b, "routing_ms", "routes_span") for b in blocks]
        run_cpu = sum(w["blocks"][b]["runs_cpu_s"] for w in samples for b in blocks)
        route_cpu = sum(w["blocks"][b]["routes_cpu_s"] for w in samples for b in blocks)
        n_runs, n_routes = sum(n for n, _ in runs), sum(n for n, _ in routes)
        out[config] = {
            "threads": samples[0]["threads"][config],
            "run_ms": summary(pooled("run_ms")),
            "route_node_ms": summary(pooled("route_node_ms")),
            "routing_ms": summary(pooled("routing_ms")),
            "host_runs_per_s": n_runs / sum(s for _, s in runs),
            "host_routings_per_s": n_routes / sum(s for _, s in routes),
            "block_runs_per_s": [n / s for n, s in runs],
            "cpu_ms_per_run": 1000 * run_cpu / n_runs,
            "cpu_ms_per_routing": 1000 * route_cpu / n_routes,
        }
    return out


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from brainstack.memory import MiniLMEmbedder

    cache_dir = args.cache_dir or workdir / "cache"
    # Build the ONNX exports (float32, then the int8 copy) once, before any worker needs them.
    MiniLMEmbedder(cache_dir, quantized=True).warm_up()
    plan = {
        "runs": args.runs,
        "routes": args.routes,
        "warmup": args.warmup,
        "schedule": schedule(args.blocks),
    }
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    results: dict[str, Any] = {}
    for workers in args.workers:
        start = time.monotonic()
        samples = measure(workers, plan, cache_dir)
        results[str(workers)] = {
            "seconds": time.monotonic() - start,
            "summary": aggregate(samples),
            "samples": samples,
        }
        print(f"W={workers}: {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    return {"plan": plan, "loadavg_at_start": load_at_start, "cores": os.cpu_count(), "results": results}


# -- report -------------------------------------------------------------------------------------------


def label(config: str, threads: int) -> str:
    return f"{threads} (default)" if config == DEFAULT else f"{threads} ({ENV}=1)"


def report(result: dict[str, Any]) -> str:
    plan = result["plan"]
    rows, ratios = [], []
    for workers, entry in result["results"].items():
        stats = entry["summary"]
        for config in CONFIGS:
            s = stats[config]
            block_rates = s["block_runs_per_s"]
            rows.append(
                [
                    workers,
                    label(config, s["threads"]),
                    s["run_ms"]["n"],
                    f"{s['host_runs_per_s']:.1f}",
                    f"{min(block_rates):.1f}-{max(block_rates):.1f}",
                    s["run_ms"]["p50"],
                    s["run_ms"]["p95"],
                    s["route_node_ms"]["p50"],
                    s["route_node_ms"]["p95"],
                    s["cpu_ms_per_run"],
                    f"{s['host_routings_per_s']:.0f}",
                    s["routing_ms"]["p50"],
                    s["routing_ms"]["p95"],
                ]
            )
        one, base = stats[ONE], stats[DEFAULT]

        def ratio(a: float, b: float) -> str:
            return f"{a / b:.2f}×"

        ratios.append(
            [
                workers,
                ratio(one["host_runs_per_s"], base["host_runs_per_s"]),
                ratio(one["run_ms"]["p50"], base["run_ms"]["p50"]),
                ratio(one["run_ms"]["p95"], base["run_ms"]["p95"]),
                ratio(one["route_node_ms"]["p50"], base["route_node_ms"]["p50"]),
                ratio(one["route_node_ms"]["p95"], base["route_node_ms"]["p95"]),
                ratio(one["cpu_ms_per_run"], base["cpu_ms_per_run"]),
                ratio(one["host_routings_per_s"], base["host_routings_per_s"]),
                ratio(one["routing_ms"]["p50"], base["routing_ms"]["p50"]),
                ratio(one["routing_ms"]["p95"], base["routing_ms"]["p95"]),
            ]
        )
    n_blocks = len(plan["schedule"]) // len(CONFIGS)
    order = " ".join("A" if c == DEFAULT else "B" for c in plan["schedule"])
    return "\n".join(
        [
            f"### Worker processes × MiniLM threads, memory-off runs on the zero-latency model "
            f"({plan['runs']} runs and {plan['routes']} routings per worker per block, {n_blocks} blocks "
            f"per configuration in the order {order}, A = default, B = {ENV}=1; {plan['warmup']} warm-up "
            f"each; {result['cores']} cores, load average at start {result['loadavg_at_start']})",
            "",
            table(
                [
                    "workers",
                    "MiniLM threads",
                    "runs",
                    "host runs/s",
                    "host runs/s per block",
                    "p50 run ms",
                    "p95 run ms",
                    "p50 route node ms",
                    "p95 route node ms",
                    "CPU ms/run",
                    "host routings/s",
                    "p50 routing ms",
                    "p95 routing ms",
                ],
                rows,
            ),
            "",
            f"### {ENV}=1 ÷ default, per number of workers (same processes, same invocation)",
            "",
            table(
                [
                    "workers",
                    "host runs/s",
                    "p50 run",
                    "p95 run",
                    "p50 route node",
                    "p95 route node",
                    "CPU/run",
                    "host routings/s",
                    "p50 routing",
                    "p95 routing",
                ],
                ratios,
            ),
            "",
            "Above 1.00× in the throughput columns, below 1.00× in the others, favours 1 thread. "
            "A run's route node only waits for the rest of the embedding prefetched when the task "
            "arrived; routing is `runtime.router.route` alone (embedding + scoring). Compare the "
            "per-block range of host runs/s with the difference between the two rows before reading "
            "a ratio as a result.",
        ]
    )


def worker_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive worker counts, e.g. 1,2,4")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--workers", type=worker_counts, default=[1, 2, 4], help="worker counts (1,2,4)")
    parser.add_argument("--runs", type=int, default=100, help="runs per worker per block (default 100)")
    parser.add_argument("--routes", type=int, default=200, help="routings per worker per block (200)")
    parser.add_argument("--blocks", type=int, default=6, help="blocks per configuration (default 6)")
    parser.add_argument("--warmup", type=int, default=10, help="warm-up runs per runtime (default 10)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 15 runs, 30 routings, 2 blocks")
    parser.add_argument("--cache-dir", type=Path, help="ONNX model cache (default: a temp folder)")
    parser.add_argument("--json", metavar="PATH", help="write the raw numbers here")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.routes, args.blocks, args.warmup = 15, 30, 2, 3
    scrub_environment()
    with tempfile.TemporaryDirectory(prefix="brainstack-bench-") as tmp:
        result = run(args, Path(tmp))
    print(f"Machine: {machine_line(machine())}\n")
    print(report(result))
    write_json(args.json, {"benchmark": "workers", **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
