"""Thread storage: how a thread's SQLite checkpoints grow with its length, what `threads prune`
gives back, and what listing a user's threads costs.

Memory-off runs of the offline model on the default SQLite checkpointer (a temporary
``BRAINSTACK_HOME``), so the numbers are LangGraph's checkpoints of brainstack's graph:

- ``growth``: one thread of ``--long`` runs; the bytes of its checkpoints after each quarter of them
  (every checkpoint holds the whole conversation so far);
- ``listing``: ``Runtime.threads(user)`` (metadata read in SQL, then each thread's newest
  checkpoint) against the baseline, the saver's own ``alist(None, filter={"user_id": user})``,
  which loads every checkpoint of the user with its writes (same process, interleaved, ratio);
- ``prune``: ``Runtime.prune_thread`` on every thread; the file's pages in use and the checkpoint
  bytes before and after, and the time per thread. Every thread's conversation is checked to be
  the same after the prune as before.

    .venv/bin/python benchmarks/bench_threads.py [--quick] [--runs 1000] [--threads 100] [--users 10]
        [--long 100] [--repeats 30] [--json PATH]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, scrub_environment, summary, table, write_json


def runtime_at(home: Path, embedder: Any) -> Any:
    from brainstack import Runtime, Settings

    return Runtime(Settings(home=home, memory=False), embedder=embedder)


def stored(path: Path) -> dict[str, int]:
    """What the checkpoint file holds: pages in use (bytes) and the checkpoint and write blobs."""
    with sqlite3.connect(path) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = (
            db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        )
        count, checkpoint_bytes = db.execute(
            "SELECT count(*), sum(length(checkpoint)) FROM checkpoints"
        ).fetchone()
        (write_bytes,) = db.execute("SELECT coalesce(sum(length(value)), 0) FROM writes").fetchone()
    return {
        "bytes_in_use": pages * page_size,
        "checkpoints": count,
        "checkpoint_bytes": checkpoint_bytes or 0,
        "write_bytes": write_bytes,
    }


def thread_bytes(path: Path, thread_id: str) -> int:
    with sqlite3.connect(path) as db:
        (total,) = db.execute(
            "SELECT coalesce(sum(length(checkpoint)), 0) FROM checkpoints WHERE thread_id = ?", (thread_id,)
        ).fetchone()
    return int(total)


def growth(home: Path, embedder: Any, long: int) -> list[dict[str, Any]]:
    runtime = runtime_at(home, embedder)
    rows, marks = [], {max(1, long * q // 4) for q in range(1, 5)}
    try:
        for n in range(1, long + 1):
            runtime.run(f"What is {n} + {n % 7}?", thread_id="long-thread")
            if n in marks:
                total = thread_bytes(home / "checkpoints.sqlite", "long-thread")
                rows.append({"runs": n, "checkpoint_bytes": total, "per_run": total / n})
    finally:
        runtime.close()
    return rows


async def baseline_listing(runtime: Any, user: str) -> int:
    """The saver's own filter: every checkpoint of the user, loaded with its writes."""
    saver = (await runtime._compiled_graph()).checkpointer
    threads = {
        item.config["configurable"]["thread_id"] async for item in saver.alist(None, filter={"user_id": user})
    }
    return len(threads)


