"""Thread leases: at most one process runs a given thread at a time.

Two processes continuing one thread at once would each write a branch from the same checkpoint
(one exchange is lost), and a process told that a thread "stopped" while another is still running
it would run the same step twice. A Runtime therefore holds a lease on a thread for as long as a run
on it lasts. The lease is released when the run ends and, because the operating system or the
database server ends it with its holder, when the process dies: a thread whose process was killed
mid-run can be resumed at once.

- SQLite checkpoints (one host): an exclusive ``flock`` on ``<home>/locks/<thread hash>.lock``
  (files older than a day that no run holds are swept away; a later run makes a new one).
- PostgreSQL checkpoints (any number of hosts): a session advisory lock on a connection the
  Runtime keeps for its leases. The server releases it when that connection ends, so a run whose
  lease connection ended (a server restart) is stopped: the connection is asked whether it still
  answers every few seconds while a lease is held.

Within one process the Runtime already makes runs on a thread take turns; leases are about other
processes (and other Runtimes on the same storage).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from brainstack.errors import BackendError, ThreadBusyError

if TYPE_CHECKING:
    from brainstack.config import Settings

__all__ = ["FileLeases", "Leases", "PostgresLeases", "open_leases"]

log = logging.getLogger(__name__)

_APPLICATION = "brainstack"
_KEEPALIVES = "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3"


class Leases(Protocol):
    def hold(self, thread_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold ``thread_id``'s lease for the block; :class:`ThreadBusyError` if another has it."""
        ...

    async def running(self, thread_ids: Collection[str]) -> set[str]:
        """Those of ``thread_ids`` whose lease someone holds now (a run, or a delete or prune)."""
        ...


def _holder() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _busy(thread_id: str, holder: dict[str, Any] | None) -> ThreadBusyError:
    mine = _holder()
    if holder and str(holder.get("pid")) == str(mine["pid"]) and holder.get("host") == mine["host"]:
        # (two Runtimes of one process: runs of one Runtime on a thread take turns instead)
        who = "another Runtime in this process"
    else:
        where = f" (process {holder.get('pid', '?')} on {holder.get('host', '?')})" if holder else ""
        who = f"another process{where}"
    return ThreadBusyError(
        f"Thread {thread_id!r} is being run by {who}. Wait for that run to end and try again "
        "(a new task can run at once on another thread).",
        thread_id=thread_id,
    )


