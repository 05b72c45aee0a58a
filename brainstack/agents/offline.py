"""The offline model: a deterministic stand-in that speaks the OpenAI wire format.

It runs in process behind an ``httpx2.MockTransport``, so the real
langchain-openai and AutoGen clients, the graph, the tools and the group chat
all run exactly as they do against a real endpoint. It does not pretend to be
a language model: every answer says it is offline and is assembled only from
what the request carries — the task, the agent's role, the thread's earlier
messages and tool results. It calls the calculator when a task contains
arithmetic, so tool calling is exercised too. It refuses structured-output
(classification) requests: routing without a model is left to the semantic
router and the fallback.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Sequence
from typing import Any

from brainstack.agents.sse import event_stream, wants_stream

__all__ = ["OFFLINE_MODEL_NAME", "OfflineModel"]

OFFLINE_MODEL_NAME = "brainstack-offline"
# A whole number: never the "80" of "80k" or the "2" of "v2" (that would answer another question),
# and never the tail of "1,200" (a match that failed at the "1" fails there too).
_NUMBER = r"(?<![\w.])(?<!\d,)\d[\d,]*(?:\.\d+)?(?!\w|\.\d)"
# Searched in the task with its whitespace collapsed to single spaces. The lookbehinds keep a match
# from starting inside a run of "(", "-" or digits that an earlier start already scanned: without
# them `finditer` rescans the run from every position, quadratic on a long run.
_ARITHMETIC = re.compile(
    rf"(?<![-(])(?<![-(] )(?:[-(] ?)*{_NUMBER} ?%? ?(?:(?:[-+*/×÷^]|\*\*|//|% ?of) ?(?:[(] ?)*"
    rf"{_NUMBER} ?%? ?\)* ?)+",
    re.IGNORECASE,
)
# What makes a candidate an arithmetic question rather than a date, a range or a count:
_SPACED_OPERATOR = re.compile(r"\s(?:[-+*/×÷^]|\*\*|//)\s")  # "2 + 2", "1,200,000 / 12"
_ARITHMETIC_ONLY = re.compile(r"%|[*×÷^]|//")  # never in dates or ranges: "17.5% of 80", "2^10", "2*21"
_ASKS_TO_COMPUTE = re.compile(
    r"\b(?:what(?:'s|\s+is|\s+are)|calculate|compute|evaluate|solve|how\s+much\s+is)\b|=",
    re.IGNORECASE,
)
# Years and their ranges ("2024-25", "2024-2025", "2024-05") and dates ("2024-05-01", "1/2/2024").
_DATE_OR_RANGE = re.compile(r"[12]\d{3}-(?:\d{2}|\d{4})|\d{1,4}([-/.])\d{1,2}\1\d{1,4}")
_ROLE = re.compile(r"you are (?:the |an? )?([^.:\n]{1,60})", re.IGNORECASE)


class OfflineModel:
    """Answers chat-completions requests deterministically from their content."""

    def __init__(self, *, termination_word: str = "TERMINATE", team: Sequence[str] = ()) -> None:
        self.termination_word = termination_word
        self.team = list(team)

    # The transport entry point -------------------------------------------------
    def handle(self, request: Any) -> Any:
        """``httpx2.MockTransport`` handler."""
        import httpx2

        body = json.loads(request.content or b"{}")
        if not request.url.path.endswith("/chat/completions"):
            return _error(
                httpx2, 404, f"the offline model serves only chat completions, not {request.url.path}"
            )
        if (body.get("response_format") or {}).get("type") == "json_schema":
            return _error(
                httpx2,
                400,
                "the offline model does not classify or produce structured output; "
                "configure OPENAI_API_KEY or OPENAI_BASE_URL for that",
            )
        message = self.reply(body.get("messages", []), body.get("tools") or [])
        completion = _completion(body.get("model", OFFLINE_MODEL_NAME), message, body)
        if wants_stream(body):  # (LangGraph's `messages` stream mode: Studio's chat view)
            return httpx2.Response(
                200, headers={"content-type": "text/event-stream"}, content=event_stream(completion, body)
            )
        return httpx2.Response(200, json=completion)

    # What it says ----------------------------------------------------------------
    def reply(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
        system = " ".join(_text(m) for m in messages if m.get("role") in ("system", "developer"))
        role = _role(system)
        last = messages[-1] if messages else {}
        if last.get("role") == "tool":
            return {"role": "assistant", "content": self._after_tool(role, messages)}
        users = [m for m in messages if m.get("role") == "user"]
        task = _text(users[-1]) if users else ""
        tool_names = {t.get("function", {}).get("name") for t in tools}
        expression = _find_arithmetic(task)
        if "calculator" in tool_names and expression:
            return {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_offline_{zlib.crc32(expression.encode()):08x}",
                        "type": "function",
                        "function": {
                            "name": "calculator",
                            "arguments": json.dumps({"expression": expression}),
                        },
                    }
                ],
            }
        if self.team and role.split()[0] in self.team:
            return {"role": "assistant", "content": self._team_turn(role.split()[0], users, system)}
        return {"role": "assistant", "content": self._answer(role, task, users[:-1], system)}

    def _answer(self, role: str, task: str, earlier: list[dict[str, Any]], system: str) -> str:
        system, memory = split_memory(system)
        lines = [f"[offline model, no LLM configured] {role.capitalize()} on: \u201c{_clip(task, 200)}\u201d"]
        if memory.preferences:
            lines.append(f"- Answering as you prefer: {'; '.join(memory.preferences)}")
        focus = _focus(system)
        if focus:
            lines.append(f"- What this agent weighs: {focus}")
        if earlier:
            lines.append(f"- Earlier in this thread: \u201c{_clip(_text(earlier[-1]), 120)}\u201d")
        if memory.summary():
            lines.append(f"- Recalled from memory: {memory.summary()}")
        lines.append("Set OPENAI_API_KEY (or OPENAI_BASE_URL) for a model-written answer.")
        return "\n".join(lines)

    def _after_tool(self, role: str, messages: list[dict[str, Any]]) -> str:
        results = []
        calls = {c["id"]: c for m in messages for c in (m.get("tool_calls") or [])}
        for m in messages:
            if m.get("role") == "tool":
                call = calls.get(m.get("tool_call_id", ""), {})
                args = json.loads(call.get("function", {}).get("arguments", "{}") or "{}")
                results.append(f"{args.get('expression', '?')} = {_text(m)}")
        return (
            f"[offline model, no LLM configured] {role.capitalize()} computed with the calculator: "
            + "; ".join(results)
        )

    def _team_turn(self, name: str, users: list[dict[str, Any]], system: str) -> str:
        task, memory = split_memory(_text(users[0]) if users else "")
        task = task.split("\n\nEarlier in this conversation:", 1)[0]
        spoken = {m.get("name") for m in users[1:]} | {name}
        brief = _focus(system) or "give my view"
        if all(member in spoken for member in self.team):
            views = [f"{m.get('name')} would {_brief_of(_text(m))}" for m in users[1:] if m.get("name")]
            views.append(f"{name} would {brief}")
            recalled = f" Recalled from memory: {memory.summary()}." if memory.summary() else ""
            if memory.preferences:
                recalled += f" Answering as you prefer: {'; '.join(memory.preferences)}."
            return (
                f"{name} (offline model) closing the discussion of \u201c{_clip(task, 120)}\u201d. "
                f"Perspectives on the table: {'; '.join(views)}.{recalled} Weighing them takes a language "
                f"model and none is configured, so the team makes no recommendation. {self.termination_word}"
            )
        return f"{name} (offline model) on \u201c{_clip(task, 120)}\u201d: my brief is to {brief}"


class RecalledMemory:
    """The parts of a prompt's memory section the offline model reports back."""

    def __init__(self) -> None:
        self.preferences: list[str] = []
        self.episodes: list[str] = []
        self.passages: list[str] = []
        self.procedures: list[str] = []

    def summary(self) -> str:
        parts = []
        if self.episodes:
            parts.append(
                f"{len(self.episodes)} earlier episode(s), latest \u201c{_clip(self.episodes[0], 100)}\u201d"
            )
        if self.passages:
            parts.append(
                f"{len(self.passages)} knowledge-base passage(s), first {_clip(self.passages[0], 100)}"
            )
        if self.procedures:
            parts.append("the procedure " + ", ".join(f"'{p}'" for p in self.procedures))
        return "; ".join(parts)


