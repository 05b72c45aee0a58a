"""The runtime: one configured instance that runs tasks through the router graph."""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import re
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brainstack.config import AgentsConfig, Settings, load_agents
from brainstack.config.agents import GROUP_CHAT
from brainstack.errors import (
    BrainstackError,
    InvalidTaskError,
    RunError,
    UnknownAgentError,
    UsageError,
    translate,
)
from brainstack.events import Event, ResultEvent, event_from_custom
from brainstack.results import (
    ChatTurn,
    MemoryRecall,
    MemoryWrite,
    ReviewOutcome,
    RouteDecision,
    RunResult,
    ToolCallRecord,
    Usage,
)

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

    from brainstack.agents.providers import ModelProvider
    from brainstack.graphs.router import SemanticRouter
    from brainstack.memory.embeddings import Embedder
    from brainstack.memory.gateway import MemoryGateway

__all__ = ["Runtime"]

_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")


class Runtime:
    """A configured brainstack: settings, agents, model provider and graph, reused across runs.

    >>> rt = Runtime()                                   # doctest: +SKIP
    >>> rt.run("What is 17.5% of 2340?").answer          # doctest: +SKIP
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        agents: str | Path | AgentsConfig | None = None,
        transport: Any | None = None,
        embedder: Embedder | None = None,
        memory: MemoryGateway | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings.from_env()
        if isinstance(agents, AgentsConfig):
            self.agents = agents
        else:
            self.agents = load_agents(agents if agents is not None else self.settings.agents_file)
        from brainstack.agents.providers import ModelProvider

        self.provider: ModelProvider = ModelProvider(self.settings, self.agents, transport=transport)
        self._embedder = embedder
        self._router: SemanticRouter | None = None
        self._graph: StateGraph[Any] | None = None
        self._memory: MemoryGateway | None = memory

    @property
    def model(self) -> str:
        """The provider that answers: ``openai`` or ``offline``."""
        return self.provider.name

    @property
    def router(self) -> SemanticRouter:
        if self._router is None:
            from brainstack.graphs.router import SemanticRouter

            self._router = SemanticRouter(
                self.agents.routes,
                self._default_embedder(),
                self.settings.router_threshold,
                margin=self.settings.router_margin,
            )
        return self._router

    def _default_embedder(self) -> Embedder:
        from brainstack.memory.embeddings import default_embedder

        self._embedder = self._embedder or default_embedder(self.settings)
        return self._embedder

    @property
    def memory(self) -> MemoryGateway | None:
        """The memory gateway (``None`` when ``BRAINSTACK_MEMORY=0``); its layers open on first use."""
        if self._memory is None and self.settings.memory:
            from brainstack.memory.gateway import MemoryGateway

            self._memory = MemoryGateway(self.settings, embedder=self._default_embedder())
        return self._memory

    @property
    def graph(self) -> StateGraph[Any]:
        """The uncompiled router graph."""
        if self._graph is None:
            memory = self.memory
            if memory is not None:  # open the memory backends while the graph is being built
                threading.Thread(target=memory.warm_up, name="brainstack-memory-warm-up", daemon=True).start()
            from brainstack.graphs.factory import create_router_graph

            self._graph = create_router_graph(
                self.agents,
                provider=self.provider,
                router=self.router,
                settings=self.settings,
                memory=self.memory,
            )
        return self._graph

    # Running -----------------------------------------------------------------
    async def astream(
        self,
        task: str,
        *,
        user_id: str = "default",
        thread_id: str | None = None,
        agent: str | None = None,
    ) -> AsyncIterator[Event]:
        """Run ``task`` and yield events as they happen; the last one is the result."""
        task = self._check(task, user_id, thread_id, agent)
        thread_id = thread_id or uuid.uuid4().hex
        config: Any = {
            "configurable": {"thread_id": thread_id},
            "recursion_limit": 25,
            "metadata": {"user_id": user_id},
        }
        graph = self.graph
        from langchain_core.messages import HumanMessage

        from brainstack.graphs.checkpointers import open_checkpointer

        inputs: dict[str, Any] = {
            "messages": [HumanMessage(task)],
            "task": task,
            "user_id": user_id,
            "requested_agent": agent,
            "route": None,
            "active_agent": "",
            "answer": "",
            "speakers": [],
            "transcript": [],
            "tool_calls": [],
            "usage": {},
            "timings": {},
            "review": {},
            "model": self.provider.name,
            "thread_id": thread_id,
            "memory": {},
            "remembered": {},
        }
        try:
            async with open_checkpointer(self.settings) as saver:
                compiled = graph.compile(checkpointer=saver)
                async for payload in compiled.astream(
                    inputs, config, stream_mode="custom", durability="sync"
                ):
                    event = event_from_custom(payload)
                    if event is not None:
                        yield event
                state = (await compiled.aget_state(config)).values
        except BrainstackError:
            raise
        except Exception as exc:
            raise translate(exc, thread_id=thread_id) from exc
        yield ResultEvent(result=self._result(state, thread_id))

    async def arun(
        self,
        task: str,
        *,
        user_id: str = "default",
        thread_id: str | None = None,
        agent: str | None = None,
    ) -> RunResult:
        """Run ``task`` to completion."""
        result: RunResult | None = None
        async for event in self.astream(task, user_id=user_id, thread_id=thread_id, agent=agent):
            if isinstance(event, ResultEvent):
                result = event.result
        assert result is not None  # astream always ends with a result or raises
        return result

    def run(
        self,
        task: str,
        *,
        user_id: str = "default",
        thread_id: str | None = None,
        agent: str | None = None,
    ) -> RunResult:
        """Blocking :meth:`arun`; works inside a running event loop (Jupyter) too."""
        return _blocking(self.arun(task, user_id=user_id, thread_id=thread_id, agent=agent))

    def stream(
        self,
        task: str,
        *,
        user_id: str = "default",
        thread_id: str | None = None,
        agent: str | None = None,
    ) -> Iterator[Event]:
        """Blocking :meth:`astream`: events are yielded as they happen (the run works on a thread)."""
        done = object()
        events: queue.Queue[Any] = queue.Queue()

        async def pump() -> None:
            try:
                async for event in self.astream(task, user_id=user_id, thread_id=thread_id, agent=agent):
                    events.put(event)
            except BaseException as exc:  # handed to the caller's thread below
                events.put(exc)
            finally:
                events.put(done)

        worker = threading.Thread(target=asyncio.run, args=(pump(),), name="brainstack-stream", daemon=True)
        worker.start()
        try:
            while (item := events.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            worker.join()

    async def amessages(self, thread_id: str) -> list[dict[str, str]]:
        """The conversation stored for ``thread_id`` (``role``, ``content``, ``name``), oldest first."""
        from brainstack.graphs.checkpointers import open_checkpointer

        try:
            async with open_checkpointer(self.settings) as saver:
                snapshot = await self.graph.compile(checkpointer=saver).aget_state(
                    {"configurable": {"thread_id": thread_id}}
                )
        except BrainstackError:
            raise
        except Exception as exc:
            raise translate(exc, thread_id=thread_id) from exc
        return [
            {"role": m.type, "content": str(m.content), "name": getattr(m, "name", None) or ""}
            for m in snapshot.values.get("messages", [])
        ]

    def messages(self, thread_id: str) -> list[dict[str, str]]:
        """Blocking :meth:`amessages`."""
        result: list[dict[str, str]] = _blocking(self.amessages(thread_id))
        return result

    def _check(self, task: str, user_id: str, thread_id: str | None, agent: str | None) -> str:
        if not isinstance(task, str) or not task.strip():
            raise InvalidTaskError("The task is empty: pass the question or instruction to run.")
        task = task.strip()
        limit = self.settings.max_task_chars
        if len(task) > limit:
            raise InvalidTaskError(
                f"The task has {len(task)} characters; the limit is {limit}. Shorten it or raise "
                f"BRAINSTACK_MAX_TASK_CHARS."
            )
        for label, value in (("user_id", user_id), ("thread_id", thread_id)):
            if value is not None and not _ID.match(value):
                raise UsageError(f"{label} {value!r} must be 1-128 letters, digits or _.:@-")
        targets = [*self.agents.agents, GROUP_CHAT]
        if agent is not None and agent not in targets:
            raise UnknownAgentError(f"No agent named {agent!r}. Available: {', '.join(targets)}.")
        return task

    def _result(self, state: dict[str, Any], thread_id: str) -> RunResult:
        review = state.get("review") or {}
        if review.get("status") == "failed":
            raise RunError(
                "No agent produced an answer: "
                + "; ".join(review.get("notes", []))
                + f". The thread {thread_id!r} keeps what happened; try again or check the model.",
                thread_id=thread_id,
            )
        return RunResult(
            answer=state["answer"],
            route=RouteDecision(**state["route"]),
            speakers=state.get("speakers", []),
            transcript=[ChatTurn(**turn) for turn in state.get("transcript", [])],
            tool_calls=[ToolCallRecord(**call) for call in state.get("tool_calls", [])],
            thread_id=thread_id,
            user_id=state.get("user_id", "default"),
            model=state.get("model", self.provider.name),
            usage=Usage(**state.get("usage", {})),
            timings=state.get("timings", {}),
            review=ReviewOutcome(
                status=review.get("status", "ok"),
                attempts=review.get("attempts", 0),
                notes=review.get("notes", []),
                checks=review.get("checks", []),
            ),
            memory=MemoryRecall(**(state.get("memory") or {})),
            remembered=MemoryWrite(**(state.get("remembered") or {})),
        )


def _blocking(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Inside a running loop (Jupyter, an async app): run on a worker thread's own loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
