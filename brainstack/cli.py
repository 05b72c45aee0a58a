"""The ``brainstack`` command line. Heavy imports happen inside commands so ``--help`` is instant."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from brainstack.events import Event
    from brainstack.runtime import Runtime

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_RUN = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainstack",
        description="A LangGraph multi-agent runtime: routes each task to a specialist or to a "
        "CTO/CMO/CFO group chat, with durable threads.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run one task and print the routed answer")
    run.add_argument("task", help="the question or instruction")
    run.add_argument("--user", default="default", help="user id (default: %(default)s)")
    run.add_argument("--thread", help="thread id: continue an earlier conversation")
    run.add_argument("--agent", help="skip routing and send the task to this agent")
    run.add_argument("--agents", metavar="FILE", help="an agents.yaml to use instead of the built-in one")
    run.add_argument("--json", action="store_true", help="print the RunResult as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from brainstack.errors import BrainstackError, UsageError

    try:
        return _run(args)
    except UsageError as exc:
        print(f"brainstack: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrainstackError as exc:
        print(f"brainstack: {exc}", file=sys.stderr)
        return EXIT_RUN
    except KeyboardInterrupt:
        print("brainstack: interrupted; the thread's last checkpoint is kept.", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so in one line; BRAINSTACK_DEBUG=1 shows the traceback
        import os

        if os.environ.get("BRAINSTACK_DEBUG"):
            raise
        print(
            f"brainstack: internal error {type(exc).__name__}: {exc} (BRAINSTACK_DEBUG=1 shows the "
            "traceback; please report it)",
            file=sys.stderr,
        )
        return EXIT_RUN


def _run(args: argparse.Namespace) -> int:
    from brainstack.runtime import Runtime

    runtime = Runtime(agents=args.agents)
    out = sys.stdout
    if not args.json:
        print(_banner(runtime), file=sys.stderr)
    started = time.perf_counter()
    result = asyncio.run(_drive(runtime, args, None if args.json else out))
    if args.json:
        out.write(result.model_dump_json(indent=2) + "\n")
        return 0
    seconds = time.perf_counter() - started
    usage = result.usage
    print(f"\n{result.answer}\n", file=out)
    print(
        f"thread {result.thread_id} · {usage.total_tokens} tokens ({usage.prompt_tokens} in, "
        f"{usage.completion_tokens} out, {usage.model_calls} model calls) · {seconds:.2f}s",
        file=sys.stderr,
    )
    return 0


async def _drive(runtime: Runtime, args: argparse.Namespace, out: TextIO | None) -> Any:
    from brainstack.events import ResultEvent

    async for event in runtime.astream(args.task, user_id=args.user, thread_id=args.thread, agent=args.agent):
        if isinstance(event, ResultEvent):
            return event.result
        if out is not None:
            _show(event, out)
    raise AssertionError("the run ended without a result")  # pragma: no cover


def _show(event: Event, out: TextIO) -> None:
    from brainstack.events import GroupChatTurnEvent, RouteEvent, ToolCallEvent

    if isinstance(event, RouteEvent):
        d = event.decision
        print(
            f"→ route: {d.target} ({d.kind}), decided by {d.decided_by}, confidence "
            f"{d.confidence:.2f} — {d.reason}",
            file=out,
        )
    elif isinstance(event, ToolCallEvent):
        print(f"  · {event.agent} called {event.tool}({_args(event.arguments)}) → {event.result}", file=out)
    elif isinstance(event, GroupChatTurnEvent):
        print(f"  [{event.speaker}] {event.content}", file=out)
    out.flush()


def _args(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in arguments.items())


def _banner(runtime: Runtime) -> str:
    if runtime.model == "offline":
        return (
            "brainstack · model: offline (no OPENAI_API_KEY or OPENAI_BASE_URL set): routing, "
            "group chat, tools and checkpoints are real; answers are assembled, not generated."
        )
    where = runtime.settings.openai_base_url or "OpenAI"
    return f"brainstack · model: {runtime.settings.model} via {where}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
