"""Working memory: small per-user and per-session key/values that expire (preferences, session facts).

Two implementations of one contract, :class:`WorkingMemory`:

* :class:`InProcessWorkingMemory` — a dict with expiry times; the default, gone with the process.
* :class:`RedisWorkingMemory` — redis-py; shared by every process that points at the same server.

Values are JSON (str, numbers, bools, lists, dicts). Every entry has a TTL (default one hour).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import quote

from brainstack.errors import BackendError, ConfigurationError, translate

__all__ = [
    "DEFAULT_TTL_S",
    "InProcessWorkingMemory",
    "RedisWorkingMemory",
    "Scope",
    "WorkingMemory",
    "open_working_memory",
]

Scope = Literal["user", "session"]
SCOPES: tuple[Scope, ...] = ("user", "session")
DEFAULT_TTL_S = 3600.0
MAX_VALUE_BYTES = 64 * 1024
UPDATE_ATTEMPTS = 50
"""How many times :meth:`RedisWorkingMemory.update` reads again after losing a race."""


@runtime_checkable
class WorkingMemory(Protocol):
    """Key/values per ``(scope, owner)`` — a user id or a session (thread) id — with a TTL each."""

    default_ttl_s: float

    def set(self, scope: Scope, owner: str, key: str, value: Any, *, ttl_s: float | None = None) -> None:
        """Store ``value`` (JSON) under ``key``; it expires after ``ttl_s`` (default: the memory's)."""
        ...

    def get(self, scope: Scope, owner: str, key: str) -> Any | None:
        """The value, or ``None`` when absent or expired."""
        ...

    def items(self, scope: Scope, owner: str) -> dict[str, Any]:
        """Every live key/value of the owner."""
        ...

    def delete(self, scope: Scope, owner: str, key: str) -> bool:
        """Remove one key; ``True`` if it existed."""
        ...

    def clear(self, scope: Scope, owner: str) -> int:
        """Remove every key of the owner; how many there were."""
        ...

    def ping(self) -> None:
        """Raise :class:`~brainstack.errors.BackendError` when the backend cannot be used."""
        ...

    def close(self) -> None: ...


def _check(scope: str, owner: str, key: str | None, ttl_s: float | None = None) -> None:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
    if not owner:
        raise ValueError("owner (a user or session id) must not be empty")
    if key is not None and (not key or len(key) > 200):
        raise ValueError("key must be 1-200 characters")
    if ttl_s is not None and ttl_s <= 0:
        raise ValueError("ttl_s must be positive")


def _encode(value: Any) -> str:
    try:
        data = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"working-memory values must be JSON: {exc}") from None
    if len(data.encode()) > MAX_VALUE_BYTES:
        raise ValueError(f"working-memory values are limited to {MAX_VALUE_BYTES // 1024} KiB")
    return data


