"""The ``brainstack`` command line. Heavy imports happen inside commands so ``--help`` is instant."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from brainstack.events import Event
    from brainstack.runtime import Runtime

__all__ = ["console_main", "main"]

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

    resume = commands.add_parser(
        "resume",
        help="continue a thread's unfinished run: answer its approval request, or go on after a crash "
        "or an error",
    )
    resume.add_argument("--thread", required=True, help="thread id")
    decision = resume.add_mutually_exclusive_group()
    decision.add_argument("--approve", action="store_true", help="accept the proposed answer")
    decision.add_argument(
        "--reject", nargs="?", const="", metavar="WHY", help="reject the proposed answer (optionally why)"
    )
    decision.add_argument("--edit", metavar="TEXT", help="replace the proposed answer with TEXT")
    resume.add_argument("--json", action="store_true", help="print the RunResult as JSON")

    history = commands.add_parser("history", help="list a thread's checkpoints, newest first")
    history.add_argument("--thread", required=True, help="thread id")
    history.add_argument("--json", action="store_true", help="print the checkpoints as JSON")
    replay = commands.add_parser("replay", help="re-run a thread from one of its checkpoints")
    replay.add_argument("--thread", required=True, help="thread id")
    replay.add_argument("--checkpoint", required=True, help="a checkpoint id from `brainstack history`")
    replay.add_argument("--json", action="store_true", help="print the RunResult as JSON")

    threads = commands.add_parser("threads", help="list threads, or prune or delete their checkpoints")
    threads_commands = threads.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = threads_commands.add_parser("list", help="a user's threads (or all), most recently used first")
    delete = threads_commands.add_parser(
        "delete", help="delete threads' checkpoints: a thread, a user's threads, or all of them"
    )
    prune = threads_commands.add_parser(
        "prune", help="delete every checkpoint but the latest of a thread, a user's threads, or all of them"
    )
    for sub in (listing, delete, prune):
        which = sub.add_mutually_exclusive_group(required=sub is not listing)
        if sub is not listing:
            which.add_argument("--thread", help="thread id")
        which.add_argument(
            "--user",
            help="user id: the threads the user ran tasks on"
            + (" (default: the user 'default')" if sub is listing else ""),
        )
        which.add_argument("--all", action="store_true", help="every thread")
        sub.add_argument(
            "--idle-days",
            type=float,
            metavar="N",
            help="only threads unused for at least N days"
            + ("" if sub is listing else " (not with --thread)"),
        )
        if sub is listing:
            sub.add_argument("--json", action="store_true", help="print the threads as JSON")
        else:
            sub.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    memory = commands.add_parser("memory", help="search or forget what brainstack remembers about a user")
    memory_commands = memory.add_subparsers(dest="action", required=True, metavar="ACTION")
    search = memory_commands.add_parser(
        "search", help="search a user's episodes (hybrid: meaning + keywords)"
    )
    search.add_argument("query", help="what to look for (the meaning and the keywords)")
    search.add_argument("--user", default="default", help="user id (default: %(default)s)")
    search.add_argument("-k", type=int, default=5, help="how many episodes, 1-1000 (default: %(default)s)")
    search.add_argument("--json", action="store_true", help="print the episodes as JSON")
    show = memory_commands.add_parser("show", help="what is kept about a user: preferences, episodes")
    show.add_argument("--user", default="default", help="user id (default: %(default)s)")
    show.add_argument("--json", action="store_true", help="print it as JSON")
    forget = memory_commands.add_parser(
        "forget", help="delete a user's episodes and working memory (or one stated preference)"
    )
    forget.add_argument("--user", required=True, help="user id")
    forget.add_argument(
        "--preference", metavar="TEXT", help="delete only this stated preference (as `memory show` lists it)"
    )
    forget.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    skills = commands.add_parser("skills", help="list, show or forget procedural skills")
    skills_commands = skills.add_subparsers(dest="action", required=True, metavar="ACTION")
    skills_commands.add_parser("list", help="every skill, built-in and learned, with its success count")
    show = skills_commands.add_parser("show", help="one skill's file")
    show.add_argument("name", help="the skill's name, as `brainstack skills list` shows it")
    unlearn = skills_commands.add_parser("forget", help="delete a learned skill and its success count")
    unlearn.add_argument("name", help="the learned skill's name, as `brainstack skills list` shows it")
    unlearn.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    kb = commands.add_parser("kb", help="the knowledge base (Markdown and text files)")
    kb_commands = kb.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = kb_commands.add_parser("add", help="ingest a file or a folder (unchanged files are skipped)")
    add.add_argument(
        "path",
        help="a UTF-8 text file, or a folder: its .md, .markdown, .txt and .rst files (not hidden "
        "ones), up to 5 MiB each",
    )
    kb_search = kb_commands.add_parser("search", help="search the knowledge base")
    kb_search.add_argument("query", help="what to look for")
    kb_search.add_argument("-k", type=int, default=4, help="how many passages, 1-1000 (default: %(default)s)")
    kb_search.add_argument(
        "--mode",
        choices=("hybrid", "dense", "keyword"),
        default="hybrid",
        help="rank by meaning and by keyword at once (hybrid, the default), by meaning alone (dense), "
        "or by the query's words alone (keyword); the score shown is the cosine similarity in each",
    )
    kb_commands.add_parser("list", help="the files in the knowledge base")
    kb_remove = kb_commands.add_parser(
        "remove", help="delete a file's chunks, or those of every file under a folder (the files stay)"
    )
    kb_remove.add_argument("path", help="a file or folder as it was added (it need not exist any more)")
    kb_remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    routes = commands.add_parser("routes", help="see how the semantic router routes your own requests")
    routes_commands = routes.add_subparsers(dest="action", required=True, metavar="ACTION")
    explain = routes_commands.add_parser(
        "explain", help="every route's score for one request, and the decision"
    )
    explain.add_argument("text", help="the request")
    check = routes_commands.add_parser(
        "check",
        help="coverage and precision on a YAML file of labelled requests (route: [request, ...])",
    )
    check.add_argument("file", help="YAML mapping each route name to requests that belong to it")
    check.add_argument("--min-coverage", type=float, metavar="SHARE", help="exit 1 below this (0-1)")
    check.add_argument("--min-precision", type=float, metavar="SHARE", help="exit 1 below this (0-1)")
    for sub in (explain, check):
        sub.add_argument("--agents", metavar="FILE", help="an agents.yaml to use instead of the built-in one")
    doctor = commands.add_parser(
        "doctor", help="check that the model, embeddings, checkpoints and memory backends answer"
    )
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    for sub in (resume, history, replay):  # a thread's graph has the agents it ran with
        sub.add_argument(
            "--agents", metavar="FILE", help="the agents.yaml the thread ran with, if not the built-in one"
        )
    return parser


def console_main() -> None:
    """The ``brainstack`` command (and ``python -m brainstack``): :func:`main`, then a quick exit.

    A run leaves some 10,000 modules' objects behind (pydantic schemas of the OpenAI types,
    LangChain, Chroma). Freeing them one by one at interpreter teardown took 0.6-0.9 s of a
    5 s first run and writes nothing: the checkpointer is closed when the command's Runtime is,
    Chroma commits each write, the keyword index is a cache saved on write. So once every other
    exit hook has run and every non-daemon thread has been joined, the process ends there (daemon
    threads — model warm-up, the runtime's loop — are abandoned at exit either way).
    :func:`main` itself, called in-process (tests, a host program), never exits.
    """
    import atexit

    global _owns_process
    _owns_process = True
    _catch_stop_signals()
    status = [1]  # an uncaught exception: its traceback is printed before the exit hooks run
    if "coverage" not in sys.modules:  # coverage saves its data at teardown
        atexit.register(_end_process, status)  # registered first, so it runs last
    try:
        status[0] = main()
    except SystemExit as exc:  # argparse: --help (0), a usage error (2)
        status[0] = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        raise
    if status[0] >= 128:  # stopped (Ctrl-C, SIGTERM), its last line said: no waiting for threads
        # A worker blocked on a backend (a server that never answers) kept a stopped command
        # alive at the interpreter's exit, which joins them, until a second SIGTERM (QA).
        _end_process(status)
    sys.exit(status[0])


def _end_process(status: list[int]) -> None:
    import contextlib
    import logging
    import os

    logging.shutdown()  # flush the handlers of whoever registered its hook before ours
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`| head`): nothing to write
            stream.flush()
    os._exit(status[0])


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, SIGHUP) during a run: what its thread now holds, and what to do next;
    ``said``: already printed (before the Runtime closed, which may wait for the run to stop)."""

    def __init__(self, message: str, *, said: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.said = said


def _say_stopped(rest: str) -> None:
    """The one line of a stopped command: "brainstack: interrupted" (or "stopped by SIGTERM") and
    ``rest``."""
    import signal

    how = f"stopped by {signal.Signals(_signalled[0]).name}" if _signalled else "interrupted"
    print(f"brainstack: {how}{rest}", file=sys.stderr, flush=True)
    if _handles_signals():  # the last line: a model build left running may not log after it
        import logging

        # (a level, not `disabled`: that stops the named logger only, not the modules' own)
        logging.getLogger("brainstack").setLevel(logging.CRITICAL + 1)


_signalled: list[int] = []
"""The signal (SIGTERM, SIGHUP) that stopped the command, handled as Ctrl-C is."""


def _stop_as_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM and SIGHUP (systemd, Docker, Kubernetes, a closed terminal) stop a command as Ctrl-C
    does, with its message and the exit status of the signal: they ended it without a word."""
    import signal

    _signalled.append(signum)
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):  # Python's, or asyncio.run's (which cancels the run's task cleanly)
        handler(signal.SIGINT, frame)
    else:  # SIGINT ignored (a background job of a shell script): stop all the same
        raise KeyboardInterrupt


def _stop_if_signalled() -> None:
    """Raise the KeyboardInterrupt of a stop signal that was lost: raised in a finalizer or a
    native callback, Python prints "Exception ignored" and goes on, and a SIGTERM in a command's
    first second let the run finish with exit 0 (QA, 2 of 27 trials). Called where a command
    moves on to its run."""
    if _signalled:
        raise KeyboardInterrupt


def _catch_stop_signals() -> None:
    import signal

    for name in ("SIGTERM", "SIGHUP"):
        # (no SIGHUP on Windows; an ignored one stays ignored: `nohup brainstack run …`)
        if hasattr(signal, name) and signal.getsignal(getattr(signal, name)) == signal.SIG_DFL:
            signal.signal(getattr(signal, name), _stop_as_interrupt)


_STOPPING_GRACE_S = 1.0
"""How long further Ctrl-C presses are ignored once a command is stopping."""


def _ignore_further_interrupts() -> None:
    """Once a command is being stopped, another Ctrl-C only cut its message short (or printed a
    traceback from the interpreter's exit): one within :data:`_STOPPING_GRACE_S` is ignored; a
    later one (stopping hangs: a frozen server, say) ends the process at once. In the
    ``brainstack`` process only (:func:`main` called in-process leaves its host's handlers alone)."""
    import signal

    if not _handles_signals():
        return
    since = time.monotonic()

    def again(signum: int, frame: Any) -> None:
        if time.monotonic() - since < _STOPPING_GRACE_S:
            return
        import os

        with contextlib.suppress(OSError, ValueError, RuntimeError):  # (a write it interrupted)
            sys.stderr.write("brainstack: stopped at once, without waiting for the run to end.\n")
            sys.stderr.flush()
        os._exit(128 + signum)

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name) and signal.getsignal(getattr(signal, name)) != signal.SIG_IGN:
            signal.signal(getattr(signal, name), again)


_owns_process = False
"""Whether :func:`console_main` runs this process (the ``brainstack`` command)."""


def _handles_signals() -> bool:
    """Whether this call may change signal handlers: in the ``brainstack`` process, on its main
    thread (:func:`main` called in-process leaves its host's handlers alone)."""
    import threading

    return _owns_process and threading.current_thread() is threading.main_thread()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from brainstack.errors import BrainstackError, UsageError

    _show_progress_logs()
    try:
        _check_ids(args)
        if args.command == "memory":
            return _memory(args)
        if args.command == "skills":
            return _skills(args)
        if args.command == "kb":
            return _kb(args)
        if args.command == "routes":
            return _routes(args)
        if args.command == "doctor":
            return _doctor(args)
        if args.command in ("history", "replay"):
            return _time_travel(args)
        if args.command == "threads":
            return _threads(args)
        return _run(args)
    except UsageError as exc:
        _say_error(exc)
        return EXIT_USAGE
    except BrainstackError as exc:
        _say_error(exc)
        return EXIT_RUN
    except BrokenPipeError:  # `brainstack ... | head`: the reader left; not an error
        _silence_stdout()
        return 0
    except KeyboardInterrupt as exc:
        _ignore_further_interrupts()
        import signal

        if not (isinstance(exc, _Interrupted) and exc.said):
            _say_stopped(exc.message if isinstance(exc, _Interrupted) else ".")
        return 128 + (_signalled[0] if _signalled else signal.SIGINT)
    except Exception as exc:  # a bug: say so in one line; BRAINSTACK_DEBUG=1 shows the traceback
        if _debugging():
            raise
        print(
            f"brainstack: internal error {type(exc).__name__}: {exc} (BRAINSTACK_DEBUG=1 shows the "
            "traceback; please report it)",
            file=sys.stderr,
        )
        return EXIT_RUN


def _debugging() -> bool:
    """``BRAINSTACK_DEBUG=1`` (or ``true``, ``yes``); ``0``, ``false`` or unset is off, as the
    other switches (``BRAINSTACK_MEMORY``, ``BRAINSTACK_RECORD``) read them."""
    import os

    return os.environ.get("BRAINSTACK_DEBUG", "").strip().lower() in ("1", "true", "yes")


def _say_error(exc: Exception) -> None:
    """A brainstack error's one line; with ``BRAINSTACK_DEBUG=1`` after its traceback, which shows
    the exception it was translated from (an error may say "BRAINSTACK_DEBUG=1 shows where it
    failed": it only did for exceptions brainstack had not translated)."""
    if _debugging():
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    print(f"brainstack: {exc}", file=sys.stderr)


def _silence_stdout() -> None:
    """The reader of stdout left (``| head``): what is still printed goes nowhere, quietly."""
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _check_ids(args: argparse.Namespace) -> None:
    """Refuse a malformed --thread, --user or --checkpoint in every command, as runs do."""
    given = [(flag, getattr(args, flag)) for flag in ("thread", "user", "checkpoint") if hasattr(args, flag)]
    given = [(flag, value) for flag, value in given if value is not None]
    if not given:
        return
    from brainstack.runtime import _check_id  # the rule Runtime applies to user and thread ids

    for flag, value in given:
        _check_id(f"--{flag}", value)


def _show_progress_logs() -> None:
    """brainstack's INFO records (one-time preparation steps, e.g. building the embedding model)
    as ``◦ message`` lines on stderr; a host that configured logging itself keeps its own."""
    import logging

    logger = logging.getLogger("brainstack")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("◦ %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _run(args: argparse.Namespace) -> int:
    from brainstack.runtime import Runtime

    if args.command == "resume" and args.edit is not None and not args.edit.strip():
        # (the run's own refusal quoted the Python form, "{'edit': ''} is not a decision")
        raise _usage("--edit needs the corrected answer: pass it as TEXT (--reject to refuse the answer).")
    with Runtime(agents=args.agents) as runtime:
        runtime.warm_up()  # models load while the rest of the first run imports
        return _run_with(runtime, args)


def _run_with(runtime: Runtime, args: argparse.Namespace) -> int:
    from brainstack.config.agents import check_approval_routes
    from brainstack.runtime import cli_command

    out = sys.stdout
    # Approval routes that name no route of this agents file are one line, without the banner
    # first. (Checked here and when the graph is built, not when a Runtime is made: the commands
    # that only read checkpoints, `threads` and `memory forget --user`, load no --agents file, and
    # refused routes of the user's own agents file.)
    check_approval_routes(runtime.settings, runtime.agents)
    if args.command == "run":  # a bad task, user or agent is one line, without the banner first
        runtime._check(args.task, args.user, args.thread, args.agent, None)
    if not args.json:
        print(_banner(runtime), file=sys.stderr)
    started = time.perf_counter()
    if args.command == "run" and args.thread is None:
        import uuid

        args.thread = uuid.uuid4().hex  # named here, so that Ctrl-C can say which thread to continue
    since = datetime.now(UTC)
    try:
        _stop_if_signalled()
        result = asyncio.run(_drive(runtime, args, None if args.json else out))
    except KeyboardInterrupt:
        _ignore_further_interrupts()
        message = _left_by_interrupt(runtime, args, since)
        # Said now: closing the Runtime waits for the run to stop (a model still being built,
        # say), and Ctrl-C seemed to do nothing for seconds (QA).
        _say_stopped(message)
        raise _Interrupted(message, said=True) from None
    if args.json:
        out.write(result.model_dump_json(indent=2) + "\n")
        return 0
    seconds = time.perf_counter() - started
    usage = result.usage
    print(f"\n{result.answer}\n", file=out)
    if result.status == "awaiting_approval":
        print(
            "⏸ waiting for your approval. Continue with: "
            f"{cli_command('resume', result.thread_id, runtime.agents_file)} --approve | --reject [WHY] | "
            "--edit TEXT",
            file=sys.stderr,
        )
    elif result.approval is not None:
        note = (
            f": {result.approval.note}"
            if result.approval.status == "rejected" and result.approval.note
            else ""
        )
        print(f"✓ {result.approval.status} by the reviewer{note}", file=sys.stderr)
    print(
        f"thread {result.thread_id} · {usage.total_tokens} tokens ({usage.prompt_tokens} in, "
        f"{usage.completion_tokens} out, {usage.model_calls} model calls) · {seconds:.2f}s",
        file=sys.stderr,
    )
    return 0


def _gateway() -> Any:
    from brainstack.config import Settings
    from brainstack.memory.gateway import MemoryGateway

    return MemoryGateway(Settings.from_env())


def _memory(args: argparse.Namespace) -> int:
    gateway = _gateway()
    if args.action == "search":
        _check_search(args)
        episodes = gateway.episodes.search(args.user, args.query, k=args.k)
        if args.json:
            import dataclasses
            import json

            print(json.dumps([dataclasses.asdict(e) for e in episodes], indent=2, ensure_ascii=False))
            return 0
        if not episodes:
            print(f"No episodes for user {args.user!r} match.", file=sys.stderr)
            return 0
        for episode in episodes:
            when = _when(episode.metadata.get("created_at"))
            print(f"{episode.score:.3f}  {when}  {episode.metadata.get('route', '')}  [{episode.id[:8]}]")
            print("   " + episode.text.replace("\n", "\n   "))
        return 0
    if args.action == "show":
        return _show_memory(gateway, args)
    if args.preference is not None:
        return _forget_preference(gateway, args)
    return _forget(gateway, args)


def _show_memory(gateway: Any, args: argparse.Namespace) -> int:
    """The user's working memory (stated preferences, other facts) and how many episodes."""
    from brainstack.errors import translate
    from brainstack.memory.gateway import PREFERENCES_KEY

    try:
        facts = gateway.working.items("user", args.user)
        episodes = gateway.episodes.count(args.user)
    except Exception as exc:
        raise translate(exc) from exc
    preferences = [str(p) for p in facts.pop(PREFERENCES_KEY, None) or []]
    if args.json:
        import json

        shown = {"user_id": args.user, "preferences": preferences, "facts": facts, "episodes": episodes}
        print(json.dumps(shown, indent=2, ensure_ascii=False))
        return 0
    from brainstack.memory.working import InProcessWorkingMemory

    if isinstance(gateway.working, InProcessWorkingMemory):  # this process's own: empty
        print(
            "Working memory is in-process: preferences stated in other processes are not kept "
            "(set BRAINSTACK_REDIS_URL to keep them).",
            file=sys.stderr,
        )
    print(f"User {args.user!r}:")
    print(f"  {episodes} episode(s) (search them with `brainstack memory search QUERY --user …`)")
    if not preferences:
        print("  no stated preference")
    for preference in preferences:
        print(f"  preference: {preference}")
    for key, value in facts.items():
        print(f"  {key}: {value}")
    return 0


def _forget_preference(gateway: Any, args: argparse.Namespace) -> int:
    """Delete one stated preference of the user (as `memory show` lists it)."""
    from brainstack.errors import translate

    try:
        # (said as it was stored, not as typed: 'Short Answers' matched "short answers")
        forgotten, left = gateway.forget_preference_as_stored(args.user, args.preference)
    except KeyError as exc:
        raise _usage(str(exc.args[0])) from None
    except Exception as exc:
        raise translate(exc) from exc
    print(f"Forgot the preference {forgotten!r} of user {args.user!r} ({len(left)} left).")
    return 0


def _threads_of(user_id: str) -> list[str]:
    from brainstack.runtime import Runtime

    with Runtime() as runtime:  # (the checkpointer only: no model, no memory)
        return [t.thread_id for t in runtime.threads(user_id)]


def _forget(
    gateway: Any, args: argparse.Namespace, threads_of: Callable[[str], list[str]] = _threads_of
) -> int:
    """Delete the user's episodes and working memory (their preferences, and the session facts
    of the threads they ran tasks on): each layer is tried, and the output says what each one
    deleted and which failed (a backend that is down must not hide what was done)."""
    from brainstack.errors import translate

    def question() -> str:
        try:
            episodes = f"{gateway.episodes.count(args.user)} episode(s)"
        except Exception:  # episodic memory is down: still offer to clear the other layer
            episodes = "the episodes (episodic memory is not answering)"
        return f"Delete {episodes} and the working memory of user {args.user!r}?"

    if not _confirmed(args.yes, question):
        return 0
    done, failed = [], []
    try:
        threads = threads_of(args.user)
    except Exception as exc:
        threads = []
        failed.append(
            f"the session facts of their threads not deleted (the threads were not found): {translate(exc)}"
        )

    def working() -> int:
        cleared = gateway.working.clear("user", args.user)
        return int(cleared + sum(gateway.working.clear("session", thread) for thread in threads))

    layers = (
        ("episodic memory", "episode(s)", lambda: gateway.episodes.forget(args.user)),
        ("working memory", "working-memory key(s)", working),
    )
    again = f"brainstack memory forget --user {shlex.quote(args.user)} --yes"
    for layer, unit, forget in layers:
        try:
            done.append(f"{forget()} {unit}")
        except Exception as exc:
            failed.append(f"{layer} not deleted: {translate(exc)}")
        except KeyboardInterrupt:
            deleted = f"deleted so far: {', '.join(done)}; " if done else ""
            raise _Interrupted(f" while forgetting: {deleted}run `{again}` again to finish.") from None
    if done:
        print(f"Forgot user {args.user!r}: {', '.join(done)}.")
    for line in failed:
        print(f"brainstack: {line}", file=sys.stderr)
    if failed:
        print(f"brainstack: once it is back, run `{again}` again.", file=sys.stderr)
    from brainstack.memory.working import InProcessWorkingMemory

    if isinstance(gateway.working, InProcessWorkingMemory):  # (QA: "0 keys" read as "none anywhere")
        print(
            "Working memory is in-process: what a running process (a worker, a notebook) keeps "
            "in its own memory cannot be reached from here; it ends with that process or its TTL "
            "(set BRAINSTACK_REDIS_URL to share working memory, and forget it from here).",
            file=sys.stderr,
        )
    return EXIT_RUN if failed else 0


def _confirmed(yes: bool, question: Callable[[], str]) -> bool:
    """``--yes``, or a yes to ``question()`` asked on the terminal; without a terminal to ask on,
    a UsageError says to add --yes. Says "Nothing deleted." on a no."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise _usage("refusing to delete without confirmation: add --yes")
    try:
        answer = input(f"{question()} [y/N] ")
    except EOFError:  # Ctrl-D: a no
        answer = ""
        print(file=sys.stderr)
    if answer.strip().lower() in ("y", "yes"):
        return True
    print("Nothing deleted.", file=sys.stderr)
    return False


def _check_search(args: argparse.Namespace) -> None:
    if not args.query.strip():  # it would match nothing, or anything
        raise _usage("The query is empty: pass the words to search for.")
    from brainstack.memory._hnsw import SEARCH_BREADTH

    if not 1 <= args.k <= SEARCH_BREADTH:  # (a huge one was an OverflowError from the store)
        raise _usage(f"-k must be between 1 and {SEARCH_BREADTH}")


def _skills(args: argparse.Namespace) -> int:
    from brainstack.memory.gateway import successes

    store = _gateway().skills
    if args.action == "list":
        stats = store.stats()
        for skill in store.all():
            count = stats.get(skill.name, {}).get("success_count", 0)
            print(f"{skill.name:40} {skill.provenance.source:8} {successes(count):>13}  {skill.description}")
        return 0
    if args.action == "forget" and (problem := store.unusable(args.name)) is not None:
        return _forget_unusable(store, args.name, problem, args.yes)
    try:
        skill = store.get(args.name)
    except KeyError:
        raise _usage(f"no skill named {args.name!r}; see `brainstack skills list`") from None
    if args.action == "forget":
        return _forget_skill(store, skill, args.yes)
    if (problem := store.unusable(args.name)) is not None:  # the built-in one stands in
        print(
            f"Your skill file cannot be used, so runs follow the built-in skill below: {problem}",
            file=sys.stderr,
        )
    import yaml

    print(
        yaml.safe_dump(skill.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=100), end=""
    )
    print(f"# success count: {store.success_count(skill.name)}")
    return 0


def _forget_unusable(store: Any, name: str, problem: str, yes: bool) -> int:
    """Delete a user skill file that cannot be read or is not a valid skill (no run uses it)."""
    print(problem, file=sys.stderr)
    if not _confirmed(yes, lambda: f"Delete the unusable skill file for {name!r}?"):
        return 0
    path = store.forget(name)
    print(f"Forgot skill {name!r}: deleted {path}.")
    return 0


def _forget_skill(store: Any, skill: Any, yes: bool) -> int:
    if skill.provenance.source == "builtin":
        store.forget(skill.name)  # refused (built-in skills are read-only), before any question

    def question() -> str:
        from brainstack.memory.gateway import successes

        count = successes(store.success_count(skill.name))
        return f"Delete the {skill.provenance.source} skill {skill.name!r} ({count})?"

    if not _confirmed(yes, question):
        return 0
    path = store.forget(skill.name)
    print(f"Forgot skill {skill.name!r}: deleted {path}.")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    """Each part on its own line (or as JSON); exit 1 when any part does not answer."""
    from brainstack.doctor import check

    checks = check()
    if args.json:
        import dataclasses
        import json

        print(json.dumps([dataclasses.asdict(c) for c in checks], indent=2, ensure_ascii=False))
    else:
        for c in checks:
            print(f"{'ok' if c.ok else 'FAIL':<4}  {c.part:<15}  {c.detail}  ({c.ms:.0f} ms)")
    return 0 if all(c.ok for c in checks) else EXIT_RUN


def _kb(args: argparse.Namespace) -> int:
    from brainstack.memory.knowledge import chunk_count

    kb = _gateway().knowledge
    if args.action == "add":
        from pathlib import Path

        if not args.path.strip():  # Path("") is the current folder: all of it would be added
            raise _usage("The path is empty: pass the file or folder to add.")
        root = Path(args.path).expanduser()
        if not root.exists():
            raise _usage(f"{args.path} does not exist")
        if not (root.is_file() or root.is_dir()):  # a FIFO, a socket, a device
            raise _usage(f"{args.path} is not a regular file or a folder")

        chunks = _ChunkProgress()

        def progress(path: str, status: str) -> None:
            if status != "skipped":  # listed below, with the reason
                print(f"  {status:9} {path}", file=sys.stderr, flush=True)
            chunks.start()

        kept = (
            "the files listed above as added or updated are stored; run `kb add` again to go on (it "
            "skips unchanged files)"
        )
        try:
            report = kb.add(args.path, progress=progress, chunk_progress=chunks)
        except Exception:
            print(f"  stopped: {kept}.", file=sys.stderr)
            raise
        except KeyboardInterrupt:
            raise _Interrupted(f": {kept}.") from None
        for path, why in report.skipped:
            print(f"  skipped   {path}: {why}", file=sys.stderr)
        print(f"Knowledge base: {report} ({chunk_count(kb.count())} in all).")
        return 0
    if args.action == "list":
        sources = kb.sources()
        if not sources:
            print("The knowledge base is empty; add files with `brainstack kb add PATH`.", file=sys.stderr)
        for source in sources:
            print(source)
        return 0
    if args.action == "remove":
        if not args.path.strip():  # it would name the current folder
            raise _usage("The path is empty: pass the file or folder to remove.")
        found = kb.sources(under=args.path)
        if not found:
            print(f"The knowledge base holds nothing from {args.path}; nothing removed.", file=sys.stderr)
            return 0
        if not _confirmed(args.yes, lambda: f"Remove {len(found)} file(s) from the knowledge base?"):
            return 0
        removed = kb.remove_all(args.path)
        for source, chunks in removed.items():
            print(f"  removed   {source} ({chunk_count(chunks)})", file=sys.stderr)
        print(f"Knowledge base: removed {len(removed)} file(s) ({chunk_count(kb.count())} left).")
        return 0
    _check_search(args)
    passages = kb.search(args.query, k=args.k, mode=args.mode)
    if not passages:
        empty = not kb.count()
        print(
            "The knowledge base is empty; add files with `brainstack kb add PATH`."
            if empty
            else "No passage in the knowledge base matches.",
            file=sys.stderr,
        )
    for passage in passages:
        print(f"{passage.score:.3f}  {passage.source} (chunk {passage.chunk})")
        print("   " + passage.text.strip().replace("\n", "\n   "))
    return 0


class _ChunkProgress:
    """``kb add``'s progress inside a big file: ``embedding PATH (N of M chunks)`` on stderr every
    ``every_s`` seconds while its chunks are embedded (none for a file done sooner, whose
    ``added`` line follows at once)."""

    def __init__(self, every_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s, self.clock = every_s, clock
        self.last = clock()

    def start(self) -> None:
        """A file is done: the next one's first line comes ``every_s`` after this."""
        self.last = self.clock()

    def __call__(self, path: str, stored: int, chunks: int) -> None:
        now = self.clock()
        if stored < chunks and now - self.last >= self.every_s:
            print(f"  embedding {path} ({stored} of {chunks} chunks)", file=sys.stderr, flush=True)
            self.last = now


def _routes(args: argparse.Namespace) -> int:
    from brainstack.runtime import Runtime

    if args.action == "explain" and not args.text.strip():
        raise _usage("The request is empty: pass the text to route.")

    labelled = _labelled(args) if args.action == "check" else {}  # (a bad file: its one line alone)
    with Runtime(agents=args.agents) as runtime:
        if args.action == "explain":  # routed as a run's task would be, or refused as it would be
            from brainstack.errors import InvalidTaskError

            args.text = InvalidTaskError.check(args.text, runtime.settings.max_task_chars)
        router = runtime.router  # the one runs use: the settings' embedder, threshold and margin
        print(
            f"router: {router.embedder.name} · threshold {router.threshold:g} · margin {router.margin:g}",
            file=sys.stderr,
        )
        if args.action == "explain":
            return _explain_route(router, args.text)
        return _check_routes(router, runtime.agents.routes, args, labelled)


def _explain_route(router: Any, text: str) -> int:
    from brainstack.graphs.nodes import routing_text

    scores = router.scores_many([routing_text(text)])[0]
    for index in sorted(range(len(router.names)), key=lambda i: -scores[i]):
        print(f"  {router.names[index]:<16} {scores[index]:.3f}")
    match = router.best_many([routing_text(text)])[0]
    if router.accepts(match):
        print(f"→ semantic route: {match.name} (score {match.score:.3f}, margin {match.margin:.3f})")
    elif match.score < router.threshold:
        print(f"→ below the threshold ({match.score:.3f} < {router.threshold:g}): the model classifies it")
    else:
        print(
            f"→ {match.name} leads by less than the margin ({match.margin:.3f} < {router.margin:g}): "
            "the model classifies it"
        )
    return 0


def _labelled(args: argparse.Namespace) -> dict[str, list[str]]:
    """``routes check``'s file of labelled requests, and its options, checked."""
    from pathlib import Path

    import yaml

    from brainstack.config.agents import load_yaml  # a route named twice is refused

    path = Path(args.file)
    try:
        labelled = load_yaml(path.read_text("utf-8"))
    except OSError as exc:
        raise _usage(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise _usage(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not (
        isinstance(labelled, dict)
        and labelled
        and all(
            isinstance(texts, list) and texts and all(isinstance(t, str) and t.strip() for t in texts)
            for texts in labelled.values()
        )
    ):
        raise _usage(
            f'{path} must map route names to lists of requests, e.g. `finance: ["What is our burn rate?"]`'
        )
    for share in (args.min_coverage, args.min_precision):
        if share is not None and not 0 <= share <= 1:
            raise _usage(f"--min-coverage and --min-precision take a share from 0 to 1, not {share:g}")
    return {str(k): v for k, v in labelled.items()}


def _check_routes(
    router: Any, examples: dict[str, list[str]], args: argparse.Namespace, labelled: dict[str, list[str]]
) -> int:
    from brainstack.graphs.router import check_routes

    path = args.file
    try:
        check = check_routes(router, labelled, examples=examples)
    except ValueError as exc:
        hint = "" if args.agents else " (routes of your own agents file: add --agents FILE)"
        raise _usage(f"{path}: {exc}{hint}") from None
    print(f"{'route':<16} {'n':>4} {'semantic':>9} {'correct':>8} {'top-1':>6}")
    for name, row in check.counts.items():
        print(f"{name:<16} {row['n']:>4} {row['covered']:>9} {row['correct']:>8} {row['top1']:>6}")
    n, covered = check.total("n"), check.total("covered")
    print(f"{'all':<16} {n:>4} {covered:>9} {check.total('correct'):>8} {check.total('top1'):>6}")
    precision = "—" if check.precision is None else f"{check.precision:.1%}"
    print(
        f"\ncoverage {check.coverage:.1%} ({covered} of {n} routed without the model) · "
        f"precision {precision} · top-1 {check.top1:.1%}"
    )
    if check.wrong:
        print("\nrouted to the wrong route:")
        for item in check.wrong:
            m = item.match
            print(f"  {item.expected} → {m.name} {m.score:.3f} (margin {m.margin:.3f}): {item.text}")
    if check.unsure:
        print("\nleft to the model (below the threshold or the margin):")
        for item in check.unsure:
            m = item.match
            print(f"  {item.expected}: best {m.name} {m.score:.3f} (margin {m.margin:.3f}): {item.text}")
    if check.examples:
        print(f"\nleft out, already example utterances: {len(check.examples)}")
    failed = []
    if args.min_coverage is not None and check.coverage < args.min_coverage:
        failed.append(f"coverage {check.coverage:.1%} < {args.min_coverage:.1%}")
    if args.min_precision is not None and (check.precision or 0.0) < args.min_precision:
        failed.append(f"precision {precision} < {args.min_precision:.1%}")
    if failed:
        print(f"brainstack: {'; '.join(failed)}", file=sys.stderr)
        return EXIT_RUN
    return 0


def _time_travel(args: argparse.Namespace) -> int:
    from brainstack.runtime import Runtime

    with Runtime(agents=args.agents) as runtime:
        from brainstack.graphs.stranded import stranded_message

        if args.command == "history":
            checkpoints = runtime.history(args.thread)
            # `next` lists only nodes this graph has: an empty one may be a step due in another
            # agents file's graph (`missing`) rather than the end of a run
            missing = checkpoints[0].missing if checkpoints else []
            if args.json:
                import json

                print(json.dumps([c.model_dump() for c in checkpoints], indent=2, ensure_ascii=False))
            elif not checkpoints:
                print(f"Thread {args.thread!r} has no checkpoints.", file=sys.stderr)
            else:
                for line in _history_lines(checkpoints):
                    print(line)
            if missing:
                print(f"⚠ {stranded_message(args.thread, missing)}", file=sys.stderr)
            return 0
        result = runtime.replay(args.thread, args.checkpoint)  # refuses a stranded checkpoint itself
        if args.json:
            print(result.model_dump_json(indent=2))
        else:
            print(f"→ route: {result.route.target} ({result.route.decided_by})\n\n{result.answer}\n")
        return 0


def _history_lines(checkpoints: list[Any]) -> list[str]:
    """One line per checkpoint, in columns: a step due in a node this graph lacks ("approve (not
    in this graph)") was wider than its column and pushed the time and task of its line aside."""
    upcoming = [
        f"{', '.join(c.missing)} (not in this graph)" if c.missing else ", ".join(c.next) or "(end of run)"
        for c in checkpoints
    ]
    width = max(22, *map(len, upcoming))
    return [
        f"{c.checkpoint_id}  step {c.step:>2}  next: {next_:{width}} {c.created_at[:19]}  {c.task or ''}"
        for c, next_ in zip(checkpoints, upcoming, strict=True)
    ]


def _threads(args: argparse.Namespace) -> int:
    from brainstack.runtime import Runtime

    if getattr(args, "thread", None) is not None and args.idle_days is not None:
        raise _usage("--idle-days selects among a user's threads or all threads: not with --thread")
    if args.idle_days is not None and not 0 <= args.idle_days < 100_000:
        raise _usage(f"--idle-days must be at least 0 and below 100000 (days), not {args.idle_days}")
    with Runtime() as runtime:
        if args.action == "list":
            user = None if args.all else args.user or "default"
            threads = runtime.threads(user, idle_days=args.idle_days)
            if args.json:
                import json

                print(json.dumps([t.model_dump() for t in threads], indent=2, ensure_ascii=False))
                return 0
            if not threads:
                print(f"{_none(user, args.idle_days)}.", file=sys.stderr)
            # Columns as wide as their widest entry: thread ids and user names are the caller's.
            ids = max((len(t.thread_id) for t in threads), default=0)
            users = max((len(t.user_id or "?") for t in threads), default=0)
            for t in threads:
                task = " ".join((t.last_task or "").split())  # one line per thread
                # ("?": runs before user ids were kept)
                who = f"  {t.user_id or '?':<{users}}" if user is None else ""
                print(
                    f"{t.thread_id:<{ids}}  {t.updated_at[:19]}{who}  {t.status:<17}  "
                    f"{t.checkpoints:>4} checkpoint(s)  {task}"
                )
                if t.status == "failed" and t.error:  # why, under its row
                    print(f"{'':<{ids}}  failed on: {t.error}")
            return 0
        return _delete_or_prune(runtime, args)


def _selection(count: int, user: str | None, idle_days: float | None) -> str:
    """A selection of threads as the CLI names it: "the 3 thread(s) of user 'ada'", "all 5
    thread(s) unused for 30 day(s)"."""
    what = f"the {count} thread(s) of user {user!r}" if user is not None else f"all {count} thread(s)"
    return what if idle_days is None else f"{what} unused for {_days(idle_days)} day(s)"


def _none(user: str | None, idle_days: float | None) -> str:
    none = f"User {user!r} has no threads" if user is not None else "There are no threads"
    return none if idle_days is None else f"{none} unused for {_days(idle_days)} day(s)"


def _days(days: float) -> str:
    """``days`` as given: 30 (not 30.0), 0.5, 99999.99."""
    return str(int(days)) if days == int(days) else str(days)


def _delete_or_prune(runtime: Runtime, args: argparse.Namespace) -> int:
    """``threads delete`` / ``threads prune`` of one thread, or of a selection of threads, each on
    its own: a busy thread or a failure is named and the others are still done (exit 1 if any
    is left)."""
    from brainstack.errors import BrainstackError

    pruning = args.action == "prune"
    done = "pruned" if pruning else "deleted"
    if args.thread is not None:
        threads, whose = [args.thread], f"thread {args.thread!r}"
    else:
        user = None if args.all else args.user
        threads = [t.thread_id for t in runtime.threads(user, idle_days=args.idle_days)]
        whose = _selection(len(threads), user, args.idle_days)
        if not threads:
            print(f"{_none(user, args.idle_days)}; nothing {done}.", file=sys.stderr)
            return 0
    question = (
        f"Delete every checkpoint but the latest of {whose} (the conversation goes on, its history goes)?"
        if pruning
        else f"Delete {whose} and all their checkpoints?"
    )
    if not _confirmed(args.yes, lambda: question):
        return 0
    count, failed = 0, 0
    for thread_id in threads:
        try:
            count += runtime.prune_thread(thread_id) if pruning else runtime.delete_thread(thread_id)
        except BrainstackError as exc:
            if args.thread is not None:
                raise
            failed += 1
            print(f"brainstack: thread {thread_id!r} not {done}: {exc}", file=sys.stderr)
    if pruning and args.thread is not None and not count:  # (or no checkpoint at all)
        print(f"Thread {args.thread!r} has no checkpoint before its latest; nothing pruned.", file=sys.stderr)
    elif pruning:
        kept = "its latest" if args.thread is not None else "the latest of each"
        whose = f"{len(threads) - failed} of {whose}" if failed else whose  # not the busy ones
        print(f"Pruned {whose}: deleted {count} checkpoint(s), kept {kept}.")
    elif args.thread is None:
        print(f"Deleted {count} thread(s){'' if user is None else f' of user {user!r}'}.")
    elif count:
        print(f"Deleted thread {args.thread!r}.")
    else:
        print(f"Thread {args.thread!r} has no checkpoints; nothing deleted.", file=sys.stderr)
    return EXIT_RUN if failed else 0


def _usage(message: str) -> Exception:
    from brainstack.errors import UsageError

    return UsageError(message)


def _when(timestamp: Any) -> str:
    try:
        return datetime.fromtimestamp(float(timestamp), UTC).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return "?"


def _left_by_interrupt(runtime: Runtime, args: argparse.Namespace, since: datetime) -> str:
    """What a stopped ``run`` or ``resume`` left on its thread, and the command that goes on from
    there (the rest of the message after "interrupted"). The hint named ``resume`` even when the
    run had saved nothing yet (most of a command's first seconds), where ``resume`` is refused."""
    from brainstack.runtime import cli_command

    thread = args.thread
    resume = cli_command("resume", thread, runtime.agents_file)
    keeps = f"; the thread keeps its last checkpoint: continue it with `{resume}`."
    try:
        # After the stopped run's turn on the thread (its last writes), and briefly: the storage
        # may be what hung. The newest checkpoint's time first, which needs no graph: a first run
        # stopped while its models were built would wait for them (the graph needs the router).
        newest_at = runtime._schedule(_newest_after_runs(runtime, thread)).result(timeout=3)
        if args.command == "run" and (newest_at is None or newest_at < since):
            where = "nothing was kept" if newest_at is None else f"thread {thread!r} is as it was"
            return f" before the run saved anything: {where}. Run the task again."
        if newest_at is None:  # (a resume on a thread deleted meanwhile)
            return f": thread {thread!r} has no checkpoints."
        newest = runtime._schedule(_history_after_runs(runtime, thread)).result(timeout=3)[0]
    except Exception:  # (the storage failed or is slow, or the run is still loading its models)
        if args.command == "run":  # it may have saved nothing, and then `resume` is refused (QA)
            history = cli_command("history", thread, runtime.agents_file)
            return (
                f"; whether the run saved anything could not be read in time: `{history}` shows it. "
                f"Continue with `{resume}` if it lists the task, or run the task again."
            )
        return keeps
    if "approve" in newest.next:
        return f"; the run waits for approval: `{resume} --approve|--reject [WHY]|--edit TEXT`."
    if newest.next or not newest.answer:
        return keeps
    history = cli_command("history", thread, runtime.agents_file)
    return f" after the run had finished: its answer is on thread {thread!r} (`{history}`)."


async def _newest_after_runs(runtime: Runtime, thread: str) -> datetime | None:
    """When the thread's newest checkpoint was written (None: it has none), once this process's
    runs on it have ended; read from the checkpointer alone, without the graph."""
    async with runtime._state().turn(thread):
        saver = await runtime._checkpointer()
        newest = await saver.aget_tuple({"configurable": {"thread_id": thread}})
    return None if newest is None else datetime.fromisoformat(newest.checkpoint["ts"])


async def _history_after_runs(runtime: Runtime, thread: str) -> Any:
    """The thread's checkpoints once this process's runs on it have ended (on the runtime loop)."""
    async with runtime._state().turn(thread):
        return await runtime._history(thread)


@contextlib.contextmanager
def _acknowledge_interrupts() -> Iterator[None]:
    """Say at once that Ctrl-C was heard. asyncio.run's handler only asks the run to stop: the
    first run of a process builds its graph (imports) and models for seconds before it can, and
    Ctrl-C seemed to do nothing meanwhile (QA). The ``brainstack`` process only."""
    import signal

    stop = signal.getsignal(signal.SIGINT)
    if not _handles_signals() or not callable(stop):
        yield
        return

    def heard(signum: int, frame: Any) -> None:
        with contextlib.suppress(OSError, ValueError, RuntimeError):  # (a write it interrupted)
            print("◦ stopping: the run stops at its next step", file=sys.stderr, flush=True)
        signal.signal(signal.SIGINT, stop)  # (once: a further press is asyncio's again)
        stop(signum, frame)

    signal.signal(signal.SIGINT, heard)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is heard:  # (asyncio.run restores only its own)
            signal.signal(signal.SIGINT, stop)


async def _drive(runtime: Runtime, args: argparse.Namespace, out: TextIO | None) -> Any:
    with _acknowledge_interrupts():
        return await _drive_run(runtime, args, out)


async def _drive_run(runtime: Runtime, args: argparse.Namespace, out: TextIO | None) -> Any:
    from brainstack.events import ResultEvent

    _stop_if_signalled()
    if args.command == "resume":
        resume: Any = None
        if args.approve:
            resume = "approve"
        elif args.reject is not None:
            resume = {"reject": args.reject}
        elif args.edit is not None:
            resume = {"edit": args.edit}
        events = runtime.astream(thread_id=args.thread, resume=resume)
    else:
        events = runtime.astream(args.task, user_id=args.user, thread_id=args.thread, agent=args.agent)
    async for event in events:
        if isinstance(event, ResultEvent):
            return event.result
        if out is not None:
            try:
                _show(event, out, kept=runtime.settings.redis_url is not None)
            except BrokenPipeError:  # `| head` read its lines: the run still ends and is remembered
                _silence_stdout()
                out = None
    raise AssertionError("the run ended without a result")  # pragma: no cover


def _show(event: Event, out: TextIO, *, kept: bool = True) -> None:
    """Print one progress event; ``kept``: working memory outlives this process (Redis)."""
    from brainstack.events import (
        GroupChatTurnEvent,
        InterruptEvent,
        MemoryRecalledEvent,
        MemoryWrittenEvent,
        RouteEvent,
        ToolCallEvent,
    )

    if isinstance(event, MemoryRecalledEvent):
        recall = event.recall
        parts = [
            f"{len(recall.episodes)} episode(s)",
            f"{len(recall.passages)} passage(s)",
            "skill " + ", ".join(s.name for s in recall.skills) if recall.skills else "no skill",
        ]
        if recall.preferences.get("stated_preferences"):
            parts.append("preferences: " + "; ".join(recall.preferences["stated_preferences"]))
        line = f"◦ memory: {', '.join(parts)} (~{recall.tokens} tokens)"
        if recall.degraded:
            line += " — degraded: " + _layers(recall.degraded)
        print(line, file=out)
    elif isinstance(event, MemoryWrittenEvent):
        written = event.written
        notes = []
        if written.skill:
            notes.append(f"{'learned' if written.skill_created else 'reinforced'} skill {written.skill}")
        if written.preferences:
            notes.append(
                "stored your preference"
                if kept
                else "stored your preference for this process only (set BRAINSTACK_REDIS_URL to keep it)"
            )
        if written.degraded:
            notes.append("not saved: " + _layers(written.degraded))
        if notes:
            print(f"◦ remembered: {', '.join(notes)}", file=out)
    elif isinstance(event, RouteEvent):
        d = event.decision
        print(
            f"→ route: {d.target} ({d.kind}), decided by {d.decided_by}, confidence "
            f"{d.confidence:.2f} — {d.reason}",
            file=out,
        )
    elif isinstance(event, ToolCallEvent):
        print(
            f"  · {event.agent} called {event.tool}({_args(event.arguments)}) → {_brief(event.result)}",
            file=out,
        )
    elif isinstance(event, GroupChatTurnEvent):
        print(f"  [{event.speaker}] {event.content}", file=out)
    elif isinstance(event, InterruptEvent):
        print(f"⏸ {event.request.question}", file=out)
    out.flush()


def _args(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in arguments.items())


def _brief(result: str, width: int = 160) -> str:
    """A tool's result on one line of the progress: its first line, clipped, saying how much more
    the agent got (``knowledge_search`` hands it whole passages; ``--json`` has them all)."""
    lines = [line for line in result.strip().splitlines() if line.strip()] or [""]
    first = lines[0] if len(lines[0]) <= width else lines[0][: width - 1] + "…"
    more = len(lines) - 1
    return first if not more else f"{first} … ({more} more line{'s' if more > 1 else ''})"


def _first_sentence(text: str) -> str:
    """``text`` up to its first ". " outside brackets: a reason often quotes an error whose own
    sentences end inside them ("(Error 111 connecting to 127.0.0.1:6379. Connection refused.)")."""
    depth = 0
    for i, char in enumerate(text):
        depth += (char in "([") - (char in ")]")
        if depth <= 0 and text.startswith(". ", i):
            return text[:i]
    return text


def _layers(degraded: list[str]) -> str:
    """Memory layers that failed ("working: The Redis backend ... . Check ..."), each once, with
    the first sentence of its first reason: "working (The Redis backend ... cannot be reached)"."""
    reasons: dict[str, str] = {}
    for item in degraded:
        layer, _, why = item.partition(":")
        first = _first_sentence(why.strip()).rstrip(".")
        reasons.setdefault(layer.strip(), first if len(first) <= 160 else first[:159] + "…")
    return " | ".join(f"{layer} ({why})" if why else layer for layer, why in reasons.items())


def _banner(runtime: Runtime) -> str:
    if runtime.model == "offline":
        return (
            f"brainstack · model: offline ({runtime.settings.offline_reason}): routing, "
            "group chat, tools and checkpoints are real; answers are assembled, not generated."
        )
    if runtime.model == "local":
        name = runtime.provider.model_name()
        return f"brainstack · model: local ({name} on llama.cpp, 127.0.0.1); the semantic router routes"
    where = runtime.settings.openai_base_url or "OpenAI"
    return f"brainstack · model: {runtime.settings.model} via {where}"


if __name__ == "__main__":  # pragma: no cover
    console_main()
