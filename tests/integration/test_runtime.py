"""Offline end-to-end runs through the real graph, on both checkpoint backends."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

import brainstack
from brainstack import (
    InvalidTaskError,
    Runtime,
    Settings,
    UnknownAgentError,
    UsageError,
)
from brainstack.errors import (
    BackendError,
    ConfigurationError,
    ModelError,
    ModelUnavailableError,
    ThreadBusyError,
)
from brainstack.events import (
    GroupChatTurnEvent,
    MemoryRecalledEvent,
    MemoryWrittenEvent,
    ResultEvent,
    RouteEvent,
    ToolCallEvent,
)


def unique(name: str) -> str:
    """Thread ids unique per test run: the PostgreSQL database outlives the test session."""
    return f"{name}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def runtime(backend_settings, embedder):
    return Runtime(backend_settings, embedder=embedder)


class Stalled:
    """The offline model behind a gate: each call says ``started`` and waits for ``release``."""

    def __init__(self) -> None:
        from brainstack.agents.offline import OfflineModel

        self.model = OfflineModel(termination_word="TERMINATE", team=["CTO", "CMO", "CFO"])
        self.started, self.release = threading.Event(), threading.Event()

    def transport(self):
        import httpx2

        return httpx2.MockTransport(self._handle)

    def _handle(self, request):
        self.started.set()
        self.release.wait(60)
        return self.model.handle(request)


@pytest.fixture
def stalled() -> Iterator[Stalled]:
    gate = Stalled()
    yield gate
    gate.release.set()  # never leave a run waiting


def test_specialist_with_calculator(runtime):
    result = runtime.run("What is 17.5% of 2340?")
    assert result.model == "offline"
    assert result.route.target == "finance" and result.route.decided_by == "semantic"
    assert result.tool_calls[0].tool == "calculator" and result.tool_calls[0].result == "409.5"
    assert "409.5" in result.answer
    assert "[offline model" in result.answer  # never passes itself off as an LLM
    assert result.usage.model_calls == 2 and result.usage.total_tokens > 0
    assert set(result.timings) == {"recall", "route", "specialist_finance", "review", "remember"}
    assert all(ms >= 0 for ms in result.timings.values())


def test_group_chat_runs_the_autogen_team(runtime):
    result = runtime.run("Should we launch a freemium tier?")
    assert result.route.kind == "group_chat"
    assert result.speakers == ["CTO", "CMO", "CFO"]
    assert [t.speaker for t in result.transcript] == ["CTO", "CMO", "CFO"]
    assert all("freemium" in t.content for t in result.transcript)
    assert result.transcript[-1].content.endswith("TERMINATE")
    assert "no recommendation" in result.answer and "TERMINATE" not in result.answer


def test_second_run_on_a_thread_sees_the_first(runtime):
    t1, t2 = unique("t1"), unique("t2")
    first = runtime.run("How should we design the database schema for multi-tenant accounts?", thread_id=t1)
    second = runtime.run("Which indexes should the accounts table have?", thread_id=t1)
    assert first.thread_id == second.thread_id == t1
    assert "Earlier in this thread" in second.answer
    assert (first.memory.history_messages, second.memory.history_messages) == (0, 2)  # sensory buffer
    messages = runtime.messages(t1)
    assert [m["role"] for m in messages] == ["human", "ai", "human", "ai"]
    assert messages[0]["content"].startswith("How should we design the database schema")
    other = runtime.run("Which indexes should the accounts table have?", thread_id=t2)
    assert "Earlier in this thread" not in other.answer


def test_the_same_task_sent_again_on_a_thread_runs_again(backend_settings, embedder):
    """The input-without-a-task check (a LangGraph server's) reads the run's input checkpoint when
    a task repeats the thread's last one: on both checkpointers, a repeated task still runs."""
    thread = unique("again")
    with Runtime(backend_settings, embedder=embedder) as runtime:
        first = runtime.run("What is 2 + 2?", thread_id=thread)
        second = runtime.run("What is 2 + 2?", thread_id=thread)
        assert "4" in second.answer and second.thread_id == first.thread_id
        assert [m["role"] for m in runtime.messages(thread)] == ["human", "ai", "human", "ai"]


def test_with_memory_off_the_result_still_counts_the_history_the_agents_saw(settings, embedder):
    """QA: with BRAINSTACK_MEMORY=0 there is no recall step, and history_messages said 0 while the
    agent answered from the thread's earlier messages."""
    with Runtime(settings.model_copy(update={"memory": False}), embedder=embedder) as runtime:
        thread = unique("off")
        first = runtime.run(
            "How should we design the database schema for multi-tenant accounts?", thread_id=thread
        )
        second = runtime.run("Which indexes should the accounts table have?", thread_id=thread)
        assert "Earlier in this thread" in second.answer
        assert (first.memory.history_messages, second.memory.history_messages) == (0, 2)
        assert second.memory.episodes == [] and "recall" not in second.timings


def test_thread_continues_in_a_new_process(backend_settings, embedder, env_home):
    thread = unique("proc")
    env = {**env_home, "BRAINSTACK_HOME": str(backend_settings.home)}
    if backend_settings.checkpoint_url:
        env["BRAINSTACK_CHECKPOINT_URL"] = backend_settings.checkpoint_url
    code = (
        "import brainstack, json; r = brainstack.run('Write a tagline for our analytics product.', "
        f"thread_id={thread!r}); print(json.dumps(dict(answer=r.answer, target=r.route.target)))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout.strip().splitlines()[-1])
    assert first["target"] == "marketing"

    runtime = Runtime(backend_settings, embedder=embedder)
    second = runtime.run("Now make it shorter.", thread_id=thread)
    messages = runtime.messages(thread)
    assert messages[0]["content"] == "Write a tagline for our analytics product."
    assert messages[1]["content"] == first["answer"]
    assert "Write a tagline for our analytics product." in second.answer  # the offline model quotes it


def test_caller_can_choose_the_agent(runtime):
    result = runtime.run("Should we launch a freemium tier?", agent="technical")
    assert result.route.target == "technical" and result.route.decided_by == "caller"
    assert result.transcript == []


class CountingEmbedder:
    """Another embedder's vectors, with every text it was asked for recorded."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.dim = inner, f"counting:{inner.name}", inner.dim
        self.texts: list[str] = []

    def embed(self, texts):
        self.texts.extend(texts)
        return self.inner.embed(texts)

    def embed_one(self, text):
        return self.embed([text])[0]

    def embed_query(self, text):
        return self.embed([text])[0]


@pytest.mark.parametrize("memory", [True, False])
def test_the_router_embeds_each_task_once_started_ahead(settings, embedder, int8_embedder, memory):
    counting = CountingEmbedder(int8_embedder)
    configured = settings.model_copy(update={"memory": memory})
    with Runtime(configured, embedder=embedder, router_embedder=counting) as runtime:
        runtime.router  # noqa: B018 - the route examples are embedded here
        examples = len(counting.texts)
        prefetched = []
        threads = []
        real = runtime.router.prefetch

        def spy(text):
            prefetched.append(text)
            threads.append(threading.current_thread())
            real(text)

        runtime.router.prefetch = spy
        task = "How can we improve the conversion rate of our landing page? I prefer bullet points."
        result = runtime.run(task)
        assert result.route.target == "marketing" and result.route.decided_by == "semantic"
        # Started when the task arrived, preference sentence removed, and not embedded again by Route.
        assert prefetched == ["How can we improve the conversion rate of our landing page?"]
        assert counting.texts[examples:] == prefetched
        assert runtime.router._ahead == {}
        # ... in the caller's thread, before the run crosses to the runtime loop.
        assert threads == [threading.current_thread()]
        result = asyncio.run(runtime.arun("How do we grow our newsletter audience?"))
        assert result.route.decided_by == "semantic" and threads[-1] is threading.current_thread()
        assert counting.texts[examples:] == prefetched and len(prefetched) == 2
        runtime.run("Should we launch a freemium tier?", agent="technical")  # no routing, no prefetch
        assert counting.texts[examples:] == prefetched


def test_a_run_embeds_its_task_once_for_router_and_memory(settings, monkeypatch):
    """Default embedders: the router and memory's searches share the int8 model and its cache;
    memory stores float32 vectors."""
    from brainstack.memory import QueryFastEmbedder, default_embedder, router_embedder

    memory = default_embedder(settings)
    assert isinstance(memory, QueryFastEmbedder) and memory.queries is router_embedder(settings)
    with Runtime(settings) as runtime:
        runtime.run("warm everything up")
        calls: dict[str, list[list[str]]] = {"int8": [], "float32": []}
        for kind, model in (("int8", memory.queries), ("float32", memory.documents)):
            spy = lambda texts, k=kind, f=model._embed: calls[k].append(texts) or f(texts)  # noqa: E731
            monkeypatch.setattr(model, "_embed", spy)
        # A text no other test embeds: the shared int8 model's cache of recent texts outlives a test
        # (an earlier test's run of the same task left it there, and no call was made).
        task = f"How can we improve the conversion rate of our landing page? (ref {uuid.uuid4().hex[:8]})"
        result = runtime.run(task)
        assert result.route.decided_by == "semantic" and result.remembered.episode_id
        assert calls["int8"] == [[task]]  # router prefetch, recall, skills, knowledge base: one call
        assert [task] not in calls["float32"]
        assert len(calls["float32"]) == 1  # the episode remember stored


def _warm_up_threads() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name.startswith("brainstack-") and "warm-up" in t.name]


def test_warm_up_prepares_router_models_and_memory_in_the_background(settings, monkeypatch):
    from brainstack.memory import MiniLMEmbedder

    router_model = MiniLMEmbedder(settings.cache_dir, quantized=True)
    memory_model = MiniLMEmbedder(settings.cache_dir)
    with Runtime(settings, embedder=memory_model, router_embedder=router_model) as runtime:
        runtime.warm_up()
        runtime.warm_up()  # once is enough: no second set of threads
        threads = _warm_up_threads()
        assert sorted(t.name for t in threads) == ["brainstack-memory-warm-up", "brainstack-warm-up"]
        for thread in threads:
            thread.join(timeout=60)
        # Everything the first run needs was made on those threads, none of it by this one.
        assert runtime._router is not None and runtime._router.embedder is router_model
        assert router_model._session is not None and memory_model._session is not None
        assert runtime.memory is not None and runtime.memory._chroma is not None
        assert runtime.run("What is 17.5% of 2340?").route.target == "finance"


class DownEmbedder:
    name, dim = "down", 384

    def embed(self, texts):
        raise ModelError("the embeddings endpoint is down")

    def embed_one(self, text):
        return self.embed([text])[0]

    def embed_query(self, text):
        return self.embed([text])[0]


def test_failed_warm_up_is_left_to_the_run_to_report(settings):
    configured = settings.model_copy(update={"memory": False})
    with Runtime(configured, router_embedder=DownEmbedder()) as runtime:
        runtime.warm_up()
        for thread in _warm_up_threads():
            thread.join(timeout=60)
        assert runtime._router is None  # the failure stayed on the thread...
        with pytest.raises(ModelError, match="endpoint is down"):  # ...the run reports it
            runtime.run("What is 17.5% of 2340?")


def test_unsure_router_falls_back_offline_with_reason(runtime):
    result = runtime.run("What time zone is Tokyo in?")
    assert result.route.decided_by == "fallback"
    assert result.route.target == "general"
    assert "below the router's confidence" in result.route.reason


def test_stream_yields_events_in_order(runtime):
    events = list(runtime.stream("Should we launch a freemium tier?"))
    kinds = [type(e) for e in events]
    assert kinds[0] is MemoryRecalledEvent and kinds[1] is RouteEvent
    assert kinds[-2] is MemoryWrittenEvent and kinds[-1] is ResultEvent
    assert [e.speaker for e in events if isinstance(e, GroupChatTurnEvent)] == ["CTO", "CMO", "CFO"]
    tool_events = [e for e in runtime.stream("What is 12 * 12?") if isinstance(e, ToolCallEvent)]
    assert tool_events and tool_events[0].result == "144"


def test_run_collects_no_progress_events_and_stream_does(runtime, monkeypatch):
    import brainstack.runtime as runtime_module

    seen: list[dict] = []
    original = runtime_module.event_from_custom

    def spy(payload):
        seen.append(payload)
        return original(payload)

    monkeypatch.setattr(runtime_module, "event_from_custom", spy)
    task = "Should we launch a freemium tier?"
    result = runtime.run(task)  # nobody watches a run's progress: LangGraph's custom stream stays off
    assert seen == [] and result.speakers == ["CTO", "CMO", "CFO"] and len(result.transcript) == 3
    streamed = list(runtime.stream(task))
    assert [p["type"] for p in seen].count("group_chat_turn") == 3
    assert streamed[-1].result.speakers == result.speakers


def test_a_run_after_a_group_chat_on_its_thread_starts_clean(runtime):
    thread = unique("clean")
    chat = runtime.run("Should we launch a freemium tier?", thread_id=thread)
    assert chat.transcript and chat.route.target == "group_chat"
    sum_ = runtime.run("What is 12 * 12?", thread_id=thread)
    assert sum_.transcript == [] and sum_.speakers == [sum_.route.target] and len(sum_.tool_calls) == 1
    assert sum_.usage.model_calls < chat.usage.model_calls and "group_chat" not in sum_.timings


@pytest.mark.parametrize("memory", [True, False])
async def test_the_graph_runs_without_a_thread_and_fills_every_per_run_key(settings, embedder, memory):
    # LangGraph server clients and direct graph users read the state's keys: a new thread (or no
    # thread and no checkpointer at all) gets every per-run key, as a continued thread does.
    with Runtime(settings.model_copy(update={"memory": memory}), embedder=embedder) as runtime:
        final = await runtime.graph.compile().ainvoke({"task": "What is 12 * 12?"})
    for key in ("route", "answer", "speakers", "transcript", "tool_calls", "usage", "timings"):
        assert key in final
    for key in ("review", "model", "thread_id", "memory", "remembered", "approval"):
        assert key in final
    assert final["thread_id"] == "" and final["transcript"] == [] and final["approval"] == {}
    assert "144" in final["answer"]


async def test_the_graph_refuses_an_unknown_requested_agent(settings, embedder):
    # A LangGraph server (Studio) passes requested_agent straight into the graph: an unknown name
    # is the caller's mistake, named as such, not a KeyError from deep inside LangGraph.
    with (
        Runtime(settings, embedder=embedder) as runtime,
        pytest.raises(UnknownAgentError, match=r"No agent named 'nope'\. Available: technical"),
    ):
        await runtime.graph.compile().ainvoke({"task": "Hello", "requested_agent": "nope"})


async def test_the_graph_refuses_a_user_id_that_run_refuses(settings, embedder):
    # A LangGraph server (Studio) passes user_id straight into the graph: a user that run() and the
    # CLI refuse would get episodes that `brainstack memory search/forget --user` cannot name.
    with (
        Runtime(settings, embedder=embedder) as runtime,
        pytest.raises(UsageError, match=r"user_id 'a b' must be 1-128 letters, digits or _\.:@-"),
    ):
        await runtime.graph.compile().ainvoke({"task": "Hello", "user_id": "a b"})


async def test_arun_inside_an_event_loop(runtime):
    result = await runtime.arun("What is 2 + 2?")
    assert "4" in result.answer
    # the blocking API works inside a running loop too (as in Jupyter)
    assert "4" in runtime.run("What is 2 + 2?").answer


@pytest.mark.parametrize(
    ("task", "kwargs", "error", "message"),
    [
        ("", {}, InvalidTaskError, "empty"),
        ("   \n\t", {}, InvalidTaskError, "empty"),
        ("x" * 8001, {}, InvalidTaskError, "8001 characters; the limit is 8000"),
        ("hello \ud800 world", {}, InvalidTaskError, "not valid UTF-8 text \\(character 7"),
        ("a\x00b", {}, InvalidTaskError, "NUL character \\(character 2\\)"),
        ("red \x1b[31mtext", {}, InvalidTaskError, "control character '\\\\x1b' \\(character 5\\)"),
        ("a\x08b\x9bc", {}, InvalidTaskError, "control character '\\\\x08' \\(character 2\\)"),
        ("hello", {"agent": "lawyer"}, UnknownAgentError, "No agent named 'lawyer'"),
        (None, {"agent": "finance"}, UsageError, "agent='finance' chooses the route of a new task"),
        (None, {"agent": "finance", "resume": "approve"}, UsageError, "keeps the route its run took"),
        ("hello", {"thread_id": "bad id!"}, UsageError, "thread_id"),
        ("hello", {"thread_id": "ends-with-a-newline\n"}, UsageError, "thread_id"),
        ("hello", {"user_id": ""}, UsageError, "user_id"),
        ("hello", {"user_id": 42}, UsageError, "user_id 42 must be"),
        ("hello", {"thread_id": 7}, UsageError, "thread_id 7 must be"),
        (b"What is 2 + 2?", {}, InvalidTaskError, "must be text \\(str\\), not bytes"),
        (42, {}, InvalidTaskError, "must be text \\(str\\), not int"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(runtime, task, kwargs, error, message):
    with pytest.raises(error, match=message):
        runtime.run(task, **{"thread_id": "never", **kwargs})
    # stream and astream check when called, as run does, not at the first next() (QA)
    for call in (runtime.stream, runtime.astream, brainstack.stream, brainstack.astream):
        with pytest.raises(error, match=message):
            call(task, **{"thread_id": "never", **kwargs})
    if "thread_id" not in kwargs:
        assert runtime.messages("never") == []


@pytest.mark.parametrize("thread_id", [None, 123, "", "x y", "a\nb", "t" * 129])
async def test_reading_a_thread_refuses_what_is_not_a_thread_id(runtime, thread_id):
    """history, messages, stranded and replay name a bad thread id as run does, instead of answering as if
    the thread were merely empty (``messages(None)`` used to be ``[]``)."""
    message = f"thread_id {re.escape(repr(thread_id))} must be"
    replay = lambda t: runtime.replay(t, "checkpoint")  # noqa: E731
    for call in (runtime.history, runtime.messages, runtime.stranded, replay):
        with pytest.raises(UsageError, match=message):
            call(thread_id)
    for acall in (runtime.ahistory, runtime.amessages):
        with pytest.raises(UsageError, match=message):
            await acall(thread_id)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"settings": {"memory": False}}, r"settings must be a brainstack.Settings, not dict"),
        ({"agents": 123}, r"agents must be the path of an agents file \(str or Path\) .*not int"),
        ({"agents": ["agents.yaml"]}, r"not list"),
        ({"agents": ""}, r"agents is an empty path: pass the path of an agents file, or None"),
        ({"agents": "  "}, r"agents is an empty path"),
    ],
)
def test_arguments_of_the_wrong_type_are_named(kwargs, message):
    with pytest.raises(UsageError, match=message):
        Runtime(**kwargs)
    if "agents" in kwargs:  # the module-level API checks before its runtime cache (a list is unhashable)
        with pytest.raises(UsageError, match=message):
            brainstack.run("What is 2 + 2?", agents=kwargs["agents"])


def test_checkpoint_backend_down_is_a_clear_error(settings, embedder):
    down = settings.model_copy(update={"checkpoint_url": "postgresql://postgres@127.0.0.1:1/test"})
    with pytest.raises(BackendError) as caught:
        Runtime(down, embedder=embedder).run("What is 2 + 2?", thread_id="pg-down")
    assert "The PostgreSQL backend at 127.0.0.1:1/test cannot be reached" in str(caught.value)
    assert "port 1 failed" in str(caught.value)
    assert "BRAINSTACK_CHECKPOINT_URL" in str(caught.value)
    assert caught.value.thread_id == "pg-down"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("postgresql://user:secret@127.0.0.1:notaport/test", "Port could not be cast"),
        ("postgresql://[::1/test", "Invalid IPv6 URL"),
        ("postgresql://127.0.0.1:notaport/test?user=app&password=secret", "Port could not be cast"),
    ],
)
def test_a_malformed_checkpoint_url_is_a_configuration_error(settings, embedder, url, why):
    bad = settings.model_copy(update={"checkpoint_url": url})
    with pytest.raises(ConfigurationError, match="BRAINSTACK_CHECKPOINT_URL") as caught:
        Runtime(bad, embedder=embedder).run("What is 2 + 2?", thread_id="bad-url")
    assert why in str(caught.value)
    assert "secret" not in str(caught.value)
    assert "progress is saved" not in str(caught.value)  # nothing ran


def test_unwritable_home_is_a_configuration_error(settings, embedder, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigurationError, match="BRAINSTACK_HOME"):
        Runtime(settings.model_copy(update={"home": blocker / "home"}), embedder=embedder).run(
            "What is 2 + 2?"
        )


def test_unreachable_model_endpoint(settings, embedder):
    dead = Settings(
        home=settings.home,
        cache_dir=settings.cache_dir,
        provider="openai",
        openai_api_key="k",
        openai_base_url="http://127.0.0.1:9/v1",
        model_max_retries=0,
    )
    with pytest.raises(ModelUnavailableError, match=r"127\.0\.0\.1:9") as caught:
        Runtime(dead, embedder=embedder).run("How can we improve the conversion rate of our landing page?")
    message = str(caught.value)
    assert "(Connection error.)" in message  # said once, not "Connection error.: Connection error."
    assert "unset OPENAI_API_KEY and OPENAI_BASE_URL to run with the offline model" in message


def test_a_model_endpoint_that_does_not_answer_in_time(settings, embedder):
    import socket

    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        slow = settings.model_copy(
            update={
                "provider": "openai",
                "openai_api_key": SecretStr("k"),
                "openai_base_url": f"http://127.0.0.1:{port}/v1",
                "model_max_retries": 0,
                "model_timeout_s": 0.5,
            }
        )
        with pytest.raises(ModelUnavailableError, match="did not answer in time") as caught:
            Runtime(slow, embedder=embedder).run("How can we improve our landing page?")
    assert f"127.0.0.1:{port}" in str(caught.value) and "BRAINSTACK_MODEL_TIMEOUT_S" in str(caught.value)


def test_openai_embeddings_without_a_key_or_endpoint_are_a_configuration_error(settings, embedder):
    openai_embeddings = settings.model_copy(update={"embeddings": "openai"})
    with pytest.raises(ConfigurationError, match="BRAINSTACK_EMBEDDINGS=openai needs OPENAI_API_KEY"):
        Runtime(openai_embeddings)
    Runtime(openai_embeddings.model_copy(update={"memory": False})).close()  # not used: no error
    Runtime(openai_embeddings, embedder=embedder).close()  # the caller's embedder is used instead


def test_the_openai_provider_without_a_key_or_endpoint_is_a_configuration_error(settings):
    with pytest.raises(ConfigurationError, match="BRAINSTACK_PROVIDER=openai needs OPENAI_API_KEY"):
        Runtime(settings.model_copy(update={"provider": "openai"}))


def test_module_level_run_uses_the_environment(monkeypatch, tmp_path, cache_dir):
    monkeypatch.setenv("BRAINSTACK_HOME", str(tmp_path / "env-home"))
    monkeypatch.setenv("BRAINSTACK_CACHE_DIR", str(cache_dir))
    result = brainstack.run("What is 3 * 7?", user_id="ada", thread_id="env-thread")
    assert "21" in result.answer and result.user_id == "ada"
    assert (tmp_path / "env-home" / "checkpoints.sqlite").is_file()


def test_module_level_runs_reread_an_edited_agents_file_and_close_what_they_evict(
    monkeypatch, tmp_path, cache_dir
):
    """QA: the module-level functions cached their Runtime by path, so an edited agents file was
    never read again, and Runtimes pushed out of the cache were never closed; a Runtime built
    from an AgentsConfig was built again (and left open) at every call."""
    from brainstack.config import load_agents

    monkeypatch.setenv("BRAINSTACK_HOME", str(tmp_path / "env-home"))
    monkeypatch.setenv("BRAINSTACK_CACHE_DIR", str(cache_dir))
    monkeypatch.setattr(brainstack, "_RUNTIMES", type(brainstack._RUNTIMES)())
    builtin = (Path(brainstack.__file__).parent / "config" / "agents.yaml").read_text("utf-8")
    agents = tmp_path / "agents.yaml"
    agents.write_text(builtin, "utf-8")
    with pytest.raises(UnknownAgentError, match="No agent named 'legal'"):
        brainstack.run("Review this contract.", agents=agents, agent="legal")
    first = brainstack._runtime(agents)
    assert brainstack._runtime(str(agents)) is first  # cached, whichever way the path is given

    legal = (
        "\n  legal:\n    description: Contracts.\n    system_prompt: You are the legal specialist.\n"
        "    tools: []\n    examples:\n      - Review this contract.\n      - Draft a supplier NDA.\n"
        "      - Are we compliant with the GDPR\n"
    )
    agents.write_text(builtin.replace("\nagents:\n", "\nagents:" + legal, 1), "utf-8")
    result = brainstack.run("Review this contract.", agents=agents, agent="legal")
    assert result.speakers == ["legal"]

    config = load_agents(agents)
    assert brainstack._runtime(config) is brainstack._runtime(config)  # built once, not per call
    monkeypatch.setattr(brainstack, "MAX_RUNTIMES", 1)
    edited = brainstack._runtime(agents)
    loop = edited._loop_state.thread
    brainstack._runtime(None)  # evicts the others, without closing them: a caller may be using one
    assert list(brainstack._RUNTIMES.values()) == [brainstack._runtime(None)]
    assert edited.run("Review this contract.", agent="legal").speakers == ["legal"]
    del edited, first, result
    gc.collect()
    loop.join(timeout=10)  # once nothing holds it, it closes its loop
    assert not loop.is_alive()
    for runtime in brainstack._RUNTIMES.values():
        runtime.close()


def test_runs_share_one_open_checkpointer_until_close(runtime, monkeypatch):
    import brainstack.graphs.checkpointers as checkpointers

    opened = []
    real = checkpointers.open_checkpointer

    def counting(settings):
        opened.append(settings.checkpoint_url)
        return real(settings)

    monkeypatch.setattr(checkpointers, "open_checkpointer", counting)
    for _ in range(3):
        runtime.run("What is 2 + 2?")
    assert len(opened) == 1
    runtime.close()
    assert "4" in runtime.run("What is 2 + 2?").answer  # reopens after close
    assert len(opened) == 2
    runtime.close()


async def test_concurrent_runs_on_one_runtime(runtime):
    import asyncio

    threads = [unique("c") for _ in range(3)]
    results = await asyncio.gather(*(runtime.arun("What is 6 * 7?", thread_id=t) for t in threads))
    assert [r.thread_id for r in results] == threads
    assert all("42" in r.answer for r in results)
    for thread in threads:
        assert [m["role"] for m in await runtime.amessages(thread)] == ["human", "ai"]


async def test_concurrent_first_runs_open_one_checkpointer(runtime, monkeypatch):
    import asyncio

    import brainstack.graphs.checkpointers as checkpointers

    opened = []
    real = checkpointers.open_checkpointer
    monkeypatch.setattr(checkpointers, "open_checkpointer", lambda s: opened.append(s) or real(s))
    results = await asyncio.gather(*(runtime.arun("What is 6 * 7?") for _ in range(4)))
    assert all("42" in r.answer for r in results)
    assert len(opened) == 1 and len(runtime._loop_state.resources) == 1
    runtime.close()


def test_runs_on_one_thread_at_once_take_turns_and_keep_every_exchange(runtime):
    """Three callers on one thread at the same moment: each run sees the ones before it, none is
    lost to a parallel branch."""
    from concurrent.futures import ThreadPoolExecutor

    thread = unique("shared")
    runtime.run("What is 1 + 1?", thread_id=unique("warm"))  # open everything first
    barrier = threading.Barrier(3)

    def ask(n: int):
        barrier.wait()
        return runtime.run(f"What is {n} + {n}?", thread_id=thread)

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(ask, (2, 3, 4)))
    assert [r.status for r in results] == ["completed"] * 3
    messages = runtime.messages(thread)
    assert [m["role"] for m in messages] == ["human", "ai"] * 3
    assert sorted(m["content"] for m in messages if m["role"] == "human") == [
        "What is 2 + 2?",
        "What is 3 + 3?",
        "What is 4 + 4?",
    ]
    steps = [c.step for c in runtime.history(thread)]
    assert len(steps) == len(set(steps))  # one line of checkpoints, no parallel branches
    assert runtime._loop_state._turns == {}  # no lock is kept for a thread nobody runs on


def test_a_thread_another_runtime_is_running_is_refused_not_forked(backend_settings, embedder, stalled):
    """Another process (here: another Runtime on the same storage) is mid-run on the thread: a new
    task and a "continue" are both refused, nothing is written, and the thread works once it ends.
    The error says it is another Runtime of this process (it named this process as "another")."""
    from brainstack.errors import ThreadBusyError

    started, release = stalled.started, stalled.release
    thread = unique("leased")
    first = Runtime(backend_settings, embedder=embedder, transport=stalled.transport())
    second = Runtime(backend_settings, embedder=embedder)
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(first.run("Write a tagline.", thread_id=thread)))
    worker.start()
    try:
        assert started.wait(60)
        busy = f"Thread '{thread}' is being run by another Runtime in this process\\. Wait"
        for attempt in ({"task": "What is 2 + 2?"}, {}):  # a new task; "continue the stopped run"
            with pytest.raises(ThreadBusyError, match=busy) as caught:
                second.run(**attempt, thread_id=thread)
            assert caught.value.thread_id == thread
        with pytest.raises(ThreadBusyError, match=busy):
            second.delete_thread(thread)
        assert "4" in second.run("What is 2 + 2?", thread_id=unique("free")).answer  # others run on
    finally:
        release.set()
        worker.join(60)
    assert outcome and outcome[0].status == "completed"
    # the refused runs wrote nothing, and the refused deletion deleted nothing
    assert [m["role"] for m in second.messages(thread)] == ["human", "ai"]
    assert "4" in second.run("What is 2 + 2?", thread_id=thread).answer  # free again
    assert [m["role"] for m in second.messages(thread)] == ["human", "ai", "human", "ai"]
    first.close()
    second.close()


def test_a_new_thread_another_runtime_is_running_is_not_deleted(backend_settings, embedder, stalled):
    """A run without a thread_id names its thread itself, yet threads() lists it to other
    processes at once: deleting it mid-run is refused, not done under the run (which would write
    the rest of its checkpoints to a thread that no listing finds any more)."""
    from brainstack.errors import ThreadBusyError

    started, release = stalled.started, stalled.release
    user = unique("mid-run")
    first = Runtime(backend_settings, embedder=embedder, transport=stalled.transport())
    second = Runtime(backend_settings, embedder=embedder)
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(first.run("Write a tagline.", user_id=user)))
    worker.start()
    try:
        assert started.wait(60)
        (thread,) = second.threads(user)
        with pytest.raises(ThreadBusyError):
            second.delete_thread(thread.thread_id)
    finally:
        release.set()
        worker.join(60)
    assert outcome and outcome[0].thread_id == thread.thread_id
    assert [t.thread_id for t in second.threads(user)] == [thread.thread_id]
    assert second.delete_thread(thread.thread_id) is True  # once the run is over
    assert second.history(thread.thread_id) == []
    first.close()
    second.close()


def test_threads_lists_a_users_threads_newest_first_and_delete_thread_removes_one(runtime):
    user, other = unique("owner"), unique("other")
    first = runtime.run("What is 17.5% of 2340?", user_id=user)
    runtime.run("And what is 3 + 4?", user_id=user, thread_id=first.thread_id)
    second = runtime.run("Should we launch a freemium tier?", user_id=user)
    elsewhere = runtime.run("What is 2 + 2?", user_id=other)

    threads = runtime.threads(user)
    assert [t.thread_id for t in threads] == [second.thread_id, first.thread_id]
    assert [t.checkpoints for t in threads] == [len(runtime.history(t.thread_id)) for t in threads]
    assert [t.last_task for t in threads] == ["Should we launch a freemium tier?", "And what is 3 + 4?"]
    assert threads[0].updated_at > threads[1].updated_at
    assert runtime.threads(unique("nobody")) == []

    assert runtime.delete_thread(first.thread_id) is True
    assert runtime.history(first.thread_id) == [] and runtime.messages(first.thread_id) == []
    assert [t.thread_id for t in runtime.threads(user)] == [second.thread_id]
    assert [t.thread_id for t in runtime.threads(other)] == [elsewhere.thread_id]  # others' untouched
    assert len(runtime.history(second.thread_id)) > 0
    assert runtime.delete_thread(first.thread_id) is False  # nothing left to delete

    # the id starts a new conversation: the deleted one is not in its context
    again = runtime.run("What is 5 * 5?", user_id=user, thread_id=first.thread_id)
    assert "25" in again.answer
    assert runtime.messages(first.thread_id)[0]["content"] == "What is 5 * 5?"


def test_a_deleted_thread_leaves_no_trace_of_its_text_in_the_sqlite_files(settings, embedder):
    """Rows deleted from SQLite stay in free pages and in the write-ahead log unless overwritten."""
    marker = b"ZEBRAFISH-4471"

    def found() -> int:
        return sum(path.read_bytes().count(marker) for path in settings.sqlite_path.parent.glob("*.sqlite*"))

    with Runtime(settings, embedder=embedder) as runtime:
        for _ in range(3):
            runtime.run("Plan the ZEBRAFISH-4471 launch for the sales team.", thread_id="secret")
            runtime.run("What is 2 + 2?", thread_id="kept")
        assert found() > 0
        assert runtime.delete_thread("secret") is True
        assert found() == 0
        assert runtime.messages("kept")[0]["content"] == "What is 2 + 2?"  # the other thread is intact


def test_prune_thread_keeps_the_conversation_and_drops_the_history(runtime):
    thread = unique("prune")
    runtime.run("What is 17.5% of 2340?", thread_id=thread)
    runtime.run("And what is 3 + 4?", thread_id=thread)
    history, conversation = runtime.history(thread), runtime.messages(thread)
    assert len(history) > 2

    assert runtime.prune_thread(thread) == len(history) - 1
    assert runtime.history(thread) == history[:1]  # the latest checkpoint, as it was
    listed = [t for t in runtime.threads("default") if t.thread_id == thread]
    assert [(t.checkpoints, t.last_task) for t in listed] == [(1, "And what is 3 + 4?")]  # still found
    assert runtime.messages(thread) == conversation
    assert runtime.prune_thread(thread) == 0
    assert runtime.prune_thread(unique("never-ran")) == 0

    after = runtime.run("And what is 5 * 5?", thread_id=thread)  # the thread goes on from it
    assert "25" in after.answer
    assert [m["content"] for m in runtime.messages(thread)][: len(conversation)] == [
        m["content"] for m in conversation
    ]
    assert len(runtime.messages(thread)) == len(conversation) + 2
    assert runtime.history(thread)[-1].checkpoint_id == history[0].checkpoint_id  # the new run's parent


async def test_delete_thread_waits_for_the_run_on_it_in_this_process(backend_settings, embedder, stalled):
    started, release = stalled.started, stalled.release
    runtime = Runtime(backend_settings, embedder=embedder, transport=stalled.transport())
    thread, user = unique("turns"), unique("user")
    try:
        running = asyncio.ensure_future(runtime.arun("Write a tagline.", user_id=user, thread_id=thread))
        assert await asyncio.to_thread(started.wait, 60)
        deleting = asyncio.ensure_future(runtime.adelete_thread(thread))
        await asyncio.sleep(0.3)
        assert not deleting.done()  # it waits for the run's turn to end
        release.set()
        assert (await running).status == "completed"
        assert await deleting is True
        assert await runtime.ahistory(thread) == []
        assert await runtime.athreads(user) == []
    finally:
        release.set()
        runtime.close()


def test_a_follow_up_without_a_user_on_another_users_thread_is_refused(runtime):
    """QA: `run(task, thread_id=T)` without a user_id on ada's thread ran as "default": ada's
    conversation went into the episodes every caller without a user_id recalls, and the thread was
    listed (and deletable) under "default". Running it as ada instead would give whoever knows a
    thread id her memory: the caller is asked to say which user it is."""
    ada, bob = unique("ada"), unique("bob")
    first = runtime.run("What is 2 + 2?", user_id=ada)
    with pytest.raises(UsageError, match=f"was last run by user '{ada}': pass user_id='{ada}'"):
        runtime.run("What is 3 + 3?", thread_id=first.thread_id)
    assert first.thread_id not in {t.thread_id for t in runtime.threads("default")}
    assert runtime.memory.episodes.count(ada) == 1 and not runtime.memory.episodes.search("default", "3 + 3")
    assert runtime.run("What is 3 + 3?", thread_id=first.thread_id, user_id=ada).user_id == ada
    assert runtime.run("What is 4 + 4?", thread_id=first.thread_id, user_id=bob).user_id == bob
    mine = runtime.run("What is 5 + 5?")  # a thread of "default"'s own goes on without a user id
    assert runtime.run("What is 6 + 6?", thread_id=mine.thread_id).user_id == "default"


def test_a_new_task_after_a_run_without_an_answer_marks_that_task_not_answered(settings, embedder, caplog):
    """Review: a run whose agents produced no answer ends (the caller gets a RunError) with its
    task unanswered; the next task marked it with the Studio text ("… instead of continuing it")
    and a warning advising a continuation Runtime refuses."""
    import httpx2

    from brainstack.errors import RunError
    from brainstack.graphs.nodes import NO_ANSWER

    def empty(request):
        body = {
            "id": "empty",
            "object": "chat.completion",
            "created": 0,
            "model": "stub",
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": ""}}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1},
        }
        return httpx2.Response(200, json=body)

    thread = unique("empty")
    silent = Runtime(settings, embedder=embedder, transport=httpx2.MockTransport(empty))
    with silent, pytest.raises(RunError, match="No agent produced an answer"):
        silent.run("Write a tagline for our bakery.", thread_id=thread, agent="marketing")
    with Runtime(settings, embedder=embedder) as runtime, caplog.at_level("WARNING"):
        result = runtime.run("What is 2 + 2?", thread_id=thread)
        assert [(m["role"], m["content"]) for m in runtime.messages(thread)] == [
            ("human", "Write a tagline for our bakery."),
            ("ai", NO_ANSWER),
            ("human", "What is 2 + 2?"),
            ("ai", result.answer),
        ]
    assert not [r for r in caplog.records if "not answered" in r.getMessage()]


def test_threads_lists_every_users_threads_and_filters_by_idle_time(runtime):
    import time

    ada, bob = unique("ada"), unique("bob")
    old = runtime.run("What is 2 + 2?", user_id=ada)
    time.sleep(0.6)
    mark = time.time()
    time.sleep(0.6)
    new = runtime.run("What is 3 + 3?", user_id=bob)

    def since_mark() -> float:  # idle_days that puts the cutoff at `mark`, however long this takes
        return (time.time() - mark) / 86_400

    everything = {t.thread_id: t for t in runtime.threads()}
    assert {old.thread_id, new.thread_id} <= set(everything)
    assert everything[old.thread_id].user_id == ada and everything[new.thread_id].user_id == bob
    assert everything[new.thread_id].last_task == "What is 3 + 3?"
    listed = [t.thread_id for t in runtime.threads()]
    assert listed.index(new.thread_id) < listed.index(old.thread_id)  # most recently used first

    idle = {t.thread_id for t in runtime.threads(idle_days=since_mark())}
    assert old.thread_id in idle and new.thread_id not in idle
    assert [t.thread_id for t in runtime.threads(ada, idle_days=since_mark())] == [old.thread_id]
    assert runtime.threads(bob, idle_days=since_mark()) == []
    assert [t.thread_id for t in runtime.threads(bob, idle_days=0)] == [new.thread_id]


def test_a_thread_another_user_used_since_is_not_idle_for_its_first_user(runtime):
    import time

    ada, bob = unique("ada"), unique("bob")
    shared = runtime.run("What is 2 + 2?", user_id=ada).thread_id
    time.sleep(0.6)
    mark = time.time()
    time.sleep(0.6)
    runtime.run("What is 3 + 3?", user_id=bob, thread_id=shared)
    idle_days = (time.time() - mark) / 86_400  # ada's last use is before the cutoff, bob's after

    assert runtime.threads(ada, idle_days=idle_days) == []  # `delete --user ada --idle-days` spares it
    assert [t.thread_id for t in runtime.threads(ada, idle_days=0)] == [shared]


def test_a_pruned_shared_thread_is_still_found_for_each_of_its_users(runtime):
    """Prune keeps one checkpoint, whose run had one user; the conversation still holds the other
    users' tasks, so threads(user) must still find it for them (and delete --user must reach it)."""
    ada, bob, thread = unique("ada"), unique("bob"), unique("shared")
    runtime.run("What is 2 + 2?", user_id=ada, thread_id=thread)
    runtime.run("And what is 3 + 3?", user_id=bob, thread_id=thread)
    assert runtime.prune_thread(thread) > 0
    assert runtime.prune_thread(thread) == 0  # again: nothing left to delete, users kept
    for user in (ada, bob):
        assert [(t.thread_id, t.checkpoints) for t in runtime.threads(user)] == [(thread, 1)]
    runtime.run("And what is 4 + 4?", user_id=bob, thread_id=thread)
    assert runtime.prune_thread(thread) > 0  # a second prune keeps the users the first one kept
    assert [t.thread_id for t in runtime.threads(ada)] == [thread]
    assert runtime.delete_thread(runtime.threads(ada)[0].thread_id) is True
    assert runtime.threads(bob) == [] and runtime.messages(thread) == []


def test_a_postgres_prune_stopped_after_its_delete_keeps_the_thread_for_each_user(
    settings, embedder, postgres_url, monkeypatch
):
    """QA: on PostgreSQL the kept checkpoint got the thread's users only after LangGraph's prune had
    committed; a process killed in between lost the thread from the other users' lists for good.
    (SQLite prunes in one transaction of its own.)"""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    runtime = Runtime(settings.model_copy(update={"checkpoint_url": postgres_url}), embedder=embedder)
    ada, bob, thread = unique("ada"), unique("bob"), unique("stopped")
    runtime.run("What is 2 + 2?", user_id=ada, thread_id=thread)
    runtime.run("And what is 3 + 3?", user_id=bob, thread_id=thread)
    runtime.run("And what is 4 + 4?", user_id=ada, thread_id=thread)
    saver_class = AsyncPostgresSaver
    prune = saver_class.aprune

    class Killed(Exception):
        pass

    async def killed_after(self, *args, **kwargs):
        await prune(self, *args, **kwargs)
        raise Killed  # (as a SIGKILL right after the prune's commit: nothing after it runs)

    monkeypatch.setattr(saver_class, "aprune", killed_after)
    with pytest.raises(Exception) as caught:
        runtime.prune_thread(thread)
    assert isinstance(caught.value, Killed) or isinstance(caught.value.__cause__, Killed)
    monkeypatch.setattr(saver_class, "aprune", prune)
    for user in (ada, bob):
        assert [(t.thread_id, t.checkpoints) for t in runtime.threads(user)] == [(thread, 1)]
    runtime.close()


@pytest.mark.parametrize("idle_days", [-1, "30", float("nan"), True])
def test_threads_refuses_a_bad_idle_time(runtime, idle_days):
    with pytest.raises(UsageError, match="idle_days must be a number of days, at least 0"):
        runtime.threads(idle_days=idle_days)


@pytest.mark.parametrize("call", ["threads", "delete_thread"])
def test_thread_calls_refuse_a_malformed_id(runtime, call):
    with pytest.raises(UsageError, match="must be 1-128 letters"):
        getattr(runtime, call)("not an id")


def test_stopping_a_stream_early_leaves_a_usable_runtime(runtime):
    events = runtime.stream("Should we launch a freemium tier?")
    first = next(events)
    events.close()  # the caller walks away mid-run
    assert first is not None
    assert "4" in runtime.run("What is 2 + 2?").answer


async def test_a_cancelled_group_chat_makes_no_more_model_calls(settings, embedder, caplog):
    """Cancelling a run (Ctrl-C, a caller walking away) stops the team: autogen's run_stream on its
    own waits in its `finally` until every member has spoken, calling the model all the while."""
    import threading

    import httpx2

    from brainstack.agents.offline import OfflineModel

    model = OfflineModel(termination_word="TERMINATE", team=["CTO", "CMO", "CFO"])
    calls: list[str] = []
    # The transport runs on the Runtime's loop thread: threading events, not asyncio ones (an
    # asyncio.Event set from another thread wakes this loop only when something else does).
    in_flight, stopped = threading.Event(), threading.Event()

    async def slow(request):
        calls.append(request.url.path)
        in_flight.set()
        try:
            await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            stopped.set()  # the token reached the call the member was waiting for
            raise
        return model.handle(request)

    runtime = Runtime(settings, embedder=embedder, transport=httpx2.MockTransport(slow))

    async def consume():
        async for _ in runtime.astream("Should we launch a freemium tier?", agent="group_chat"):
            pass

    loop = asyncio.get_running_loop()
    run = asyncio.ensure_future(consume())
    assert await loop.run_in_executor(None, in_flight.wait, 30)  # a member waits for the model
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    # The run stops on the Runtime's loop a moment later: wait for the in-flight call to end.
    assert await loop.run_in_executor(None, stopped.wait, 10), "the in-flight model call was not cancelled"
    made = len(calls)
    await asyncio.sleep(2)  # four more turns' worth of model calls
    assert len(calls) == made
    assert "Error processing" not in caplog.text  # a stopped chat is not logged as an error
    runtime.close()


def test_history_lists_checkpoints_and_replay_reruns_from_one(runtime):
    from brainstack import UsageError as _UsageError

    thread = unique("tt")
    first = runtime.run("What is 17.5% of 2340?", thread_id=thread)
    history = runtime.history(thread)
    assert history[0].next == [] and history[0].answer and "409.5" in history[0].answer
    assert history[-1].step == -1  # newest first, the input last
    before_route = next(c for c in history if c.next == ["route"] or c.next == ["recall"])
    replayed = runtime.replay(thread, before_route.checkpoint_id)
    assert replayed.thread_id == thread and "409.5" in replayed.answer
    assert replayed.route.target == first.route.target
    assert len(runtime.history(thread)) > len(history)  # the replay added a branch
    # what history() returns can be passed as it is
    assert "409.5" in runtime.replay(thread, before_route).answer
    with pytest.raises(_UsageError, match="no checkpoint"):
        runtime.replay(thread, "not-a-checkpoint")
    with pytest.raises(_UsageError, match="end of a run"):
        runtime.replay(thread, history[0].checkpoint_id)


async def test_areplay_and_astranded_are_the_async_replay_and_stranded(runtime):
    """Every other Runtime method had an async form (docs audit)."""
    thread = unique("atr")
    await runtime.arun("What is 17.5% of 2340?", thread_id=thread)
    history = await runtime.ahistory(thread)
    before_route = next(c for c in history if c.next in (["route"], ["recall"]))
    replayed = await runtime.areplay(thread, before_route)
    assert replayed.thread_id == thread and "409.5" in replayed.answer
    assert len(await runtime.ahistory(thread)) > len(history)
    with pytest.raises(UsageError, match="no checkpoint"):
        await runtime.areplay(thread, "not-a-checkpoint")
    assert await runtime.astranded(thread) == []


@pytest.mark.parametrize(("synchronous", "pragma"), [("full", 2), ("normal", 1)])
async def test_sqlite_checkpointer_syncs_as_configured(settings, embedder, synchronous, pragma):
    """BRAINSTACK_SQLITE_SYNCHRONOUS reaches the checkpointer's connection, always in WAL mode
    (``normal`` is only corruption-safe there), and a thread continues in a new Runtime."""
    from brainstack.graphs.checkpointers import open_checkpointer

    configured = settings.model_copy(update={"sqlite_synchronous": synchronous})
    async with open_checkpointer(configured) as saver:
        async with saver.conn.execute("PRAGMA synchronous") as cursor:
            assert (await cursor.fetchone())[0] == pragma
        async with saver.conn.execute("PRAGMA journal_mode") as cursor:
            assert (await cursor.fetchone())[0] == "wal"
    thread = unique("sync")
    with Runtime(configured, embedder=embedder) as first:
        await first.arun("What is 2 + 2?", thread_id=thread)
    with Runtime(configured, embedder=embedder) as second:
        result = await second.arun("And 3 + 3?", thread_id=thread)
        assert "6" in result.answer
        assert [m["role"] for m in await second.amessages(thread)] == ["human", "ai"] * 2


async def test_sqlite_connection_refuses_an_unknown_synchronous_mode(tmp_path):
    from brainstack.graphs.checkpointers import connect_sqlite

    with pytest.raises(ValueError, match="'normal' or 'full'"):
        async with connect_sqlite(tmp_path / "x.sqlite", "off"):
            pass


def _route_cancelled(runtime: Runtime, thread: str, task: str, writes: list[tuple[str, Any]]) -> None:
    """``thread`` with its recall done and its route task cancelled after writing ``writes`` (what
    LangGraph saves for a cancelled task: its writes so far, and the error)."""
    import asyncio

    from langchain_core.messages import HumanMessage

    config = {"configurable": {"thread_id": thread}}
    compiled = runtime._submit(runtime._compiled_graph())
    start = {
        **{key: "" for key in ("active_agent", "answer", "model")},
        **{key: [] for key in ("speakers", "transcript", "tool_calls")},
        **{key: {} for key in ("usage", "timings", "review", "memory", "remembered", "approval")},
        **{"task": task, "user_id": "ada", "thread_id": thread, "messages": [HumanMessage(task)]},
        **{"route": None, "model": "offline"},
    }
    runtime._submit(compiled.aupdate_state(config, start, as_node="recall"))
    (route,) = runtime._submit(compiled.aget_state(config)).tasks
    saved = runtime._submit(compiled.checkpointer.aget_tuple(config))
    cancelled = [*writes, ("__error__", asyncio.CancelledError())]
    runtime._submit(compiled.checkpointer.aput_writes(saved.config, cancelled, route.id))


def test_a_step_cancelled_while_saving_its_result_runs_again(runtime):
    """LangGraph keeps what a cancelled task wrote so far and later applies it as the task's result.
    A route cancelled between its state update and its edge's write (a caller that stops reading at
    the route event lands there most of the time) then led nowhere: continuing "completed" the run
    with no answer, and the task was lost. Such a step now runs again."""
    thread = f"cut-{uuid.uuid4().hex[:8]}"
    decision = {"target": "finance", "kind": "specialist", "confidence": 1.0, "decided_by": "semantic"}
    _route_cancelled(
        runtime, thread, "What is 17.5% of 2340?", [("route", decision), ("timings", {"route": 1})]
    )
    result = runtime.run(thread_id=thread)
    assert result.status == "completed" and "409.5" in result.answer
    assert result.speakers == ["finance"] and "specialist_finance" in result.timings
    assert [m["role"] for m in runtime.messages(thread)][-1] == "ai"


def test_a_route_saved_to_a_specialist_of_another_agents_file_is_refused(runtime):
    """The route's result was saved whole (its edge to specialist_legal too): a graph without that
    node would drop the edge and end the run with no answer. Continuing is refused instead."""
    thread = f"legal-{uuid.uuid4().hex[:8]}"
    decision = {"target": "legal", "kind": "specialist", "confidence": 1.0, "decided_by": "caller"}
    _route_cancelled(
        runtime, thread, "Review our contract.", [("route", decision), ("branch:to:specialist_legal", None)]
    )
    assert runtime.stranded(thread) == ["specialist_legal"]
    for call in (
        lambda: runtime.run(thread_id=thread),
        lambda: runtime.run("Another task", thread_id=thread),
    ):
        with pytest.raises(UsageError, match=r"stopped before node 'specialist_legal'.*pass the agents file"):
            call()
    assert runtime.stranded(thread) == ["specialist_legal"]  # still there, for the right agents file


def test_a_stream_stopped_at_the_route_goes_on_to_an_answer(backend_settings, embedder):
    """The caller stops reading at the route event and closes its runtime; another one continues."""
    for attempt in range(3):  # where the stop lands varies: each time, the run is continued to its end
        thread = f"stop-{uuid.uuid4().hex[:8]}-{attempt}"
        with Runtime(backend_settings, embedder=embedder) as first:
            for event in first.stream("What is 17.5% of 2340?", thread_id=thread, agent="finance"):
                if event.type == "route":
                    break
        with Runtime(backend_settings, embedder=embedder) as second:
            result = second.run(thread_id=thread)
        assert "409.5" in result.answer and result.speakers == ["finance"], attempt


class _TcpProxy:
    """A TCP forwarder to a server: closed (with every connection through it) to lose the server,
    frozen to stand for a server process that stops answering while its kernel still accepts."""

    def __init__(self, port: int) -> None:
        import socket

        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[Any] = []
        self.running = threading.Event()
        self.running.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: Any, sink: Any) -> None:
        import socket

        try:
            while data := source.recv(65536):
                self.running.wait()
                sink.sendall(data)
            self.running.wait()
            sink.shutdown(socket.SHUT_WR)  # pass the end of the connection on
        except OSError:
            pass

    def freeze(self) -> None:
        self.running.clear()

    def thaw(self) -> None:
        self.running.set()

    def close(self) -> None:
        import socket

        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self.running.set()


def _proxied(postgres_url: str) -> tuple[_TcpProxy, str]:
    """A proxy to the test server and the URL that goes through it."""
    from urllib.parse import urlparse

    parsed = urlparse(postgres_url)
    proxy = _TcpProxy(parsed.port or 5432)
    return proxy, parsed._replace(netloc=f"{parsed.username}@127.0.0.1:{proxy.port}").geturl()


def test_a_postgres_server_lost_between_runs_fails_the_next_within_the_connect_timeout(
    settings, postgres_url, embedder, caplog
):
    """QA: the failure came after the pool's own 30 s wait, twice (63 s with a 3 s setting), after
    a log line per reconnection attempt."""
    proxy, url = _proxied(postgres_url)
    configured = settings.model_copy(
        update={"checkpoint_url": url, "postgres_connect_timeout_s": 2.0, "memory": False}
    )
    with Runtime(configured, embedder=embedder) as runtime:
        assert "4" in runtime.run("What is 2 + 2?", thread_id=unique("pg-up")).answer
        proxy.close()  # the server is gone: its connections drop, new ones are refused
        started = time.monotonic()
        with caplog.at_level("WARNING"), pytest.raises(BackendError, match="PostgreSQL"):
            runtime.run("What is 3 + 3?", thread_id=unique("pg-down"))
        assert time.monotonic() - started < 20  # bounded by the 2 s setting, not the pool's 30 s
    assert not [r for r in caplog.records if "error connecting in" in r.getMessage()]


def test_a_postgres_server_that_stops_answering_mid_run_fails_it_within_the_command_timeout(
    settings, postgres_url, embedder, caplog
):
    """QA: a frozen server process (its kernel still acknowledging what is sent) hung the run with
    no limit, and its thread's lease with it. The run now fails after
    BRAINSTACK_POSTGRES_COMMAND_TIMEOUT_S, its connections are closed, and once the server answers
    again the thread goes on from its last checkpoint, in another Runtime too."""
    proxy, url = _proxied(postgres_url)
    configured = settings.model_copy(
        update={
            "checkpoint_url": url,
            "postgres_command_timeout_s": 1.0,
            "postgres_connect_timeout_s": 2.0,
            "memory": False,
        }
    )
    thread = unique("pg-frozen")
    try:
        with Runtime(configured, embedder=embedder) as runtime:
            started = None
            with (
                caplog.at_level("WARNING"),
                pytest.raises(BackendError, match="The PostgreSQL backend failed") as error,
            ):
                for event in runtime.stream("What is 17.5% of 2340?", thread_id=thread, agent="finance"):
                    if event.type == "route":
                        proxy.freeze()  # the route's checkpoint is next
                        started = time.monotonic()
            assert started is not None and time.monotonic() - started < 10, "bounded by the 1 s setting"
            # (the write's connection timed out; the pool's check on its next one, then a new one)
            assert error.value.thread_id == thread
            assert re.search(r"did not answer within 1 s|couldn't get a connection", str(error.value))
            assert any(
                "lease on thread" in r.getMessage() for r in caplog.records
            )  # its unlock timed out too
            proxy.thaw()
            deadline = time.monotonic() + 10
            with Runtime(configured, embedder=embedder) as other:
                while True:  # the server ends the closed session (and its lock) once it reads on
                    try:
                        result = other.run(thread_id=thread)
                        break
                    except ThreadBusyError:
                        assert time.monotonic() < deadline, "the lease outlived its connection"
                        time.sleep(0.1)
            assert "409.5" in result.answer and result.speakers == ["finance"]
            # The first Runtime's connections were replaced: it runs again.
            assert "6" in runtime.run("What is 3 + 3?", thread_id=thread).answer
    finally:
        proxy.close()
