"""Thread leases against other processes: refused while held, free when the holder ends or dies."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from brainstack.errors import ThreadBusyError
from brainstack.graphs.leases import FileLeases, open_leases

HOLDER = """
import asyncio, sys
from brainstack.config import Settings
from brainstack.graphs.leases import open_leases

async def main():
    async with open_leases(Settings.from_env()) as leases, leases.hold(sys.argv[1]):
        print("HELD", flush=True)
        await asyncio.sleep(600)

asyncio.run(main())
"""


def _thread() -> str:
    return f"lease-{uuid.uuid4().hex[:12]}"


async def _try(settings, thread_id: str) -> str:
    async with open_leases(settings) as leases:
        try:
            async with leases.hold(thread_id):
                return "held"
        except ThreadBusyError as exc:
            return str(exc)


def test_a_lease_held_by_a_live_process_refuses_and_its_death_frees_it(backend_settings, env_home):
    thread = _thread()
    env = {**env_home}
    if backend_settings.checkpoint_url:
        env["BRAINSTACK_CHECKPOINT_URL"] = backend_settings.checkpoint_url
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, thread], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "HELD"
        refused = asyncio.run(_try(backend_settings, thread))
        assert refused.startswith(
            f"Thread {thread!r} is being run by another process (process {holder.pid} on "
        )
        assert asyncio.run(_try(backend_settings, _thread())) == "held"  # other threads are free
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up runs: the OS / the server ends the lease
        holder.wait(30)
    # Free at once for a lock file; PostgreSQL ends the session as soon as it sees the socket close.
    deadline = time.monotonic() + 15
    while (outcome := asyncio.run(_try(backend_settings, thread))) != "held" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outcome == "held"


def test_file_leases_are_exclusive_and_keep_one_empty_file_per_thread(tmp_path):
    async def scenario() -> None:
        first, second = FileLeases(tmp_path / "locks"), FileLeases(tmp_path / "locks")
        async with first.hold("t-1"):
            with pytest.raises(ThreadBusyError, match="being run by another Runtime in this process"):
                async with second.hold("t-1"):
                    pass
            async with second.hold("t-2"):  # another thread
                pass
        async with second.hold("t-1"):  # free again
            pass
        files = list((tmp_path / "locks").iterdir())
        assert len(files) == 2 and all(f.stat().st_size == 0 for f in files)

    asyncio.run(scenario())


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture
def no_auto_sweeps(monkeypatch):
    """Only the sweeps a test starts itself (a lease's own sweep would race with its checks)."""
    monkeypatch.setattr(FileLeases, "sweep_every", 0)


def test_a_sweep_removes_old_lock_files_no_run_holds(tmp_path, no_auto_sweeps):
    folder = tmp_path / "locks"
    leases = FileLeases(folder)

    async def scenario() -> int:
        for thread in ("old-free", "old-held", "new-free"):
            async with leases.hold(thread):
                pass
        for thread in ("old-free", "old-held"):
            _age(leases._path(thread), leases.stale_after_s + 60)
        (folder / "notes.txt").write_text("not a lock file")
        _age(folder / "notes.txt", leases.stale_after_s + 60)
        async with FileLeases(folder).hold("old-held"):  # a run under way on an old file
            removed = leases.sweep()
        return removed

    assert asyncio.run(scenario()) == 1
    assert not leases._path("old-free").exists()
    assert leases._path("old-held").exists() and leases._path("new-free").exists()
    assert (folder / "notes.txt").exists()
    assert FileLeases(tmp_path / "never-made").sweep() == 0


def test_the_first_lease_of_a_runtime_starts_a_sweep(tmp_path):
    folder = tmp_path / "locks"
    leases = FileLeases(folder)

    async def scenario() -> None:
        earlier = FileLeases(folder)
        async with earlier.hold("stale"):
            pass
        assert earlier._sweep is not None and await earlier._sweep == 0  # its own first sweep
        _age(leases._path("stale"), leases.stale_after_s + 60)
        async with leases.hold("another"):
            assert leases._sweep is not None
            assert await leases._sweep == 1
        async with leases.hold("another"):  # the next sweep waits for sweep_every leases
            pass
        assert leases._leases == 2

    asyncio.run(scenario())
    assert [p.name for p in folder.iterdir()] == [leases._path("another").name]


def test_a_lease_whose_file_a_sweep_removed_takes_the_new_file(tmp_path, monkeypatch, no_auto_sweeps):
    """A sweep removes the file between the lease's open and its lock: the lease must not hold
    the removed inode (another run would create a new file and hold it at the same time)."""
    import brainstack.graphs.leases as leases_module

    folder = tmp_path / "locks"
    leases = FileLeases(folder)
    real = leases_module._lock_file
    locks: list[int] = []

    def lock_after_a_sweep(fd: int) -> bool:
        locks.append(fd)
        if len(locks) == 1:
            os.unlink(leases._path("t-1"))  # what a sweep does, just before this lock
        return real(fd)

    monkeypatch.setattr(leases_module, "_lock_file", lock_after_a_sweep)

    async def scenario() -> None:
        async with leases.hold("t-1"):
            assert leases._path("t-1").exists() and len(locks) == 2  # locked again, the new file
            with pytest.raises(ThreadBusyError):  # the file at the path is the one held
                async with FileLeases(folder).hold("t-1"):
                    pass

    asyncio.run(scenario())


def test_a_lease_briefly_locked_by_a_sweep_is_not_reported_busy(tmp_path, no_auto_sweeps):
    import fcntl
    import threading

    leases = FileLeases(tmp_path / "locks")

    async def scenario() -> None:
        async with leases.hold("t-1"):
            pass
        path = leases._path("t-1")
        fd = os.open(path, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a sweep at work on this file
        threading.Timer(0.01, lambda: (os.unlink(path), os.close(fd))).start()
        started = time.monotonic()
        async with leases.hold("t-1"):
            assert path.exists()
        assert time.monotonic() - started < leases.busy_wait_s

    asyncio.run(scenario())


def test_a_sweep_spares_leases_of_its_own_process_where_locks_are_per_process(
    tmp_path, monkeypatch, no_auto_sweeps
):
    """On NFS, flock is emulated with POSIX locks, which belong to the process: a sweep's lock
    on a file this process's run holds would succeed, and closing it would drop the run's lock."""
    import fcntl

    import brainstack.graphs.leases as leases_module

    def per_process_lock(fd: int) -> bool:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    monkeypatch.setattr(leases_module, "_lock_file", per_process_lock)
    leases = FileLeases(tmp_path / "locks")

    async def scenario() -> None:
        async with leases.hold("old"):
            pass
        _age(leases._path("old"), leases.stale_after_s + 60)
        async with leases.hold("old"):
            assert leases.sweep() == 0 and leases._path("old").exists()
        assert leases.sweep() == 1  # no longer held

    asyncio.run(scenario())


def test_a_lease_whose_sweep_cannot_start_is_still_released(tmp_path, monkeypatch):
    def refuse(self) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr("threading.Thread.start", refuse)
    folder = tmp_path / "locks"

    async def scenario() -> None:
        leases = FileLeases(folder)
        async with leases.hold("t-1"):
            assert leases._sweep is None  # skipped: a sweep is best effort
        monkeypatch.setattr(leases, "_start_sweep", lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            async with leases.hold("t-1"):
                pass
        async with FileLeases(folder).hold("t-1"):  # not leaked by either
            pass

    asyncio.run(scenario())


def test_a_lock_file_that_keeps_vanishing_is_an_error_not_a_hang(tmp_path, monkeypatch, no_auto_sweeps):
    from brainstack.errors import BackendError

    monkeypatch.setattr("brainstack.graphs.leases._same_file", lambda fd, path: False)

    async def scenario() -> None:
        async with FileLeases(tmp_path / "locks").hold("t-1"):
            pass

    with pytest.raises(BackendError, match="keeps being replaced"):
        asyncio.run(asyncio.wait_for(scenario(), 10))


def test_an_unusable_lock_folder_is_a_backend_error(tmp_path):
    from brainstack.errors import BackendError

    (tmp_path / "locks").write_text("a file where the folder should be")

    async def scenario() -> None:
        async with FileLeases(tmp_path / "locks").hold("t-1"):
            pass

    with pytest.raises(BackendError, match=r"thread lock (folder|file)"):
        asyncio.run(scenario())


@pytest.mark.postgres
def test_the_postgres_lease_connection_asks_the_server_to_notice_a_dead_holder(postgres_url):
    from brainstack.graphs.leases import PostgresLeases

    async def scenario() -> tuple[str, str, str]:
        leases = PostgresLeases(postgres_url, 10)
        try:
            async with leases.hold(_thread()):
                conn = await leases._connection()
                values = []
                for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "application_name"):
                    values.append((await (await conn.execute(f"SHOW {name}")).fetchone())[0])
                return values[0], values[1], values[2]
        finally:
            await leases.close()

    idle, interval, application = asyncio.run(scenario())
    assert (idle, interval) == ("30", "10")
    assert application.startswith(f"brainstack pid {os.getpid()} on ")


def test_every_run_takes_a_lease_even_on_a_thread_it_names_itself(settings, embedder):
    """A thread the Runtime names itself is listed by threads() to other processes as soon as its
    run starts (and they may delete it): its run holds a lease like a run on a named thread."""
    from brainstack import Runtime

    locks = settings.home / "locks"
    with Runtime(settings, embedder=embedder) as runtime:
        runtime.run("What is 2 + 2?")
        assert len(list(locks.iterdir())) == 1
        runtime.run("What is 2 + 2?", thread_id="named")
        assert len(list(locks.iterdir())) == 2


@pytest.mark.postgres
def test_a_postgres_lease_attempt_cancelled_while_granted_is_given_back(postgres_url, monkeypatch):
    """The server grants the lock after the run stopped waiting: the lease must not stay held on
    the Runtime's long-lived session (another process would be refused until it closed)."""
    from brainstack.graphs.leases import PostgresLeases

    thread = _thread()
    real = PostgresLeases._try_lock

    async def slow_reply(self, key):
        outcome = await real(self, key)  # granted on the server...
        await asyncio.sleep(0.3)  # ...but the reply arrives after the cancellation
        return outcome

    async def scenario() -> str:
        first, second = PostgresLeases(postgres_url, 10), PostgresLeases(postgres_url, 10)
        try:
            monkeypatch.setattr(PostgresLeases, "_try_lock", slow_reply)

            async def run() -> None:
                async with first.hold(thread):
                    pytest.fail("the cancelled attempt must not enter the run")

            task = asyncio.ensure_future(run())
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            monkeypatch.setattr(PostgresLeases, "_try_lock", real)
            for _ in range(40):  # the give-back runs once the late reply is in
                try:
                    async with second.hold(thread):
                        return "held"
                except ThreadBusyError:
                    await asyncio.sleep(0.05)
            return "still held by the cancelled attempt"
        finally:
            await first.close()
            await second.close()

    assert asyncio.run(scenario()) == "held"


@pytest.mark.postgres
def test_concurrent_first_postgres_leases_share_one_connection(postgres_url, monkeypatch):
    import psycopg

    from brainstack.graphs.leases import PostgresLeases

    connects = []
    real = psycopg.AsyncConnection.connect

    async def counting(*args, **kwargs):
        connects.append(1)
        return await real(*args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", counting)

    async def scenario() -> None:
        leases = PostgresLeases(postgres_url, 10)

        async def one() -> None:
            async with leases.hold(_thread()):
                await asyncio.sleep(0.05)

        try:
            await asyncio.gather(one(), one(), one())
        finally:
            await leases.close()

    asyncio.run(scenario())
    assert len(connects) == 1


@pytest.mark.parametrize("how", ["run", "stream"])
def test_closing_a_runtime_mid_run_ends_the_run_and_frees_its_thread(settings, embedder, how):
    """close() while a named run waits on its model: the caller gets a RunError (not a hang), and
    the thread's lease and turn are given back, so the thread runs again at once."""
    import threading

    import httpx2

    from brainstack import Runtime
    from brainstack.errors import RunError

    started = threading.Event()

    async def stalled(request):
        started.set()
        await asyncio.sleep(30)

    runtime = Runtime(settings, embedder=embedder, transport=httpx2.MockTransport(stalled))
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            if how == "run":
                runtime.run("Write a tagline.", thread_id="closing")
            else:
                for _ in runtime.stream("Write a tagline.", thread_id="closing"):
                    pass
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    assert started.wait(60)
    runtime.close()
    worker.join(30)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], RunError), outcome
    assert "closed while the run was under way" in str(outcome[0])
    with Runtime(settings, embedder=embedder) as again:  # not busy: continue the stopped run
        assert again.run(thread_id="closing").status == "completed"


def test_without_fcntl_the_file_lease_uses_msvcrt(monkeypatch, tmp_path):
    """The Windows path (no fcntl): msvcrt.locking on the first byte, unlocked before closing."""
    import types

    held: dict[str, int] = {}
    calls: list[tuple[str, int]] = []

    def locking(fd: int, mode: int, nbytes: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        calls.append(("lock" if mode == 1 else "unlock", nbytes))
        if mode == 1:  # LK_NBLCK
            if name in held:
                raise OSError("locked")
            held[name] = fd
        else:
            held.pop(name, None)

    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", types.SimpleNamespace(LK_NBLCK=1, LK_UNLCK=0, locking=locking))

    async def scenario() -> None:
        first, second = FileLeases(tmp_path / "locks"), FileLeases(tmp_path / "locks")
        async with first.hold("t-1"):
            with pytest.raises(ThreadBusyError):
                async with second.hold("t-1"):
                    pass
        async with second.hold("t-1"):
            pass

    asyncio.run(scenario())
    assert calls == [("lock", 1), ("lock", 1), ("unlock", 1), ("lock", 1), ("unlock", 1)]


async def _terminate_lease_session(postgres_url: str, leases) -> None:
    """What a server restart or a NAT timeout does to the Runtime's lease connection."""
    import psycopg

    pid = (await leases._connection()).info.backend_pid
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


@pytest.mark.postgres
def test_a_lost_postgres_lease_connection_is_reopened_for_the_next_lease(postgres_url):
    """The server dropped the lease connection between runs: the next lease reconnects instead
    of failing once with a BackendError."""
    from brainstack.graphs.leases import PostgresLeases

    async def scenario() -> None:
        leases = PostgresLeases(postgres_url, 10)
        try:
            thread = _thread()
            async with leases.hold(thread):
                pass
            await _terminate_lease_session(postgres_url, leases)
            async with leases.hold(thread):
                assert await _try_elsewhere(postgres_url, thread) == "busy"  # really held
        finally:
            await leases.close()

    asyncio.run(scenario())


@pytest.mark.postgres
def test_a_postgres_lease_lost_mid_run_is_reported_when_it_ends(postgres_url, caplog):
    from brainstack.graphs.leases import PostgresLeases

    async def scenario() -> str:
        leases = PostgresLeases(postgres_url, 10)
        thread = _thread()
        try:
            async with leases.hold(thread):
                await _terminate_lease_session(postgres_url, leases)
        finally:
            await leases.close()
        return thread

    with caplog.at_level("WARNING", logger="brainstack.graphs.leases"):
        thread = asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records] == [
        f"the lease on thread {thread!r} was lost during its run (its PostgreSQL connection "
        "ended); another process may have run the thread meanwhile"
    ]


@pytest.mark.postgres
def test_a_postgres_lease_lost_mid_run_stops_the_run(postgres_url, monkeypatch, caplog):
    """QA: with the lease's connection gone, the run went on while another process could take the
    thread and run it too (two answers). The connection is checked while the lease is held: the
    run is stopped with a BackendError saying why, and the thread is free for another process."""
    from brainstack.errors import BackendError
    from brainstack.graphs.leases import PostgresLeases

    monkeypatch.setattr(PostgresLeases, "check_every_s", 0.2)

    async def scenario() -> None:
        leases = PostgresLeases(postgres_url, 10)
        thread = _thread()
        try:
            started = time.monotonic()
            with pytest.raises(BackendError, match=f"lease on thread {thread!r} was lost.*stopped") as error:
                async with leases.hold(thread):
                    await _terminate_lease_session(postgres_url, leases)
                    await asyncio.sleep(30)  # a long model call
            assert time.monotonic() - started < 5 and error.value.thread_id == thread
            await asyncio.sleep(0.1)  # (the lease's end, in the background)
            assert not [r for r in caplog.records if "was lost" in r.getMessage()]  # said once: the error
            assert not asyncio.current_task().cancelling()  # the stop was not left pending
            await asyncio.sleep(0)
            assert await _try_elsewhere(postgres_url, thread) == "held"
            async with leases.hold(thread):  # and here, on a new connection
                await asyncio.sleep(0.5)  # checked on the way: it answers
        finally:
            await leases.close()

    asyncio.run(scenario())


@pytest.mark.postgres
def test_a_run_stopped_for_a_lost_lease_goes_on_from_its_progress(
    settings, postgres_url, embedder, monkeypatch
):
    """Through a Runtime: the run waiting on its model is stopped, and another Runtime answers the
    task once."""
    import threading

    import httpx2

    from brainstack import Runtime
    from brainstack.errors import BackendError
    from brainstack.graphs.leases import PostgresLeases

    backend_settings = settings.model_copy(update={"checkpoint_url": postgres_url})
    monkeypatch.setattr(PostgresLeases, "check_every_s", 0.2)
    started = threading.Event()

    async def stalled(request):
        started.set()
        await asyncio.sleep(30)

    thread = _thread()
    runtime = Runtime(backend_settings, embedder=embedder, transport=httpx2.MockTransport(stalled))
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            runtime.run("Write a tagline for our new product.", thread_id=thread, agent="marketing")
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    try:
        assert started.wait(60)
        host = socket.gethostname()

        async def terminate() -> None:
            import psycopg

            async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                    (f"brainstack pid {os.getpid()} on {host}"[:63],),
                )

        asyncio.run(terminate())
        worker.join(10)
        assert not worker.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], BackendError), outcome
        assert "was lost during its run" in str(outcome[0]) and outcome[0].thread_id == thread
    finally:
        runtime.close()
        worker.join(30)
    with Runtime(backend_settings, embedder=embedder) as again:
        result = again.run(thread_id=thread)
        assert result.status == "completed" and result.answer
        roles = [m["role"] for m in again.messages(thread)]
    assert roles == ["human", "ai"]