def split_memory(text: str) -> tuple[str, RecalledMemory]:
    """Separate the memory section (see ``brainstack.memory.gateway.render_memory``) from a prompt."""
    memory = RecalledMemory()
    header = "What brainstack remembers"
    if header not in text:
        return text, memory
    before, section = text.split(header, 1)
    section, _, after = section.partition("\n\nEarlier in this conversation:")
    rest = before.rstrip() + (f"\n\nEarlier in this conversation:{after}" if after else "")
    bucket: list[str] | None = None
    for line in section.splitlines()[1:]:
        if line.startswith("User preferences: "):
            memory.preferences = [p.strip() for p in line[18:].rstrip(".").split(";") if p.strip()]
            bucket = None
        elif line.startswith("Earlier episodes"):
            bucket = memory.episodes
        elif line.startswith("From the knowledge base"):
            bucket = memory.passages
        elif (found := re.match(r"Procedure '([^']+)'", line)) is not None:
            memory.procedures.append(found.group(1))
            bucket = None
        elif line.startswith("- ") and bucket is not None:
            bucket.append(line[2:])
        elif not line.startswith(("- ", "  ")) and not re.match(r"\d+\. ", line):
            bucket = None
    return rest, memory


def _brief_of(turn: str) -> str:
    marker = "my brief is to "
    return turn.split(marker, 1)[1].strip() if marker in turn else _clip(_first_line(turn), 90)


