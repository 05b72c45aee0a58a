"""Checkpointers: a SQLite file by default, PostgreSQL when a URL is configured."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from brainstack.errors import BackendError, ConfigurationError

if TYPE_CHECKING:
    from pathlib import Path

    import aiosqlite
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from psycopg_pool import AsyncConnectionPool

    from brainstack.config import Settings

__all__ = [
    "connect_sqlite",
    "delete_thread",
    "find_threads",
    "long_commands",
    "open_checkpointer",
    "prune_thread",
]

_postgres_ready: set[str] = set()
"""URLs whose tables this process has already created (setup is idempotent but costs a round trip)."""


@contextlib.asynccontextmanager
async def open_checkpointer(settings: Settings) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """Open the configured checkpointer; a Runtime keeps it open until it is closed."""
    url = settings.checkpoint_url
    if url and url.startswith(("postgres://", "postgresql://")):
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        except ImportError as exc:
            raise ConfigurationError(
                "BRAINSTACK_CHECKPOINT_URL points at PostgreSQL but its driver is not installed: "
                "pip install 'brainstack[postgres]' (or uv sync --extra postgres)."
            ) from exc
        where = _where(url)
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        from brainstack.graphs._postgres import AnsweringConnection, longer

        # A pool, not one connection: a Runtime keeps its checkpointer open across runs and
        # may run several at once; the pool also replaces connections the server dropped.
        # BRAINSTACK_POSTGRES_CONNECT_TIMEOUT_S bounds both the wait for a new connection and the
        # wait for one from the pool: a server lost mid-run failed the run after the pool's own
        # 30 s, twice, with a log line per reconnection attempt (QA, session 15).
        connect_timeout = max(1, int(settings.postgres_connect_timeout_s))

        async def configure(conn: AnsweringConnection) -> None:
            conn.command_timeout_s = settings.postgres_command_timeout_s

        pool = AsyncConnectionPool(
            url,
            connection_class=AnsweringConnection,
            configure=configure,
            min_size=1,
            max_size=settings.postgres_pool_size,
            kwargs={
                "autocommit": True,
                "prepare_threshold": 0,
                "row_factory": dict_row,
                "connect_timeout": connect_timeout,
            },
            check=AsyncConnectionPool.check_connection,
            timeout=settings.postgres_connect_timeout_s,
            name=POOL_NAME,
            open=False,
        )
        _quiet_reconnection_attempts()
        try:
            # One direct connection first: a server that is down fails now, with its own
            # message, instead of after the pool's retries.
            import psycopg

            probe = await psycopg.AsyncConnection.connect(url, connect_timeout=connect_timeout)
            await probe.close()
            await pool.open(wait=True, timeout=settings.postgres_connect_timeout_s)
        except Exception as exc:
            await pool.close()
            raise BackendError(
                f"The PostgreSQL backend at {where} cannot be reached ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())}). "
                "Check that it is up and that BRAINSTACK_CHECKPOINT_URL is right."
            ) from exc
        try:
            saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]  # a pool is accepted at runtime
            if url not in _postgres_ready:
                with longer(None):  # its migrations may build an index on a large table
                    await saver.setup()
                _postgres_ready.add(url)
            yield saver
        finally:
            await pool.close()
        return
    if url:
        raise ConfigurationError(
            f"BRAINSTACK_CHECKPOINT_URL {url.split('@')[-1]!r} is not a postgresql:// URL; "
            "unset it to use the SQLite file under BRAINSTACK_HOME."
        )
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path = settings.sqlite_path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot create BRAINSTACK_HOME {path.parent}: {exc.strerror}. Set it to a writable folder."
        ) from exc
    async with connect_sqlite(path, settings.sqlite_synchronous) as conn:
        sqlite = AsyncSqliteSaver(conn)
        # Its tables now, not at its first read or write: the thread commands read them with
        # their own SQL, and on a home no run has used yet they did not exist.
        await sqlite.setup()
        yield sqlite


async def find_threads(
    saver: BaseCheckpointSaver[str], user_id: str | None
) -> list[tuple[str, int, str, str]]:
    """The threads with checkpoints of ``user_id``'s runs (every thread when ``None``), the most
    recently used first: ``(thread_id, checkpoints, newest checkpoint id, thread's latest
    checkpoint id)`` each (the last two differ when another user ran the thread since).

    A run records its user id in its checkpoints' metadata (and a pruned thread's kept checkpoint
    the ids of the runs it replaced, ``users``). Read from the checkpoint tables the
    way the savers' own metadata filters read them, without loading a checkpoint: ``alist``
    would load every one, with its writes.
    """
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    group = "GROUP BY thread_id ORDER BY max(checkpoint_id) DESC"
    latest = (  # the thread's latest: the primary key's index answers it, one lookup per thread
        "max(checkpoint_id)"
        if user_id is None
        else "(SELECT max(checkpoint_id) FROM checkpoints l WHERE l.thread_id = c.thread_id "
        "AND l.checkpoint_ns = '')"
    )
    if isinstance(saver, AsyncSqliteSaver):
        mine = (
            ""
            if user_id is None
            else "AND (json_extract(CAST(metadata AS TEXT), '$.user_id') = ? OR EXISTS (SELECT 1 FROM "
            "json_each(CAST(metadata AS TEXT), '$.users') WHERE value = ?))"
        )
        async with (
            saver.lock,
            saver.conn.execute(
                f"SELECT thread_id, count(*), max(checkpoint_id), {latest} "
                f"FROM checkpoints c WHERE checkpoint_ns = '' {mine} {group}",
                () if user_id is None else (user_id, user_id),
            ) as rows,
        ):
            return [(str(t), int(n), str(c), str(last)) async for t, n, c, last in rows]
    from psycopg.types.json import Jsonb

    mine = "" if user_id is None else "AND (metadata @> %s OR metadata @> %s)"
    with long_commands(saver):  # a scan of every thread's checkpoints: its time grows with the table
        async with _pool(saver).connection() as conn:
            found = await conn.execute(
                "SELECT thread_id, count(*) AS n, max(checkpoint_id) AS newest, "
                f"{latest} AS latest FROM checkpoints c "
                f"WHERE checkpoint_ns = '' {mine} {group}",
                [] if user_id is None else [Jsonb({"user_id": user_id}), Jsonb({"users": [user_id]})],
            )
            return [
                (str(r["thread_id"]), int(r["n"]), str(r["newest"]), str(r["latest"]))
                for r in await found.fetchall()
            ]


POOL_NAME = "brainstack-checkpoints"


class _ReconnectionAttempts(logging.Filter):
    """Drops psycopg_pool's "error connecting in 'brainstack-checkpoints'" warnings: a run that
    cannot get a connection fails with one BackendError saying so, and the pool's background
    attempts printed a line each (12 for one lost server) before it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(f"error connecting in {POOL_NAME!r}")


