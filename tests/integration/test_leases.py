"""Thread leases against other processes: refused while held, free when the holder ends or dies."""

from __future__ import annotations

import asyncio
import os
import signal
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
            with pytest.raises(ThreadBusyError, match=f"process {os.getpid()} on "):
                async with second.hold("t-1"):
                    pass
            async with second.hold("t-2"):  # another thread
                pass
        async with second.hold("t-1"):  # free again
            pass
        files = list((tmp_path / "locks").iterdir())
        assert len(files) == 2 and all(f.stat().st_size == 0 for f in files)

    asyncio.run(scenario())


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


def test_only_runs_on_a_named_thread_take_a_lease(settings, embedder):
    """A thread the Runtime names itself is unknown to other processes until the run returns it."""
    from brainstack import Runtime

    locks = settings.home / "locks"
    with Runtime(settings, embedder=embedder) as runtime:
        runtime.run("What is 2 + 2?")
        assert not locks.exists() or list(locks.iterdir()) == []
        runtime.run("What is 2 + 2?", thread_id="named")
        assert len(list(locks.iterdir())) == 1