class FileLeases:
    """Leases as ``flock``-ed files under ``folder`` (the SQLite checkpoints' host).

    Each thread has one empty file (an inode, no data), kept between runs: creating, writing or
    removing a file costs 40-250 µs on ext4, an ``flock`` on an existing one ~6 µs. So that the
    folder does not keep a file for every thread ever run, the first lease of each instance and
    every :attr:`sweep_every` th after it start a :meth:`sweep` on a worker thread, which removes
    files created more than :attr:`stale_after_s` ago that no run holds. A sweep locks a file
    before removing it, so a lease that loses that race retries on the new file, and a lease
    refused for a few milliseconds retries until :attr:`busy_wait_s` (a sweep holds a file for
    microseconds, a run for as long as it lasts). Who holds a lease is read from
    ``/proc/locks`` when one is refused (Linux; elsewhere the message names no process).
    """

    stale_after_s = 24 * 3600.0
    """A lock file this old that no run holds is removed by the next sweep."""
    sweep_every = 1000
    """Leases between two sweeps of one instance (the first lease starts one too); 0: none."""
    sweep_limit = 10_000
    """Files one sweep looks at, at most (a folder from before sweeps shrinks over a few)."""
    busy_wait_s = 0.05
    """How long a refused lease keeps trying before it reports the thread busy."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._leases = 0
        self._sweep: asyncio.Future[int] | None = None

    def _path(self, thread_id: str) -> Path:
        digest = hashlib.sha256(thread_id.encode()).hexdigest()[:32]
        return self.folder / f"{digest}.lock"

    @contextlib.asynccontextmanager
    async def hold(self, thread_id: str) -> AsyncIterator[None]:
        fd, file = await self._acquire(thread_id)
        with _held_lock:
            _held.add(file)  # never swept while held, even where a lock is per process (NFS)
        try:
            self._start_sweep()
            yield
        finally:
            with _held_lock:
                _held.discard(file)
            _unlock_file(fd)
            os.close(fd)  # (POSIX: closing alone releases the flock)

    async def _acquire(self, thread_id: str) -> tuple[int, tuple[int, int]]:
        """The locked file's descriptor and its (device, inode)."""
        path = self._path(thread_id)
        posix = _posix_locks()  # (Windows never sweeps: the file at the path is always the one opened)
        deadline = time.monotonic() + self.busy_wait_s
        while True:
            fd = self._open(path)
            try:
                locked = _lock_file(fd)
                opened = _identity(fd)
                current = not posix or _same_file(fd, path)  # False: a sweep removed our file
            except OSError as exc:
                os.close(fd)
                raise BackendError(f"Cannot lock the thread lock file {path}: {exc.strerror}.") from exc
            except BaseException:
                os.close(fd)
                raise
            if locked and current:
                return fd, opened
            if locked:
                _unlock_file(fd)
            os.close(fd)
            if not posix or time.monotonic() >= deadline:
                if current:
                    raise _busy(thread_id, _flock_holder(opened[1]))
                raise BackendError(f"The thread lock file {path} keeps being replaced; try again.")
            if current:  # (a removed file is opened again at once)
                await asyncio.sleep(0.002)

    def _open(self, path: Path) -> int:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:  # the first lease here (or the folder was removed)
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise BackendError(
                    f"Cannot create the thread lock folder {self.folder}: {exc.strerror}."
                ) from exc
        except OSError as exc:
            raise BackendError(f"Cannot open the thread lock file {path}: {exc.strerror}.") from exc

    async def running(self, thread_ids: Collection[str]) -> set[str]:
        """Each thread's lock file is tried without waiting (~10 µs; no file: no run has it): a
        held file refuses the lock, a free one is unlocked at once (a run taking it meanwhile
        retries for :attr:`busy_wait_s`, as it does against a sweep)."""
        return {thread_id for thread_id in thread_ids if self._held_by_someone(self._path(thread_id))}

    @staticmethod
    def _held_by_someone(path: Path) -> bool:
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:  # no file (never run here, or swept): nobody holds it
            return False
        try:
            if not _lock_file(fd):
                return True
            _unlock_file(fd)
            return False
        finally:
            os.close(fd)

    def _start_sweep(self) -> None:
        self._leases += 1
        if not self.sweep_every or (self._leases - 1) % self.sweep_every or not _posix_locks():
            return
        if self._sweep is not None and not self._sweep.done():
            return
        # A daemon thread, not the loop's executor: a process that ends (the CLI after one run)
        # does not wait for a sweep, and one cut short leaves every file as it was or removed.
        done: concurrent.futures.Future[int] = concurrent.futures.Future()

        def sweep() -> None:
            try:
                done.set_result(self.sweep())
            except BaseException as exc:
                done.set_exception(exc)

        try:
            threading.Thread(target=sweep, name="brainstack-lock-sweep", daemon=True).start()
        except RuntimeError:  # no new threads (the interpreter is shutting down): sweep later
            return
        self._sweep = asyncio.wrap_future(done)
        self._sweep.add_done_callback(_log_sweep)

    def sweep(self, now: float | None = None) -> int:
        """Remove the lock files created more than :attr:`stale_after_s` before ``now`` that no run
        holds (at most :attr:`sweep_limit` files looked at); returns how many were removed.

        POSIX only: Windows cannot remove a file another process has open.
        """
        if not _posix_locks():
            return 0
        cutoff = (time.time() if now is None else now) - self.stale_after_s
        removed = 0
        try:
            entries = os.scandir(self.folder)
        except OSError:  # no folder yet, or unreadable: nothing to sweep
            return 0
        with entries:
            for seen, entry in enumerate(entries):
                if seen >= self.sweep_limit:
                    break
                if not entry.name.endswith(".lock"):
                    continue
                try:
                    if entry.stat().st_mtime > cutoff:
                        continue
                    fd = os.open(entry.path, os.O_RDWR)
                except OSError:  # removed meanwhile, or not ours to open
                    continue
                try:
                    path = Path(entry.path)
                    # Locked, so no run holds it and none can take it until it is gone; a run that
                    # opened it meanwhile finds it removed and opens the new one (see _acquire).
                    # (Where locks belong to the process, as on NFS, this process's own runs'
                    # files would lock here too: _held keeps them.)
                    if (
                        _lock_file(fd)
                        and _same_file(fd, path)
                        and _identity(fd) not in _held
                        and os.fstat(fd).st_mtime <= cutoff
                    ):
                        os.unlink(path)
                        removed += 1
                except OSError:
                    pass
                finally:
                    os.close(fd)
        return removed


