"""A specialist: one tool-calling agent, as a LangGraph node."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from brainstack.errors import BackendError
from brainstack.graphs.state import RouterState, add_usage
from brainstack.tools import get_tools

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

    from brainstack.agents.providers import ModelProvider
    from brainstack.config import AgentSpec, Settings
    from brainstack.memory.gateway import MemoryGateway

__all__ = ["Specialist", "usage_of"]


def usage_of(message: BaseMessage) -> dict[str, int]:
    """Token usage of one LangChain model reply, as a usage delta."""
    meta = getattr(message, "usage_metadata", None) or {}
    return {
        "prompt_tokens": int(meta.get("input_tokens", 0)),
        "completion_tokens": int(meta.get("output_tokens", 0)),
        "total_tokens": int(meta.get("total_tokens", 0)),
        "model_calls": 1,
    }


async def ask(model: Any, messages: list[Any], provider: ModelProvider, thread_id: str | None) -> Any:
    """``model.ainvoke(messages)``; an answer the client could not read is a ModelError that
    names the endpoint (:func:`~brainstack.errors.unreadable_answer`)."""
    try:
        return await model.ainvoke(messages)
    except (ValueError, LookupError, TypeError, AttributeError) as exc:
        from brainstack.errors import unreadable_answer

        raise unreadable_answer(exc, provider.endpoint, thread_id=thread_id) from exc


def _text_of(content: Any) -> str:
    """A reply's text: a string as it is, a list of content parts as their text joined (it was
    their JSON dump, brackets and all, QA)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p if isinstance(p, str) else str(p.get("text", "")) for p in content if isinstance(p, str | dict)
        )
    return json.dumps(content)


class Specialist:
    """Answers a task with its system prompt, the thread's history and its tools."""

    def __init__(
        self,
        name: str,
        spec: AgentSpec,
        provider: ModelProvider,
        settings: Settings,
        memory: MemoryGateway | None = None,
    ) -> None:
        """``memory``: the runtime's memory gateway, for the tools that read it (without it, an
        agent has none of them: see :data:`~brainstack.tools.MEMORY_TOOLS`)."""
        self.name = name
        self.spec = spec
        self.settings = settings
        self.tools = {tool.name: tool for tool in get_tools(spec.tools, memory=memory)}
        self._provider = provider
        self._model: Runnable[Any, BaseMessage] | None = None

    @property
    def model(self) -> Runnable[Any, BaseMessage]:
        """The chat model with this agent's tools bound, built when the agent first runs."""
        if self._model is None:
            model = self._provider.chat_model(self.spec.model)
            tools = list(self.tools.values()) if self._provider.can_call_tools else []
            self._model = model.bind_tools(tools) if tools else model
        return self._model

    def prompt(self, state: RouterState) -> list[BaseMessage]:
        """System prompt (+ recalled memory), the sensory buffer of the thread, then the task."""
        from brainstack.memory.gateway import recent_messages, render_memory
        from brainstack.results import MemoryRecall

        history = recent_messages(
            state.get("messages", [])[:-1], self.settings.history_messages, self.settings.history_token_budget
        )
        system = self.spec.system_prompt
        memory = render_memory(MemoryRecall(**(state.get("memory") or {})))
        if memory:
            system = f"{system}\n\n{memory}"
        return [SystemMessage(system), *history, HumanMessage(state["task"])]

    async def __call__(self, state: RouterState) -> dict[str, Any]:
        from langgraph.config import get_stream_writer

        write = get_stream_writer()
        messages = self.prompt(state)
        usage: dict[str, int] = {}
        records: list[dict[str, Any]] = []
        reply: BaseMessage = AIMessage("")
        for _ in range(self.settings.max_tool_rounds + 1):
            reply = await ask(self.model, messages, self._provider, state.get("thread_id") or None)
            usage = add_usage(usage, usage_of(reply))
            messages.append(reply)
            calls = getattr(reply, "tool_calls", None) or []
            # A call whose arguments are not JSON is told so, to call again: it was dropped
            # unanswered, and the agent's empty answer sent the task back (QA).
            invalid = getattr(reply, "invalid_tool_calls", None) or []
            if not (calls or invalid):
                break
            for bad in invalid:
                name = bad.get("name") or "the tool"
                problem = f"error: the arguments {bad.get('args')!r} are not a JSON object; call {name} again"
                messages.append(
                    ToolMessage(problem, tool_call_id=bad.get("id") or "", name=bad.get("name") or "")
                )
            for call in calls:
                result = await self._call_tool(call["name"], call["args"])
                records.append(
                    {"agent": self.name, "tool": call["name"], "arguments": call["args"], "result": result}
                )
                write({"type": "tool_call", **records[-1]})
                messages.append(ToolMessage(result, tool_call_id=call["id"], name=call["name"]))
        answer = _text_of(reply.content)
        if getattr(reply, "tool_calls", None) or getattr(reply, "invalid_tool_calls", None):
            answer = ""  # ran out of tool rounds without a final answer; review decides
        write({"type": "agent_message", "agent": self.name, "content": answer})
        update: dict[str, Any] = {
            "answer": answer,
            "active_agent": self.name,
            "model": self._provider.name,  # (a failed run continued by another process may have another)
            "speakers": [*state.get("speakers", []), self.name],
            "tool_calls": [*state.get("tool_calls", []), *records],
            "usage": add_usage(state.get("usage") or {}, usage),
        }
        if answer and (reply.response_metadata or {}).get("finish_reason") == "length":
            # (accepted as it is, but not silently: QA)
            review = dict(state.get("review") or {})
            note = f"{self.name}'s answer was cut off at the model's token limit"
            update["review"] = {**review, "notes": [*review.get("notes", []), note]}
        return update

    async def _call_tool(self, name: str, args: dict[str, Any]) -> str:
        tool = self.tools.get(name)
        if tool is None:  # the model named a tool this agent does not have
            return f"error: no tool named {name!r}; available: {sorted(self.tools)}"
        try:
            return str(await tool.ainvoke(args))
        except BackendError as exc:
            # The operator's remedy (the server's address, the command that starts it) is not the
            # model's to pass on to the user: it gets what failed, the operator the whole error.
            log.warning("%s's tool %s failed: %s", self.name, name, exc)
            return (
                f"error: {type(exc).__name__}: a service this tool needs is unavailable; answer "
                "without it, and say that this could not be looked up"
            )
        except Exception as exc:  # a tool's failure is the model's to handle, not the run's
            return f"error: {type(exc).__name__}: {exc}"
