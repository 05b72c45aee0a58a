"""Checkpointers: a SQLite file by default, PostgreSQL when a URL is configured."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from brainstack.errors import ConfigurationError

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

    from brainstack.config import Settings

__all__ = ["open_checkpointer"]

_postgres_ready: set[str] = set()
"""URLs whose tables this process has already created (setup is idempotent but costs a round trip)."""


@contextlib.asynccontextmanager
async def open_checkpointer(settings: Settings) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """Open the configured checkpointer for the duration of one run."""
    url = settings.checkpoint_url
    if url and url.startswith(("postgres://", "postgresql://")):
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        except ImportError as exc:
            raise ConfigurationError(
                "BRAINSTACK_CHECKPOINT_URL points at PostgreSQL but its driver is not installed: "
                "pip install 'brainstack[postgres]' (or uv sync --extra postgres)."
            ) from exc
        async with AsyncPostgresSaver.from_conn_string(url) as saver:
            if url not in _postgres_ready:
                await saver.setup()
                _postgres_ready.add(url)
            yield saver
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
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        yield saver