def _log_sweep(done: asyncio.Future[int]) -> None:
    if done.cancelled():
        return
    if (error := done.exception()) is not None:
        log.warning("sweeping old thread lock files failed: %s", error)
    elif removed := done.result():
        log.debug("removed %d old thread lock files", removed)


_held: set[tuple[int, int]] = set()
"""(device, inode) of the lock files this process's leases hold."""
_held_lock = threading.Lock()


def _identity(fd: int) -> tuple[int, int]:
    opened = os.fstat(fd)
    return opened.st_dev, opened.st_ino


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a sweep may have removed it)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    return (named.st_dev, named.st_ino) == _identity(fd)


def _posix_locks() -> bool:
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return False
    return True


def _lock_file(fd: int) -> bool:
    """Take an exclusive lock on ``fd`` without waiting; ``False`` if another open file has it.

    POSIX: ``flock`` (per open file, so two Runtimes of one process exclude each other too).
    Windows: ``msvcrt.locking`` on the first byte (not exercised by this project's CI).
    """
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock_file(fd: int) -> None:
    try:
        import fcntl  # noqa: F401 - POSIX: closing the file releases the lock
    except ImportError:  # Windows releases a closed file's locks only "eventually": unlock first
        import msvcrt

        with contextlib.suppress(OSError):
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]