class InProcessWorkingMemory:
    """Thread-safe in-process working memory (the default).

    An owner's expired entries go when the owner is next read or written, and every
    :attr:`sweep_every_s` (at most) a write sweeps every owner's: each run leaves session facts
    under its thread, and most threads are never read again.
    """

    sweep_every_s = 60.0
    """Longest time between two sweeps of every owner's expired entries (shorter with a shorter
    default TTL): an entry outlives its TTL by at most that much."""

    def __init__(self, *, default_ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic):
        self.default_ttl_s = default_ttl_s
        self._clock = clock
        self._data: dict[tuple[str, str], dict[str, tuple[float, str]]] = {}
        self._lock = threading.Lock()
        self._next_sweep = clock() + min(self.sweep_every_s, default_ttl_s)

    def set(self, scope: Scope, owner: str, key: str, value: Any, *, ttl_s: float | None = None) -> None:
        _check(scope, owner, key, ttl_s)
        data = _encode(value)
        now = self._clock()
        expires = now + (ttl_s or self.default_ttl_s)
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            self._data.setdefault((scope, owner), {})[key] = (expires, data)

    def _sweep(self, now: float) -> None:
        """Drop every expired entry, and the owners left with none (the caller holds the lock)."""
        for scope, owner in list(self._data):
            self._expire(scope, owner, now)
        self._next_sweep = now + min(self.sweep_every_s, self.default_ttl_s)

    def _live(self, scope: Scope, owner: str) -> dict[str, tuple[float, str]]:
        return self._expire(scope, owner, self._clock())

    def _expire(self, scope: str, owner: str, now: float) -> dict[str, tuple[float, str]]:
        """The owner's entries still alive at ``now``; the expired ones, and an owner left with
        none, are dropped (the caller holds the lock)."""
        entries = self._data.get((scope, owner), {})
        for key in [k for k, (expires, _) in entries.items() if expires <= now]:
            del entries[key]
        if not entries:
            self._data.pop((scope, owner), None)
        return entries

    def get(self, scope: Scope, owner: str, key: str) -> Any | None:
        _check(scope, owner, key)
        with self._lock:
            entry = self._live(scope, owner).get(key)
        return json.loads(entry[1]) if entry else None

    def update(
        self,
        scope: Scope,
        owner: str,
        key: str,
        change: Callable[[Any], Any],
        *,
        ttl_s: float | None = None,
        keep_ttl: bool = False,
    ) -> Any:
        """Replace the value with ``change(value)`` (``value`` is ``None`` when absent) at once:
        no other write comes between the read and the write. A ``None`` result deletes the key.
        ``keep_ttl``: an existing key keeps the time it has left (taking something away must not
        make the rest last longer). Returns the new value."""
        _check(scope, owner, key, ttl_s)
        with self._lock:
            entry = self._live(scope, owner).get(key)
            value = change(json.loads(entry[1]) if entry else None)
            if value is None:
                self._data.get((scope, owner), {}).pop(key, None)
            else:
                expires = self._clock() + (ttl_s or self.default_ttl_s)
                if keep_ttl and entry:
                    expires = entry[0]
                self._data.setdefault((scope, owner), {})[key] = (expires, _encode(value))
        return value

    def items(self, scope: Scope, owner: str) -> dict[str, Any]:
        _check(scope, owner, None)
        with self._lock:
            entries = dict(self._live(scope, owner))
        return {key: json.loads(data) for key, (_, data) in sorted(entries.items())}

    def delete(self, scope: Scope, owner: str, key: str) -> bool:
        _check(scope, owner, key)
        with self._lock:
            return self._live(scope, owner).pop(key, None) is not None

    def clear(self, scope: Scope, owner: str) -> int:
        _check(scope, owner, None)
        with self._lock:
            count = len(self._live(scope, owner))
            self._data.pop((scope, owner), None)
        return count

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return "InProcessWorkingMemory()"


