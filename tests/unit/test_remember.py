"""MemoryGateway.remember: what each layer is given, layers written at the same time, errors per layer."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from brainstack.graphs.nodes import AfterReview
from brainstack.memory.episodic import episode_document
from brainstack.memory.gateway import EPISODES_AHEAD, MemoryGateway
from brainstack.memory.working import InProcessWorkingMemory

TASK = "I prefer short answers. How do we reach ada@example.com's team faster?"
MASKED_TASK = "I prefer short answers. How do we reach [email]'s team faster?"


class Embedder:
    """Counts what it embeds (on which thread); fails the first ``failures`` calls."""

    name, dim = "counting", 4

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[tuple[list[str], str]] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append((list(texts), threading.current_thread().name))
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the model is busy")
        return np.array([[len(t), 1.0, 2.0, len(self.calls)] for t in texts], dtype=np.float32)


class Episodes:
    """Records what it is asked to store; ``before`` runs first (to wait, or to fail)."""

    def __init__(self, before: Any = None) -> None:
        self.before = before
        self.embedder = Embedder()
        self.added: list[tuple[str, str, dict[str, Any]]] = []
        self.embeddings: list[Any] = []

    def add(self, user_id: str, text: str, metadata: dict[str, Any], *, embedding: Any = None) -> str:
        if self.before:
            self.before()
        self.added.append((user_id, text, dict(metadata)))
        self.embeddings.append(embedding)
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

    def update(self, *args: Any, **kwargs: Any) -> Any:  # (stated preferences are written so)
        if self.before:
            self.before()
        return super().update(*args, **kwargs)


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


def test_the_episode_is_written_while_the_working_memory_and_the_skill_are(settings):
    """The episode's write waits for the other two layers' writes to start, and they for it:
    written one after another, the first would time out."""
    started = {layer: threading.Event() for layer in ("working", "episodic", "procedural")}

    def meet(layer: str, *others: str) -> Any:
        def wait() -> None:
            started[layer].set()
            for other in others:
                if not started[other].wait(timeout=10):
                    raise TimeoutError(f"{layer} waited for {other}")

        return wait

    gateway = _gateway(
        settings,
        working=Working(meet("working", "episodic")),
        episodes=Episodes(meet("episodic", "working", "procedural")),
        skills=Skills(meet("procedural", "episodic")),
    )
    written = asyncio.run(gateway.remember(_state(), "t-2"))
    assert written.degraded == []
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
        ({"model": "openai"}, True),
        ({"model": "local"}, True),
        ({"model": "offline"}, False),  # its answer only echoes the run's inputs: no success to count
    ],
)
def test_only_a_successful_run_reinforces_its_skill(settings, changes, learns):
    gateway = _gateway(settings)
    written = asyncio.run(gateway.remember(_state(**changes), "t-6"))
    assert bool(gateway.skills.successes) is learns  # type: ignore[attr-defined]
    assert (written.skill is not None) is learns


# -- the episode embedded ahead (prefetch_episode) ------------------------------------------------


def test_an_episode_embedded_ahead_is_written_with_that_vector_and_not_embedded_again(settings):
    gateway = _gateway(settings)
    episodes = gateway.episodes
    gateway.prefetch_episode(_state())
    gateway.prefetch_episode(_state())  # the same episode again: one embedding
    written = asyncio.run(gateway.remember(_state(), "t-7"))

    [(_, text, _)] = episodes.added  # type: ignore[attr-defined]
    [(texts, thread)] = episodes.embedder.calls  # type: ignore[attr-defined]
    assert texts == [episode_document(text)]  # what the store keeps: masked
    assert "ada@example.com" not in texts[0]
    assert thread.startswith("brainstack-memory")  # ahead, not in remember
    [embedding] = episodes.embeddings  # type: ignore[attr-defined]
    assert embedding.tolist() == [len(texts[0]), 1.0, 2.0, 1.0]
    assert written.episode_id == "episode-1" and not written.degraded
    assert not gateway._ahead  # taken


def test_an_episode_that_changed_since_is_embedded_by_the_store(settings):
    gateway = _gateway(settings)
    gateway.prefetch_episode(_state(answer="A first draft."))
    asyncio.run(gateway.remember(_state(answer="The final answer."), "t-8"))
    assert gateway.episodes.embeddings == [None]  # type: ignore[attr-defined]
    assert len(gateway._ahead) == 1  # the draft's, dropped once EPISODES_AHEAD newer ones come


def test_a_failed_embedding_ahead_leaves_the_embedding_to_the_store(settings):
    gateway = _gateway(settings)
    gateway.episodes.embedder.failures = 1  # type: ignore[attr-defined]
    gateway.prefetch_episode(_state())
    written = asyncio.run(gateway.remember(_state(), "t-9"))
    assert gateway.episodes.embeddings == [None]  # type: ignore[attr-defined]
    assert written.episode_id == "episode-1" and not written.degraded


def test_an_embedding_still_waiting_for_a_thread_is_cancelled_and_done_by_the_store(settings, monkeypatch):
    import brainstack.memory.gateway as gateway_module

    busy = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1)
    pool.submit(busy.wait, 10)  # the pool's one thread is taken
    monkeypatch.setattr(gateway_module, "_workers", pool)
    gateway = _gateway(settings, episodes=Episodes(busy.set))
    gateway.prefetch_episode(_state())
    written = asyncio.run(gateway.remember(_state(), "t-10"))
    pool.shutdown()
    assert gateway.episodes.embeddings == [None] and gateway.episodes.embedder.calls == []  # type: ignore[attr-defined]
    assert written.episode_id == "episode-1" and written.session and not written.degraded


def test_embedding_ahead_keeps_the_newest_episodes(settings):
    gateway = _gateway(settings)
    for n in range(EPISODES_AHEAD + 3):
        gateway.prefetch_episode(_state(answer=f"answer {n}"))
    kept = [answer for (_, _, _, answer) in gateway._ahead]
    assert kept == [f"answer {n}" for n in range(3, EPISODES_AHEAD + 3)]


def test_embedding_ahead_opens_no_store(settings):
    gateway = MemoryGateway(settings, embedder=Embedder())  # type: ignore[arg-type]
    gateway.prefetch_episode(_state())
    assert gateway._episodes is None and gateway._chroma is None and not gateway._ahead


def test_a_state_that_cannot_be_described_is_not_embedded_ahead_and_remember_reports_it(settings):
    gateway = _gateway(settings)
    gateway.prefetch_episode(_state(speakers=[["not", "a", "name"]]))  # cannot be a key
    assert not gateway._ahead
    gateway.prefetch_episode(_state(answer=None))  # fails on the worker thread, not here
    [ahead] = gateway._ahead.values()
    assert isinstance(ahead.exception(timeout=10), AttributeError)
    with pytest.raises(AttributeError):  # as remember always did for such a state
        asyncio.run(gateway.remember(_state(answer=None), "t-11"))


def test_the_masking_happens_on_the_worker_thread(settings, monkeypatch):
    import brainstack.memory.gateway as gateway_module

    threads: list[str] = []
    mask = gateway_module.mask_pii

    def noting(text: str) -> str:
        threads.append(threading.current_thread().name)
        return mask(text)

    monkeypatch.setattr(gateway_module, "mask_pii", noting)
    gateway = _gateway(settings)
    gateway.prefetch_episode(_state())  # on the caller's thread: the graph's event loop
    [ahead] = gateway._ahead.values()
    ahead.result(timeout=10)
    assert threads and all(name.startswith("brainstack-memory") for name in threads)


class Ahead:
    def __init__(self) -> None:
        self.states: list[dict[str, Any]] = []

    def prefetch_episode(self, state: dict[str, Any]) -> None:
        self.states.append(state)


@pytest.mark.parametrize(
    ("review", "route", "goes_to", "prefetched"),
    [
        ({"status": "ok"}, "marketing", "remember", True),
        ({"status": "failed"}, "marketing", "remember", True),
        ({"status": "retried", "next": "specialist_marketing"}, "marketing", "specialist_marketing", False),
        ({"status": "ok"}, "finance", "approve", False),  # the human may still change the answer
        ({"status": "failed"}, "finance", "remember", True),
    ],
)
def test_the_episode_is_embedded_ahead_only_on_the_way_to_remember(review, route, goes_to, prefetched):
    memory = Ahead()
    state = _state(review=review, route={"target": route, "kind": "specialist"})
    assert AfterReview(["finance"], memory)(state) == goes_to  # type: ignore[arg-type]
    assert memory.states == ([state] if prefetched else [])
    assert AfterReview(["finance"])(state) == goes_to  # memory off: nothing to embed


def test_an_answering_node_starts_its_episode_embedding_once_it_has_answered():
    from brainstack.graphs.factory import embedding_ahead

    memory = Ahead()

    async def agent(state: dict[str, Any]) -> dict[str, Any]:
        return {"answer": state["reply"], "speakers": ["marketing"]}

    node = embedding_ahead(agent, memory)  # type: ignore[arg-type]
    state = _state(reply="Two fields, one quote.")
    assert asyncio.run(node(state)) == {"answer": "Two fields, one quote.", "speakers": ["marketing"]}
    assert memory.states == [{**state, "answer": "Two fields, one quote.", "speakers": ["marketing"]}]
    asyncio.run(node(_state(reply="  ")))  # review sends an empty answer back: nothing to embed
    assert len(memory.states) == 1
    assert embedding_ahead(agent, None) is agent  # memory off


def test_a_preference_stated_again_in_another_case_is_stored_once(settings):
    """QA: "I PREFER SHORT ANSWERS" and "I prefer short answers." were two preferences."""
    gateway = _gateway(settings)
    asyncio.run(gateway.remember(_state(task="I prefer short answers. Reach the team."), "t-6"))
    asyncio.run(gateway.remember(_state(task="I PREFER SHORT ANSWERS! Reach the team."), "t-7"))
    assert gateway.working.get("user", "ada", "stated_preferences") == ["SHORT ANSWERS"]
    assert gateway.forget_preference("ada", "short answers.") == []
