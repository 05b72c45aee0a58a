"""Replay fixtures ("cassettes"): OpenAI chat-completions requests to expect, responses to return.

A cassette is one YAML file per scenario. Interactions are played **in order**:
each request the code under test makes must match the next interaction; a
request that does not is answered with HTTP 400 and reported (with the request
itself) when the replay ends, and so is any interaction left unplayed::

    # tests/cassettes/llm_route.yaml
    scenario: the semantic router is unsure, the model picks the route
    interactions:
      - match:                          # every key is optional
          response_format: json_schema  # request.response_format.type
          last_user: "Tell me about"    # substring of the last user message
        response:
          content: '{"target": "marketing", "confidence": 0.8, "reason": "..."}'
      - match:
          system: "You are the marketing"   # substring of the system message
          tools: [calculator]               # these tools are offered
        response:
          tool_calls: [{name: calculator, arguments: {expression: "2 + 2"}}]
      - response: {status: 429, headers: {retry-after-ms: "1"}, body: {error: {message: slow down}}}
        times: 1                            # serve this interaction N times in a row

``response`` is either the shorthand above (``content``, ``tool_calls``,
``usage``, ``model``, ``finish_reason``) or a raw ``body`` with ``status`` and
``headers``.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from brainstack.agents.sse import completion_from_events, event_stream, is_event_stream, wants_stream

__all__ = ["Cassette", "Interaction", "ReplayError", "summarize_request"]

MATCH_KEYS = {"path", "method", "model", "last_user", "system", "contains", "response_format", "tools"}
RESPONSE_KEYS = {"status", "headers", "body", "content", "tool_calls", "usage", "model", "finish_reason"}
DEFAULT_PATH = "/chat/completions"


class ReplayError(AssertionError):
    """A replay went differently from its cassette (unexpected request, unplayed response, bad file)."""


INTERACTION_KEYS = {"match", "response", "times"}


def _check_interaction(where: str, raw: Any) -> None:
    """ReplayError naming the place (``path: interactions[i].response.usage``) of what in one
    interaction would otherwise fail mid-run, or be silently ignored."""
    if not isinstance(raw, dict) or not isinstance(raw.get("response"), dict):
        raise ReplayError(f"{where}: each interaction needs a 'response' mapping")
    if unknown := set(raw) - INTERACTION_KEYS:
        raise ReplayError(
            f"{where}: unknown keys {sorted(map(str, unknown))}; use {sorted(INTERACTION_KEYS)}"
        )
    match = raw.get("match") or {}
    if not isinstance(match, dict):
        raise ReplayError(f"{where}.match: must be a mapping of {sorted(MATCH_KEYS)}")
    if unknown := set(match) - MATCH_KEYS:
        raise ReplayError(
            f"{where}.match: unknown keys {sorted(map(str, unknown))}; use {sorted(MATCH_KEYS)}"
        )
    times = raw.get("times", 1)
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise ReplayError(f"{where}.times: must be a positive integer, not {times!r}")
    response = raw["response"]
    if unknown := set(response) - RESPONSE_KEYS:
        raise ReplayError(
            f"{where}.response: unknown keys {sorted(map(str, unknown))}; use {sorted(RESPONSE_KEYS)}"
        )
    here = f"{where}.response"
    status = response.get("status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ReplayError(f"{here}.status: must be an HTTP status (100-599), not {status!r}")
    headers = response.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str | int | float) for v in headers.values()):
        raise ReplayError(f"{here}.headers: must map header names to values")
    for key in ("content", "model", "finish_reason"):
        if response.get(key) is not None and not isinstance(response[key], str):
            raise ReplayError(f"{here}.{key}: must be text, not {type(response[key]).__name__}")
    calls = response.get("tool_calls") or []
    if not isinstance(calls, list):
        raise ReplayError(f"{here}.tool_calls: must be a list of {{name, arguments}}")
    for n, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"]:
            raise ReplayError(f"{here}.tool_calls[{n}]: needs a 'name' (the tool's) and 'arguments'")
        if not isinstance(call.get("arguments"), dict | str | None):
            raise ReplayError(f"{here}.tool_calls[{n}].arguments: must be a mapping (or its JSON text)")
    usage = response.get("usage") or {}
    if not isinstance(usage, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in usage.values()
    ):
        raise ReplayError(f"{here}.usage: must map prompt_tokens / completion_tokens to whole numbers")


@dataclass
class Interaction:
    match: dict[str, Any]
    response: dict[str, Any]
    times: int = 1
    index: int = 0

    def mismatches(self, request: dict[str, Any]) -> list[str]:
        """Why ``request`` (see :func:`summarize_request`) does not match; empty when it does."""
        problems = []
        want_path = self.match.get("path", DEFAULT_PATH)
        if not request["path"].endswith(want_path):
            problems.append(f"path {request['path']!r} does not end with {want_path!r}")
        if "method" in self.match and request["method"] != str(self.match["method"]).upper():
            problems.append(f"method {request['method']} is not {self.match['method']}")
        if "model" in self.match and request.get("model") != self.match["model"]:
            problems.append(f"model {request.get('model')!r} is not {self.match['model']!r}")
        for key in ("last_user", "system"):
            if (
                key in self.match
                and str(self.match[key]).casefold() not in (request.get(key) or "").casefold()
            ):
                problems.append(
                    f"{key} {_clip(request.get(key) or '')!r} does not contain {self.match[key]!r}"
                )
        if "contains" in self.match:
            messages = request.get("messages", [])
            # each message's text as it is (a recorded tool result with quotes or newlines is found
            # there, not in the JSON dump, which escapes them: review), and the dump too, for
            # needles written against it (a tool call's name)
            texts = [str(m.get("content", "")).casefold() for m in messages]
            texts.append(json.dumps(messages, ensure_ascii=False).casefold())
            for needle in _as_list(self.match["contains"]):
                if not any(str(needle).casefold() in text for text in texts):
                    problems.append(f"no message contains {needle!r}")
        if (
            "response_format" in self.match
            and request.get("response_format") != self.match["response_format"]
        ):
            problems.append(
                f"response_format {request.get('response_format')!r} is not {self.match['response_format']!r}"
            )
        if "tools" in self.match:
            missing = set(_as_list(self.match["tools"])) - set(request.get("tools") or [])
            if missing:
                problems.append(f"tools {request.get('tools')} lack {sorted(missing)}")
        return problems

    def build_response(self, request_model: str | None) -> tuple[int, dict[str, str], Any]:
        spec = self.response
        status = int(spec.get("status", 200))
        headers = {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}
        if "body" in spec:
            return status, headers, spec["body"]
        message: dict[str, Any] = {"role": "assistant", "content": spec.get("content")}
        calls = spec.get("tool_calls") or []
        if calls:
            message["tool_calls"] = [
                {
                    "id": call.get("id") or f"call_{self.index}_{n}",
                    "type": "function",
                    "function": {
                        "name": call["name"],
                        "arguments": call["arguments"]
                        if isinstance(call.get("arguments"), str)
                        else json.dumps(call.get("arguments") or {}),
                    },
                }
                for n, call in enumerate(calls)
            ]
        usage = spec.get("usage") or {}
        prompt, completion = int(usage.get("prompt_tokens", 10)), int(usage.get("completion_tokens", 5))
        body = {
            "id": f"chatcmpl-replay-{self.index}",
            "object": "chat.completion",
            "created": 0,
            "model": spec.get("model") or request_model or "replay",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": spec.get("finish_reason") or ("tool_calls" if calls else "stop"),
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
        return status, headers, body


@dataclass
class Cassette:
    """The interactions of one scenario, and what happened while replaying them."""

    path: Path
    interactions: list[Interaction] = field(default_factory=list)
    scenario: str = ""
    played: list[dict[str, Any]] = field(default_factory=list)
    """Summaries of the requests that were answered from the cassette, in order."""
    unexpected: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queue = [i for i in self.interactions for _ in range(i.times)]
        self._next = 0
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path) -> Cassette:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            where = "" if path.is_absolute() else f" (a relative path, from {Path.cwd()})"
            raise ReplayError(
                f"{path.absolute()}: no such cassette{where}. Check the path (a test can build it from "
                "Path(__file__).parent), or record it there with BRAINSTACK_RECORD=1."
            ) from None
        except yaml.YAMLError as exc:
            raise ReplayError(f"{path}: not valid YAML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ReplayError(f"{path}: not UTF-8 text (byte {exc.start + 1})") from None
        except OSError as exc:  # a folder, no permission
            raise ReplayError(f"{path}: cannot read the cassette: {exc.strerror or exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("interactions"), list):
            raise ReplayError(f"{path}: expected a mapping with an 'interactions' list")
        interactions = []
        for index, raw in enumerate(data["interactions"]):
            where = f"{path}: interactions[{index}]"
            _check_interaction(where, raw)
            interactions.append(
                Interaction(dict(raw.get("match") or {}), dict(raw["response"]), raw.get("times", 1), index)
            )
        return cls(path, interactions, str(data.get("scenario", "")))

    # -- serving ------------------------------------------------------------------------------

    def handle(self, request: Any) -> Any:
        """Answer one ``httpx2.Request`` (a MockTransport handler and a respx side effect)."""
        import httpx2

        summary = summarize_request(request)
        with self._lock:
            position = len(self.played) + len(self.unexpected)
            if self._next >= len(self._queue):
                problem = "the cassette has no interaction left"
                expected = None
            else:
                expected = self._queue[self._next]
                problems = expected.mismatches(summary)
                problem = "; ".join(problems)
                if not problems:
                    self._next += 1
                    self.played.append(summary)
                    status, headers, body = expected.build_response(summary.get("model"))
                    if (
                        status == 200
                        and summary.get("stream")
                        and isinstance(body, dict)
                        and "choices" in body
                    ):
                        headers = {**headers, "content-type": "text/event-stream"}
                        return httpx2.Response(status, headers=headers, content=event_stream(body, summary))
                    return httpx2.Response(status, headers=headers, json=body)
            where = f"interactions[{expected.index}]" if expected else "end of cassette"
            shown = {k: v for k, v in summary.items() if k != "system"}
            shown["messages"] = [
                m | {"content": _clip(m.get("content", ""), 300)} for m in summary["messages"]
            ]
            report = (
                f"request #{position + 1} does not match {where} of {self.path}: {problem}\n"
                f"the request was:\n{_indent(yaml.safe_dump(shown, sort_keys=False, allow_unicode=True))}"
            )
            self.unexpected.append(report)
        message = f"brainstack replay: unexpected request ({problem})"
        return httpx2.Response(400, json={"error": {"message": message, "type": "replay_mismatch"}})

    def transport(self) -> Any:
        """An ``httpx2.MockTransport`` serving this cassette (for ``Runtime(transport=...)``)."""
        import httpx2

        return httpx2.MockTransport(self.handle)

    @property
    def unplayed(self) -> list[Interaction]:
        seen: list[Interaction] = []
        for interaction in self._queue[self._next :]:
            if not any(interaction is s for s in seen):
                seen.append(interaction)
        return seen

    def check(self) -> None:
        """Raise :class:`ReplayError` if a request was unexpected or a response was left unplayed."""
        problems = list(self.unexpected)
        left = len(self._queue) - self._next
        if left:
            unplayed = self.unplayed
            indices = ", ".join(str(i.index) for i in unplayed)
            report = f"{left} response(s) of {self.path} were never requested: interactions[{indices}]"
            report += "".join(
                f"\n  [{i.index}] match: {json.dumps(i.match, ensure_ascii=False)}" for i in unplayed[:5]
            )
            if self._next == 0 and not self.unexpected:  # no request at all reached the cassette
                report += (
                    "\nNo model request reached the cassette: was the runtime built with "
                    "replay_settings() (it ran the offline model otherwise), inside the replay() block?"
                )
            problems.append(report)
        if problems:
            raise ReplayError("\n\n".join(problems))


def summarize_request(request: Any) -> dict[str, Any]:
    """The parts of an OpenAI request that cassettes match on (also what mismatch reports show)."""
    summary: dict[str, Any] = {"method": request.method, "path": request.url.path}
    try:
        body = json.loads(request.content or b"{}")
    except (ValueError, UnicodeDecodeError):
        body = {}
    if not isinstance(body, dict):
        return summary
    messages = body.get("messages") or []
    summary["model"] = body.get("model")
    system = [_content(m) for m in messages if m.get("role") in ("system", "developer")]
    users = [_content(m) for m in messages if m.get("role") == "user"]
    if system:
        summary["system"] = system[0]
    if users:
        summary["last_user"] = users[-1]
    if isinstance(body.get("response_format"), dict):
        summary["response_format"] = body["response_format"].get("type")
    if wants_stream(body):  # served as server-sent events (LangGraph's `messages` stream mode)
        summary["stream"] = True
        if isinstance(body.get("stream_options"), dict):
            summary["stream_options"] = body["stream_options"]
    tools = [t.get("function", {}).get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
    if tools:
        summary["tools"] = tools
    summary["messages"] = [  # always present: the report and `contains` use it
        {k: v for k, v in (("role", m.get("role")), ("name", m.get("name")), ("content", _content(m))) if v}
        | (
            {"tool_calls": [c.get("function", {}).get("name") for c in m["tool_calls"]]}
            if m.get("tool_calls")
            else {}
        )
        for m in messages
    ]
    return summary


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _indent(text: str) -> str:
    return "".join("    " + line for line in text.splitlines(keepends=True))


# -- recording ----------------------------------------------------------------------------------

_SECRET = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+[A-Za-z0-9_\-.]{8,})")


MIN_SECRET = 8
"""Shorter keys are placeholders ("local", "EMPTY", "ollama" for local servers) and are not
scrubbed: replacing them wherever they occur garbled the cassette ("payroll-mod<scrubbed>l" for
the key "e"), which then no longer replayed (QA)."""


def scrub(value: Any, secrets: list[str]) -> Any:
    """Replace API keys (``sk-…``, bearer tokens, and the given literal secrets of at least
    :data:`MIN_SECRET` characters) with ``<scrubbed>``."""
    if isinstance(value, str):
        for secret in secrets:
            if len(secret) >= MIN_SECRET:
                value = value.replace(secret, "<scrubbed>")
        return _SECRET.sub("<scrubbed>", value)
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    return value


def sent_credentials(request: Any) -> list[str]:
    """The credentials a request carried: its bearer token and ``api-key`` header (Azure). A key
    given to the settings rather than the environment was sent but not scrubbed (QA)."""
    found = []
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        found.append(token.strip())
    if request.headers.get("api-key"):
        found.append(request.headers["api-key"].strip())
    return found


def interactions_from_calls(calls: list[tuple[Any, Any]], secrets: list[str]) -> list[dict[str, Any]]:
    """Cassette interactions for recorded ``(request, response)`` pairs; credentials scrubbed:
    ``secrets`` and every credential a recorded request carried (:func:`sent_credentials`).

    Request headers are never written (that is where keys travel); bodies are scrubbed.
    """
    secrets = [*secrets, *(key for request, _ in calls for key in sent_credentials(request))]
    out = []
    for request, response in calls:
        summary = summarize_request(request)
        match: dict[str, Any] = {}
        if not summary["path"].endswith(DEFAULT_PATH):
            match["path"] = "/" + summary["path"].rstrip("/").rsplit("/v1/", 1)[-1].lstrip("/")
        for key in ("model", "response_format", "tools"):
            if summary.get(key):
                match[key] = summary[key]
        if summary.get("system"):
            match["system"] = _clip(summary["system"], 80).rstrip("\u2026")
        if summary.get("last_user"):
            match["last_user"] = _clip(summary["last_user"], 80).rstrip("\u2026")
        messages = summary.get("messages") or []  # (absent when the body is not a JSON object)
        last = messages[-1] if messages else {}
        if last.get("role") == "tool" and last.get("content"):
            # the request after a tool call differs from the one before only by the tool's result:
            # without it, a changed result replayed green (QA)
            match["contains"] = [_clip(last["content"], 80).rstrip("\u2026")]
        try:
            if is_event_stream(response.headers):  # kept as the completion the chunks add up to
                body = completion_from_events(response.text)
            else:
                body = json.loads(response.content or b"null")
        except ValueError:
            body = {"raw": response.text}
        headers = {
            k: v for k, v in response.headers.items() if k.lower() in ("retry-after", "retry-after-ms")
        }
        reply: dict[str, Any] = {"status": response.status_code, "body": body}
        if headers:
            reply["headers"] = headers
        out.append(scrub({"match": match, "response": reply}, secrets))
    return out


def write_cassette(path: Path, scenario: str, interactions: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"scenario": scenario or path.stem.replace("_", " "), "interactions": interactions}
    path.write_text(
        "# Recorded by brainstack.testing (credentials scrubbed).\n"
        "# Edit freely: the format is described in brainstack/testing/cassette.py\n"
        + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=110),
        encoding="utf-8",
    )
