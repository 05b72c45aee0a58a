"""One conformance suite for every WorkingMemory backend (in-process and real Redis)."""

from __future__ import annotations

import time
import uuid

import pytest

from brainstack.errors import BackendError
from brainstack.memory.working import InProcessWorkingMemory, RedisWorkingMemory, WorkingMemory


@pytest.fixture(params=["in_process", pytest.param("redis", marks=pytest.mark.redis)])
def memory(request):
    if request.param == "in_process":
        yield InProcessWorkingMemory(default_ttl_s=60)
        return
    store = RedisWorkingMemory(
        request.getfixturevalue("redis_url"), prefix=f"test-{uuid.uuid4().hex[:8]}", default_ttl_s=60
    )
    yield store
    store._redis.delete(*(store._redis.keys(f"{store.prefix}:*") or [b"_"]))
    store.close()


def test_satisfies_the_protocol(memory):
    assert isinstance(memory, WorkingMemory)
    memory.ping()


def test_set_get_roundtrip_json_values(memory):
    values = {"tone": "formal", "budget": 1200.5, "flags": [1, "two", None], "nested": {"a": {"b": True}}}
    for key, value in values.items():
        memory.set("user", "ada", key, value)
    for key, value in values.items():
        assert memory.get("user", "ada", key) == value
    assert memory.items("user", "ada") == dict(sorted(values.items()))


def test_overwrite_replaces_value(memory):
    memory.set("session", "t1", "topic", "pricing")
    memory.set("session", "t1", "topic", "hiring")
    assert memory.items("session", "t1") == {"topic": "hiring"}


def test_owners_and_scopes_are_isolated(memory):
    memory.set("user", "ada", "tone", "formal")
    memory.set("user", "bob", "tone", "casual")
    memory.set("session", "ada", "tone", "session-value")
    assert memory.get("user", "ada", "tone") == "formal"
    assert memory.get("user", "bob", "tone") == "casual"
    assert memory.get("session", "ada", "tone") == "session-value"
    # ids with separators cannot collide: ("a:b", "c") is not ("a", "b:c")
    memory.set("user", "a:b", "c", 1)
    assert memory.get("user", "a", "b:c") is None
    assert memory.items("user", "a") == {}


def test_missing_keys(memory):
    assert memory.get("user", "nobody", "x") is None
    assert memory.items("user", "nobody") == {}
    assert memory.delete("user", "nobody", "x") is False
    assert memory.clear("user", "nobody") == 0


def test_delete_and_clear(memory):
    for key in ("a", "b", "c"):
        memory.set("user", "ada", key, key.upper())
    memory.set("user", "bob", "a", "kept")
    assert memory.delete("user", "ada", "a") is True
    assert memory.items("user", "ada") == {"b": "B", "c": "C"}
    assert memory.clear("user", "ada") == 2
    assert memory.items("user", "ada") == {}
    assert memory.get("user", "bob", "a") == "kept"


def test_entries_expire_after_their_ttl(memory):
    memory.set("session", "t1", "short", "gone soon", ttl_s=0.3)
    memory.set("session", "t1", "long", "stays")
    assert memory.get("session", "t1", "short") == "gone soon"
    time.sleep(0.45)
    assert memory.get("session", "t1", "short") is None
    assert memory.items("session", "t1") == {"long": "stays"}


def test_overwrite_resets_ttl(memory):
    memory.set("user", "ada", "k", "v1", ttl_s=0.3)
    time.sleep(0.15)
    memory.set("user", "ada", "k", "v2", ttl_s=5)
    time.sleep(0.3)
    assert memory.get("user", "ada", "k") == "v2"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.set("team", "ada", "k", 1), "scope"),
        (lambda m: m.set("user", "", "k", 1), "owner"),
        (lambda m: m.set("user", "ada", "", 1), "key"),
        (lambda m: m.set("user", "ada", "k", {1, 2}), "JSON"),
        (lambda m: m.set("user", "ada", "k", "x" * 70_000), "KiB"),
        (lambda m: m.set("user", "ada", "k", 1, ttl_s=0), "ttl_s"),
    ],
)
def test_invalid_input_is_refused(memory, call, message):
    with pytest.raises(ValueError, match=message):
        call(memory)


