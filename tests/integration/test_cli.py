"""The ``brainstack`` command in real subprocesses, offline."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

BRAINSTACK = str(Path(sys.executable).with_name("brainstack"))


def cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BRAINSTACK, *args], env=env, capture_output=True, text=True, timeout=timeout)


def assert_one_clean_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    lines = [line for line in done.stderr.splitlines() if line.startswith("brainstack: ")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_help_lists_the_run_command(env_home):
    done = cli("--help", env=env_home)
    assert done.returncode == 0
    assert "run" in done.stdout and "multi-agent runtime" in done.stdout
    done = cli("run", "--help", env=env_home)
    for flag in ("--user", "--thread", "--json", "--agent", "--agents"):
        assert flag in done.stdout


def test_specialist_run_shows_route_tool_answer_tokens_and_time(env_home):
    done = cli("run", "What is 17.5% of 2340?", env=env_home)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "→ route: finance (specialist), decided by semantic" in out
    assert "finance called calculator(expression='17.5% of 2340') → 409.5" in out
    assert "409.5" in out.split("→ 409.5", 1)[1]  # the answer itself
    assert "model: offline" in done.stderr  # the banner says no LLM is answering
    assert "tokens (" in done.stderr and "model calls)" in done.stderr and "s\n" in done.stderr


def test_group_chat_turns_are_printed_in_order(env_home):
    done = cli("run", "Should we launch a freemium tier?", env=env_home)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    turns = [line.strip().split("]")[0] + "]" for line in lines if line.strip().startswith("[")]
    assert turns == ["[CTO]", "[CMO]", "[CFO]"]
    assert lines[0].startswith("◦ memory: ")  # recall runs before routing
    assert lines[1].startswith("→ route: group_chat") and "decided by semantic" in lines[1]


def test_json_output_is_the_run_result(env_home):
    done = cli("run", "Should we launch a freemium tier?", "--json", "--user", "ada", env=env_home)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["route"]["kind"] == "group_chat"
    assert result["speakers"] == ["CTO", "CMO", "CFO"]
    assert result["user_id"] == "ada" and result["model"] == "offline"
    assert {"prompt_tokens", "completion_tokens"} <= set(result["usage"])
    assert set(result["timings"]) == {"recall", "route", "group_chat", "review", "remember"}


def test_thread_continues_across_invocations(env_home):
    thread = f"cli-{uuid.uuid4().hex[:8]}"
    first = cli("run", "Write a tagline for our analytics product.", "--thread", thread, env=env_home)
    assert first.returncode == 0, first.stderr
    second = cli("run", "Now make it shorter.", "--thread", thread, "--json", env=env_home)
    result = json.loads(second.stdout)
    assert result["thread_id"] == thread
    assert "Write a tagline for our analytics product." in result["answer"]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["run", ""], 2, "The task is empty"),
        (["run", "x" * 9000], 2, "9000 characters; the limit is 8000"),
        (["run", "hello", "--agent", "lawyer"], 2, "No agent named 'lawyer'"),
        (["run", "hello", "--agents", "/nonexistent/agents.yaml"], 2, "/nonexistent/agents.yaml"),
        (["run", "hello", "--thread", "no spaces allowed"], 2, "--thread 'no spaces allowed' must be"),
        (["run", "hello", "--user", "x" * 129], 2, "--user"),
        (["resume", "--thread", "bad/thread", "--approve"], 2, "--thread 'bad/thread' must be"),
        (["history", "--thread", "bad/thread"], 2, "--thread 'bad/thread' must be"),
        (["history", "--thread", "trailing-newline\n"], 2, "--thread 'trailing-newline\\n' must be"),
        (["replay", "--thread", "t1", "--checkpoint", "../x"], 2, "--checkpoint '../x' must be"),
        (["memory", "search", "pricing", "--user", "bad user"], 2, "--user 'bad user' must be"),
        (["memory", "forget", "--user", "bad user", "--yes"], 2, "--user 'bad user' must be 1-128"),
    ],
)
def test_bad_input_is_one_clear_line(env_home, args, code, needle):
    done = cli(*args, env=env_home)
    line = assert_one_clean_line(done, code)
    assert needle in line
    assert done.stderr == line + "\n"  # alone: no banner before it (the run never started)


def test_invalid_agents_file_names_file_and_field(env_home, tmp_path):
    bad = tmp_path / "agents.yaml"
    bad.write_text("agents:\n  finance:\n    description: money\n")
    done = cli("run", "hello", "--agents", str(bad), env=env_home)
    line = assert_one_clean_line(done, 2)
    assert str(bad) in line
    # one problem per line below the first: field and fix
    assert "agents.finance.system_prompt" in done.stderr and "fix:" in done.stderr


def test_invalid_setting_is_one_clear_line(env_home):
    env = {**env_home, "BRAINSTACK_ROUTER_THRESHOLD": "5"}
    line = assert_one_clean_line(cli("run", "hello", env=env), 2)
    assert "BRAINSTACK_ROUTER_THRESHOLD" in line


def test_unreachable_endpoint_is_one_clear_line(env_home):
    env = {
        **env_home,
        "OPENAI_API_KEY": "k",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "BRAINSTACK_MODEL_MAX_RETRIES": "0",
    }
    line = assert_one_clean_line(cli("run", "Write a tagline for our analytics product.", env=env), 1)
    assert "Cannot reach the model endpoint at http://127.0.0.1:9" in line
    listed = cli("threads", "list", env=env_home).stdout.splitlines()  # the thread says why it failed
    assert len(listed) == 2 and "  failed  " in listed[0], listed
    assert listed[1].strip() == "failed on: OpenAIConnectionError('Connection error.')"


def test_the_openai_provider_without_a_key_is_one_clear_line(env_home):
    line = assert_one_clean_line(cli("run", "hello", env={**env_home, "BRAINSTACK_PROVIDER": "openai"}), 2)
    assert "BRAINSTACK_PROVIDER=openai needs OPENAI_API_KEY" in line


def test_the_banner_says_why_the_model_is_offline(env_home):
    forced = {**env_home, "BRAINSTACK_PROVIDER": "offline", "OPENAI_API_KEY": "sk-unused"}
    done = cli("run", "What is 2 + 2?", env=forced)
    assert done.returncode == 0, done.stderr
    assert "model: offline (BRAINSTACK_PROVIDER=offline)" in done.stderr
    done = cli("run", "What is 2 + 2?", env=env_home)
    assert "model: offline (no OPENAI_API_KEY or OPENAI_BASE_URL set)" in done.stderr


@pytest.mark.parametrize("module", ["brainstack", "brainstack.cli"])
def test_module_entry_point(env_home, module):
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], env=env_home, capture_output=True, text=True
    )
    assert done.returncode == 0 and "run" in done.stdout
    assert os.path.exists(BRAINSTACK)


def test_history_and_replay_commands(env_home):
    thread = f"tt-{uuid.uuid4().hex[:8]}"
    assert cli("run", "What is 2 + 2?", "--thread", thread, env=env_home).returncode == 0
    listed = cli("history", "--thread", thread, "--json", env=env_home)
    checkpoints = json.loads(listed.stdout)
    assert checkpoints[0]["next"] == [] and checkpoints[-1]["step"] == -1
    start = next(c["checkpoint_id"] for c in checkpoints if c["next"] == ["route"])
    replayed = cli("replay", "--thread", thread, "--checkpoint", start, "--json", env=env_home)
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout)["thread_id"] == thread
    line = assert_one_clean_line(cli("replay", "--thread", thread, "--checkpoint", "nope", env=env_home), 2)
    assert "no checkpoint 'nope'" in line


def test_one_time_preparation_is_shown_on_stderr(capsys, monkeypatch):
    import logging

    from brainstack.cli import _show_progress_logs

    logger, root = logging.getLogger("brainstack"), logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # a host without logging configured (pytest has some)
    try:
        _show_progress_logs()
        _show_progress_logs()  # once: no second handler
        assert len(logger.handlers) == 1
        logging.getLogger("brainstack.memory.embeddings").info("preparing the local embedding model (once)")
        logging.getLogger("brainstack.memory.embeddings").debug("not shown")
        assert capsys.readouterr().err == "◦ preparing the local embedding model (once)\n"
    finally:
        logger.handlers.clear()
        logger.setLevel(logging.NOTSET)


EXIT_PROBE = """
import atexit, sys
from brainstack import cli

