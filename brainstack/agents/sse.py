"""Chat completions as server-sent events, and back.

A client that streams (``"stream": true``: langchain-openai under LangGraph's ``messages`` stream
mode, which LangGraph Studio's chat view uses) reads the answer as ``chat.completion.chunk``
events. The offline model and the replay harness hold whole completions, so they answer such a
request with :func:`event_stream`; the recorder keeps a streamed answer as the completion it adds
up to (:func:`completion_from_events`), so a cassette reads the same whichever way it was asked.
Before, both answered a streaming request with plain JSON, which the client read as no chunks
("No generations found in stream"): every specialist run in those stream modes failed (QA).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["completion_from_events", "event_stream", "is_event_stream", "wants_stream"]

# Pieces of a streamed answer: a word with the whitespace after it (leading whitespace on its own).
_PIECE = re.compile(r"\s+|\S+\s*")


def wants_stream(body: Any) -> bool:
    """Whether a request body asks for server-sent events."""
    return isinstance(body, dict) and body.get("stream") is True


def event_stream(completion: dict[str, Any], request: dict[str, Any]) -> bytes:
    """A ``chat.completion`` as the ``text/event-stream`` body a streaming server sends: a role
    chunk, the content word by word, each tool call whole, a finish chunk, the usage chunk when
    the request asked for it (``stream_options.include_usage``), then ``[DONE]``."""
    base = {
        "id": completion.get("id", "chatcmpl-stream"),
        "object": "chat.completion.chunk",
        "created": completion.get("created", 0),
        "model": completion.get("model", ""),
    }
    events: list[dict[str, Any]] = []

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> None:
        choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
        events.append(base | {"choices": [choice]})

    for choice in completion.get("choices") or []:
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        chunk(index, {"role": message.get("role", "assistant"), "content": ""})
        for piece in _PIECE.findall(message.get("content") or ""):
            chunk(index, {"content": piece})
        for n, call in enumerate(message.get("tool_calls") or []):
            chunk(index, {"tool_calls": [{"index": n} | call]})
        chunk(index, {}, choice.get("finish_reason") or "stop")
    if (request.get("stream_options") or {}).get("include_usage") and completion.get("usage"):
        events.append(base | {"choices": [], "usage": completion["usage"]})
    lines = [f"data: {json.dumps(event, ensure_ascii=False)}\n\n" for event in events]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


def is_event_stream(headers: Any) -> bool:
    """Whether a response's headers say it is server-sent events."""
    return "text/event-stream" in str(headers.get("content-type", "")).lower()


def completion_from_events(text: str) -> dict[str, Any]:
    """The ``chat.completion`` that a stream of chunks adds up to (content joined, tool calls
    assembled by index, the finish reason and the usage chunk kept).

    Raises ``ValueError`` for a body that holds no chunk."""
    choices: dict[int, dict[str, Any]] = {}
    calls: dict[int, dict[int, dict[str, Any]]] = {}
    head: dict[str, Any] = {}
    usage = None
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if not data or data == "[DONE]":
            continue
        event = json.loads(data)
        if not isinstance(event, dict):
            continue
        if not head:
            head = {key: event.get(key) for key in ("id", "created", "model")}
        usage = event.get("usage") or usage
        for part in event.get("choices") or []:
            index = part.get("index", 0)
            choice = choices.setdefault(
                index, {"index": index, "message": {"role": "assistant", "content": None}}
            )
            delta = part.get("delta") or {}
            message = choice["message"]
            if delta.get("role"):
                message["role"] = delta["role"]
            if delta.get("content"):
                message["content"] = (message["content"] or "") + delta["content"]
            for call in delta.get("tool_calls") or []:
                whole = calls.setdefault(index, {}).setdefault(
                    call.get("index", 0),
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                whole["id"] = call.get("id") or whole["id"]
                function = call.get("function") or {}
                whole["function"]["name"] += function.get("name") or ""
                whole["function"]["arguments"] += function.get("arguments") or ""
            if part.get("finish_reason"):
                choice["finish_reason"] = part["finish_reason"]
    if not choices and usage is None:
        raise ValueError("the body holds no chat.completion.chunk event")
    for index, by_position in calls.items():
        choices[index]["message"]["tool_calls"] = [by_position[n] for n in sorted(by_position)]
    completion: dict[str, Any] = {
        "id": head.get("id"),
        "object": "chat.completion",
        "created": head.get("created"),
        "model": head.get("model"),
        "choices": [choices[i] | {"finish_reason": choices[i].get("finish_reason")} for i in sorted(choices)],
    }
    if usage is not None:
        completion["usage"] = usage
    return completion
