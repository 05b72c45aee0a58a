"""The PostgreSQL command timeout (BRAINSTACK_POSTGRES_COMMAND_TIMEOUT_S), on the real server."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

pytestmark = pytest.mark.postgres


async def _connect(postgres_url: str, timeout_s: float):
    from brainstack.graphs._postgres import AnsweringConnection

    conn = await AnsweringConnection.connect(postgres_url, autocommit=True)
    conn.command_timeout_s = timeout_s
    return conn


def test_a_command_past_the_timeout_is_cancelled_on_the_server_and_its_connection_closed(postgres_url):
    """Review: the connection was closed without a cancel, so a slow (not frozen) server ran the
    command to its end: `threads delete` could report a failure and still delete."""
    import psycopg

    from brainstack.graphs._postgres import CommandTimeout

    table = f"timeout_{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
            await admin.execute(f"CREATE TABLE {table} (x int)")
            await admin.execute(f"INSERT INTO {table} VALUES (1)")
            try:
                conn = await _connect(postgres_url, 0.5)
                started = time.monotonic()
                with pytest.raises(CommandTimeout, match=r"did not answer within 0\.5 s"):
                    await conn.execute(f"DELETE FROM {table} WHERE x = 1 AND pg_sleep(2) IS NOT NULL")
                assert time.monotonic() - started < 3 and conn.closed
                await asyncio.sleep(2.5)  # past the statement's own end
                rows = await (await admin.execute(f"SELECT count(*) FROM {table}")).fetchone()
                assert rows == (1,)  # cancelled, not run to its end
            finally:
                await admin.execute(f"DROP TABLE {table}")

    asyncio.run(scenario())


def test_longer_commands_take_their_time_within_a_bound(postgres_url):
    """Listing, pruning and deleting threads and a thread's history grow with the data: they may
    take LONG_COMMANDS times the timeout, and still end when the server stops answering (review:
    without a bound they waited for a frozen server forever); migrations have no bound."""
    from brainstack.graphs._postgres import CommandTimeout, longer

    async def scenario() -> None:
        conn = await _connect(postgres_url, 0.1)
        try:
            with longer(10):
                await conn.execute("SELECT pg_sleep(0.5)")
            with longer(None):
                await conn.execute("SELECT pg_sleep(1.2)")
            assert not conn.closed
            with (
                longer(10),
                pytest.raises(
                    CommandTimeout, match=r"within 1 s \(BRAINSTACK_POSTGRES_COMMAND_TIMEOUT_S × 10\)"
                ),
            ):
                await conn.execute("SELECT pg_sleep(3)")
        finally:
            await conn.close()

    asyncio.run(scenario())


def test_the_threads_commands_get_the_longer_bound_and_a_run_the_timeout(
    settings, postgres_url, embedder, monkeypatch
):
    """Review: `threads list`, prune, delete and history had the timeout of one checkpoint's read,
    and their time grows with the data; a run's commands (one checkpoint each) keep it."""
    from brainstack import Runtime
    from brainstack.graphs import _postgres

    configured = settings.model_copy(update={"checkpoint_url": postgres_url, "memory": False})
    thread, user = f"bound-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}"
    wait = _postgres.AnsweringConnection.wait
    unbounded: list[bool] = []  # whether each command had more than the timeout

    async def recorded(self, gen, interval=None, timeout=None):
        if not (self.info.parameter_status("application_name") or "").startswith("brainstack pid"):
            unbounded.append(_postgres._factor.get() != 1)  # (a lease's lock and unlock have the timeout)
        return await wait(self, gen, interval, timeout)

    monkeypatch.setattr(_postgres.AnsweringConnection, "wait", recorded)
    with Runtime(configured, embedder=embedder) as runtime:
        runtime.run("What is 2 + 2?", user_id=user, thread_id=thread)  # (the schema's setup: unbounded)
        unbounded.clear()
        runtime.run("What is 3 + 3?", user_id=user, thread_id=thread)
        assert unbounded and not any(unbounded)  # a run's commands: every one bounded
        unbounded.clear()
        assert [t.thread_id for t in runtime.threads(user)] == [thread]
        assert unbounded[0] and not all(unbounded)  # the scan; then each listed thread's last checkpoint
        unbounded.clear()
        checkpoints = runtime.history(thread)
        ends = sum(1 for c in checkpoints if not c.next)  # each read once more, alone (bounded)
        assert len(unbounded) > ends and unbounded[0] and unbounded.count(False) <= ends * 3, unbounded
        for name, command in (("prune", runtime.prune_thread), ("delete", runtime.delete_thread)):
            unbounded.clear()
            command(thread)
            assert unbounded and all(unbounded), name
