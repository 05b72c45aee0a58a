"""A process killed (SIGKILL) in the middle of the group chat resumes from its last checkpoint.

The first process runs a group-chat task whose model stalls on the second speaker: it reports
that on stdout and the test kills it for real. A second process (the CLI, as a user would)
continues the thread. The finished run has one answer in the thread and one episode in memory.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from brainstack import Runtime
from brainstack.testing import Cassette

pytestmark = pytest.mark.slow

DECISION = "Should we launch a freemium tier next quarter?"

# The model of the first process: the real offline model, except that the second call (the CMO's
# turn; the CTO has spoken) never returns.
STALLING_RUN = """
import sys, time, httpx2
from brainstack import Runtime
from brainstack.agents.offline import OfflineModel
from brainstack.config import Settings

model = OfflineModel(termination_word="TERMINATE", team=["CTO", "CMO", "CFO"])
calls = 0

def say(line):  # one write per line: two threads print
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()

def handle(request):
    global calls
    calls += 1
    if calls == 2:
        say("STALLED")
        time.sleep(600)
    return model.handle(request)

runtime = Runtime(Settings.from_env(), transport=httpx2.MockTransport(handle))
for event in runtime.stream(sys.argv[1], thread_id=sys.argv[2]):
    say(f"{event.type} {getattr(event, 'speaker', '')}".strip())
say("FINISHED")
"""


@pytest.fixture
def backend_env(backend_settings, env_home):
    """The subprocesses' environment: the same home (tmp_path/home) and checkpoint backend."""
    assert Path(env_home["BRAINSTACK_HOME"]) == backend_settings.home
    url = backend_settings.checkpoint_url
    return {**env_home, "BRAINSTACK_CHECKPOINT_URL": url} if url else env_home


def test_killed_mid_group_chat_resumes_with_one_answer_and_one_episode(
    backend_env, backend_settings, embedder, tmp_path
):
    thread = f"crash-{uuid.uuid4().hex[:12]}"
    errors = tmp_path / "first-process.err"
    child = _first_process(STALLING_RUN, thread, backend_env, errors)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.strip()) for line in child.stdout], daemon=True).start()
    seen: list[str] = []
    try:
        # Two threads print: the stalled model call can print before the CTO's turn event does.
        while not {"STALLED", "group_chat_turn CTO"} <= set(seen):
            try:
                seen.append(lines.get(timeout=120))
            except queue.Empty:
                pytest.fail(f"the first process never reached the second turn: {seen}\n{errors.read_text()}")
        assert "group_chat_turn CTO" in seen and "result" not in seen, seen
        # While the first process is alive its run is not "stopped": continuing it is refused.
        busy = _resume(thread, backend_env)
        assert busy.returncode == 2, busy.stderr
        assert f"is being run by another process (process {child.pid} on " in busy.stderr
        os.kill(child.pid, signal.SIGKILL)  # a real kill: no cleanup, no finally blocks
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    _wait_until_the_lease_is_free(backend_settings, thread)

    with Runtime(backend_settings, embedder=embedder) as runtime:
        last = runtime.history(thread)[0]
        assert last.next == ["group_chat"] and last.route == "group_chat"  # stopped inside the meeting
        assert runtime.memory.episodes.count("default") == 0
        (listed,) = [t for t in runtime.threads() if t.thread_id == thread]
        assert listed.status == "unfinished"  # killed: no error was saved, it did not fail
        with pytest.raises(Exception, match="stopped before group_chat"):
            runtime.run("A new question", thread_id=thread)

    resumed = _resume(thread, backend_env)
    assert resumed.returncode == 0, resumed.stderr
    assert "→ route:" not in resumed.stdout  # route ran before the kill and is not repeated
    turns = [line.split("]")[0].strip(" [") for line in resumed.stdout.splitlines() if line.startswith("  [")]
    assert turns == ["CTO", "CMO", "CFO"]

    with Runtime(backend_settings, embedder=embedder) as runtime:
        messages = runtime.messages(thread)
        assert [m["role"] for m in messages] == ["human", "ai"]
        assert (
            messages[1]["content"].startswith("CFO (offline model) closing")
            and messages[1]["content"] in resumed.stdout
        )
        assert runtime.history(thread)[0].next == []
        assert runtime.memory.episodes.count("default") == 1
        (episode,) = runtime.memory.episodes.search("default", DECISION, k=5)
        assert episode.metadata["thread_id"] == thread and episode.metadata["route"] == "group_chat"