class Teardown:
    def __del__(self):
        print("interpreter teardown ran", flush=True)

LEFT_AT_EXIT = Teardown()  # freed only when the interpreter tears its modules down

def command(argv=None):
    atexit.register(print, "a library's exit hook ran", flush=True)  # registered during the command
    print("working", end="")  # unflushed: must still reach the pipe
    {outcome}

cli.main = command
cli.console_main()
"""


def probe(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("outcome", "code"),
    [("return 3", 3), ("raise SystemExit(0)", 0), ("raise SystemExit('usage: …')", 1)],
)
def test_the_command_ends_after_exit_hooks_without_interpreter_teardown(env_home, outcome, code):
    done = probe(EXIT_PROBE.format(outcome=outcome), env_home)
    assert done.returncode == code, done.stderr
    assert done.stdout.startswith("working") and "a library's exit hook ran" in done.stdout
    assert "interpreter teardown ran" not in done.stdout


def test_a_crashing_command_still_shows_its_traceback_and_exits_1(env_home):
    done = probe(EXIT_PROBE.format(outcome="raise RuntimeError('boom')"), env_home)
    assert done.returncode == 1
    assert "RuntimeError: boom" in done.stderr and "a library's exit hook ran" in done.stdout


def test_without_the_quick_exit_the_probe_would_see_teardown(env_home):
    """The control for the two tests above: plain ``sys.exit(main())`` does tear down."""
    plain = EXIT_PROBE.format(outcome="return 0").replace("cli.console_main()", "sys.exit(cli.main())")
    done = probe(plain, env_home)
    assert done.returncode == 0 and "interpreter teardown ran" in done.stdout


def test_kb_add_names_each_file_once_and_why_one_was_skipped(env_home, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "refunds.md").write_text("# Refunds\n\nWithin 30 days.\n")
    (docs / "empty.md").write_text("")
    done = cli("kb", "add", str(docs), env=env_home)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("refunds.md") == 1 and f"  added     {docs / 'refunds.md'}" in done.stderr
    assert done.stderr.count("empty.md") == 1, done.stderr
    assert f"  skipped   {docs / 'empty.md'}: empty file, nothing to index" in done.stderr
    assert done.stdout == (
        "Knowledge base: 1 added, 0 updated, 0 unchanged, 1 chunk written, 1 skipped (1 chunk in all).\n"
    )


def test_memory_show_lists_a_users_preferences_and_forget_preference_drops_one(env_home, redis_url):
    """QA: a preference stored by mistake could only go with everything else (`memory forget`)."""
    user = f"pref-{uuid.uuid4().hex[:8]}"
    env = {**env_home, "BRAINSTACK_REDIS_URL": redis_url}
    ran = cli(
        "run", "I prefer short answers. From now on, use euros. What is 5% of 80?", "--user", user, env=env
    )
    assert ran.returncode == 0, ran.stderr

    shown = cli("memory", "show", "--user", user, env=env)
    assert shown.returncode == 0 and shown.stderr == ""
    assert shown.stdout.splitlines() == [
        f"User {user!r}:",
        "  1 episode(s) (search them with `brainstack memory search QUERY --user …`)",
        "  preference: short answers",
        "  preference: use euros",
    ]
    done = cli("memory", "forget", "--user", user, "--preference", "  Short Answers ", env=env)
    assert done.returncode == 0, done.stderr
    # (said as it is stored, not as typed: docs audit)
    assert done.stdout == f"Forgot the preference 'short answers' of user {user!r} (1 left).\n"
    listed = json.loads(cli("memory", "show", "--user", user, "--json", env=env).stdout)
    assert listed == {"user_id": user, "preferences": ["use euros"], "facts": {}, "episodes": 1}

    line = assert_one_clean_line(
        cli("memory", "forget", "--user", user, "--preference", "tables", env=env), 2
    )
    assert line == f"brainstack: User {user!r} has no stated preference 'tables' (stored: 'use euros')."
    assert cli("memory", "forget", "--user", user, "--preference", "use euros", env=env).returncode == 0
    assert "  no stated preference" in cli("memory", "show", "--user", user, env=env).stdout
    assert cli("memory", "forget", "--user", user, "--yes", env=env).returncode == 0  # (the episode)

    local = cli("memory", "show", "--user", user, env=env_home)  # no Redis: says what it cannot see
    assert local.returncode == 0 and "Working memory is in-process" in local.stderr


def test_memory_show_lists_the_preference_that_replaced_another(env_home, redis_url):
    """QA: "I prefer short answers", then "I prefer detailed answers" in a later command, left
    both in every prompt; the later one replaces it, the unrelated one stays."""
    user = f"pref-{uuid.uuid4().hex[:8]}"
    env = {**env_home, "BRAINSTACK_REDIS_URL": redis_url}
    for task in (
        "I prefer short answers. From now on, use euros. What is 5% of 80?",
        "I prefer detailed answers.",
    ):
        ran = cli("run", task + " What is 6% of 80?", "--user", user, env=env)
        assert ran.returncode == 0, ran.stderr
    listed = json.loads(cli("memory", "show", "--user", user, "--json", env=env).stdout)
    assert listed["preferences"] == ["use euros", "detailed answers"]
    done = cli("memory", "forget", "--user", user, "--preference", "detailed answers", env=env)
    assert done.stdout == f"Forgot the preference 'detailed answers' of user {user!r} (1 left).\n"
    assert cli("memory", "forget", "--user", user, "--yes", env=env).returncode == 0  # (the episodes)


def test_kb_add_of_a_fifo_is_one_clear_line(env_home, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    line = assert_one_clean_line(cli("kb", "add", str(fifo), env=env_home), 2)
    assert line == f"brainstack: {fifo} is not a regular file or a folder"


def test_kb_add_of_an_empty_path_is_refused_not_the_current_folder(env_home, tmp_path):
    """`kb add ""` (a script's unset variable: `kb add "$DOCS"`) ingested the folder it ran in,
    every text file under it, into the knowledge base every user shares; `kb remove ""` was
    already refused for naming the current folder."""
    (tmp_path / "private.md").write_text("# Notes\n\nMy salary is 91,000 euros.\n")
    for path in ("", "  "):
        done = subprocess.run(
            [BRAINSTACK, "kb", "add", path],
            env=env_home,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        line = assert_one_clean_line(done, 2)
        assert line == "brainstack: The path is empty: pass the file or folder to add."
    assert cli("kb", "list", env=env_home).stdout == ""


def test_kb_remove_deletes_a_folders_files_from_the_knowledge_base(env_home, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "refunds.md").write_text("# Refunds\n\nWithin 30 days.\n")
    (tmp_path / "pricing.md").write_text("# Pricing\n\n49 euros per seat.\n")
    assert cli("kb", "add", str(tmp_path), env=env_home).returncode == 0
    line = assert_one_clean_line(cli("kb", "remove", str(docs), env=env_home), 2)
    assert "refusing to delete without confirmation: add --yes" in line  # no terminal to ask on
    line = assert_one_clean_line(cli("kb", "remove", " ", "--yes", env=env_home), 2)
    assert "The path is empty" in line
    done = cli("kb", "remove", str(docs), "--yes", env=env_home)
    assert done.returncode == 0, done.stderr
    assert f"  removed   {docs / 'refunds.md'} (1 chunk)" in done.stderr
    assert done.stdout == "Knowledge base: removed 1 file(s) (1 chunk left).\n"
    assert cli("kb", "list", env=env_home).stdout.splitlines() == [str(tmp_path / "pricing.md")]
    again = cli("kb", "remove", str(docs), env=env_home)  # nothing to remove: nothing to ask
    assert again.returncode == 0 and "holds nothing from" in again.stderr


def test_kb_search_finds_the_report_a_question_names_and_keeps_its_keyword_index(env_home, tmp_path):
    docs = tmp_path / "stores"
    docs.mkdir()
    for store in range(1, 31):
        (docs / f"store-{store:04d}.md").write_text(
            f"## Store {store:04d}, week 12\n\nThe store ({store:04d}) reported {(store * 7) % 50 + 5} "
            "returns in week 12. The top return reason was sizing on the denim line.\n"
        )
    assert cli("kb", "add", str(docs), env=env_home).returncode == 0
    for mode in ("hybrid", "keyword"):
        done = cli(
            "kb", "search", "How many returns did store 0017 report?", "-k", "1", "--mode", mode, env=env_home
        )
        assert done.returncode == 0, done.stderr
        assert f"{docs / 'store-0017.md'} (chunk 0)" in done.stdout.splitlines()[0], (mode, done.stdout)
    saved = Path(env_home["BRAINSTACK_HOME"]) / "keyword-index" / "local" / "brainstack-knowledge.npz"
    assert saved.is_file()  # the next process loads it instead of reading every chunk
    wrong = cli("kb", "search", "refunds", "--mode", "sparse", env=env_home)
    assert wrong.returncode == 2 and "invalid choice: 'sparse'" in wrong.stderr


def test_an_empty_knowledge_base_says_how_to_fill_it(env_home):
    for command in (("kb", "list"), ("kb", "search", "refunds")):
        done = cli(*command, env=env_home)
        assert (done.returncode, done.stdout) == (0, ""), done.stderr
        assert done.stderr == "The knowledge base is empty; add files with `brainstack kb add PATH`.\n"


def test_threads_list_and_delete(env_home):
    user = f"u-{uuid.uuid4().hex[:8]}"
    threads = [f"tt-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for thread, task in zip(threads, ["What is 2 + 2?", "What is 3 + 3?", "What is 4 + 4?"], strict=True):
        assert cli("run", task, "--user", user, "--thread", thread, env=env_home).returncode == 0
    listed = cli("threads", "list", "--user", user, env=env_home)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == threads[::-1]  # most recent first
    assert re.search(r"  completed  +\d+ checkpoint\(s\)  What is 4 \+ 4\?$", lines[0]), lines[0]
    rows = json.loads(cli("threads", "list", "--user", user, "--json", env=env_home).stdout)
    assert [r["thread_id"] for r in rows] == threads[::-1] and rows[0]["checkpoints"] > 1
    assert [r["status"] for r in rows] == ["completed"] * 3
    line = assert_one_clean_line(cli("resume", "--thread", threads[2], "--approve", env=env_home), 2)
    assert f"Thread {threads[2]!r} is not waiting for an approval: its last run has ended" in line
    assert f"(CLI: `brainstack run --thread {threads[2]} TASK`)" in line

    done = cli("threads", "prune", "--thread", threads[1], "--yes", env=env_home)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(
        rf"Pruned thread {threads[1]!r}: deleted \d+ checkpoint\(s\), kept its latest.\n", done.stdout
    )
    pruned = json.loads(cli("threads", "list", "--user", user, "--json", env=env_home).stdout)
    assert [r["checkpoints"] for r in pruned if r["thread_id"] == threads[1]] == [1]  # still listed

    line = assert_one_clean_line(cli("threads", "delete", "--thread", threads[0], env=env_home), 2)
    assert "refusing to delete without confirmation: add --yes" in line  # no terminal to ask on
    done = cli("threads", "delete", "--thread", threads[0], "--yes", env=env_home)
    assert done.returncode == 0 and done.stdout == f"Deleted thread {threads[0]!r}.\n"
    history = cli("history", "--thread", threads[0], env=env_home)
    assert "has no checkpoints" in history.stderr

    done = cli("threads", "delete", "--user", user, "--yes", env=env_home)  # the pruned one too
    assert done.returncode == 0 and done.stdout == f"Deleted 2 thread(s) of user {user!r}.\n"
    empty = cli("threads", "list", "--user", user, env=env_home)
    assert empty.stdout == "" and f"User {user!r} has no threads." in empty.stderr
    line = assert_one_clean_line(cli("threads", "delete", "--thread", "not an id", "--yes", env=env_home), 2)
    assert "--thread 'not an id' must be" in line


def test_thread_commands_on_a_home_no_run_has_used(env_home):
    """They said "The SQLite backend failed: no such table: checkpoints" before the first run."""
    for args, said in [
        (("list", "--all"), "There are no threads."),
        (("list", "--user", "ada"), "User 'ada' has no threads."),
        (("prune", "--all", "--yes"), "There are no threads; nothing pruned."),
        (("delete", "--user", "ada", "--yes"), "User 'ada' has no threads; nothing deleted."),
        (("delete", "--thread", "t1", "--yes"), "Thread 't1' has no checkpoints; nothing deleted."),
        (
            ("prune", "--thread", "t1", "--yes"),
            "Thread 't1' has no checkpoint before its latest; nothing pruned.",
        ),
    ]:
        done = cli("threads", *args, env=env_home)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", said + "\n"), args


def test_thread_commands_load_no_model_no_memory_and_no_graph(env_home):
    """Listing, pruning and deleting threads need the checkpointer only: no embedding model, no
    Chroma, no graph (they took 1.4-2.8 s per call when they built the graph first). Reading a
    thread's history and messages builds the graph (checkpoints name its nodes) but opens no
    memory (they used to warm up every model and Chroma too)."""

    def loaded(calls: str, heavy: tuple[str, ...]) -> str:
        probe = (
            "import sys, time; import onnxruntime as ort; sessions = []; made = ort.InferenceSession; "
            "ort.InferenceSession = lambda *a, **k: sessions.append(1) or made(*a, **k); "
            f"from brainstack import Runtime; r = Runtime(); n = len({calls}); time.sleep(0.5); r.close(); "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules), n > 2, len(sessions))"
        )
        done = subprocess.run(
            [sys.executable, "-c", probe], env=env_home, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    thread = f"tl-{uuid.uuid4().hex[:8]}"
    assert cli("run", "What is 2 + 2?", "--thread", thread, env=env_home).returncode == 0
    graph = ("brainstack.graphs.factory", "langchain_openai", "autogen_agentchat")
    commands = "r.threads(None) + [r.prune_thread('pr-none'), r.delete_thread('pr-none')]"
    assert loaded(commands, ("chromadb", *graph)) == "[] True 0\n"
    # the router's model only (the graph's router embeds its examples): not memory's, no Chroma
    assert loaded(f"r.history({thread!r}) + r.messages({thread!r})", ("chromadb",)) == "[] True 1\n"


def test_threads_of_every_user_and_idle_ones(env_home):
    for user, thread in (("ada", []), ("bob-from-accounting", ["--thread", "t2"])):
        assert cli("run", "What is 2 + 2?", "--user", user, *thread, env=env_home).returncode == 0
    listed = cli("threads", "list", "--all", env=env_home)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert sorted(line.split()[2] for line in lines) == ["ada", "bob-from-accounting"]  # the user column
    assert [line.split()[3] for line in lines] == ["completed"] * 2  # then the status
    # columns line up whatever the lengths of thread ids and user names (docs audit)
    assert len({line.index("completed") for line in lines}) == 1
    assert len({re.search(r"\d{4}-\d\d-\d\dT", line).start() for line in lines}) == 1  # type: ignore[union-attr]
    idle = cli("threads", "list", "--all", "--idle-days", "1", env=env_home)
    assert idle.stdout == "" and "There are no threads unused for 1 day(s)." in idle.stderr
    pruned = cli("threads", "prune", "--all", "--yes", env=env_home)
    assert re.fullmatch(
        r"Pruned all 2 thread\(s\): deleted \d+ checkpoint\(s\), kept the latest of each.\n", pruned.stdout
    )
    line = assert_one_clean_line(
        cli("threads", "delete", "--thread", "t1", "--idle-days", "3", env=env_home), 2
    )
    assert "--idle-days selects among a user's threads or all threads" in line
    line = assert_one_clean_line(cli("threads", "list", "--idle-days", "-1", env=env_home), 2)
    assert "--idle-days must be at least 0 and below 100000 (days), not -1.0" in line
    done = cli("threads", "delete", "--all", "--yes", env=env_home)
    assert done.returncode == 0 and done.stdout == "Deleted 2 thread(s).\n"
    assert cli("threads", "list", "--all", "--json", env=env_home).stdout.strip() == "[]"


# A run whose model never answers: it says STALLED and holds its thread until killed.
STALLING_RUN = """
import sys, time, httpx2
from brainstack import Runtime
from brainstack.config import Settings

def handle(request):
    print("STALLED", flush=True)
    time.sleep(600)

Runtime(Settings.from_env(), transport=httpx2.MockTransport(handle)).run(sys.argv[1], thread_id=sys.argv[2])
"""


def test_threads_prune_all_names_a_thread_another_process_runs_and_prunes_the_others(env_home):
    assert cli("run", "What is 2 + 2?", "--thread", "idle", env=env_home).returncode == 0
    child = subprocess.Popen(
        [sys.executable, "-c", STALLING_RUN, "Should we launch a freemium tier next quarter?", "busy"],
        env=env_home,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        while (line := child.stdout.readline()) and line.strip() != "STALLED":
            pass
        assert line, "the stalling run ended before its model stalled"
        pruned = cli("threads", "prune", "--all", "--yes", env=env_home)
        assert pruned.returncode == 1, pruned.stderr
        assert "thread 'busy' not pruned: Thread 'busy' is being run by another process" in pruned.stderr
        assert re.fullmatch(
            r"Pruned 1 of all 2 thread\(s\): deleted \d+ checkpoint\(s\), kept the latest of each.\n",
            pruned.stdout,
        )
    finally:
        child.kill()
        child.wait(timeout=10)
    rows = json.loads(cli("threads", "list", "--all", "--json", env=env_home).stdout)
    assert {r["thread_id"]: r["checkpoints"] for r in rows}["idle"] == 1


def test_routes_explain_shows_every_score_and_the_decision(env_home):
    done = cli("routes", "explain", "What is 17.5% of 2340?", env=env_home)
    assert done.returncode == 0, done.stderr
    assert "router: all-MiniLM-L6-v2-int8 · threshold 0.32 · margin 0.04" in done.stderr
    scores = [line.split() for line in done.stdout.splitlines() if line.startswith("  ")]
    assert scores[0][0] == "finance"
    assert {name for name, _ in scores} == {"technical", "finance", "marketing", "general", "group_chat"}
    assert [float(v) for _, v in scores] == sorted((float(v) for _, v in scores), reverse=True)
    assert done.stdout.splitlines()[-1].startswith("→ semantic route: finance (score ")
    unsure = cli("routes", "explain", "What time zone is Tokyo in?", env=env_home)
    assert "→ below the threshold (" in unsure.stdout and "the model classifies it" in unsure.stdout
    empty = cli("routes", "explain", "  ", env=env_home)
    assert assert_one_clean_line(empty, 2) == "brainstack: The request is empty: pass the text to route."
    assert "router:" not in empty.stderr  # refused before any model is loaded
    for text, said in [("x\x1b[2Jy", "control character '\\x1b'"), ("\u200b", "no visible characters")]:
        refused = cli("routes", "explain", text, env=env_home)  # what `run` would refuse
        assert said in assert_one_clean_line(refused, 2) and "router:" not in refused.stderr


def test_routes_check_reports_coverage_precision_and_the_misses(env_home, tmp_path):
    labelled = tmp_path / "mine.yaml"
    labelled.write_text(
        "finance:\n  - What is 17.5% of 2340?\n  - Prepare a budget for the next quarter.\n"
        "general:\n  - What time zone is Tokyo in?\n"
        "marketing:\n  - How much cash do we need to survive 18 months?\n"
    )
    done = cli("routes", "check", str(labelled), env=env_home)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.splitlines()[0].split() == ["route", "n", "semantic", "correct", "top-1"]
    assert "finance" in out and "\nall " in out
    assert "left out, already example utterances: 1" in out  # the budget example
    assert "general: best general" in out and "What time zone is Tokyo in?" in out  # left to the model
    assert "marketing → finance" in out  # a wrongly labelled line shows up as a wrong route
    assert "coverage 66.7% (2 of 3 routed without the model) · precision 50.0%" in out
    strict = cli("routes", "check", str(labelled), "--min-precision", "0.9", env=env_home)
    assert assert_one_clean_line(strict, 1) == "brainstack: precision 50.0% < 90.0%"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "cannot read"),
        ("finance: [unclosed", "is not valid YAML"),
        ("finance: [our burn rate]\nfinance: [our runway]", "found duplicate key 'finance'"),
        ("- just a list", "must map route names to lists of requests"),
        ("finance: []", "must map route names to lists of requests"),
        ("legal: [Review this contract]", "unknown route(s) 'legal'; the routes are technical"),
        ("legal: [Review this contract]", "(routes of your own agents file: add --agents FILE)"),
    ],
)
def test_routes_check_refuses_a_bad_file_in_one_line(env_home, tmp_path, content, needle):
    labelled = tmp_path / "labelled.yaml"
    if content is not None:
        labelled.write_text(content)
    done = cli("routes", "check", str(labelled), env=env_home)
    line = assert_one_clean_line(done, 2)
    assert needle in line and str(labelled) in line
    if "route(s)" not in needle and "agents" not in needle:  # (those need the router: its line first)
        assert done.stderr == line + "\n"


def test_skills_forget_deletes_a_learned_skill_only_when_confirmed(env_home):
    folder = Path(env_home["BRAINSTACK_HOME"]) / "skills"
    folder.mkdir(parents=True)
    (folder / "offsite-planning.yaml").write_text(
        "name: offsite-planning\ndescription: Plan an offsite.\nwhen_to_use: [Plan the offsite.]\n"
        "steps: [{kind: prompt, text: List the attendees.}]\nprovenance: {source: learned}\n"
    )
    (folder / "_stats.json").write_text('{"offsite-planning": {"success_count": 1}}')
    listed = cli("skills", "list", env=env_home).stdout.splitlines()
    assert [line.split()[1:4] for line in listed if line.startswith("offsite-planning ")] == [
        ["learned", "1", "success"]
    ]
    assert all(" 0 successes " in line for line in listed if " builtin " in line), listed
    line = assert_one_clean_line(cli("skills", "forget", "offsite-planning", env=env_home), 2)
    assert "refusing to delete without confirmation: add --yes" in line  # no terminal to ask on
    assert (folder / "offsite-planning.yaml").exists()

    done = cli("skills", "forget", "offsite-planning", "--yes", env=env_home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Forgot skill 'offsite-planning': deleted ")
    assert not (folder / "offsite-planning.yaml").exists()
    line = assert_one_clean_line(cli("skills", "show", "offsite-planning", env=env_home), 2)
    assert "no skill named 'offsite-planning'" in line

    line = assert_one_clean_line(cli("skills", "forget", "launch-decision", "--yes", env=env_home), 2)
    assert "'launch-decision' is a built-in skill and cannot be deleted" in line
    line = assert_one_clean_line(cli("skills", "forget", "offsite-planning", "--yes", env=env_home), 2)
    assert "no skill named 'offsite-planning'" in line


def test_an_unusable_skill_file_is_skipped_named_and_can_be_forgotten(env_home):
    folder = Path(env_home["BRAINSTACK_HOME"]) / "skills"
    folder.mkdir(parents=True)
    (folder / "offsite-planning.yaml").write_text("name: offsite-planning\nsteps: [unclosed\n")
    (folder / "launch-decision.yaml").write_text("name: launch-decision\n")  # overrides a built-in

    listed = cli("skills", "list", env=env_home)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[:2] for line in listed.stdout.splitlines()] == [
        ["incident-review", "builtin"],
        ["launch-decision", "builtin"],  # the built-in one stands in for the broken override
        ["pricing-change-review", "builtin"],
    ]
    warnings = listed.stderr.splitlines()
    assert len(warnings) == 2 and all(w.startswith("◦ skipped a skill file: skill file ") for w in warnings)
    assert any(str(folder / "offsite-planning.yaml") in w and "cannot be read" in w for w in warnings)

    shown = cli("skills", "show", "launch-decision", env=env_home)
    assert shown.returncode == 0 and shown.stdout.startswith("name: launch-decision")
    assert shown.stderr.startswith("Your skill file cannot be used, so runs follow the built-in skill below")

    line = assert_one_clean_line(cli("skills", "show", "offsite-planning", env=env_home), 2)
    assert str(folder / "offsite-planning.yaml") in line and "cannot be read" in line

    done = cli("skills", "forget", "offsite-planning", "--yes", env=env_home)
    assert done.returncode == 0, done.stderr
    assert "cannot be read" in done.stderr
    assert done.stdout == f"Forgot skill 'offsite-planning': deleted {folder / 'offsite-planning.yaml'}.\n"
    refused = cli("skills", "forget", "launch-decision", env=env_home)  # asks first, even so
    assert refused.returncode == 2 and "add --yes" in refused.stderr
    assert (folder / "launch-decision.yaml").exists()
    assert cli("skills", "forget", "launch-decision", "--yes", env=env_home).returncode == 0
    assert not (folder / "launch-decision.yaml").exists()
    assert cli("skills", "list", env=env_home).stderr == ""


def test_a_reader_that_leaves_early_does_not_stop_the_run(env_home):
    """`brainstack run … | head -1`: the run still ends, so its thread takes the next task."""
    thread = f"cli-{uuid.uuid4().hex[:8]}"
    piped = subprocess.Popen(
        [BRAINSTACK, "run", "Should we launch a freemium tier?", "--thread", thread],
        env=env_home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert piped.stdout is not None
    piped.stdout.close()  # the reader is gone before the first line
    _, err = piped.communicate(timeout=120)
    assert piped.returncode == 0 and b"Traceback" not in err, err
    history = cli("history", "--thread", thread, env=env_home)
    assert history.stdout.splitlines()[0].split("next: ")[1].startswith("(end of run)"), history.stdout
    assert cli("run", "What would it cost?", "--thread", thread, env=env_home).returncode == 0


def test_a_task_that_is_not_utf8_is_one_line_and_exit_2(env_home):
    """A shell in a Latin-1 locale passes bytes that are not UTF-8: refused before the run starts."""
    done = subprocess.run(
        [BRAINSTACK, "run", b"caf\xe9 pricing question"], env=env_home, capture_output=True, timeout=120
    )
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2 and "Traceback" not in err, err
    assert [line for line in err.splitlines() if line.startswith("brainstack: ")] == [
        "brainstack: The task is not valid UTF-8 text (character 4 is '\\udce9', undecodable input); "
        "pass it as UTF-8."
    ]


LEGAL = """
  legal:
    description: Contracts, compliance and legal risk.
    system_prompt: You are the legal specialist. Name the legal risks and what to do about them.
    tools: []
    examples:
      - Review this contract for risky clauses.
      - Are we compliant with the GDPR?
      - Draft a non-disclosure agreement for a supplier.
"""


@pytest.fixture
def legal_agents(tmp_path) -> Path:
    """The built-in agents file plus a ``legal`` specialist."""
    builtin = (Path(__file__).parents[2] / "brainstack" / "config" / "agents.yaml").read_text("utf-8")
    agents = tmp_path / "legal agents.yaml"  # a space: the hints must quote it
    agents.write_text(builtin.replace("\nagents:\n", "\nagents:" + LEGAL, 1), "utf-8")
    return agents


@pytest.fixture
def legal_thread(env_home, legal_agents) -> tuple[str, Path]:
    """A thread run with an agents file that adds a ``legal`` specialist, stopped inside it (its
    model endpoint is unreachable): its last checkpoint is due to run ``specialist_legal``."""
    agents = legal_agents
    thread = f"legal-{uuid.uuid4().hex[:8]}"
    down = {
        **env_home,
        "OPENAI_API_KEY": "k",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "BRAINSTACK_MODEL_MAX_RETRIES": "0",
    }
    task = ("run", "Review our supplier contract.", "--agent", "legal", "--thread", thread)
    crashed = cli(*task, "--agents", str(agents), env=down)
    assert "Cannot reach the model endpoint" in assert_one_clean_line(crashed, 1)
    return thread, agents


def test_resume_history_and_replay_take_the_agents_file_the_thread_ran_with(env_home, legal_thread):
    thread, agents = legal_thread
    listed = cli("history", "--thread", thread, "--agents", str(agents), "--json", env=env_home)
    assert listed.returncode == 0, listed.stderr
    checkpoints = json.loads(listed.stdout)
    assert checkpoints[0]["next"] == ["specialist_legal"]
    resumed = cli("resume", "--thread", thread, "--agents", str(agents), env=env_home)
    assert resumed.returncode == 0, resumed.stderr
    assert "Review our supplier contract." in resumed.stdout  # the offline model answers the task
    listed = cli("history", "--thread", thread, "--json", "--agents", str(agents), env=env_home)
    done = json.loads(listed.stdout)
    assert done[0]["next"] == [] and done[0]["route"] == "legal"
    # Read without the file, the step before specialist_legal is not the end of a run (QA: only
    # the newest checkpoint was labelled), and the run's real end still is.
    plain = cli("history", "--thread", thread, env=env_home).stdout.splitlines()
    assert "(end of run)" in plain[0]
    assert (
        [i for i, line in enumerate(plain) if "specialist_legal (not in this graph)" in line]
        == [i for i, c in enumerate(done) if c["next"] == ["specialist_legal"]]
        != []
    )
    assert all("(end of run)" not in plain[i] for i, c in enumerate(done) if c["next"])
    start = next(c["checkpoint_id"] for c in done if c["next"] == ["route"])
    env = {**env_home, "BRAINSTACK_AGENTS_FILE": str(agents)}  # the variable works as --agents does
    replayed = cli("replay", "--thread", thread, "--checkpoint", start, "--json", env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout)["route"]["target"] == "legal"


def test_a_thread_stopped_before_a_node_of_another_agents_file_is_not_taken_for_finished(
    env_home, legal_thread
):
    thread, agents = legal_thread
    why = (
        f"Thread {thread!r} stopped before node 'specialist_legal', which the current agents file does "
        "not define; pass the agents file it ran with: --agents FILE"
    )
    listed = cli("history", "--thread", thread, env=env_home)  # the built-in agents: no legal node
    assert listed.returncode == 0, listed.stderr
    assert "next: specialist_legal (not in this graph)" in listed.stdout.splitlines()[0]
    assert "(end of run)" not in listed.stdout and why in listed.stderr
    as_json = cli("history", "--thread", thread, "--json", env=env_home)
    assert json.loads(as_json.stdout)[0]["next"] == [] and why in as_json.stderr
    assert why in assert_one_clean_line(cli("resume", "--thread", thread, env=env_home), 2)
    again = cli("run", "Another question", "--thread", thread, env=env_home)
    assert why in assert_one_clean_line(again, 2)  # the interrupted run is not silently abandoned
    last = json.loads(
        cli("history", "--thread", thread, "--json", "--agents", str(agents), env=env_home).stdout
    )[0]
    assert last["next"] == ["specialist_legal"]
    replayed = cli("replay", "--thread", thread, "--checkpoint", last["checkpoint_id"], env=env_home)
    assert why in assert_one_clean_line(replayed, 2)
    from brainstack import Runtime, Settings, UsageError

    settings = Settings(home=env_home["BRAINSTACK_HOME"], cache_dir=env_home["BRAINSTACK_CACHE_DIR"])
    with Runtime(settings) as runtime, pytest.raises(UsageError, match="specialist_legal"):
        runtime.replay(thread, last["checkpoint_id"])  # the Python API says the same, not "end of a run"


def test_the_hints_run_prints_pass_the_agents_file_it_ran_with(env_home, legal_agents):
    import shlex

    env = {**env_home, "BRAINSTACK_APPROVAL": "1"}
    thread = f"hint-{uuid.uuid4().hex[:8]}"
    paused = cli(
        "run", "Should we launch a freemium tier?", "--thread", thread, "--agents", str(legal_agents), env=env
    )
    assert paused.returncode == 0, paused.stderr
    command = f"brainstack resume --thread {thread} --agents {shlex.quote(str(legal_agents))}"
    assert f"Continue with: {command} --approve |" in paused.stderr
    busy = cli("run", "What is 2 + 2?", "--thread", thread, "--agents", str(legal_agents), env=env)
    assert f"`{command} --approve|--reject|--edit TEXT`" in assert_one_clean_line(busy, 2)
    _, *args = shlex.split(command)  # the hint works as printed
    approved = cli(*args, "--approve", "--json", env=env)
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["approval"]["status"] == "approved"


def test_the_hints_for_a_thread_id_that_starts_with_a_dash_work_as_printed(env_home):
    import shlex

    env = {**env_home, "BRAINSTACK_APPROVAL": "1"}
    thread = f"-h-{uuid.uuid4().hex[:8]}"
    paused = cli("run", "Should we launch a freemium tier?", f"--thread={thread}", env=env)
    assert paused.returncode == 0, paused.stderr
    command = f"brainstack resume --thread={thread}"
    assert f"Continue with: {command} --approve |" in paused.stderr
    _, *args = shlex.split(command)
    approved = cli(*args, "--approve", "--json", env=env)
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["approval"]["status"] == "approved"


def test_a_memory_layer_that_is_down_is_named_once_with_its_reason(env_home, port_factory):
    env = {**env_home, "BRAINSTACK_REDIS_URL": f"redis://127.0.0.1:{port_factory()}/0"}
    done = cli("run", "I prefer short answers. What is 5% of 80?", env=env)
    assert done.returncode == 0, done.stderr  # memory that is down degrades the run, never fails it
    saved = [line for line in done.stdout.splitlines() if line.startswith("◦ remembered:")]
    assert len(saved) == 1 and saved[0].startswith("◦ remembered: not saved: working (The Redis backend ")
    assert saved[0].count("working") == 1, saved  # preferences and session facts: one layer


def test_a_preference_kept_only_by_this_process_says_so(env_home):
    done = cli("run", "I prefer short answers. What is 5% of 80?", env=env_home)  # no Redis
    saved = [line for line in done.stdout.splitlines() if line.startswith("◦ remembered:")]
    assert saved == [
        "◦ remembered: stored your preference for this process only (set BRAINSTACK_REDIS_URL to keep it)"
    ]


class SlowModel:
    """An OpenAI-compatible endpoint on 127.0.0.1 whose chat completions wait before answering
    (until ``release``), so a run can be interrupted while its model call is in flight."""

    def __init__(self) -> None:
        import contextlib
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.called, self.release = threading.Event(), threading.Event()
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self.path.endswith("/chat/completions"):
                    self.send_error(404)
                    return
                model.called.set()
                model.release.wait(60)
                body = json.dumps(
                    {
                        "id": "stub",
                        "object": "chat.completion",
                        "created": 0,
                        "model": "stub",
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": "409.5"},
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                ).encode()
                with contextlib.suppress(OSError):  # the interrupted client is gone
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_model():
    model = SlowModel()
    yield model
    model.close()


def _run_waiting_on_the_model(slow_model: SlowModel, env: dict[str, str], *args: str, **popen: Any) -> Any:
    """`brainstack run "What is 17.5% of 2340?" ARGS…`, returned once its model call is in flight."""
    run = subprocess.Popen(
        [BRAINSTACK, "run", "What is 17.5% of 2340?", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )
    if not slow_model.called.wait(120):
        run.kill()
        pytest.fail("the run never called the model")
    return run


@pytest.mark.parametrize(
    ("stop", "status", "how"), [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "stopped by SIGTERM")]
)
def test_ctrl_c_while_the_model_answers_prints_one_line_and_exits_130(
    env_home, slow_model, stop, status, how
):
    """Ctrl-C mid-run: the one line, exit 130, and no "Task exception was never retrieved …
    RuntimeError: Event loop is closed" (Runtime.astream's pump handing events to the closed loop
    of the interrupted asyncio.run). SIGTERM (systemd, Docker, Kubernetes) ended the command
    without a word (QA): it now stops it as Ctrl-C does, with its own exit status."""
    import signal

    # PYTHONFAULTHANDLER: if the process does not end, SIGABRT makes it print every thread's stack
    # (it hung once in a full CI-mode suite in session 12 and never again in 31 tries alone).
    env = {**env_home, "OPENAI_BASE_URL": slow_model.url, "OPENAI_API_KEY": "k", "PYTHONFAULTHANDLER": "1"}
    run = _run_waiting_on_the_model(slow_model, env)  # no --thread: the line names the one it made
    try:
        run.send_signal(getattr(signal, stop))
        try:
            out, err = run.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            run.send_signal(signal.SIGABRT)
            out, err = run.communicate(timeout=30)
            pytest.fail(f"brainstack run did not exit within 60 s of Ctrl-C; its threads:\n{err}")
    finally:
        if run.poll() is None:
            run.kill()
    done = subprocess.CompletedProcess(run.args, run.returncode, out, err)
    assert "◦ stopping: the run stops at its next step" in err  # heard at once (QA: seconds of nothing)
    line = assert_one_clean_line(done, status)
    found = re.fullmatch(
        rf"brainstack: {how}; the thread keeps its last checkpoint: continue it with "
        r"`brainstack resume --thread ([0-9a-f]{32})`\.",
        line,
    )
    assert found, line
    (listed,) = json.loads(cli("threads", "list", "--json", env=env).stdout)
    assert listed["status"] == "unfinished"  # stopped: it did not fail on an error
    slow_model.release.set()  # the model answers now: the command continues the run to its end
    resumed = cli("resume", "--thread", found.group(1), env=env)
    assert resumed.returncode == 0 and "409.5" in resumed.stdout, resumed.stderr
    assert "Task exception" not in err and "Event loop is closed" not in err, err


def test_ctrl_c_during_a_first_runs_model_build_stops_without_waiting_for_it(env_home, tmp_path):
    """QA: the first run of a machine builds the embedding models for seconds, and Ctrl-C took
    effect only after the build (3-5 s): the run built its graph, which waits for the router's
    model, on the loop Ctrl-C cancels. The command now ends while the build goes on; the models
    are not kept half-written."""
    import signal

    cache = tmp_path / "empty-cache"  # the build starts from nothing
    env = {**env_home, "BRAINSTACK_CACHE_DIR": str(cache)}
    run = subprocess.Popen(
        [BRAINSTACK, "run", "What is 2 + 2?"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert run.stderr is not None
        for line in run.stderr:  # the build has begun
            if "preparing the local embedding model" in line:
                break
        run.send_signal(signal.SIGINT)
        _, rest = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, rest
    assert (
        rest.splitlines()[-1]
        == "brainstack: interrupted before the run saved anything: nothing was kept. Run the task again."
    )
    # it did not wait for the build: the router's int8 model, built last, is not there
    assert not list(cache.glob("*int8*.onnx")), sorted(p.name for p in cache.iterdir())
    assert "Traceback" not in rest, rest
    assert cli("run", "What is 2 + 2?", env=env).returncode == 0  # the next run builds them
    # …and removes what the stopped build left (review: a temp file of up to 90 MB stayed)
    assert not list(cache.glob(".minilm-*.onnx")), sorted(p.name for p in cache.iterdir())


def test_a_run_started_under_nohup_goes_on_when_its_terminal_hangs_up(env_home, slow_model):
    """Review: the SIGHUP handler replaced an inherited "ignore" (what `nohup` sets), so a run
    started with `nohup brainstack run … &` stopped when its terminal closed."""
    import signal

    env = {**env_home, "OPENAI_BASE_URL": slow_model.url, "OPENAI_API_KEY": "k"}
    run = _run_waiting_on_the_model(
        slow_model,
        env,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),  # as nohup does
    )
    try:
        run.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert run.poll() is None, run.communicate()
        slow_model.release.set()
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0 and "409.5" in out, err


def test_ctrl_c_pressed_three_times_still_prints_the_one_line(env_home, slow_model):
    """QA: further presses while the command stopped cut its hint short ("interrupted.") or printed
    a traceback from the interpreter's exit (threading._shutdown): they are ignored now."""
    import signal

    env = {**env_home, "OPENAI_BASE_URL": slow_model.url, "OPENAI_API_KEY": "k"}
    thread = f"thrice-{uuid.uuid4().hex[:8]}"
    run = _run_waiting_on_the_model(slow_model, env, "--thread", thread)
    try:
        for _ in range(3):
            run.send_signal(signal.SIGINT)
            time.sleep(0.05)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    line = assert_one_clean_line(subprocess.CompletedProcess(run.args, run.returncode, out, err), 130)
    assert "Exception ignored" not in err and "KeyboardInterrupt" not in err, err
    assert line == (
        "brainstack: interrupted; the thread keeps its last checkpoint: continue it with "
        f"`brainstack resume --thread {thread}`."
    )