def _quiet_reconnection_attempts() -> None:
    logger = logging.getLogger("psycopg.pool")
    if not any(isinstance(f, _ReconnectionAttempts) for f in logger.filters):
        logger.addFilter(_ReconnectionAttempts())


def long_commands(saver: BaseCheckpointSaver[str]) -> contextlib.AbstractContextManager[None]:
    """PostgreSQL: the block's commands may take ``LONG_COMMANDS`` times the command timeout (see
    ``_postgres.longer``); SQLite: nothing."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    if isinstance(saver, AsyncSqliteSaver):
        return contextlib.nullcontext()
    from brainstack.graphs._postgres import longer

    return longer()


def _pool(saver: BaseCheckpointSaver[str]) -> AsyncConnectionPool[Any]:
    """The connection pool of a PostgreSQL saver (open_checkpointer gives it one)."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg_pool import AsyncConnectionPool

    assert isinstance(saver, AsyncPostgresSaver) and isinstance(saver.conn, AsyncConnectionPool)
    return saver.conn


async def delete_thread(saver: BaseCheckpointSaver[str], thread_id: str) -> bool:
    """Delete every checkpoint of ``thread_id``; False if it had none. The caller holds the thread."""
    with long_commands(saver):  # a long thread takes its time
        if await saver.aget_tuple({"configurable": {"thread_id": thread_id}}) is None:
            return False
        await saver.adelete_thread(thread_id)
    await _flush_log(saver)
    return True


