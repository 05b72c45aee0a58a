"""Per-run orchestration overhead of brainstack against a bare LangGraph graph, both on an instant model.

brainstack: ``Runtime(openai provider, dummy key, home=tmp, transport=httpx2.MockTransport)`` running a task
the semantic router sends to the marketing specialist: one model call, SQLite checkpointer,
``durability="sync"``. The graph runs recall → route → specialist_marketing → review → remember; with
``memory=False`` it is route → specialist_marketing → review (the run of the issue). The runtime runs every
graph on its own event loop thread, with one checkpointer and one compiled graph. ``arun`` collects only
the result; ``astream`` (the CLI's path) also streams each node's progress events, timed as its own row.

Baseline: a bare ``StateGraph`` with three nodes on ``AsyncSqliteSaver`` (a temp file opened once,
``durability="sync"``) whose middle node makes the same single ``ChatOpenAI`` call through the same kind of
mock transport, run on the caller's loop. Both sides keep SQLite's default ``synchronous=FULL``
(brainstack's default ``BRAINSTACK_SQLITE_SYNCHRONOUS``); one more pair runs both with ``NORMAL``.
All variants, including the ablations that split brainstack's extra time, run interleaved in one
process in a rotating order. Every run sends a new text (the task plus
a request number), so no run is served by MiniLM's single-text cache.

    .venv/bin/python benchmarks/bench_overhead.py [--quick] [--runs N] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypedDict

import numpy as np
from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, scrub_environment, summary, table, write_json

TASK = "How can we improve the conversion rate of our landing page?"
ANSWER = "Cut the form to two fields and put one customer quote above the button."
MODEL = "gpt-4o-mini"
DUMMY_KEY = "sk-benchmark-dummy-not-a-secret"
TARGET_RATIO = 1.25

Variant = Callable[[int], Awaitable[float]]
"""Runs once for request number ``i``; returns milliseconds."""


def task_text(i: int, variant: int) -> str:
    """The task, made unique per run and variant (no embedding-cache hits across runs or variants)."""
    return f"{TASK} (request {i}-{variant})"


# -- the zero-latency model --------------------------------------------------------------------------


class InstantModel:
    """An ``httpx2.MockTransport`` handler answering every chat completion at once with the same reply."""

    def __init__(self, content: str = ANSWER) -> None:
        self.calls = 0
        self.body = {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": f"{MODEL}-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 110, "completion_tokens": 30, "total_tokens": 140},
        }

    def __call__(self, request: Any) -> Any:
        import httpx2

        self.calls += 1
        return httpx2.Response(200, json=self.body)

    def transport(self) -> Any:
        import httpx2

        return httpx2.MockTransport(self)


class PrefilledEmbedder:
    """An embedder whose vectors were all computed beforehand: the ablation "query embedding is free"."""

    def __init__(self, inner: Any, texts: Sequence[str]) -> None:
        self.name = f"prefilled:{inner.name}"
        self.dim = inner.dim
        self.inner = inner
        self._memo = dict(zip(texts, inner.embed(list(texts)), strict=True))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:  # the route examples, embedded once when the router is built
            self._memo.update(zip(missing, self.inner.embed(missing), strict=True))
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts])

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    embed_query = embed_one  # one model: a query is embedded like anything else


# -- brainstack ----------------------------------------------------------------------------------------


def brainstack_runtime(
    home: Path,
    cache_dir: Path,
    model: InstantModel,
    embedder: Any,
    *,
    memory: bool,
    router_embedder: Any = None,
    sqlite_synchronous: str = "full",
) -> Any:
    from brainstack import Runtime, Settings

    settings = Settings(
        provider="openai",
        openai_api_key=DUMMY_KEY,
        model=MODEL,
        home=home,
        cache_dir=cache_dir,
        memory=memory,
        sqlite_synchronous=sqlite_synchronous,
    )
    return Runtime(settings, transport=model.transport(), embedder=embedder, router_embedder=router_embedder)


def short_switch_interval(runtime: Any, seconds: float = 0.0005) -> Callable[[str], Awaitable[Any]]:
    """Diagnostic: ``runtime.arun`` with a shorter GIL switch interval (process-wide, for this run only).

    A thread woken by another (the caller's loop when the runtime's loop finishes a run) waits up to the
    switch interval (5 ms by default) for the GIL while the other thread keeps running Python code.
    """

    async def run(text: str) -> Any:
        before = sys.getswitchinterval()
        sys.setswitchinterval(seconds)
        try:
            return await runtime.arun(text)
        finally:
            sys.setswitchinterval(before)

    return run


def inside_loop(runtime: Any) -> Callable[[str], Awaitable[float]]:
    """Ablation: run and time ``runtime.arun`` on the runtime's own loop (no thread hop, no events
    crossing loops); returns the milliseconds measured there."""

    async def run(text: str) -> float:
        async def body() -> float:
            start = time.perf_counter()
            await runtime.arun(text)
            return (time.perf_counter() - start) * 1000

        loop = runtime._runtime_loop()  # private: the loop every run of this runtime executes on
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(body(), loop))

    return run


def streamed(runtime: Any) -> Callable[[str], Awaitable[Any]]:
    """``runtime.astream`` read to its end (every progress event crosses to the caller's loop);
    returns the final ``RunResult``, as ``arun`` does."""

    async def run(text: str) -> Any:
        result = None
        async for event in runtime.astream(text):
            result = getattr(event, "result", result)
        return result

    return run


# -- the bare LangGraph baseline ---------------------------------------------------------------------


class BareState(TypedDict, total=False):
    """The state a plain chat graph would have."""

    messages: Annotated[list[AnyMessage], add_messages]
    task: str
    answer: str


def bare_graph(chat_model: Any, system_prompt: str, nodes: int = 3) -> Any:
    """START → prepare → model → finish → END, with ``nodes - 3`` pass-through nodes around the model."""
    from langchain_core.messages import SystemMessage
    from langgraph.graph import END, START, StateGraph

    def prepare(state: BareState) -> dict[str, Any]:
        return {"task": str(state["messages"][-1].content).strip()}

    async def model(state: BareState) -> dict[str, Any]:
        reply = await chat_model.ainvoke([SystemMessage(system_prompt), *state["messages"]])
        return {"messages": [reply], "answer": reply.content}

    def finish(state: BareState) -> dict[str, Any]:
        return {"answer": state["answer"].strip()}

    def passthrough(state: BareState) -> dict[str, Any]:
        return {}

    extra = nodes - 3
    chain: list[tuple[str, Any]] = [("prepare", prepare)]
    chain += [(f"before_{n}", passthrough) for n in range(extra // 2)]
    chain.append(("model", model))
    chain += [(f"after_{n}", passthrough) for n in range(extra - extra // 2)]
    chain.append(("finish", finish))
    graph = StateGraph(BareState)
    previous = START
    for name, fn in chain:
        graph.add_node(name, fn)
        graph.add_edge(previous, name)
        previous = name
    graph.add_edge(previous, END)
    return graph


def bare_chat_model(transport: Any, settings: Any) -> Any:
    """The same ChatOpenAI configuration brainstack's provider builds (model, retries, timeout, client)."""
    import httpx2
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=MODEL,
        temperature=settings.temperature,
        max_retries=settings.model_max_retries,
        timeout=settings.model_timeout_s,
        http_client=httpx2.Client(transport=transport, timeout=settings.model_timeout_s),
        http_async_client=httpx2.AsyncClient(transport=transport, timeout=settings.model_timeout_s),
        stream_usage=True,
        api_key=DUMMY_KEY,
    )