def test_ctrl_c_during_kb_add_says_what_is_kept(env_home, tmp_path):
    """QA: an interrupted `kb add` said only "interrupted."."""
    import signal

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(300):
        (docs / f"note-{i:03}.md").write_text(f"# Note {i}\n\nRefund policy number {i}: " + "words " * 200)
    add = subprocess.Popen(
        [BRAINSTACK, "kb", "add", str(docs)],
        env=env_home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert add.stderr is not None
        for line in iter(add.stderr.readline, ""):
            if line.lstrip().startswith("added"):
                break
        else:
            pytest.fail("nothing was added")
        add.send_signal(signal.SIGINT)
        out, err = add.communicate(timeout=60)
    finally:
        if add.poll() is None:
            add.kill()
    line = assert_one_clean_line(subprocess.CompletedProcess(add.args, add.returncode, out, err), 130)
    assert line == (
        "brainstack: interrupted: the files listed above as added or updated are stored; run `kb add` "
        "again to go on (it skips unchanged files)."
    )


def test_what_an_interrupted_command_says_depends_on_what_its_thread_holds(settings, embedder):
    """QA: Ctrl-C in a command's first seconds (before its run saved anything) named a `resume`
    that was then refused ("no unfinished run"), and one on a run waiting for approval named a
    plain `resume`, refused too."""
    import argparse
    from datetime import UTC, datetime

    from brainstack import Runtime
    from brainstack.cli import _left_by_interrupt

    def said(command: str, thread: str, since: datetime) -> str:
        args = argparse.Namespace(command=command, thread=thread, task="What is 2 + 2?")
        return _left_by_interrupt(runtime, args, since)

    with Runtime(settings.model_copy(update={"approval": True}), embedder=embedder) as runtime:
        fresh = f"fresh-{uuid.uuid4().hex[:8]}"
        assert (
            said("run", fresh, datetime.now(UTC))
            == " before the run saved anything: nothing was kept. Run the task again."
        )

        done = f"done-{uuid.uuid4().hex[:8]}"
        runtime.run("What is 2 + 2?", thread_id=done)
        now = datetime.now(UTC)
        assert (
            said("run", done, now)
            == f" before the run saved anything: thread {done!r} is as it was. Run the task again."
        )
        before = datetime(2000, 1, 1, tzinfo=UTC)
        assert said("run", done, before) == (
            f" after the run had finished: its answer is on thread {done!r} "
            f"(`brainstack history --thread {done}`)."
        )

        paused = f"paused-{uuid.uuid4().hex[:8]}"
        assert runtime.run(
            "Should we launch a freemium tier? Decide as a team.", thread_id=paused
        ).status == ("awaiting_approval")
        for command in ("run", "resume"):
            assert said(command, paused, before) == (
                f"; the run waits for approval: `brainstack resume --thread {paused} "
                "--approve|--reject [WHY]|--edit TEXT`."
            )


def test_an_interrupted_run_whose_thread_cannot_be_read_does_not_promise_a_resume(
    settings, embedder, monkeypatch
):
    """QA: when the thread could not be read in time (the stopped run still loading its models),
    the message named `resume`, which was refused: the run had saved nothing."""
    import argparse
    from datetime import UTC, datetime

    from brainstack import Runtime
    from brainstack.cli import _left_by_interrupt

    with Runtime(settings, embedder=embedder) as runtime:

        def slow(coroutine):
            coroutine.close()
            raise TimeoutError

        monkeypatch.setattr(runtime, "_schedule", slow)
        args = argparse.Namespace(command="run", thread="t-slow", task="What is 2 + 2?")
        assert _left_by_interrupt(runtime, args, datetime.now(UTC)) == (
            "; whether the run saved anything could not be read in time: `brainstack history --thread "
            "t-slow` shows it. Continue with `brainstack resume --thread t-slow` if it lists the task, "
            "or run the task again."
        )
        args.command = "resume"  # (a resume's thread has its checkpoints: `resume` goes on)
        assert "continue it with `brainstack resume --thread t-slow`" in _left_by_interrupt(
            runtime, args, datetime.now(UTC)
        )


def test_a_stop_signal_whose_interrupt_was_lost_still_stops_the_run(env_home, monkeypatch, capsys):
    """QA: SIGTERM's KeyboardInterrupt raised inside a finalizer is printed as "Exception ignored"
    and dropped, and the run went on to exit 0 (2 of 27 trials). The command checks again before
    its run."""
    import signal

    from brainstack import cli

    for key, value in env_home.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(cli, "_signalled", [signal.SIGTERM])  # (the signal came; its raise was lost)
    assert cli.main(["run", "What is 2 + 2?", "--thread", "t-lost"]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "brainstack: stopped by SIGTERM before the run saved anything" in err
    assert "Run the task again" in err


@pytest.mark.parametrize(
    "command", [("memory", "search", "pricing"), ("kb", "list"), ("kb", "search", "refunds")]
)
def test_memory_commands_with_a_home_that_is_a_file_say_so(env_home, tmp_path, command):
    home = tmp_path / "not-a-folder"
    home.write_text("")
    line = assert_one_clean_line(cli(*command, env={**env_home, "BRAINSTACK_HOME": str(home)}), 2)
    assert f"Cannot create the memory folder {home / 'chroma'}: Not a directory" in line
    assert "BRAINSTACK_HOME" in line


@pytest.mark.parametrize("command", [("memory", "show"), ("kb", "list"), ("doctor",)])
def test_memory_commands_whose_folder_cannot_be_written_say_so(env_home, tmp_path, command):
    """A read-only BRAINSTACK_HOME (QA: a read-only mount) said "The run failed: OSError: [Errno
    30] Read-only file system: '…/chroma/.brainstack-open.lock'" for commands that run nothing,
    and named no setting. As root, permissions cannot make it read-only here: the lock file's
    place is taken by a folder, which fails the same open."""
    from brainstack.memory.episodic import OPEN_LOCK

    home = tmp_path / "home"
    (home / "chroma" / OPEN_LOCK).mkdir(parents=True)
    result = cli(*command, env={**env_home, "BRAINSTACK_HOME": str(home)})
    text = result.stdout + result.stderr
    assert f"Cannot open the memory folder {home / 'chroma'}: Is a directory" in text
    assert "Set BRAINSTACK_HOME to a writable folder" in text and "The run failed" not in text
    assert "Traceback" not in text and result.returncode != 0


@pytest.mark.parametrize("command", [("memory", "search", "pricing"), ("kb", "search", "refunds")])
@pytest.mark.parametrize("k", ["0", "1001", "99999999999999999999"])
def test_a_search_k_out_of_range_is_a_usage_error(env_home, command, k):
    """A huge -k was "The run failed: OverflowError: …" from the store (QA)."""
    line = assert_one_clean_line(cli(*command, "-k", k, env=env_home), 2)
    assert "-k must be between 1 and 1000" in line


@pytest.mark.parametrize("command", [("memory", "search", "  "), ("kb", "search", "")])
def test_an_empty_search_query_is_a_usage_error(env_home, command):
    line = assert_one_clean_line(cli(*command, env=env_home), 2)
    assert line == "brainstack: The query is empty: pass the words to search for."