def timed(call: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = call()
    return (time.perf_counter() - start) * 1000, value


def fill(runtime: Any, runs: int, threads: int, users: int) -> dict[str, str]:
    owner = {}
    for i in range(runs):
        thread = f"t{i % threads:04d}"
        owner.setdefault(thread, f"u{i % threads % users:02d}")
        runtime.run(f"What is {i} + {i % 7}?", user_id=owner[thread], thread_id=thread)
        if (i + 1) % max(1, runs // 10) == 0:
            print(f"  {i + 1}/{runs} runs", file=sys.stderr, flush=True)
    return owner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs in all (default 1000)")
    parser.add_argument("--threads", type=int, default=100, help="threads they are spread over (default 100)")
    parser.add_argument("--users", type=int, default=10, help="users the threads belong to (default 10)")
    parser.add_argument("--long", type=int, default=100, help="runs on the one long thread (default 100)")
    parser.add_argument("--repeats", type=int, default=30, help="listings of each kind (default 30)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 60 runs, 6 threads, 2 users")
    parser.add_argument("--json", metavar="PATH", help="write the raw numbers here")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.threads, args.users, args.long, args.repeats = 60, 6, 2, 12, 5
    scrub_environment()
    from brainstack.memory.embeddings import default_embedder

    embedder = default_embedder()
    embedder.warm_up()
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as folder:
        print(f"growth: one thread of {args.long} runs", file=sys.stderr)
        grew = growth(Path(folder) / "long", embedder, args.long)

        home = Path(folder) / "many"
        path = home / "checkpoints.sqlite"
        runtime = runtime_at(home, embedder)
        try:
            print(
                f"filling: {args.runs} runs on {args.threads} threads of {args.users} users", file=sys.stderr
            )
            owner = fill(runtime, args.runs, args.threads, args.users)
            user = "u00"
            expected = sorted(t for t, u in owner.items() if u == user)
            listed, baseline = [], []
            for _ in range(args.repeats):  # interleaved
                ms, found = timed(lambda: runtime.threads(user))
                listed.append(ms)
                if sorted(t.thread_id for t in found) != expected:
                    raise SystemExit(f"threads({user!r}) listed {found}, expected {expected}")
                ms, count = timed(lambda: runtime._submit(baseline_listing(runtime, user)))
                baseline.append(ms)
                if count != len(expected):
                    raise SystemExit(f"the baseline found {count} threads, expected {len(expected)}")
            user_checkpoints = sum(t.checkpoints for t in runtime.threads(user))

            conversations = {t: runtime.messages(t) for t in owner}
            before = stored(path)
            pruned, deleted = [], 0
            for thread in owner:
                ms, n = timed(lambda: runtime.prune_thread(thread))  # noqa: B023 - called at once
                pruned.append(ms)
                deleted += n
            after = stored(path)
            if any(runtime.messages(t) != conversations[t] for t in owner):
                raise SystemExit("a conversation changed in the prune")
            if after["checkpoints"] != len(owner) or deleted != before["checkpoints"] - len(owner):
                raise SystemExit(
                    f"the prune kept {after['checkpoints']} checkpoints for {len(owner)} threads"
                )
        finally:
            runtime.close()

    ratio_listing = statistics.median(listed) / statistics.median(baseline)
    print(f"Machine: {machine_line(machine())}\n")
    print(f"### One thread's SQLite checkpoints as it grows ({args.long} runs, memory off)\n")
    print(
        table(
            ["runs", "checkpoint bytes", "bytes per run"],
            [[g["runs"], f"{g['checkpoint_bytes']:,}", f"{g['per_run']:,.0f}"] for g in grew],
        )
    )
    print(
        f"\n### Listing a user's threads ({args.runs} runs on {args.threads} threads of {args.users} users; "
        f"the user has {len(expected)} threads, {user_checkpoints} checkpoints; {args.repeats} each, "
        "interleaved)\n"
    )
    print(
        table(
            ["call", "p50 ms", "p95 ms", "vs baseline"],
            [
                [
                    "`Runtime.threads(user)`",
                    f"{summary(listed)['p50']:.1f}",
                    f"{summary(listed)['p95']:.1f}",
                    f"{ratio_listing:.2f}×",
                ],
                [
                    "baseline: the saver's `alist(None, filter={user_id})`",
                    f"{summary(baseline)['p50']:.1f}",
                    f"{summary(baseline)['p95']:.1f}",
                    "1.00×",
                ],
            ],
        )
    )
    print(f"\n### `Runtime.prune_thread` on all {len(owner)} threads\n")
    print(
        table(
            ["", "checkpoints", "checkpoint bytes", "write bytes", "file bytes in use"],
            [
                [
                    "before",
                    before["checkpoints"],
                    f"{before['checkpoint_bytes']:,}",
                    f"{before['write_bytes']:,}",
                    f"{before['bytes_in_use']:,}",
                ],
                [
                    "after",
                    after["checkpoints"],
                    f"{after['checkpoint_bytes']:,}",
                    f"{after['write_bytes']:,}",
                    f"{after['bytes_in_use']:,}",
                ],
                [
                    "after ÷ before",
                    "",
                    f"{after['checkpoint_bytes'] / before['checkpoint_bytes']:.3f}×",
                    f"{after['write_bytes'] / max(1, before['write_bytes']):.3f}×",
                    f"{after['bytes_in_use'] / before['bytes_in_use']:.3f}×",
                ],
            ],
        )
    )
    print(
        f"\nPrune time per thread: p50 {summary(pruned)['p50']:.1f} ms, p95 {summary(pruned)['p95']:.1f} ms "
        f"({deleted} checkpoints deleted). Every conversation was the same after the prune (checked). "
        "`file bytes in use` is the file's pages minus its free list: SQLite reuses freed pages and "
        "does not shrink the file."
    )
    write_json(
        args.json,
        {
            "benchmark": "threads",
            "runs": args.runs,
            "threads": args.threads,
            "users": args.users,
            "growth": grew,
            "listing_ms": summary(listed),
            "baseline_listing_ms": summary(baseline),
            "ratio_listing_vs_baseline": ratio_listing,
            "user_threads": len(expected),
            "user_checkpoints": user_checkpoints,
            "before": before,
            "after": after,
            "prune_ms": summary(pruned),
            "deleted": deleted,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