async def run_bare(compiled: Any, task: str) -> Any:
    from langchain_core.messages import HumanMessage

    config: Any = {"configurable": {"thread_id": uuid.uuid4().hex}}
    return await compiled.ainvoke({"messages": [HumanMessage(task)]}, config, durability="sync")


@contextlib.asynccontextmanager
async def sqlite_saver(path: Path, synchronous: str = "FULL") -> AsyncIterator[Any]:
    """LangGraph's ``AsyncSqliteSaver`` on its own aiosqlite connection (``from_conn_string``
    does the same), with ``PRAGMA synchronous`` set as the brainstack side has it."""
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with aiosqlite.connect(str(path)) as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(f"PRAGMA synchronous={synchronous}")
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        yield saver


# -- measurement --------------------------------------------------------------------------------------


def timed(run: Callable[[str], Awaitable[Any]], variant: int, nodes: list[dict[str, float]]) -> Variant:
    """Time one run; a brainstack run's per-node ``RunResult.timings`` go to ``nodes``.

    A runner that returns a float has timed itself (see :func:`inside_loop`): that number is used.
    """

    async def once(i: int) -> float:
        text = task_text(i, variant)
        start = time.perf_counter()
        result = await run(text)
        elapsed = (time.perf_counter() - start) * 1000
        if i >= 0 and hasattr(result, "timings"):
            nodes.append(dict(result.timings))
        return result if isinstance(result, float) else elapsed  # inside_loop times itself

    return once