async def _flush_log(saver: BaseCheckpointSaver[str]) -> None:
    """SQLite: copy the write-ahead log into the file and empty it, so the deleted rows' old
    pages do not linger in the log (best effort: a reader in another process may hold it)."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    if isinstance(saver, AsyncSqliteSaver):
        async with saver.lock:
            await saver.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def prune_thread(saver: BaseCheckpointSaver[str], thread_id: str) -> int:
    """Delete every checkpoint of ``thread_id`` but its latest, with their pending writes; how
    many checkpoints were deleted. The latest keeps its own writes, so the conversation goes on
    and a paused or unfinished run still continues from it; only the history before it goes.

    The kept checkpoint's metadata gets ``users``: every user whose runs the deleted checkpoints
    recorded, so :func:`find_threads` still finds the thread for each of them (its conversation
    holds their tasks). The caller holds the thread (no run may write to it meanwhile).
    PostgreSQL uses its saver's ``aprune`` (``keep_latest``); the SQLite saver has none, so its
    two tables are pruned here.
    """
    import json

    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    if isinstance(saver, AsyncSqliteSaver):
        deleted = 0
        metadata = "CAST(metadata AS TEXT)"
        async with saver.lock, saver.conn.cursor() as cur:
            await cur.execute(
                f"SELECT json_extract({metadata}, '$.user_id') FROM checkpoints WHERE thread_id = ? "
                f"UNION SELECT users.value FROM checkpoints, json_each({metadata}, '$.users') AS users "
                "WHERE thread_id = ?",
                (thread_id, thread_id),
            )
            users = sorted({str(user) for (user,) in await cur.fetchall() if user is not None})
            await cur.execute(
                "SELECT checkpoint_ns, max(checkpoint_id) FROM checkpoints WHERE thread_id = ? "
                "GROUP BY checkpoint_ns",
                (thread_id,),
            )
            for namespace, latest in list(await cur.fetchall()):  # the one aget_tuple loads
                where = "thread_id = ? AND checkpoint_ns = ? AND checkpoint_id <> ?"
                await cur.execute(f"DELETE FROM checkpoints WHERE {where}", (thread_id, namespace, latest))
                deleted += max(cur.rowcount, 0)
                await cur.execute(f"DELETE FROM writes WHERE {where}", (thread_id, namespace, latest))
                await cur.execute(
                    f"UPDATE checkpoints SET metadata = json_set({metadata}, '$.users', json(?)) "
                    "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
                    (json.dumps(users), thread_id, namespace, latest),
                )
            await saver.conn.commit()
        await _flush_log(saver)
        return deleted
    with long_commands(saver):  # a long thread takes its time
        return await _prune_postgres(saver, thread_id)


async def _prune_postgres(saver: BaseCheckpointSaver[str], thread_id: str) -> int:
    from psycopg.types.json import Jsonb

    pool = _pool(saver)
    before = await _count(pool, thread_id)
    if not before:
        return 0
    async with pool.connection() as conn:
        found = await conn.execute(
            "SELECT metadata->>'user_id' AS u FROM checkpoints WHERE thread_id = %s UNION "
            "SELECT jsonb_array_elements_text(metadata->'users') FROM checkpoints WHERE thread_id = %s",
            [thread_id, thread_id],
        )
        users = sorted({str(row["u"]) for row in await found.fetchall() if row["u"] is not None})
        # Written before LangGraph's prune, which commits on its own: a process killed between the
        # two left the kept checkpoint with its own run's user only, and the thread vanished for
        # its other users' `threads list`, `delete --user` and `forget` (QA). The checkpoints
        # that will be kept are the newest of each namespace (LangGraph's keep_latest "heads").
        await conn.execute(
            "UPDATE checkpoints c SET metadata = c.metadata || %s WHERE c.thread_id = %s AND "
            "c.checkpoint_id = (SELECT max(checkpoint_id) FROM checkpoints n "
            "WHERE n.thread_id = c.thread_id AND n.checkpoint_ns = c.checkpoint_ns)",
            [Jsonb({"users": users}), thread_id],
        )
    await saver.aprune([thread_id], strategy="keep_latest")  # (no run writes meanwhile: see above)
    return before - await _count(pool, thread_id)


async def _count(pool: AsyncConnectionPool[Any], thread_id: str) -> int:
    async with pool.connection() as conn:
        found = await conn.execute("SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", [thread_id])
        row = await found.fetchone()
    return int(row["n"]) if row else 0


@contextlib.asynccontextmanager
async def connect_sqlite(path: Path | str, synchronous: str = "full") -> AsyncIterator[aiosqlite.Connection]:
    """An aiosqlite connection in WAL mode with ``PRAGMA synchronous`` set (``full`` or ``normal``,
    ``BRAINSTACK_SQLITE_SYNCHRONOUS``).

    With ``full`` (what ``AsyncSqliteSaver.from_conn_string`` leaves) every commit waits for an
    fsync. WAL mode is set here, before the saver's own setup sets it too, because ``normal`` is
    only corruption-safe in WAL mode.
    """
    import aiosqlite

    if synchronous not in ("normal", "full"):
        raise ValueError(f"synchronous must be 'normal' or 'full', not {synchronous!r}")
    async with aiosqlite.connect(str(path)) as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        # Deleted rows (a deleted or pruned thread) are overwritten with zeros, not left in free
        # pages. Debian's SQLite does this by default; other builds do not.
        await conn.execute("PRAGMA secure_delete=ON")
        yield conn


def _where(url: str) -> str:
    """host:port/db of a connection URL, without credentials."""
    from urllib.parse import urlparse

    try:
        parsed = urlparse(url)
        return f"{parsed.hostname or 'localhost'}:{parsed.port or 5432}{parsed.path}"
    except ValueError as exc:  # a port that is no number, an unclosed [IPv6 host]
        raise ConfigurationError(
            # without the credentials: before the last "@", and libpq's ?password=… after "?"
            f"BRAINSTACK_CHECKPOINT_URL {url.split('@')[-1].split('?')[0]!r} is not a valid URL: {exc}. "
            "Fix it (postgresql://user@host:port/database) or unset it to use SQLite."
        ) from None
