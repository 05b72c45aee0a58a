"""MemoryGateway.remember: what each layer is given, layers written at the same time, errors per layer."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from brainstack.memory.gateway import MemoryGateway
from brainstack.memory.working import InProcessWorkingMemory

TASK = "I prefer short answers. How do we reach ada@example.com's team faster?"
MASKED_TASK = "I prefer short answers. How do we reach [email]'s team faster?"


class Episodes:
    """Records what it is asked to store; ``before`` runs first (to wait, or to fail)."""

    def __init__(self, before: Any = None) -> None:
        self.before = before
        self.added: list[tuple[str, str, dict[str, Any]]] = []

    def add(self, user_id: str, text: str, metadata: dict[str, Any]) -> str:
        if self.before:
            self.before()
        self.added.append((user_id, text, dict(metadata)))
        return f"episode-{len(self.added)}"


class Skills:
    def __init__(self, before: Any = None) -> None:
        self.before = before
        self.successes: list[tuple[str, str | None]] = []

    def record_success(self, name: str, thread_id: str | None = None) -> int:
        if self.before:
            self.before()
        self.successes.append((name, thread_id))
        return len(self.successes)


class Working(InProcessWorkingMemory):
    def __init__(self, before: Any = None) -> None:
        super().__init__()
        self.before = before

    def set(self, *args: Any, **kwargs: Any) -> None:
        if self.before:
            self.before()
        super().set(*args, **kwargs)


def _state(**changes: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "user_id": "ada",
        "task": TASK,
        "route": {"target": "marketing", "kind": "specialist"},
        "answer": "Mail   ada@example.com\nfirst, then call.",
        "speakers": ["marketing"],
        "review": {"status": "ok"},
        "memory": {"skills": [{"name": "reach-a-team"}]},
    }
    return {**state, **changes}


def _gateway(settings, **layers: Any) -> MemoryGateway:
    layers = {"working": Working(), "episodes": Episodes(), "skills": Skills(), **layers}
    return MemoryGateway(settings, embedder=object(), **layers)  # type: ignore[arg-type]


def test_each_layer_gets_what_remember_always_wrote(settings):
    gateway = _gateway(settings)
    written = asyncio.run(gateway.remember(_state(), "t-1"))

    assert written.model_dump() == {
        "episode_id": "episode-1",
        "skill": "reach-a-team",
        "skill_created": False,
        "preferences": {"stated_preferences": ["short answers"]},
        "session": {"last_task": MASKED_TASK, "last_route": "marketing"},
        "degraded": [],
    }
    [(user_id, text, metadata)] = gateway.episodes.added  # type: ignore[attr-defined]
    assert user_id == "ada"
    # the store masks the task in the text; the summary is masked here, before it is clipped
    assert text == f"{TASK}\n→ marketing (marketing): Mail [email] first, then call."
    assert metadata == {
        "thread_id": "t-1",
        "route": "marketing",
        "kind": "specialist",
        "speakers": ["marketing"],
        "outcome": "ok",
        "task": MASKED_TASK,
    }
    assert gateway.skills.successes == [("reach-a-team", "t-1")]  # type: ignore[attr-defined]
    assert gateway.working.items("user", "ada") == {"stated_preferences": ["short answers"]}
    assert gateway.working.items("session", "t-1") == written.session


def test_the_layers_are_written_at_the_same_time(settings):
    """Each layer waits for the other two to start: written one after another, they would time out."""
    barrier = threading.Barrier(3, timeout=10)
    met: list[str] = []

    def meet(layer: str) -> Any:
        def wait() -> None:
            if layer not in met:  # the working memory writes twice: only its first write waits
                met.append(layer)
                barrier.wait()

        return wait

    gateway = _gateway(
        settings,
        working=Working(meet("working")),
        episodes=Episodes(meet("episodic")),
        skills=Skills(meet("procedural")),
    )
    written = asyncio.run(gateway.remember(_state(), "t-2"))
    assert written.degraded == []
    assert sorted(met) == ["episodic", "procedural", "working"]
    assert written.episode_id and written.skill and written.session


def test_a_failing_layer_is_listed_in_layer_order_and_the_others_are_written(settings):
    def slow_failure() -> None:
        time.sleep(0.2)  # finishes last, listed first
        raise ConnectionError("working memory is down")

    def failure() -> None:
        raise ConnectionError("chroma is down")

    gateway = _gateway(settings, working=Working(slow_failure), episodes=Episodes(failure))
    written = asyncio.run(gateway.remember(_state(), "t-3"))
    assert [d.split(":")[0] for d in written.degraded] == ["working", "working", "episodic"]
    assert written.episode_id is None and written.preferences == {} and written.session == {}
    assert (written.skill, written.skill_created) == ("reach-a-team", False)  # written all the same

    gateway = _gateway(settings, skills=Skills(failure))
    written = asyncio.run(gateway.remember(_state(), "t-4"))
    assert [d.split(":")[0] for d in written.degraded] == ["procedural"]
    assert written.skill is None and written.episode_id == "episode-1" and written.session


def test_an_error_outside_the_layers_is_raised_once_the_other_layers_are_done(settings):
    done: list[str] = []
    episodes = Episodes(lambda: (time.sleep(0.2), done.append("episode")))
    gateway = _gateway(settings, episodes=episodes)
    broken = _state(memory={}, transcript=[{"speaker": "CTO"}, {"speaker": "CFO"}])  # turns without content
    with pytest.raises(KeyError, match="content"):
        asyncio.run(gateway.remember(broken, "t-5"))
    assert done == ["episode"] and len(episodes.added) == 1


@pytest.mark.parametrize(
    ("changes", "learns"),
    [
        ({}, True),
        ({"review": {"status": "ok", "agreed": False}}, False),
        ({"review": {"status": "failed"}}, False),
        ({"approval": {"status": "rejected"}}, False),
        ({"answer": ""}, False),
    ],
)
def test_only_a_successful_run_reinforces_its_skill(settings, changes, learns):
    gateway = _gateway(settings)
    written = asyncio.run(gateway.remember(_state(**changes), "t-6"))
    assert bool(gateway.skills.successes) is learns  # type: ignore[attr-defined]
    assert (written.skill is not None) is learns
