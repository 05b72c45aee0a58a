"""A psycopg connection that gives up on a server that stops answering.

A PostgreSQL server process that is frozen (stopped, swapped out, a hung disk) keeps its
connections open and its kernel keeps acknowledging what is sent, so neither TCP keepalives nor
libpq notice: a run waited for its checkpoint with no limit and kept its thread's lease (QA,
session 15). Every wait of a psycopg connection for the server goes through
``AsyncConnection.wait``, which takes a timeout: this class passes one
(``BRAINSTACK_POSTGRES_COMMAND_TIMEOUT_S``, as asyncpg's ``command_timeout``) and, when it expires,
asks the server to cancel the command (briefly), closes the connection (its state is unknown; a
server that wakes up ends the session, and with it any lease the session held) and raises
:class:`CommandTimeout`. Imported only with
PostgreSQL configured (psycopg is the ``postgres`` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import errors

__all__ = ["LONG_COMMANDS", "AnsweringConnection", "CommandTimeout", "longer"]

LONG_COMMANDS = 10.0
"""How many times the command timeout a command whose time grows with the data may take."""

_factor: contextvars.ContextVar[float | None] = contextvars.ContextVar("brainstack_pg_factor", default=1.0)
"""This context's commands may take this many times the command timeout (``None``: no limit)."""


class CommandTimeout(psycopg.OperationalError):
    """The server did not answer one command within ``BRAINSTACK_POSTGRES_COMMAND_TIMEOUT_S``."""


class AnsweringConnection(psycopg.AsyncConnection[Any]):
    """An async psycopg connection whose every wait for the server ends after ``command_timeout_s``
    (``None``: no limit, psycopg's own behaviour)."""

    command_timeout_s: float | None = None

    async def wait(self, gen: Any, interval: float | None = None, timeout: float | None = None) -> Any:
        bound = timeout
        factor = _factor.get()
        if bound is None and self.command_timeout_s is not None and factor is not None:
            bound = self.command_timeout_s * factor
        passed: dict[str, Any] = {} if interval is None else {"interval": interval}
        try:
            return await super().wait(gen, timeout=bound, **passed)
        except errors.OperationalError as exc:
            # psycopg's own timeouts (its cancellation's) are its to handle: only ours is converted.
            if timeout is not None or bound is None or type(exc).__name__ != "_WaitTimeout":
                raise
            # Half-way through a command, the connection cannot be reused. A server that is slow,
            # not frozen, would still run the command to its end: ask it to cancel it first (a
            # frozen one does not answer that either: briefly).
            try:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.cancel_safe(timeout=1.0), 1.5)
            finally:
                self.pgconn.finish()
            raise CommandTimeout(
                f"the server did not answer within {bound:g} s (BRAINSTACK_POSTGRES_COMMAND_TIMEOUT_S"
                f"{f' × {factor:g}' if factor != 1 else ''}); the connection was closed"
            ) from None


@contextlib.contextmanager
def longer(factor: float | None = LONG_COMMANDS) -> Iterator[None]:
    """Let this context's commands take ``factor`` times the command timeout (``None``: no limit).
    For those whose time grows with the data: listing, pruning and deleting threads, a thread's
    whole history (``LONG_COMMANDS``); the savers' schema migrations, which may build an index on a
    large table (no limit). A run's reads and writes of one checkpoint keep the timeout itself."""
    token = _factor.set(factor)
    try:
        yield
    finally:
        _factor.reset(token)
