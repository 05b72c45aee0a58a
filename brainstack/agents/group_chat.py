"""The group chat: an AutoGen AgentChat SelectorGroupChat of CTO, CMO and CFO, as a LangGraph node."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
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
        from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
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
        termination = TextMentionTermination(spec.termination_word, sources=names) | (
            MaxMessageTermination(spec.max_rounds + 1)  # +1: the task message counts
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
        token = CancellationToken()

        async def converse() -> None:
            nonlocal stop_reason
            async for item in team.run_stream(task=_brief(state, self.settings), cancellation_token=token):
                if isinstance(item, TaskResult):
                    stop_reason = item.stop_reason or ""
                elif isinstance(item, TextMessage) and item.source != "user":
                    transcript.append({"speaker": item.source, "content": item.content})
                    write({"type": "group_chat_turn", "speaker": item.source, "content": item.content})

        _quiet_reported_failures()
        ours = _IN_OUR_CHAT.set(True)  # the chat's tasks (autogen's runtime too) start with it
        try:
            chat = asyncio.ensure_future(converse())
        finally:
            _IN_OUR_CHAT.reset(ours)
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
            from brainstack.errors import translate

            first = min(failures, key=lambda failure: failure[0])[1]
            raise translate(first, thread_id=state.get("thread_id") or None) from exc
        finally:
            for client in clients:
                await client.close()
        decision = _decision(transcript, self.spec.termination_word)
        # The team agreed when a member said the termination word (which is what ended the chat);
        # otherwise it ran out of rounds. Only an agreed chat counts as a success for skills.
        agreed = bool(transcript) and self.spec.termination_word in transcript[-1]["content"]
        if not agreed and transcript:
            decision += f"\n\n(The meeting ended without agreement: {stop_reason}.)"
        return {
            "answer": decision,
            "active_agent": self.name,
            "transcript": transcript,
            "speakers": [*state.get("speakers", []), *(t["speaker"] for t in transcript)],
            "usage": add_usage(state.get("usage") or {}, usage),
            "review": {**state.get("review", {}), "stop_reason": stop_reason, "agreed": agreed},
        }


_IN_OUR_CHAT: contextvars.ContextVar[bool] = contextvars.ContextVar("brainstack_group_chat", default=False)
"""True in the tasks of a brainstack group chat: what :class:`_Reported` may drop."""


class _Reported(logging.Filter):
    """Drops autogen's "Error processing publish message" records that the run reports itself:
    handlers stopped by a cancelled chat (a run the user stopped is not an error), a member's
    failed model call (raised as the run's ModelError) and the containers' echo of that failure
    ("Unhandled message in agent container: …GroupChatError"). Their tracebacks were printed in
    full before the run's one-line error (QA). Only a brainstack chat's records: autogen teams of
    the host application's own, in the same process, log as they always do."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None or not _IN_OUR_CHAT.get():
            return True
        import openai

        return not (
            isinstance(error, asyncio.CancelledError | openai.APIError)
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


def _decision(transcript: list[dict[str, str]], word: str) -> str:
    if not transcript:
        return ""
    text = transcript[-1]["content"].replace(word, "").strip()
    return f"{transcript[-1]['speaker']}: {text}" if text else ""


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
