"""Worst-case time of the text functions brainstack applies to user and model text, against benign text.

Each function runs on (a) a benign, realistic text of the same length (prose with numbers, dates, an
e-mail address, a phone number, abbreviations, a stated preference, arithmetic) and (b) adversarial
inputs: long runs of the characters a pattern's repeated parts accept, followed by one that makes the
match fail, the shape that makes a backtracking regex super-linear. Sizes: 1k and 8k characters for
what only ever sees a task (``BRAINSTACK_MAX_TASK_CHARS``, 8,000 by default), also 64k for what sees
unbounded text (answers, memory documents, knowledge-base files, cassette bodies), and the
calculator at its own input limit (500 characters).

Reported per input: the median time of one call, its ratio to the benign text of the same length
measured in the same run, and the growth from one size to the next (about 8 when linear, about 64
when quadratic). An input whose time, extrapolated as if quadratic, would pass ``--max-seconds`` is not run
at the larger size.

    .venv/bin/python benchmarks/bench_text.py [--quick] [--task-64k] [--max-seconds S] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, scrub_environment, table, write_json

TASK_SIZES = (1_000, 8_000)
UNBOUNDED_SIZES = (1_000, 8_000, 64_000)

BENIGN = (
    "We are planning the Q3 pricing review for the EU market. Revenue grew 3.5% vs. last year, e.g. in "
    "Germany and the U.K., and churn is 12.5% of 1,200,000 users (see INC-4412 and PO-55120). "
    "I prefer short answers with a table. Dr. Lovelace asked: what is 17.5% of 2340? "
    "Please contact ada.lovelace@example.com or call +44 20 7946 0958 before 2024-05-01 at 10:30. "
    "The v2.5 price list is at https://example.com/prices/q3.pdf; the plan covers 2024-2025. "
    'She said "done." Then we compared 1,200,000 / 12 with the forecast and moved on!\n'
)
"""One paragraph of realistic task / answer text, repeated and cut at a word to the wanted length."""

BENIGN_EXPRESSION = "(1200000 / 85000) * 30 + 17.5% of 2340 - 2 ** 10 / 3 + 1,234.5 * 0.1 - 7 % 3"


def benign_text(n: int) -> str:
    text = (BENIGN * (n // len(BENIGN) + 2))[:n]
    return text[: text.rfind(" ")] + "." if " " in text else text


def benign_expression(n: int) -> str:
    """Whole copies of :data:`BENIGN_EXPRESSION` joined by ``+``: at most ``n`` characters, and valid."""
    copies = max(1, (n + 3) // (len(BENIGN_EXPRESSION) + 3))
    return " + ".join([BENIGN_EXPRESSION] * copies)


@dataclass(frozen=True)
class Input:
    """An adversarial input: ``head + unit * k + tail``, ``k`` chosen to make ``n`` characters."""

    unit: str
    head: str = ""
    tail: str = ""

    def build(self, n: int) -> str:
        k = max(1, (n - len(self.head) - len(self.tail)) // len(self.unit))
        return self.head + self.unit * k + self.tail

    @property
    def label(self) -> str:
        parts = [repr(self.head)] if self.head else []
        parts.append(f"{self.unit!r} * k")
        if self.tail:
            parts.append(repr(self.tail))
        return "`" + " + ".join(parts) + "`"


@dataclass
class Subject:
    name: str
    where: str
    call: Callable[[str], Any]
    sizes: tuple[int, ...]
    inputs: list[Input]
    benign: Callable[[int], str] = benign_text
    results: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)


def _calculate(expression: str) -> Any:
    from brainstack.tools.calculator import CalculatorError, calculate

    try:
        return calculate(expression)
    except CalculatorError as exc:  # most adversarial inputs are not arithmetic: the answer is an error
        return exc


def _check_task(text: str) -> Any:
    from brainstack.errors import InvalidTaskError

    try:
        return InvalidTaskError.check(text, len(text))
    except InvalidTaskError as exc:
        return exc


def runs(*specs: str | tuple[str, str, str]) -> list[Input]:
    """Inputs from ``unit`` or ``(head, unit, tail)``."""
    return [Input(spec) if isinstance(spec, str) else Input(spec[1], spec[0], spec[2]) for spec in specs]


def subjects() -> list[Subject]:
    from brainstack.agents.offline import _find_arithmetic
    from brainstack.memory.gateway import sentences, stated_preferences, without_preferences
    from brainstack.memory.keyword import tokenize
    from brainstack.memory.pii import mask_pii
    from brainstack.testing.cassette import scrub

    return [
        Subject(
            "agents.offline._find_arithmetic",
            "the offline model, on the task",
            _find_arithmetic,
            TASK_SIZES,
            runs(("", "(", "x"), ("", "1,", "+ 2k"), ("1 +", " ", "x"), "1"),
        ),
        Subject(
            "errors.InvalidTaskError.check", "every task", _check_task, TASK_SIZES, runs(("", "a", "\x1b"))
        ),
        Subject(
            "memory.gateway.sentences",
            "tasks",
            sentences,
            TASK_SIZES,
            runs(("", ".", "x"), ("", "!?", "x"), (". ", ")", "x"), "e.g. ", "A. ", "U.S. ", ("x", " ", ".")),
        ),
        Subject(
            "memory.gateway.stated_preferences",
            "every remembered task",
            stated_preferences,
            TASK_SIZES,
            runs(("", ".", "x"), "e.g. ", ("I prefer x", ",", "x"), ("I prefer", " ", "x"), "I like "),
        ),
        Subject(
            "memory.gateway.without_preferences",
            "the task a search or procedure is about",
            without_preferences,
            TASK_SIZES,
            runs(("", ".", "x"), "A. ", "i prefer ", ("I prefer", " ", "x"), "i really like "),
        ),
        Subject(
            "memory.pii.mask_pii",
            "every remembered task and answer",
            mask_pii,
            UNBOUNDED_SIZES,
            runs(("", "1 ", "x"), "0 1 ", ("", "12 34 ", "x"), "1", "1-", ("", "a.", "@x"))
            + runs(("a@", "b.", "1"), "-@", "+1 ", "(1) ", "1."),
        ),
        Subject(
            "memory.keyword.tokenize",
            "memory documents, knowledge base, queries",
            tokenize,
            UNBOUNDED_SIZES,
            runs(("", "a-", "-"), ("", "a.", "_"), "1.", "_a", "a", "返a", "返"),
        ),
        Subject(
            "testing.cassette.scrub",
            "cassette bodies",
            lambda text: scrub(text, ["sk-literal-secret"]),
            UNBOUNDED_SIZES,
            runs(("Bearer", " ", "!"), "sk-", "-", ("", "Bearer\t", "x")),
        ),
        Subject(
            "tools.calculator.calculate",
            "at its 500-character limit",
            _calculate,
            (500,),
            runs(
                ("", "1", "x"),
                ("", "1", " %x"),
                ("1.", "1", "x"),
                ("", "1+", "1"),
                ("", "-", "1"),
                ("", "(", "1"),
            ),
            benign=benign_expression,
        ),
    ]


# -- timing -------------------------------------------------------------------------------------------


def time_call(call: Callable[[str], Any], text: str, min_seconds: float, max_reps: int) -> list[float]:
    """Milliseconds per call: at least 3 calls (1 if a call takes over a second), until ``min_seconds``."""
    call(text)  # warm up (compiles patterns, imports)
    times: list[float] = []
    while len(times) < max_reps:
        start = time.perf_counter()
        call(text)
        times.append((time.perf_counter() - start) * 1000)
        if times[-1] > 1000 or (len(times) >= 3 and sum(times) >= min_seconds * 1000):
            break
    return times


def measure(subject: Subject, args: argparse.Namespace) -> None:
    sizes = list(UNBOUNDED_SIZES if args.task_64k and subject.sizes == TASK_SIZES else subject.sizes)
    sizes = [n for n in sizes if not (args.quick and n > 8_000)]
    cases = [("benign", subject.benign)] + [(i.label, i.build) for i in subject.inputs]
    for label, build in cases:
        row: dict[int, dict[str, Any]] = {}
        previous: tuple[int, float] | None = None
        for n in sizes:
            if previous is not None:
                estimate = previous[1] * (n / previous[0]) ** 2 / 1000
                if estimate > args.max_seconds:
                    row[n] = {"skipped": f"est. up to {estimate:.0f} s"}
                    continue
            text = build(n)
            times = time_call(subject.call, text, args.min_seconds, args.max_reps)
            median = statistics.median(times)
            row[n] = {"chars": len(text), "median_ms": median, "times_ms": times}
            previous = (n, median)
        subject.results[label] = row


# -- report -------------------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def rows(subject: Subject) -> list[list[Any]]:
    sizes = sorted({n for row in subject.results.values() for n in row})
    benign = subject.results["benign"]
    out = []
    for label, row in subject.results.items():
        cells: list[Any] = [label]
        for n in sizes:
            cell = row.get(n, {})
            if "median_ms" not in cell:
                cells += [cell.get("skipped", "—"), ""]
                continue
            cells.append(_ms(cell["median_ms"]))
            ratio = cell["median_ms"] / benign[n]["median_ms"] if "median_ms" in benign.get(n, {}) else None
            cells.append("" if label == "benign" or ratio is None else f"{ratio:.1f}×")
        for small, large in pairwise(sizes):
            if "median_ms" in row.get(small, {}) and "median_ms" in row.get(large, {}):
                cells.append(f"{row[large]['median_ms'] / row[small]['median_ms']:.1f}")
            else:
                cells.append("")
        out.append(cells)
    return out


def headers(subject: Subject) -> list[str]:
    sizes = sorted({n for row in subject.results.values() for n in row})
    names = [f"{n // 1000}k" if n % 1000 == 0 else str(n) for n in sizes]
    out = ["input"]
    for name in names:
        out += [f"{name} ms", f"{name} vs benign"]
    out += [f"{large}/{small} growth" for small, large in pairwise(names)]
    return out


def report(measured: list[Subject]) -> str:
    lines = []
    for subject in measured:
        lines += [f"### `{subject.name}` ({subject.where})", "", table(headers(subject), rows(subject)), ""]
    lines.append(
        "Median ms per call. `vs benign`: against the benign text of the same length, same run. "
        "`growth`: time at one size over the size before (8 when linear, 64 when quadratic)."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: no 64k inputs, short timings")
    parser.add_argument("--min-seconds", type=float, default=0.2, help="time each input at least this long")
    parser.add_argument("--max-reps", type=int, default=50, help="calls per input at most (default 50)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="skip a larger size when one call, extrapolated as quadratic, would take longer (default 60)",
    )
    parser.add_argument(
        "--task-64k",
        action="store_true",
        help="time the task-only functions at 64k too (for a raised BRAINSTACK_MAX_TASK_CHARS)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the raw numbers here")
    args = parser.parse_args(argv)
    if args.quick:
        args.min_seconds, args.max_reps, args.max_seconds = 0.02, 5, min(args.max_seconds, 5.0)
    scrub_environment()
    measured = subjects()
    for subject in measured:
        measure(subject, args)
    print(f"Machine: {machine_line(machine())}\n")
    print(report(measured))
    write_json(
        args.json,
        {
            "benchmark": "text",
            "results": {s.name: {"sizes": list(s.sizes), "inputs": s.results} for s in measured},
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