@pytest.mark.postgres
def test_closing_postgres_leases_ends_the_attempts_their_callers_stopped_waiting_for(postgres_url):
    """QA: Runtime.close() racing a run's lease request left its unlock pending when the loop
    stopped ("Task was destroyed but it is pending!"). close() now waits for such attempts and
    their unlocks: nothing is left running and the thread is free."""
    from brainstack.graphs.leases import PostgresLeases

    async def scenario() -> None:
        leases = PostgresLeases(postgres_url, 10, 5)
        await leases._connection()  # (the attempt below is then only the lock's round trip)
        threads = [_thread() for _ in range(5)]

        async def take(thread: str) -> None:
            async with leases.hold(thread):
                await asyncio.sleep(30)

        runs = [asyncio.ensure_future(take(thread)) for thread in threads]
        await asyncio.sleep(0)  # each attempt is sent; none is answered yet
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        await leases.close()
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
        for thread in threads:
            assert await _try_elsewhere(postgres_url, thread) == "held"

    asyncio.run(scenario())


@pytest.mark.postgres
def test_a_run_cancelled_just_as_its_postgres_lease_ends_still_gives_it_back(postgres_url):
    """Review: a cancellation landing while the lease's end waited for its watcher skipped the
    unlock, and the lock stayed on the Runtime's long-lived connection (the thread busy for every
    other process until the Runtime closed)."""
    from brainstack.graphs.leases import PostgresLeases

    async def scenario() -> None:
        leases = PostgresLeases(postgres_url, 10)
        thread = _thread()
        try:

            async def run() -> None:
                async with leases.hold(thread):
                    asyncio.get_running_loop().call_soon(asyncio.current_task().cancel)  # lands at the end

            with pytest.raises(asyncio.CancelledError):
                await asyncio.ensure_future(run())
            deadline = time.monotonic() + 5
            while (
                found := await _try_elsewhere(postgres_url, thread)
            ) == "busy" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert found == "held"
        finally:
            await leases.close()

    asyncio.run(scenario())


async def _try_elsewhere(postgres_url: str, thread: str) -> str:
    from brainstack.graphs.leases import PostgresLeases

    other = PostgresLeases(postgres_url, 10)
    try:
        async with other.hold(thread):
            return "held"
    except ThreadBusyError:
        return "busy"
    finally:
        await other.close()