def _error(httpx2: Any, status: int, message: str) -> Any:
    return httpx2.Response(status, json={"error": {"message": message, "type": "offline_model"}})


def _completion(model: str, message: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    prompt = sum(len(_text(m).split()) for m in body.get("messages", []))
    completion = len((message.get("content") or "").split()) + 8 * len(message.get("tool_calls") or [])
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    return {
        "id": "chatcmpl-offline",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def _text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _role(system: str) -> str:
    match = _ROLE.search(system)
    return match.group(1).strip() if match else "assistant"


def _focus(system: str) -> str:
    """The sentence of the system prompt that says what the agent judges."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", system) if s.strip()]
    # (the team's rules follow a role's own prompt: "You are in a meeting … Keep each message …
    # When the team has reached its decision, …": never a member's brief)
    skip = ("you are", "work as", "keep each", "when the team")
    rest = [s for s in sentences[1:] if not s.lower().startswith(skip)]
    return _clip(rest[0].rstrip("."), 160).lower() if rest else ""


def _find_arithmetic(task: str) -> str | None:
    """The longest arithmetic expression the task asks about, if it asks about one.

    Numbers joined by an operator are not enough: "2024-2025", "2024-05-01" and "24/7"
    are not questions. An expression counts when an operator stands between spaces
    ("2 + 2"), when it uses a symbol only arithmetic uses (``%``, ``*``, ``^``, ...), or
    when the task asks for a computation ("what is 10-4", "calculate 3/4") and the
    expression is not a date or a year range.
    """
    asks = _ASKS_TO_COMPUTE.search(task) is not None
    task = " ".join(task.split())
    candidates = [
        text
        for text in (m.group(0).strip().rstrip(",") for m in _ARITHMETIC.finditer(task))
        if _SPACED_OPERATOR.search(text)
        or _ARITHMETIC_ONLY.search(text)
        or (asks and not _DATE_OR_RANGE.fullmatch(text.strip("()")))
    ]
    return max(candidates, key=len) if candidates else None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
