"""The group chat: an AutoGen AgentChat SelectorGroupChat of CTO, CMO and CFO, as a LangGraph node."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from brainstack.graphs.state import RouterState, add_usage

if TYPE_CHECKING:
    from brainstack.agents.providers import ModelProvider
    from brainstack.config import GroupChatSpec, Settings

__all__ = ["GroupChat"]

TEAM_RULES = (
    "You are in a meeting with {others}. Keep each message under 120 words and add "
    "something new. When the team has reached its decision, state the final decision "
    "and end that message with the word {word}."
)


class GroupChat:
    """Runs one AutoGen team per task; transcript and decision go back into the state."""

    name = "group_chat"

    def __init__(self, spec: GroupChatSpec, provider: ModelProvider, settings: Settings) -> None:
        self.spec = spec
        self.provider = provider
        self.settings = settings

    def _build(self) -> tuple[Any, list[Any]]:
        from autogen_agentchat.agents import AssistantAgent
        from autogen_agentchat.conditions import FunctionalTermination, MaxMessageTermination
        from autogen_agentchat.teams import SelectorGroupChat

        spec = self.spec
        names = [role.name for role in spec.roles]
        clients = []
        agents: list[Any] = []
        for role in spec.roles:
            client = _counted(self.provider.autogen_client(role.model))
            clients.append(client)
            others = ", ".join(n for n in names if n != role.name)
            rules = TEAM_RULES.format(others=others, word=spec.termination_word)
            agents.append(
                AssistantAgent(
                    role.name,
                    model_client=client,
                    description=role.description,
                    system_message=f"{role.system_prompt}\n\n{rules}",
                )
            )
        selector = _counted(self.provider.autogen_client(spec.selector_model))
        clients.append(selector)

        def a_member_said_the_word(messages: Sequence[Any]) -> bool:
            # The word alone, not inside another ("DETERMINATE" ended the chat: autogen's
            # TextMentionTermination matches any substring, QA).
            return any(
                getattr(m, "source", None) in names
                and _says(str(getattr(m, "content", "")), spec.termination_word)
                for m in messages
            )

        termination = FunctionalTermination(a_member_said_the_word) | MaxMessageTermination(
            spec.max_rounds + 1  # +1: the task message counts
        )
        team = SelectorGroupChat(
            agents,
            model_client=selector,
            termination_condition=termination,
            selector_func=None if self.provider.can_classify else _in_turn(names),
        )
        return team, clients

    async def __call__(self, state: RouterState) -> dict[str, Any]:
        from autogen_agentchat.base import TaskResult
        from autogen_agentchat.messages import TextMessage
        from autogen_core import CancellationToken
        from langgraph.config import get_stream_writer

        write = get_stream_writer()
        team, clients = self._build()
        transcript: list[dict[str, str]] = []
        stop_reason = ""
        last_said_word = False  # of the last turn whole (a long one is cut in the transcript)
        token = CancellationToken()

        async def converse() -> None:
            nonlocal stop_reason, last_said_word
            async for item in team.run_stream(task=_brief(state, self.settings), cancellation_token=token):
                if isinstance(item, TaskResult):
                    stop_reason = item.stop_reason or ""
                elif isinstance(item, TextMessage) and item.source != "user":
                    last_said_word = _says(item.content, self.spec.termination_word)
                    content = _turn(item.content)
                    transcript.append({"speaker": item.source, "content": content})
                    write({"type": "group_chat_turn", "speaker": item.source, "content": content})

        _quiet_reported_failures()
        ours = _CHAT_FAILURES.set([])  # the chat's tasks (autogen's runtime too) start with it
        try:
            chat = asyncio.ensure_future(converse())
        finally:
            _CHAT_FAILURES.reset(ours)
        try:
            # Shielded: a cancelled run_stream waits in its `finally` until the team is idle, i.e.
            # the members go on calling the model to the end of the chat. The token stops them.
            await asyncio.shield(chat)
            usage = _usage(clients)
        except asyncio.CancelledError:
            token.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):  # the chat's end: not ours
                await chat
            raise
        except Exception as exc:
            # AutoGen hands a member's failure back as a RuntimeError holding the traceback's text:
            # the model's own error (what the client raised) says what happened, as a specialist's
            # does (HTTP 400 → ModelError, unreachable → ModelUnavailableError).
            failures = [c.brainstack_error for c in clients if c.brainstack_error is not None]
            if not failures:
                raise
            from brainstack.errors import unreadable_answer

            first = min(failures, key=lambda failure: failure[0])[1]
            # (an API error as translate() has it; an answer the client could not read names the endpoint)
            raise unreadable_answer(
                first, self.provider.endpoint, thread_id=state.get("thread_id") or None
            ) from exc
        finally:
            for client in clients:
                await client.close()
        word = self.spec.termination_word
        decision = _decision(transcript, word)
        # The team agreed when a member said the termination word (which is what ended the chat);
        # otherwise it ran out of rounds. Only an agreed chat counts as a success for skills.
        agreed = bool(transcript) and last_said_word
        if agreed:  # (autogen's "Functional termination condition met" says nothing to a reader)
            stop_reason = f"{transcript[-1]['speaker']} said {word}"
        if not agreed and decision:  # (no decision at all is an empty answer: review retries)
            decision += f"\n\n(The meeting ended without agreement: {stop_reason}.)"
        return {
            "answer": decision,
            "active_agent": self.name,
            "model": self.provider.name,  # (a failed run continued by another process may have another)
            "transcript": transcript,
            "speakers": [*state.get("speakers", []), *(t["speaker"] for t in transcript)],
            "usage": add_usage(state.get("usage") or {}, usage),
            "review": {**state.get("review", {}), "stop_reason": stop_reason, "agreed": agreed},
        }


_CHAT_FAILURES: contextvars.ContextVar[list[BaseException] | None] = contextvars.ContextVar(
    "brainstack_group_chat", default=None
)
"""In the tasks of a brainstack group chat, what its model calls raised (None elsewhere): what
:class:`_Reported` may drop."""


class _Reported(logging.Filter):
    """Drops autogen's "Error processing publish message" records that the run reports itself:
    handlers stopped by a cancelled chat (a run the user stopped is not an error), a member's
    failed model call (raised as the run's ModelError) and the containers' echo of that failure
    ("Unhandled message in agent container: …GroupChatError"). Their tracebacks were printed in
    full before the run's one-line error (QA), also for a model call that failed otherwise than
    with an API error (an answer that is not JSON). Only a brainstack chat's records: autogen teams
    of the host application's own, in the same process, log as they always do."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        failures = _CHAT_FAILURES.get()
        if error is None or failures is None:
            return True
        import openai

        return not (
            isinstance(error, asyncio.CancelledError | openai.APIError)
            or any(error is failure for failure in failures)
            or (isinstance(error, ValueError) and "GroupChatError" in str(error))
        )


def _quiet_reported_failures() -> None:
    logger = logging.getLogger("autogen_core")
    if not any(isinstance(f, _Reported) for f in logger.filters):
        logger.addFilter(_Reported())


def _in_turn(names: Sequence[str]) -> Any:
    """Speaker selection without a model (offline): each role in the agents file's order."""

    def select(messages: Sequence[Any]) -> str:
        spoken = [m.source for m in messages if getattr(m, "source", None) in names]
        return names[(names.index(spoken[-1]) + 1) % len(names)] if spoken else names[0]

    return select


def _brief(state: RouterState, settings: Settings) -> str:
    """The task for the team: the request, what memory recalled, and the recent conversation."""
    from brainstack.memory.gateway import recent_messages, render_memory
    from brainstack.results import MemoryRecall

    parts = [state["task"]]
    memory = render_memory(MemoryRecall(**(state.get("memory") or {})))
    if memory:
        parts.append(memory)
    earlier = recent_messages(
        state.get("messages", [])[:-1], min(settings.history_messages, 4), settings.history_token_budget
    )
    if earlier:
        lines = "\n".join(f"- {m.type}: {str(m.content)[:300]}" for m in earlier)
        parts.append(f"Earlier in this conversation:\n{lines}")
    return "\n\n".join(parts)


MAX_TURN_CHARS = 20_000
"""A turn's length in the transcript, as review cuts an answer: a member's 50,000 characters were
kept whole in the state and each checkpoint (QA)."""


def _turn(content: str) -> str:
    if len(content) <= MAX_TURN_CHARS:
        return content
    return content[:MAX_TURN_CHARS] + f" … (cut from {len(content)} characters)"


def _says(text: str, word: str) -> bool:
    """Whether ``text`` holds ``word`` as a word of its own (not "DETERMINATE" for "TERMINATE")."""
    return _word_pattern(word).search(text) is not None


@functools.lru_cache(maxsize=16)
def _word_pattern(word: str) -> re.Pattern[str]:
    """``word`` on its own, with the spaces before it and a full stop or "!" after it (removed
    from the decision: "… limits. TERMINATE." is "… limits.")."""
    return re.compile(rf"\s*(?<!\w){re.escape(word)}(?!\w)[.!]*")


def _decision(transcript: list[dict[str, str]], word: str) -> str:
    """The team's decision: the last turn that says something besides the termination word, with
    its speaker. A member often says the word alone after the decision (autogen's convention):
    that turn was taken as the decision, found empty, and the whole meeting ran again (QA)."""
    pattern = _word_pattern(word)
    for turn in reversed(transcript):
        text = pattern.sub("", turn["content"]).strip()
        if not re.search(r"\w", text):  # nothing but the word and punctuation
            continue
        speaker = turn["speaker"]
        # (a member that names itself first, as models often do, is not named twice: "CFO: CFO …")
        named = re.match(rf"\W*{re.escape(speaker)}(?!\w)", text) is not None
        return text if named else f"{speaker}: {text}"
    return ""


def _counted(client: Any) -> Any:
    """Count the model calls an autogen client makes (its usage totals only count tokens)."""
    create = client.create
    client.brainstack_calls = 0
    client.brainstack_error = None  # the first exception a call raised (GroupChat reports it)

    async def counting_create(*args: Any, **kwargs: Any) -> Any:
        client.brainstack_calls += 1
        try:
            return await create(*args, **kwargs)
        except Exception as exc:
            if client.brainstack_error is None:
                client.brainstack_error = (time.monotonic_ns(), exc)
            failures = _CHAT_FAILURES.get()
            if failures is not None:
                failures.append(exc)
            raise

    client.create = counting_create
    return client


def _usage(clients: list[Any]) -> dict[str, int]:
    prompt = sum(c.total_usage().prompt_tokens for c in clients)
    completion = sum(c.total_usage().completion_tokens for c in clients)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "model_calls": sum(c.brainstack_calls for c in clients),
    }
