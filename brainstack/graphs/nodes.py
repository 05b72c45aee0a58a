"""The graph's own nodes: recall, route (hybrid semantic/LLM), review and remember."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage
from langgraph.graph.message import add_messages

from brainstack.approval import RESUME_FORMS, parse_resume
from brainstack.config.agents import GROUP_CHAT
from brainstack.graphs.state import RouterState, add_usage

if TYPE_CHECKING:
    from brainstack.agents.providers import ModelProvider
    from brainstack.config import AgentsConfig
    from brainstack.graphs.router import SemanticRouter
    from brainstack.memory.gateway import MemoryGateway

log = logging.getLogger(__name__)

__all__ = [
    "MAX_ANSWER_CHARS",
    "AfterReview",
    "Approve",
    "Recall",
    "Remember",
    "Review",
    "Route",
    "node_name",
    "start_run",
]

MAX_ANSWER_CHARS = 20_000


def node_name(target: str) -> str:
    """The graph node of a route target (``:`` is reserved in LangGraph node names)."""
    return GROUP_CHAT if target == GROUP_CHAT else f"specialist_{target}"


def _decision(target: str, confidence: float, decided_by: str, reason: str) -> dict[str, Any]:
    kind = "group_chat" if target == GROUP_CHAT else "specialist"
    return {
        "target": target,
        "kind": kind,
        "confidence": round(min(max(confidence, 0.0), 1.0), 4),
        "decided_by": decided_by,
        "reason": reason,
    }


class Route:
    """Semantic router when it is confident; otherwise the model, with one retry; else fallback."""

    def __init__(self, agents: AgentsConfig, router: SemanticRouter, provider: ModelProvider) -> None:
        self.agents = agents
        self.router = router
        self.provider = provider
        self.targets = [*agents.agents, GROUP_CHAT]
        self._classifier: Any = None

    async def __call__(self, state: RouterState) -> dict[str, Any]:
        from langgraph.config import get_stream_writer

        usage: dict[str, int] = {}
        requested = state.get("requested_agent")
        if requested:
            if requested not in self.targets:  # (start_run refuses it first; a graph built without targets)
                from brainstack.errors import UnknownAgentError

                raise UnknownAgentError.naming(requested, self.targets)
            decision = _decision(requested, 1.0, "caller", "the caller asked for this agent")
        else:
            match = await self.router.abest(routing_text(state["task"]))
            summary = f"semantic {match.name} {match.score:.2f} (margin {match.margin:.2f})"
            if self.router.accepts(match):
                decision = _decision(match.name, match.score, "semantic", summary)
            elif self.provider.can_classify:
                decision, usage = await self._classify(state["task"], summary, state.get("thread_id") or None)
            else:
                decision = _decision(
                    self.agents.default_agent,
                    match.score,
                    "fallback",
                    f"{summary} is below the router's confidence (threshold "
                    f"{self.router.threshold:.2f}, margin {self.router.margin:.2f}) and the "
                    f"{self.provider.name} model does not classify",
                )
        get_stream_writer()({"type": "route", **decision})
        # requested_agent is consumed: the thread's next run routes again unless its input asks.
        return {"route": decision, "usage": add_usage(state.get("usage"), usage), "requested_agent": None}

    def _classifier_model(self) -> Any:
        if self._classifier is None:
            schema = {
                "title": "RouteChoice",
                "description": "Which agent should handle the request.",
                "type": "object",
                "properties": {
                    "target": {"type": "string", "enum": self.targets},
                    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                    "reason": {"type": "string"},
                },
                "required": ["target", "confidence", "reason"],
                "additionalProperties": False,
            }
            model = self.provider.chat_model()
            self._classifier = model.with_structured_output(
                schema, method="json_schema", include_raw=True, strict=True
            )
        return self._classifier

    def _instructions(self) -> str:
        lines = [f"- {name}: {spec.description}" for name, spec in self.agents.agents.items()]
        lines.append(f"- {GROUP_CHAT}: {self.agents.group_chat.description}")
        return (
            "You route requests to the one agent best placed to handle them. Agents:\n"
            + "\n".join(lines)
            + "\nAnswer with the target, your confidence between 0 and 1, and a short reason."
        )

    async def _classify(
        self, task: str, summary: str, thread_id: str | None
    ) -> tuple[dict[str, Any], dict[str, int]]:
        from brainstack.agents.specialist import ask, usage_of

        messages: list[Any] = [SystemMessage(self._instructions()), HumanMessage(task)]
        usage: dict[str, int] = {}
        problem = ""
        for _attempt in range(2):
            out = await ask(self._classifier_model(), messages, self.provider, thread_id)
            raw = out.get("raw")
            if raw is not None:
                usage = add_usage(usage, usage_of(raw))
            choice, problem = self._validate(out)
            if choice is not None:
                reason = f"{choice['reason']} ({summary} was not confident)"
                return _decision(choice["target"], choice["confidence"], "llm", reason), usage
            messages += [
                AIMessage(str(getattr(raw, "content", "")) or "(no content)"),
                HumanMessage(
                    f"That answer was invalid: {problem}. Answer again with a "
                    f"JSON object whose target is one of {self.targets}."
                ),
            ]
        reason = f"the model's route was invalid twice ({problem}); {summary}"
        return _decision(self.agents.default_agent, 0.0, "fallback", reason), usage

    def _validate(self, out: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        parsed = out.get("parsed")
        if out.get("parsing_error") is not None or not isinstance(parsed, dict):
            # (without LangChain's "For troubleshooting, visit: <url>" line: the reason is shown, QA)
            error = str(out.get("parsing_error") or "no object").split("\nFor troubleshooting", 1)[0]
            return None, f"not the requested JSON ({' '.join(error.split())})"
        # The parser completes a cut-off object ('{"target": "finance", "confid' parses), so the
        # schema's required keys are checked here: an answer cut at max tokens was taken as the
        # model's decision (QA).
        missing = [key for key in ("target", "confidence", "reason") if key not in parsed]
        if missing:
            return None, f"the object lacks {', '.join(repr(key) for key in missing)}"
        if parsed["target"] not in self.targets:
            return None, f"unknown target {parsed['target']!r}"
        confidence = parsed["confidence"]
        if isinstance(confidence, bool) or not isinstance(confidence, int | float):
            return None, f"confidence {confidence!r} is not a number"
        if not 0.0 <= confidence <= 1.0:  # (NaN too: it failed RunResult's validation, QA)
            return None, f"confidence {confidence!r} is not between 0 and 1"
        return {
            "target": parsed["target"],
            "confidence": float(confidence),
            "reason": str(parsed["reason"]).strip() or "no reason given",
        }, ""


class Review:
    """Accepts the answer, or sends the task back once, then to the default agent."""

    def __init__(self, default_agent: str, approval_routes: Iterable[str] = ()) -> None:
        self.default_agent = default_agent
        self.approval_routes = set(approval_routes)

    def __call__(self, state: RouterState) -> dict[str, Any]:
        review = dict(state.get("review") or {})
        attempts = int(review.get("attempts", 0))
        notes = list(review.get("notes", []))
        answer = (state.get("answer") or "").strip()
        active = state.get("active_agent", "")
        if answer:
            if len(answer) > MAX_ANSWER_CHARS:
                notes.append(f"answer cut from {len(answer)} to {MAX_ANSWER_CHARS} characters")
                answer = answer[:MAX_ANSWER_CHARS]
            status = review.get("status") or "ok"
            checks = _skill_checks(state.get("memory") or {}, answer)
            notes += [f"skill {c['skill']}: check failed: {c['check']}" for c in checks if not c["passed"]]
            review = {**review, "status": status, "notes": notes, "checks": checks, "next": None}
            if (state.get("route") or {}).get("target") in self.approval_routes:
                review["approval"] = "pending"  # until approve records the decision (see start_run)
            return {"answer": answer, "messages": [AIMessage(answer, name=active)], "review": review}
        notes.append(f"{active or 'the agent'} returned an empty answer")
        # active_agent is the agent's name (``marketing``, ``group_chat``); the graph's edges
        # are keyed by node names (``specialist_marketing``).
        if attempts == 0 and active:
            next_node, status = node_name(active), "retried"
        elif active != self.default_agent:
            next_node, status = node_name(self.default_agent), "fallback"
            notes.append(f"falling back to {self.default_agent}")
        else:
            next_node, status = None, "failed"
        return {
            "review": {
                **review,
                "status": status,
                "attempts": attempts + 1,
                "notes": notes,
                "next": next_node,
            }
        }


class AfterReview:
    """Back to an agent when review asked for it; to ``approve`` when the route needs a human;
    otherwise on to ``remember``.

    ``memory``: on the way to ``remember`` (the answer is final), the episode is embedded ahead
    (:meth:`~brainstack.memory.gateway.MemoryGateway.prefetch_episode`) if the agent's answer did
    not already start it (see :func:`~brainstack.graphs.factory.embedding_ahead`): after a
    failed review, or on a route a human approves whose review failed.
    """

    def __init__(self, approval_routes: Iterable[str] = (), memory: MemoryGateway | None = None) -> None:
        self.approval_routes = set(approval_routes)
        self.memory = memory

    def __call__(self, state: RouterState) -> str:
        review = state.get("review") or {}
        if review.get("next"):
            return str(review["next"])
        target = (state.get("route") or {}).get("target")
        if target in self.approval_routes and review.get("status") != "failed":
            return "approve"
        if self.memory is not None:
            self.memory.prefetch_episode(dict(state))
        return "remember"


after_review = AfterReview()


def start_run(
    node: Any,
    provider_name: str,
    max_task_chars: int,
    history: tuple[int, int] | None = None,
    targets: Sequence[str] = (),
) -> Any:
    """Wrap the graph's first node so that every run starts clean, whoever starts it.

    A run's input is only ``task`` (and optionally ``user_id``, ``requested_agent``), from
    :class:`~brainstack.Runtime` and from LangGraph Studio alike. The previous run's values on the
    thread (answer, transcript, usage, timings …) are reset here and the task joins the thread's
    conversation, so the node sees, and the checkpoint stores, only this run.

    ``history`` (``settings.history_messages``, ``settings.history_token_budget``), for a graph
    without memory: there is no recall to report how many earlier messages the agents see, so
    this node does (``RunResult.memory.history_messages``).

    ``targets`` (the graph's agents and ``group_chat``): a ``requested_agent`` that is none of
    them is refused here, before the task joins the conversation. Refused in the route node, after
    this one, it left the task in the thread unanswered (QA): the next task marked it "not
    answered", as if a run had stopped.
    """
    import functools

    @functools.wraps(node)
    async def first(state: RouterState) -> dict[str, Any]:
        from langgraph.config import get_config

        from brainstack.errors import InvalidTaskError
        from brainstack.runtime import _check_id

        task = InvalidTaskError.check(state.get("task"), max_task_chars)
        # checked here too: a LangGraph server passes the input as it came
        user_id = _check_id("user_id", state.get("user_id") or "default")
        configurable = get_config().get("configurable", {})
        if _answered(state, task) and "task" not in await _input_channels(configurable):
            raise InvalidTaskError(
                "The input has no task: pass the question or instruction to run as 'task' (without "
                "one, the thread's previous task would run again)."
            )
        requested = state.get("requested_agent")
        if requested and targets and requested not in targets:
            if "requested_agent" in await _input_channels(configurable, unknown={"requested_agent"}):
                from brainstack.errors import UnknownAgentError

                raise UnknownAgentError.naming(requested, targets)
            requested = None  # left by an earlier input that was refused: this one did not ask
        fresh: dict[str, Any] = {
            "task": task,
            "user_id": user_id,
            "route": None,
            "active_agent": "",
            "answer": "",
            "speakers": [],
            "transcript": [],
            "tool_calls": [],
            "usage": {},
            "timings": {},
            "review": {},
            "model": provider_name,
            "thread_id": str(configurable.get("thread_id") or state.get("thread_id") or ""),
            "memory": {},
            "remembered": {},
            "approval": {},
            "requested_agent": requested,
        }
        # A value already in place is not written again (it would only grow the checkpoint); every
        # other key is, so each thread's state has the same keys (LangGraph server clients read them).
        stored: Mapping[str, Any] = state
        fresh = {key: value for key, value in fresh.items() if key not in stored or stored[key] != value}
        messages = list(state.get("messages") or [])
        last = messages[-1] if messages else None
        if not (last is not None and last.type == "human" and last.content == task):
            # (a re-run of this step from its checkpoint already has the task as the last message)
            human = HumanMessage(task)
            marks = [*_not_adopted(state, messages), *_not_answered(state, messages)]
            fresh["messages"] = [*marks, human]
            if marks:  # what the checkpoint will hold (a mark may replace a message, by id)
                merged: Any = add_messages(list[Any](messages), fresh["messages"])
                messages = list(merged)
            else:
                messages = [*messages, human]
        if history is not None:
            from brainstack.memory.gateway import recent_messages

            seen = len(recent_messages(messages[:-1], *history))
            fresh["memory"] = {"history_messages": seen} if seen else {}
            if stored.get("memory") == fresh["memory"]:
                del fresh["memory"]
        update = await node({**state, **fresh, "messages": messages})
        return {**fresh, **update}

    return first


def _answered(state: RouterState, task: str) -> bool:
    """Whether the thread's last exchange is ``task`` and its answer: the task in the state may be
    the previous run's, left there by an input without one."""
    messages = state.get("messages") or []
    return (
        len(messages) >= 2
        and messages[-1].type == "ai"
        and messages[-2].type == "human"
        and messages[-2].content == task
    )


async def _input_channels(
    configurable: Mapping[str, Any], *, unknown: Collection[str] = frozenset({"task"})
) -> Collection[str]:
    """The state keys this run's input wrote. A LangGraph server (Studio) passes an input as it
    came, and the thread's state keeps the previous run's values: an input without a task ran the
    previous one again (QA), and one without ``requested_agent`` kept an earlier, refused one. The
    run's input checkpoint holds what the input wrote; it is read only when a value is in doubt
    (see :func:`_answered`). LangGraph's internals: when they cannot be read, ``unknown`` (the
    run goes on as before)."""
    saver = configurable.get("__pregel_checkpointer")
    checkpoint_id = (configurable.get("checkpoint_map") or {}).get("")
    thread_id = configurable.get("thread_id")
    if saver is None or not checkpoint_id or not thread_id:
        return unknown
    try:
        here = await saver.aget_tuple(
            {"configurable": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": checkpoint_id}}
        )
        parent = await saver.aget_tuple(here.parent_config) if here and here.parent_config else None
    except Exception:
        return unknown
    if parent is None or (parent.metadata or {}).get("source") != "input":
        return unknown
    return {channel for _, channel, _ in parent.pending_writes or ()}


NOT_ADOPTED = (
    "Not adopted: a new task was sent on this thread before a reviewer approved this answer. "
    "The proposed answer is kept in the thread's history."
)


def _not_adopted(state: RouterState, messages: list[AnyMessage]) -> list[AnyMessage]:
    """When the thread's previous answer still waits for approval, the message that replaces it
    in the conversation (``[]`` otherwise).

    :class:`~brainstack.Runtime` refuses a new task on such a thread, but a LangGraph server
    (Studio) starts it and drops the pending approval: the unapproved answer stayed in the
    conversation as if accepted, and later runs took it as the thread's history (QA). It is
    replaced as a rejection would replace it, and a warning says so."""
    review = state.get("review") or {}
    if review.get("approval") != "pending" or state.get("approval"):
        return []
    answered = [m for m in messages if m.type == "ai"]
    if not (answered and answered[-1].id):
        return []
    log.warning(
        "thread %s: a new task was sent while its last answer waited for approval; that answer "
        "is marked not adopted (continue a paused run with its approval decision instead)",
        state.get("thread_id") or "?",
    )
    return [AIMessage(NOT_ADOPTED, name=answered[-1].name, id=answered[-1].id)]


NOT_ANSWERED = (
    "Not answered: the run on this task stopped before it answered, and a new task was sent on "
    "this thread instead of continuing it."
)


NO_ANSWER = "Not answered: no agent produced an answer to this task."


def _not_answered(state: RouterState, messages: list[AnyMessage]) -> list[AnyMessage]:
    """When the thread's last message is a task that got no answer, the answer that says so
    (``[]`` otherwise).

    :class:`~brainstack.Runtime` refuses a new task on a thread whose run stopped before its
    answer, but a LangGraph server (Studio) starts it: a cancelled run's question stayed in the
    conversation unanswered, and the next run's agents read two questions in a row as one (QA).
    A run whose agents produced no answer (its review failed: the caller got a RunError) ended
    too, and gets :data:`NO_ANSWER`, without a warning."""
    if not messages or messages[-1].type != "human":
        return []
    if (state.get("review") or {}).get("status") == "failed":  # the run ended, without an answer
        return [AIMessage(NO_ANSWER)]
    log.warning(
        "thread %s: a new task was sent while the previous one had no answer (its run stopped); "
        "that task is marked not answered (continue a stopped run instead of sending a new task)",
        state.get("thread_id") or "?",
    )
    return [AIMessage(NOT_ANSWERED)]


class Approve:
    """Pause for a human: approve the answer, reject it, or replace it with an edit.

    The request (what is being decided) is LangGraph's interrupt value, so Studio shows it and
    resumes it the same way as ``run(thread_id=…, resume=…)``. An unreadable answer asks again.
    """

    def __call__(self, state: RouterState) -> dict[str, Any]:
        from langgraph.types import interrupt

        route = state.get("route") or {}
        proposed = state.get("answer", "")
        request: dict[str, Any] = {
            "type": "approval",
            "question": f"Approve the {route.get('target', 'agent')}'s answer?",
            "route": route.get("target"),
            "answer": proposed,
            "speakers": state.get("speakers", []),
            "thread_id": state.get("thread_id"),
            "options": RESUME_FORMS,
        }
        problem = ""
        while True:
            value = interrupt({**request, "problem": problem} if problem else request)
            try:
                status, text = parse_resume(value)
                break
            except ValueError as exc:
                problem = str(exc)
        approval = {"status": status, "proposed": proposed, "note": text}
        if status == "approved":
            return {"approval": approval}
        if status == "edited":
            answer = text
        else:
            reason = f": {text}" if text else ""
            answer = f"Rejected by the reviewer{reason}. The proposed answer was not adopted."
        update: dict[str, Any] = {"answer": answer, "approval": approval}
        answered = [m for m in state.get("messages", []) if m.type == "ai"]
        if answered and answered[-1].id:  # replace the proposed answer in the thread's conversation
            update["messages"] = [AIMessage(answer, name=answered[-1].name, id=answered[-1].id)]
        return update


class Recall:
    """Before routing: one :class:`~brainstack.results.MemoryRecall` from every memory layer."""

    def __init__(self, gateway: MemoryGateway | None) -> None:
        self.gateway = gateway

    async def __call__(self, state: RouterState) -> dict[str, Any]:
        from langgraph.config import get_stream_writer

        if self.gateway is None:
            return {"memory": {}}
        from brainstack.memory.gateway import recent_messages

        recall = await self.gateway.recall(
            state.get("user_id") or "default", state["thread_id"], state["task"]
        )
        payload = recall.model_dump()
        settings = self.gateway.settings  # the sensory buffer: what the agents will see of the thread
        earlier = state.get("messages", [])[:-1]
        payload["history_messages"] = len(
            recent_messages(earlier, settings.history_messages, settings.history_token_budget)
        )
        get_stream_writer()({"type": "memory_recalled", **payload})
        return {"memory": payload}


class Remember:
    """After review: write the episode, session facts, preferences and learned skills."""

    def __init__(self, gateway: MemoryGateway | None) -> None:
        self.gateway = gateway

    async def __call__(self, state: RouterState) -> dict[str, Any]:
        from langgraph.config import get_config, get_stream_writer

        if self.gateway is None:
            return {"remembered": {}}
        # This step's task id ("remember:<uuid>"): LangGraph derives it from the checkpoint the
        # step runs from, so a step run again after a crash has the same one and writes nothing twice.
        run = get_config().get("configurable", {}).get("checkpoint_ns") or None
        written = await self.gateway.remember(dict(state), state["thread_id"], run)
        payload = written.model_dump()
        get_stream_writer()({"type": "memory_written", **payload})
        return {"remembered": payload}


def _skill_checks(memory: dict[str, Any], answer: str) -> list[dict[str, Any]]:
    """Run the check steps of the skills recalled for this task against the answer."""
    outcomes = []
    for skill in memory.get("skills", []):
        for check in skill.get("checks", []):
            missing = [w for w in check.get("contains", []) if w.casefold() not in answer.casefold()]
            passed = not missing and len(answer) >= int(check.get("min_chars", 1))
            outcomes.append(
                {"skill": skill["name"], "check": check["text"], "passed": passed, "missing": missing}
            )
    return outcomes


def after_route(state: RouterState) -> str:
    route = state.get("route") or {}
    return node_name(route["target"])


def routing_text(task: str) -> str:
    """What the semantic router embeds for ``task``: the task without its preference sentences
    (they say how to answer, not what about)."""
    from brainstack.memory.gateway import without_preferences

    return without_preferences(task)
