"""A psycopg connection that gives up on a server that stops answering.

A PostgreSQL server process that is frozen (stopped, swapped out, a hung disk) keeps its
connections open and its kernel keeps acknowledging what is sent, so neither TCP keepalives nor
libpq notice: a run waited for its checkpoint with no limit and kept its thread's lease (QA,
session 15). Every wait of a psycopg connection for the server goes through
``AsyncConnection.wait``, which takes a timeout: this class passes one
(``BRAINSTACK_POSTGRES_COMMAND_TIMEOUT_S``, as asyncpg's ``command_timeout``) and, when it expires,
closes the connection at once (its state is unknown; a server that wakes up ends the session,
and with it any lease the session held) and raises :class:`CommandTimeout`. Imported only with
PostgreSQL configured (psycopg is the ``postgres`` extra).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import errors

__all__ = ["AnsweringConnection", "CommandTimeout", "unbounded"]

_unbounded: contextvars.ContextVar[bool] = contextvars.ContextVar("brainstack_pg_unbounded", default=False)


class CommandTimeout(psycopg.OperationalError):
    """The server did not answer one command within ``BRAINSTACK_POSTGRES_COMMAND_TIMEOUT_S``."""


class AnsweringConnection(psycopg.AsyncConnection[Any]):
    """An async psycopg connection whose every wait for the server ends after ``command_timeout_s``
    (``None``: no limit, psycopg's own behaviour)."""

    command_timeout_s: float | None = None

    async def wait(self, gen: Any, interval: float | None = None, timeout: float | None = None) -> Any:
        bound = timeout
        if bound is None and not _unbounded.get():
            bound = self.command_timeout_s
        passed: dict[str, Any] = {} if interval is None else {"interval": interval}
        try:
            return await super().wait(gen, timeout=bound, **passed)
        except errors.OperationalError as exc:
            # psycopg's own timeouts (its cancellation's) are its to handle: only ours is converted.
            if timeout is not None or bound is None or type(exc).__name__ != "_WaitTimeout":
                raise
            # Half-way through a command, the connection cannot be reused. A server that is slow,
            # not frozen, would still run the command to its end: ask it to cancel it first.
            with contextlib.suppress(Exception):
                await self.cancel_safe(timeout=2.0)
            self.pgconn.finish()
            raise CommandTimeout(
                f"the server did not answer within {bound:g} s (BRAINSTACK_POSTGRES_COMMAND_TIMEOUT_S); "
                "the connection was closed"
            ) from None


@contextlib.contextmanager
def unbounded() -> Iterator[None]:
    """No command timeout for this context's commands: those whose time grows with the data
    (the savers' schema migrations, which may build an index on a large table; listing, pruning
    and deleting threads; a thread's whole history), unlike a run's reads and writes of one
    checkpoint."""
    token = _unbounded.set(True)
    try:
        yield
    finally:
        _unbounded.reset(token)
