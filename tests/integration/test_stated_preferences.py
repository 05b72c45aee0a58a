"""Stated preferences through ``MemoryGateway.remember`` on each working memory (in-process, real
Redis): a later preference replaces the stored one on its topic, and writers at once lose none."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest

from brainstack.memory.gateway import PREFERENCES_KEY, MemoryGateway
from brainstack.memory.working import InProcessWorkingMemory, RedisWorkingMemory


class Episodes:
    def add(self, user_id: str, text: str, metadata: dict[str, Any], **_: Any) -> str:
        return "episode"


@pytest.fixture(params=["in_process", pytest.param("redis", marks=pytest.mark.redis)])
def open_working(request):
    """Opens the working memory a gateway (a process) sees: with Redis, a client of its own."""
    if request.param == "in_process":
        shared = InProcessWorkingMemory()
        yield lambda: shared
        return
    url, prefix = request.getfixturevalue("redis_url"), f"test-{uuid.uuid4().hex[:8]}"
    clients: list[RedisWorkingMemory] = []

    def client() -> RedisWorkingMemory:
        clients.append(RedisWorkingMemory(url, prefix=prefix))
        return clients[-1]

    yield client
    redis = client()._redis
    redis.delete(*(redis.keys(f"{prefix}:*") or [b"_"]))
    for opened in clients:
        opened.close()


def _gateway(settings, working) -> MemoryGateway:
    return MemoryGateway(settings, embedder=object(), working=working, episodes=Episodes())  # type: ignore[arg-type]


def _remember(gateway: MemoryGateway, task: str, user: str = "ada") -> Any:
    state = {
        "user_id": user,
        "task": task,
        "route": {"target": "general"},
        "answer": "ok",
        "model": "offline",
    }
    return asyncio.run(gateway.remember(state, f"t-{uuid.uuid4().hex[:6]}"))


def test_a_later_preference_replaces_the_one_it_contradicts(settings, open_working):
    """QA: "I prefer short answers", then "I prefer detailed answers" in a later run, left both in
    every prompt. The newest wins; an unrelated one stays, and can still be forgotten."""
    gateway = _gateway(settings, open_working())
    _remember(gateway, "I prefer short answers. From now on, use euros. What is 5% of 80?")
    later = _gateway(settings, open_working())  # (another process, with Redis)
    written = _remember(later, "I prefer detailed answers. What is 6% of 80?")
    assert written.preferences == {PREFERENCES_KEY: ["use euros", "detailed answers"]}
    assert gateway.working.items("user", "ada") == {PREFERENCES_KEY: ["use euros", "detailed answers"]}
    _remember(gateway, "From now on, answer in French. Please always use US dollars.")
    assert gateway.working.get("user", "ada", PREFERENCES_KEY) == [
        "detailed answers",
        "answer in French",
        "use US dollars",
    ]
    assert gateway.forget_preference("ada", "Detailed answers.") == ["answer in French", "use US dollars"]


def test_the_last_of_two_contradicting_preferences_in_one_task_is_kept(settings, open_working):
    gateway = _gateway(settings, open_working())
    written = _remember(gateway, "I prefer short answers. Actually, I'd prefer detailed answers. Go.")
    assert written.preferences == {PREFERENCES_KEY: ["detailed answers"]}


def test_a_preference_stated_twice_in_one_task_is_stored_once(settings, open_working):
    """It was stored twice: only those stored before were compared with the task's."""
    gateway = _gateway(settings, open_working())
    written = _remember(gateway, "I prefer short answers. Use euros. I PREFER SHORT ANSWERS!")
    assert written.preferences == {PREFERENCES_KEY: ["SHORT ANSWERS"]}


def test_preferences_stated_at_once_replace_their_topic_and_lose_nothing(settings, open_working):
    """Four writers (with Redis: four clients, as four processes would be) each restate, over and
    over, their own topic's preference the other way. Read, then written, a writer's list would
    overwrite another's; at once (``update``), each topic ends with its writer's last choice."""
    topics = [
        ("short answers", "detailed answers"),
        ("use euros", "use dollars"),
        ("answer in French", "answer in German"),
        ("a formal tone", "a casual tone"),
    ]
    rounds = 30
    start = threading.Barrier(len(topics))
    failures: list[BaseException] = []

    def writer(choices: tuple[str, str]) -> None:
        gateway = _gateway(settings, open_working())
        start.wait()
        try:
            for n in range(rounds):
                _remember(gateway, f"From now on, {choices[n % 2]}. What is {n} + 1?")
        except BaseException as exc:  # reported by the test, not lost on the thread
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(choices,)) for choices in topics]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    stored = _gateway(settings, open_working()).working.get("user", "ada", PREFERENCES_KEY)
    assert sorted(stored) == sorted(choices[(rounds - 1) % 2] for choices in topics)


def test_an_opinion_with_a_length_or_tone_word_does_not_replace_a_preference(settings, open_working):
    """ "I prefer shorter sprints" was stored as a preference on answer length and replaced "short
    answers"; "a formal contract with the supplier" replaced "a friendly tone"."""
    gateway = _gateway(settings, open_working())
    user = f"ada-{uuid.uuid4().hex[:6]}"
    _remember(gateway, "I prefer short answers. Always answer in a friendly tone.", user)
    _remember(gateway, "I prefer shorter sprints. How should we plan Q3?", user)
    _remember(gateway, "I prefer a formal contract with the new supplier. Draft the terms.", user)
    stored = gateway.working.items("user", user).get(PREFERENCES_KEY)
    assert stored == ["short answers", "answer in a friendly tone"]