async def interleave(variants: dict[str, Variant], runs: int, warmup: int) -> dict[str, list[float]]:
    """Run every variant ``runs`` times, round-robin with a rotating start (reduces drift and order bias)."""
    names = list(variants)
    for i in range(-warmup, 0):
        for name in names:
            await variants[name](i)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(runs):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(await variants[name](i))
    return samples


async def repeat(fn: Callable[[int], Awaitable[Any]], reps: int) -> list[float]:
    """Milliseconds per call; a piece that returns a float has timed itself (see ``after_idle``)."""
    out = []
    for n in range(reps):
        start = time.perf_counter()
        timed_itself = await fn(n)
        elapsed = (time.perf_counter() - start) * 1000
        out.append(timed_itself if isinstance(timed_itself, float) else elapsed)
    return out


async def measure_pieces(runtime: Any, saver: Any, reps: int) -> dict[str, list[float]]:
    """Time the parts of a brainstack run on their own (same process, after the main measurement)."""
    router = runtime.router
    embedder = router.embedder
    result = await runtime.arun(task_text(0, 99))
    done = {"configurable": {"thread_id": result.thread_id}}
    loop = runtime._runtime_loop()
    compiled = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(runtime._compiled_graph(), loop))
    salt = [0]

    def fresh(n: int) -> str:  # a text never embedded before
        salt[0] += 1
        return f"{TASK} (piece {salt[0]})"

    async def sync(fn: Callable[[], Any]) -> Any:
        return fn()

    async def nothing() -> None:
        return None

    async def prefetched_best(text: str) -> Any:
        router.prefetch(text)
        return await router.abest(text)

    async def after_idle(n: int) -> float:
        """The embedding after the process sat idle 10 ms (as between two requests): idle vCPUs
        wake up slowly and the model's weights have left the caches. Times the embedding only."""
        await asyncio.sleep(0.01)
        start = time.perf_counter()
        embedder.embed([fresh(n)])
        return (time.perf_counter() - start) * 1000

    async def on_runtime_loop(coro: Any) -> Any:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    pieces: dict[str, Callable[[int], Awaitable[Any]]] = {
        "router's query embedding (int8 MiniLM, 1 new text)": lambda n: sync(
            lambda: embedder.embed([fresh(n)])
        ),
        "router's query embedding, 1 new text, after 10 ms idle": after_idle,
        "query embedding, same text again (single-text cache hit)": lambda n: sync(
            lambda: embedder.embed([TASK])
        ),
        "SemanticRouter.best, new text (embedding + scoring)": lambda n: sync(lambda: router.best(fresh(n))),
        "router.abest, new text, no prefetch (embeds on a worker thread)": lambda n: router.abest(fresh(n)),
        "prefetch, then router.abest as the Route node calls it (awaited on the loop)": lambda n: (
            prefetched_best(fresh(n))
        ),
        "round trip to the runtime's loop thread (empty coroutine)": lambda n: on_runtime_loop(nothing()),
        "aget_state after a run (runtime loop; now only paused runs read it)": lambda n: on_runtime_loop(
            compiled.aget_state(done)
        ),
        "graph.compile, brainstack graph (now once per Runtime)": lambda n: sync(
            lambda: runtime.graph.compile(checkpointer=saver)
        ),
    }
    out = {}
    for name, fn in pieces.items():
        await repeat(fn, max(3, reps // 10))  # warm up
        out[name] = await repeat(fn, reps)
    return out


BARE3 = "bare LangGraph, 3 nodes (baseline)"
BARE5 = "bare LangGraph, 5 nodes (2 pass-through; brainstack's node count with memory on)"
DEFAULT = "brainstack Runtime.arun, default settings (memory on)"
FULL = "brainstack Runtime.arun, memory off"
SWITCH = "… memory off, GIL switch interval 0.5 ms during the run (diagnostic)"
INSIDE = "… memory off, timed on the runtime's loop (no thread hop)"
STREAMED = "… memory off, through Runtime.astream (progress events on, as the CLI runs)"
SERIAL = "… memory off, on the runtime's loop, no prefetch (the Route node embeds on a worker thread)"
PREFILLED = "… memory off, on the runtime's loop, query embedding precomputed"
BARE3_NORMAL = "bare LangGraph, 3 nodes, SQLite synchronous=NORMAL"
NORMAL = "brainstack Runtime.arun, memory off, BRAINSTACK_SQLITE_SYNCHRONOUS=normal"


async def benchmark(
    runs: int, warmup: int, piece_reps: int, workdir: Path, cache_dir: Path
) -> dict[str, Any]:
    from brainstack.memory import MiniLMEmbedder, QueryFastEmbedder

    router_embedder = MiniLMEmbedder(cache_dir, quantized=True)  # the router's default (int8)
    # Memory's default: stores with float32, searches with the router's int8 session and cache.
    embedder = QueryFastEmbedder(MiniLMEmbedder(cache_dir), router_embedder)
    embedder.warm_up()  # builds the ONNX exports into cache_dir if needed; never timed
    model = InstantModel()

    def runtime(name: str, memory: bool = False, router: Any = router_embedder, sync: str = "full") -> Any:
        return brainstack_runtime(
            workdir / name,
            cache_dir,
            model,
            embedder,
            memory=memory,
            router_embedder=router,
            sqlite_synchronous=sync,
        )

    names = [BARE3, BARE5, DEFAULT, FULL, STREAMED, SWITCH, INSIDE, SERIAL, PREFILLED, BARE3_NORMAL, NORMAL]
    index = {name: n for n, name in enumerate(names)}
    texts = [task_text(i, index[PREFILLED]) for i in range(-warmup, runs)]
    runtimes = {
        DEFAULT: runtime("default", memory=True),
        FULL: runtime("full"),
        SWITCH: runtime("switch"),
        STREAMED: runtime("streamed"),
        SERIAL: runtime("serial"),
        PREFILLED: runtime("prefilled", router=PrefilledEmbedder(router_embedder, texts)),
        NORMAL: runtime("normal", sync="normal"),
    }
    full = runtimes[FULL]
    # The hop is timed on one runtime both ways: two instances differ by more than the hop
    # (their own SQLite files and loop threads; 0.6-0.8 ms apart in earlier runs, 0.15-0.35 ms
    # on one instance).
    runtimes[INSIDE] = full
    system_prompt = full.agents.agents["marketing"].system_prompt
    chat_model = bare_chat_model(model.transport(), full.settings)

    # Ablation: the Route node embeds its task itself (abest on a worker thread), nothing ahead.
    runtimes[SERIAL].router.prefetch = lambda text: None

    for rt in runtimes.values():  # first runs: Chroma, SQLite files, loop threads, sessions
        check = await rt.arun(task_text(-1000, 0))
        route = check.route
        if (route.target, route.decided_by, check.usage.model_calls) != ("marketing", "semantic", 1):
            raise SystemExit(f"the task did not route semantically to marketing with one call: {route}")

    try:
        async with (
            sqlite_saver(workdir / "bare3.sqlite") as saver3,
            sqlite_saver(workdir / "bare5.sqlite") as saver5,
            sqlite_saver(workdir / "bare3-normal.sqlite", "NORMAL") as saver3_normal,
        ):
            bare3 = bare_graph(chat_model, system_prompt).compile(checkpointer=saver3)
            bare5 = bare_graph(chat_model, system_prompt, nodes=5).compile(checkpointer=saver5)
            bare3_normal = bare_graph(chat_model, system_prompt).compile(checkpointer=saver3_normal)
            runners: dict[str, Callable[[str], Awaitable[Any]]] = {
                BARE3: lambda text: run_bare(bare3, text),
                BARE5: lambda text: run_bare(bare5, text),
                DEFAULT: runtimes[DEFAULT].arun,
                FULL: full.arun,
                SWITCH: short_switch_interval(runtimes[SWITCH]),
                STREAMED: streamed(runtimes[STREAMED]),
                INSIDE: inside_loop(runtimes[INSIDE]),
                SERIAL: inside_loop(runtimes[SERIAL]),
                PREFILLED: inside_loop(runtimes[PREFILLED]),
                BARE3_NORMAL: lambda text: run_bare(bare3_normal, text),
                NORMAL: runtimes[NORMAL].arun,
            }
            node_timings: dict[str, list[dict[str, float]]] = {name: [] for name in names}
            variants = {name: timed(runners[name], index[name], node_timings[name]) for name in names}
            calls_before = model.calls
            samples = await interleave(variants, runs, warmup)
            calls = model.calls - calls_before
            expected = (runs + warmup) * len(variants)
            if calls != expected:
                raise SystemExit(f"expected one model call per run ({expected}), saw {calls}")
            pieces = await measure_pieces(full, saver3, piece_reps)
    finally:
        for rt in runtimes.values():
            rt.close()
    return {
        "runs": runs,
        "warmup": warmup,
        "samples": samples,
        "node_timings_ms": {name: timings for name, timings in node_timings.items() if timings},
        "pieces": pieces,
        "model_calls": calls,
    }


# -- report -------------------------------------------------------------------------------------------


def verdict(ratio: float) -> str:
    return "met" if ratio <= TARGET_RATIO else "NOT met"


def report(result: dict[str, Any]) -> str:
    stats = {name: summary(values) for name, values in result["samples"].items()}
    mean = {name: s["mean"] for name, s in stats.items()}
    p50 = {name: s["p50"] for name, s in stats.items()}
    base = stats[BARE3]
    rows = []
    for name, s in stats.items():
        vs_mean, vs_p50 = s["mean"] / base["mean"], s["p50"] / base["p50"]
        rows.append([name, s["n"], s["mean"], s["p50"], s["p95"], f"{vs_mean:.2f}×", f"{vs_p50:.2f}×"])
    # (label, slower variant, faster variant, part of the memory-off extra time?)
    steps = [
        ("memory on: recall + remember (Chroma episodes, working memory, skills, KB)", DEFAULT, FULL, 0),
        ("thread hop to the runtime's loop and the result back to the caller's loop", FULL, INSIDE, 1),
        ("(diagnostic: hop time saved by a 0.5 ms GIL switch interval)", FULL, SWITCH, 0),
        ("query embedding for the Route node (int8 MiniLM, prefetched on arrival)", INSIDE, PREFILLED, 1),
        ("(ablation: the same embedding without the prefetch)", SERIAL, PREFILLED, 0),
        ("the rest: bigger state, node timers, values stream, RunResult", PREFILLED, BARE3, 1),
        ("(streaming the progress events too, as stream/astream and the CLI do)", STREAMED, FULL, 0),
        ("(for scale: 2 more pass-through nodes in bare LangGraph)", BARE5, BARE3, 0),
        ("(SQLite synchronous=FULL instead of NORMAL, bare LangGraph)", BARE3, BARE3_NORMAL, 0),
        ("(… the same, brainstack memory off)", FULL, NORMAL, 0),
    ]
    extra = mean[FULL] - mean[BARE3]
    parts = []
    for label, a, b, counted in steps:
        share = f"{100 * (mean[a] - mean[b]) / extra:.0f} %" if counted else ""
        parts.append([label, mean[a] - mean[b], share, p50[a] - p50[b]])
    parts.append(
        ["total extra, memory off (brainstack - bare 3 nodes)", extra, "100 %", p50[FULL] - p50[BARE3]]
    )
    pieces = [
        [name, *(summary(values)[k] for k in ("n", "mean", "p50", "p95"))]
        for name, values in result["pieces"].items()
    ]
    default_ratio, full_ratio = mean[DEFAULT] / base["mean"], mean[FULL] / base["mean"]
    node_names = list(dict.fromkeys(k for t in result["node_timings_ms"][DEFAULT] for k in t))
    node_rows = [
        [name, *(float(np.median([t.get(node, 0.0) for t in timings])) for node in node_names)]
        for name, timings in result["node_timings_ms"].items()
    ]
    return "\n".join(
        [
            f"### Per-run overhead, zero-latency model ({result['runs']} runs each, {result['warmup']} "
            "warm-up, interleaved)",
            "",
            table(["variant", "n", "mean ms", "p50 ms", "p95 ms", "mean vs bare-3", "p50 vs bare-3"], rows),
            "",
            f"Target brainstack / bare ≤ {TARGET_RATIO:.2f}× (mean): memory off (route → specialist → "
            f"review) **{full_ratio:.2f}× — {verdict(full_ratio)}** (p50 {p50[FULL] / base['p50']:.2f}×); "
            f"default settings (memory on) **{default_ratio:.2f}× — {verdict(default_ratio)}** "
            f"(p50 {p50[DEFAULT] / base['p50']:.2f}×). With SQLite synchronous=NORMAL on both sides: "
            f"memory off {mean[NORMAL] / mean[BARE3_NORMAL]:.2f}× "
            f"(p50 {p50[NORMAL] / p50[BARE3_NORMAL]:.2f}×; "
            f"{mean[NORMAL]:.2f} vs {mean[BARE3_NORMAL]:.2f} ms).",
            "",
            "### Where brainstack's extra time goes (differences between the interleaved variants)",
            "",
            table(["part", "Δ mean ms", "share of extra (memory off)", "Δ p50 ms"], parts),
            "",
            "### Node wall times inside brainstack runs (`RunResult.timings`, median ms)",
            "",
            table(["variant", *node_names], node_rows),
            "",
            "### The pieces timed alone (same process, memory-off runtime)",
            "",
            table(["piece", "n", "mean ms", "p50 ms", "p95 ms"], pieces),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="measured runs per variant (default 300)")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up runs per variant (default 20)")
    parser.add_argument("--piece-reps", type=int, default=300, help="repetitions per isolated piece")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 runs, 3 warm-up")
    parser.add_argument("--cache-dir", type=Path, help="ONNX model cache (default: a temp folder)")
    parser.add_argument("--json", metavar="PATH", help="write the raw per-run numbers here")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.warmup, args.piece_reps = 20, 3, 20
    scrub_environment()
    with tempfile.TemporaryDirectory(prefix="brainstack-bench-") as tmp:
        workdir = Path(tmp)
        cache_dir = args.cache_dir or workdir / "cache"
        result = asyncio.run(benchmark(args.runs, args.warmup, args.piece_reps, workdir, cache_dir))
    print(f"Machine: {machine_line(machine())}\n")
    print(report(result))
    write_json(args.json, {"benchmark": "overhead", "task": TASK, **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