def test_in_process_ttl_uses_its_clock():
    now = [100.0]
    memory = InProcessWorkingMemory(default_ttl_s=10, clock=lambda: now[0])
    memory.set("user", "ada", "k", "v")
    now[0] += 9.9
    assert memory.get("user", "ada", "k") == "v"
    now[0] += 0.2
    assert memory.get("user", "ada", "k") is None


def test_in_process_memory_lets_go_of_the_sessions_that_expired():
    """Every run on a new thread stores session facts under that thread; nobody reads an old
    thread's again, so expiring them only when their owner is read kept every thread's facts for
    the life of the process (one more per run, TTL or not)."""
    now = [100.0]
    memory = InProcessWorkingMemory(default_ttl_s=10, clock=lambda: now[0])
    for number in range(1000):
        memory.set("session", f"thread-{number}", "last_task", f"task {number}")
    now[0] += 11  # every one has expired
    memory.set("session", "thread-new", "last_task", "the next run")
    assert list(memory._data) == [("session", "thread-new")]  # (what the process holds)
    assert memory.items("session", "thread-new") == {"last_task": "the next run"}
    memory.set("user", "ada", "k", "v", ttl_s=1000)  # a longer TTL than the default's is kept
    now[0] += 200
    memory.set("session", "thread-later", "last_task", "later")
    assert memory.get("user", "ada", "k") == "v"
    assert sorted(memory._data) == [("session", "thread-later"), ("user", "ada")]


def test_redis_down_is_a_backend_error():
    memory = RedisWorkingMemory("redis://127.0.0.1:1/0")
    with pytest.raises(BackendError, match="Redis"):
        memory.set("user", "ada", "k", "v")
    with pytest.raises(BackendError, match="BRAINSTACK_REDIS_URL"):
        memory.ping()


def test_redis_entries_are_visible_to_another_client(redis_url):
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    writer = RedisWorkingMemory(redis_url, prefix=prefix)
    reader = RedisWorkingMemory(redis_url, prefix=prefix)
    writer.set("user", "ada", "tone", "formal")
    assert reader.get("user", "ada", "tone") == "formal"
    writer.clear("user", "ada")


def test_update_reads_and_writes_at_once(memory):
    seen = []

    def append(value):
        seen.append(value)
        return [*(value or []), "a"]

    assert memory.update("user", "ada", "prefs", append) == ["a"]
    assert memory.update("user", "ada", "prefs", append) == ["a", "a"]
    assert seen == [None, ["a"]] and memory.get("user", "ada", "prefs") == ["a", "a"]
    assert memory.items("user", "ada") == {"prefs": ["a", "a"]}
    assert memory.update("user", "ada", "prefs", lambda value: None) is None  # deletes
    assert memory.get("user", "ada", "prefs") is None and memory.items("user", "ada") == {}


def test_concurrent_updates_lose_nothing(memory):
    """QA: two processes stating a preference for one user at once kept only one (read, then write)."""
    import threading

    def worker(n: int) -> None:
        for i in range(20):
            memory.update("user", "ada", "prefs", lambda value, item=f"{n}-{i}": [*(value or []), item])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = memory.get("user", "ada", "prefs")
    assert len(stored) == 80 and sorted(stored) == sorted(f"{n}-{i}" for n in range(4) for i in range(20))


def test_update_can_keep_the_time_a_key_has_left(memory):
    """QA: forgetting one preference made the others last a whole TTL again."""
    memory.update("user", "ada", "prefs", lambda value: ["a", "b"], ttl_s=1.5)
    assert memory.update("user", "ada", "prefs", lambda value: value[1:], keep_ttl=True) == ["b"]
    memory.update("user", "bob", "prefs", lambda value: ["a"], ttl_s=1.5)
    memory.update("user", "bob", "prefs", lambda value: ["a", "c"])  # a new TTL: the default 60 s
    time.sleep(1.7)
    assert memory.get("user", "ada", "prefs") is None  # it kept its 1.5 s
    assert memory.get("user", "bob", "prefs") == ["a", "c"]