def _flock_holder(inode: int) -> dict[str, Any] | None:
    """The process holding an ``flock`` on ``inode``, from Linux's ``/proc/locks``."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:
                # "1: FLOCK  ADVISORY  WRITE 12345 fd:01:123456 0 EOF" (blocked waiters have "->")
                parts = line.split()
                if (
                    len(parts) >= 6
                    and parts[1] == "FLOCK"
                    and "->" not in parts
                    and int(parts[5].rsplit(":", 1)[-1]) == inode
                ):
                    return {"pid": int(parts[4]), "host": socket.gethostname()}
    except (OSError, ValueError):
        pass
    return None


class PostgresLeases:
    """Leases as PostgreSQL session advisory locks on one connection of the Runtime's own.

    A lease must never outlive its run on that long-lived session (PostgreSQL keeps a session
    lock until it is unlocked or the session ends): the lock and unlock statements are shielded
    from cancellation, and a run cancelled while its lock was being granted gives it back.
    """

    check_every_s = 5.0
    """How often a held lease's connection is asked whether it still answers (one ``SELECT 1``)."""

    def __init__(self, url: str, connect_timeout_s: float, command_timeout_s: float | None = None) -> None:
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s
        self._conn: Any = None
        self._opening = asyncio.Lock()
        self._unfinished: set[asyncio.Future[Any]] = set()

    async def _connection(self) -> Any:
        from brainstack.graphs._postgres import AnsweringConnection

        async with self._opening:  # concurrent first leases share one connection
            if self._conn is None or self._conn.closed or self._conn.broken:
                if self._conn is not None:  # broken: close it, so the server ends its session now
                    with contextlib.suppress(Exception):
                        await self._conn.close()
                holder = _holder()
                conn = await AnsweringConnection.connect(
                    self.url,
                    autocommit=True,
                    connect_timeout=max(1, int(self.connect_timeout_s)),
                    application_name=f"{_APPLICATION} pid {holder['pid']} on {holder['host']}"[:63],
                    # A holder whose host vanished (no FIN) keeps its lease until the server gives
                    # up on the connection: keepalives make that about a minute, not two hours.
                    options=_KEEPALIVES,
                    keepalives=1,
                    keepalives_idle=30,
                )
                # A server that stops answering (frozen) fails the lease after this, and closes
                # the connection: the server ends the session's locks when it wakes up.
                conn.command_timeout_s = self.command_timeout_s
                self._conn = conn
            return self._conn

    async def _try_lock(self, key: int) -> tuple[Any, bool]:
        import psycopg

        conn = await self._connection()
        try:
            return conn, await self._lock_on(conn, key)
        except psycopg.OperationalError:
            if not (conn.closed or conn.broken):
                raise
        # The server ended the connection since the last lease (a restart, an idle timeout): a
        # dead connection holds no lock, so take the lease on a new one.
        conn = await self._connection()
        return conn, await self._lock_on(conn, key)

    @staticmethod
    async def _lock_on(conn: Any, key: int) -> bool:
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
        row = await cursor.fetchone()
        return bool(row and row[0])

    async def _unlock(self, conn: Any, key: int) -> bool:
        """Give the lock back; False if it was no longer held (its connection ended)."""
        try:
            cursor = await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            row = await cursor.fetchone()
        except Exception:  # a lost connection has released it already
            return False
        return bool(row and row[0])

    async def _release(self, conn: Any, key: int, thread_id: str) -> None:
        if not await self._unlock(conn, key):
            log.warning(
                "the lease on thread %r was lost during its run (its PostgreSQL connection ended); "
                "another process may have run the thread meanwhile",
                thread_id,
            )

    @contextlib.asynccontextmanager
    async def hold(self, thread_id: str) -> AsyncIterator[None]:
        key = _key(thread_id)
        attempt = asyncio.ensure_future(self._try_lock(key))
        try:
            conn, granted = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The server may grant the lock after we stopped waiting: give it back then.
            self._keep(attempt)
            attempt.add_done_callback(self._give_back(key))
            raise
        except Exception as exc:
            raise BackendError(
                f"Cannot take the lease on thread {thread_id!r} in PostgreSQL ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())}).",
                thread_id=thread_id,
            ) from exc
        if not granted:
            raise _busy(thread_id, await self._holder_of(conn, key))
        run = asyncio.current_task()
        stop = asyncio.Event()
        lost: list[str] = []
        watcher = asyncio.ensure_future(self._watch(conn, run, stop, lost))
        reported: list[bool] = []  # (the run's error says the lease was lost: no warning too)
        try:
            yield
        except asyncio.CancelledError:
            # The watcher's cancellation is reported as what it is; another one (the caller's,
            # close()) goes on as a cancellation.
            if not lost or run is None or run.uncancel() > 0:
                raise
            reported.append(True)
            raise _lost(thread_id, lost[0]) from None
        finally:
            stop.set()
            # One shielded task waits for the watcher and gives the lease back: a cancellation
            # landing here must not leave the lock held on the Runtime's long-lived connection.
            ending = asyncio.ensure_future(self._end(watcher, conn, key, thread_id, lost, reported))
            self._keep(ending)
            try:
                await asyncio.shield(ending)
            except asyncio.CancelledError:
                if not lost or run is None or reported or run.uncancel() > 0:
                    raise
                reported.append(True)
                raise _lost(thread_id, lost[0]) from None  # the watcher stopped the run as it ended

    async def _end(
        self,
        watcher: asyncio.Future[None],
        conn: Any,
        key: int,
        thread_id: str,
        lost: list[str],
        reported: list[bool],
    ) -> None:
        await watcher  # (it never cancels a command half-way)
        if not lost:
            await self._release(conn, key, thread_id)
        elif not reported:  # the run ended before the watcher's stop reached it
            log.warning("%s", _lost(thread_id, lost[0]))

    async def _watch(
        self, conn: Any, run: asyncio.Task[Any] | None, stop: asyncio.Event, lost: list[str]
    ) -> None:
        """Ask the lease's connection every :attr:`check_every_s` whether it still answers; if it
        ended, the server released the lock: stop the run (``lost`` says why), before another
        process that took the lease meanwhile and this one both write the thread."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.check_every_s)
                return
            try:
                await conn.execute("SELECT 1")
            except Exception as exc:
                if not (conn.closed or conn.broken):
                    continue  # the connection is still there, and so is its lock
                lost.append(" ".join(str(exc).split()) or type(exc).__name__)
                if run is not None and not stop.is_set():
                    run.cancel()
                return

    def _give_back(self, key: int) -> Any:
        def done(attempt: asyncio.Future[tuple[Any, bool]]) -> None:
            if not attempt.cancelled() and attempt.exception() is None:
                conn, granted = attempt.result()
                if granted:
                    self._keep(asyncio.ensure_future(self._unlock(conn, key)))

        return done

    def _keep(self, task: asyncio.Future[Any]) -> None:
        """Keep a lease attempt its caller stopped waiting for, or the unlock that follows it,
        referenced until it ends; :meth:`close` waits for them."""
        self._unfinished.add(task)
        task.add_done_callback(self._unfinished.discard)

    async def running(self, thread_ids: Collection[str]) -> set[str]:
        """One read of the server's advisory locks in this database, whoever holds them."""
        keys = {_lock_id(_key(thread_id)): thread_id for thread_id in thread_ids}
        if not keys:
            return set()
        conn = await self._connection()
        cursor = await conn.execute(
            "SELECT l.classid::bigint, l.objid::bigint FROM pg_locks l WHERE l.locktype = 'advisory' "
            "AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return {keys[row] for row in await cursor.fetchall() if row in keys}

    async def _holder_of(self, conn: Any, key: int) -> dict[str, Any] | None:
        try:
            cursor = await conn.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND l.classid = %s AND l.objid = %s",
                _lock_id(key),
            )
            row = await cursor.fetchone()
        except Exception:
            return None
        if not row:
            return None
        name = str(row[0] or "")
        parts = name.split()  # "brainstack pid N on HOST"
        if len(parts) == 5 and parts[0] == _APPLICATION:
            return {"pid": parts[2], "host": parts[4]}
        return {"pid": "?", "host": name or "another client"}

    async def close(self) -> None:
        # Attempts their callers stopped waiting for, and their unlocks, end before the connection
        # closes: the loop stops after this, and each left pending was "destroyed but pending"
        # (QA). Once the connection is closed, what is left ends at once.
        deadline = time.monotonic() + 2.0  # (the Runtime's whole shutdown takes at most 10 s)
        while self._unfinished and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait(set(self._unfinished), timeout=left)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
        if self._unfinished:
            await asyncio.wait(set(self._unfinished), timeout=1.0)


def _lost(thread_id: str, why: str) -> BackendError:
    return BackendError(
        f"The lease on thread {thread_id!r} was lost during its run (its PostgreSQL connection ended: "
        f"{why}), so the run was stopped: another process may take the thread now, and both would "
        f"answer. Its progress is saved: run again with thread {thread_id!r} to go on from it.",
        thread_id=thread_id,
    )


def _lock_id(key: int) -> tuple[int, int]:
    """How ``pg_locks`` shows a bigint advisory lock's key: its (classid, objid) halves."""
    return (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF


def _key(thread_id: str) -> int:
    """A signed 64-bit key for ``pg_try_advisory_lock(bigint)``, in brainstack's own key space."""
    digest = hashlib.sha256(f"brainstack thread lease:{thread_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.asynccontextmanager
async def open_leases(settings: Settings) -> AsyncIterator[Leases]:
    """The leases that go with the configured checkpointer (see the module's docstring)."""
    url = settings.checkpoint_url
    if url and url.startswith(("postgres://", "postgresql://")):
        leases = PostgresLeases(url, settings.postgres_connect_timeout_s, settings.postgres_command_timeout_s)
        try:
            yield leases
        finally:
            await leases.close()
        return
    yield FileLeases(settings.home / "locks")