# The first process of the next test: a replayed decision (the offline model reaches none, so it
# would teach no skill); its remember step writes memory, then stalls before the step's checkpoint
# (the test kills it there).
STALLING_REMEMBER = """
import sys, time
from brainstack import Runtime
from brainstack.config import Settings
from brainstack.memory import gateway
from brainstack.testing import Cassette

written = gateway.MemoryGateway._remember

def remember_then_stall(self, *args, **kwargs):
    write = written(self, *args, **kwargs)
    sys.stdout.write(f"WRITTEN {write.skill} {write.episode_id}\\n")
    sys.stdout.flush()
    time.sleep(600)

gateway.MemoryGateway._remember = remember_then_stall
model = Cassette.load(sys.argv[3]).transport()
Runtime(Settings.from_env(provider="openai"), transport=model).run(sys.argv[1], thread_id=sys.argv[2])
"""
ACQUISITION = "Should we acquire our smaller competitor Initech?"
ACQUISITION_CHAT = Path(__file__).parent / "cassettes" / "acquisition.yaml"


def test_killed_after_remember_wrote_resumes_without_a_second_episode_or_success(
    backend_env, backend_settings, embedder, tmp_path
):
    """The remember step runs again on resume (its checkpoint was never written): it replaces its
    episode and does not count its skill's success twice (it wrote a second episode and counted
    the skill twice)."""
    thread = f"crash-rem-{uuid.uuid4().hex[:12]}"
    errors = tmp_path / "first-process.err"
    child = _first_process(STALLING_REMEMBER, thread, backend_env, errors, ACQUISITION, str(ACQUISITION_CHAT))
    try:
        line = child.stdout.readline()  # blocks until remember has written (or the process ends)
        assert line.startswith("WRITTEN "), f"{line!r}\n{errors.read_text()}"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    _, skill, episode_id = line.split()
    assert skill != "None", "the replayed decision taught no skill"
    _wait_until_the_lease_is_free(backend_settings, thread)
    with Runtime(backend_settings, embedder=embedder) as runtime:
        assert runtime.history(thread)[0].next == ["remember"]
        assert runtime.memory.episodes.count("default") == 1
        assert runtime.memory.skills.success_count(skill) == 1

    resumed = _resume(thread, backend_env)
    assert resumed.returncode == 0, resumed.stderr
    with Runtime(backend_settings, embedder=embedder) as runtime:
        assert runtime.history(thread)[0].next == []
        assert runtime.memory.episodes.count("default") == 1
        (episode,) = runtime.memory.episodes.search("default", ACQUISITION, k=5)
        assert episode.id == episode_id and episode.metadata["thread_id"] == thread
        assert runtime.memory.skills.success_count(skill) == 1
    model = Cassette.load(ACQUISITION_CHAT).transport()
    deciding = backend_settings.model_copy(update={"provider": "openai"})
    with Runtime(deciding, embedder=embedder, transport=model) as runtime:
        again = runtime.run(ACQUISITION, thread_id=thread)  # the next run is a success of its own
        assert again.remembered.episode_id != episode_id and again.remembered.skill == skill
        assert runtime.memory.episodes.count("default") == 2
        assert runtime.memory.skills.success_count(skill) == 2


def _wait_until_the_lease_is_free(settings, thread: str, timeout: float = 15.0) -> None:
    """A killed process's lease ends with it: at once for a lock file, and as soon as the server
    sees the connection close for PostgreSQL (usually milliseconds, not instantly)."""
    import asyncio
    import time

    from brainstack.errors import ThreadBusyError
    from brainstack.graphs.leases import open_leases

    async def free() -> bool:
        async with open_leases(settings) as leases:
            try:
                async with leases.hold(thread):
                    return True
            except ThreadBusyError:
                return False

    deadline = time.monotonic() + timeout
    while not asyncio.run(free()):
        assert time.monotonic() < deadline, f"the killed process still holds {thread!r}"
        time.sleep(0.05)


def _first_process(
    script: str, thread: str, env: dict[str, str], errors: Path, task: str = DECISION, *more: str
) -> subprocess.Popen[str]:
    """``script`` running ``task`` on ``thread`` (``more`` follow as arguments), its stdout piped,
    its stderr in ``errors``."""
    return subprocess.Popen(
        [sys.executable, "-c", script, task, thread, *more],
        env=env,
        stdout=subprocess.PIPE,
        stderr=errors.open("w"),
        text=True,
    )


def _resume(thread: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`brainstack resume --thread THREAD` in a new process, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "brainstack.cli", "resume", "--thread", thread],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