class RedisWorkingMemory:
    """Working memory in Redis.

    Layout, per owner: one string key per entry (``SET … PX ttl``) and a sorted set indexing the
    owner's keys by expiry time, so listing never scans the keyspace. Needs Redis ≥ 7.0.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "brainstack",
        default_ttl_s: float = DEFAULT_TTL_S,
        client: Any = None,
    ) -> None:
        import redis

        self.default_ttl_s = default_ttl_s
        self.prefix = prefix
        self.url = url
        try:
            self._redis = client or redis.Redis.from_url(
                url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
            )
        except ValueError as exc:
            raise ConfigurationError(f"BRAINSTACK_REDIS_URL is not a Redis URL ({exc})") from None

    def _base(self, scope: str, owner: str) -> str:
        return f"{self.prefix}:wm:{scope}:{quote(owner, safe='')}"

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            raise translate(exc) from exc

    def set(self, scope: Scope, owner: str, key: str, value: Any, *, ttl_s: float | None = None) -> None:
        _check(scope, owner, key, ttl_s)
        data = _encode(value)
        ttl_ms = max(1, int((ttl_s or self.default_ttl_s) * 1000))
        base = self._base(scope, owner)

        def run() -> None:
            pipe = self._redis.pipeline(transaction=True)
            self._queue_set(pipe, base, key, data, ttl_ms)
            pipe.execute()

        self._call(run)

    def _queue_set(self, pipe: Any, base: str, key: str, data: str, ttl_ms: int) -> None:
        """Queue on ``pipe`` the commands that store one entry and index it by expiry."""
        now_ms, index = self._now_ms(), f"{base}:index"
        pipe.set(f"{base}:k:{quote(key, safe='')}", data, px=ttl_ms)
        pipe.zadd(index, {key: now_ms + ttl_ms})
        pipe.zremrangebyscore(index, "-inf", now_ms)
        pipe.pexpire(index, ttl_ms, gt=True)
        pipe.pexpire(index, ttl_ms, nx=True)

    @staticmethod
    def _queue_delete(pipe: Any, base: str, key: str) -> None:
        """Queue on ``pipe`` the commands that remove one entry and its index entry."""
        pipe.delete(f"{base}:k:{quote(key, safe='')}")
        pipe.zrem(f"{base}:index", key)

    @staticmethod
    def _now_ms() -> int:
        # The index only prunes and filters; Redis itself expires the values, so client clock
        # skew can at worst list a key whose value is already gone (and is then skipped).
        return int(time.time() * 1000)

    def get(self, scope: Scope, owner: str, key: str) -> Any | None:
        _check(scope, owner, key)
        data = self._call(lambda: self._redis.get(f"{self._base(scope, owner)}:k:{quote(key, safe='')}"))
        return json.loads(data) if data is not None else None

    def items(self, scope: Scope, owner: str) -> dict[str, Any]:
        _check(scope, owner, None)
        base = self._base(scope, owner)

        def run() -> dict[str, Any]:
            found: Any = self._redis.zrangebyscore(f"{base}:index", self._now_ms(), "+inf")
            keys = [k.decode() for k in found]
            if not keys:
                return {}
            values = self._redis.mget([f"{base}:k:{quote(k, safe='')}" for k in keys])
            return {k: json.loads(v) for k, v in sorted(zip(keys, values, strict=True)) if v is not None}

        result: dict[str, Any] = self._call(run)
        return result

    def update(
        self,
        scope: Scope,
        owner: str,
        key: str,
        change: Callable[[Any], Any],
        *,
        ttl_s: float | None = None,
        keep_ttl: bool = False,
    ) -> Any:
        """Replace the value with ``change(value)`` (``value`` is ``None`` when absent) at once,
        across processes and machines: the read is WATCHed and the write retried when another
        client changed the key meanwhile. A ``None`` result deletes the key. ``keep_ttl``: an
        existing key keeps the time it has left. Returns the new value."""
        import redis

        _check(scope, owner, key, ttl_s)
        base = self._base(scope, owner)
        name = f"{base}:k:{quote(key, safe='')}"

        def run() -> Any:
            with self._redis.pipeline(transaction=True) as pipe:
                for _ in range(UPDATE_ATTEMPTS):
                    try:
                        pipe.watch(name)
                        data = pipe.get(name)
                        ttl_ms = max(1, int((ttl_s or self.default_ttl_s) * 1000))
                        if keep_ttl and data is not None:
                            left = int(pipe.pttl(name))
                            ttl_ms = left if left > 0 else ttl_ms
                        value = change(json.loads(data) if data is not None else None)
                        pipe.multi()
                        if value is None:
                            self._queue_delete(pipe, base, key)
                        else:
                            self._queue_set(pipe, base, key, _encode(value), ttl_ms)
                        pipe.execute()
                        return value
                    except redis.WatchError:  # another client wrote it: read it again
                        continue
            raise BackendError(
                f"Redis key {name} kept changing: {UPDATE_ATTEMPTS} updates in a row lost the race."
            )

        return self._call(run)

    def delete(self, scope: Scope, owner: str, key: str) -> bool:
        _check(scope, owner, key)
        base = self._base(scope, owner)

        def run() -> bool:
            pipe = self._redis.pipeline(transaction=True)
            self._queue_delete(pipe, base, key)
            removed, _ = pipe.execute()
            return bool(removed)

        result: bool = self._call(run)
        return result

    def clear(self, scope: Scope, owner: str) -> int:
        _check(scope, owner, None)
        base = self._base(scope, owner)

        def run() -> int:
            found: Any = self._redis.zrange(f"{base}:index", 0, -1)
            keys = [k.decode() for k in found]
            names = [f"{base}:k:{quote(k, safe='')}" for k in keys]
            removed = self._redis.delete(*names) if names else 0
            self._redis.delete(f"{base}:index")
            return int(removed)

        result: int = self._call(run)
        return result

    def ping(self) -> None:
        self._call(self._redis.ping)

    def close(self) -> None:
        self._redis.close()

    def __repr__(self) -> str:
        return f"RedisWorkingMemory({self.url.split('@')[-1]!r})"


def open_working_memory(settings: Any) -> WorkingMemory:
    """Redis when ``settings.redis_url`` is set, the in-process store otherwise."""
    ttl = settings.working_memory_ttl_s
    if settings.redis_url:
        return RedisWorkingMemory(settings.redis_url, default_ttl_s=ttl)
    return InProcessWorkingMemory(default_ttl_s=ttl)
