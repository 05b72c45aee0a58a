"""The replay harness itself: strict ordering, clear failures, transport injection, record mode."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from brainstack import ConfigurationError, ModelUnavailableError, Runtime, Settings
from brainstack.testing import Cassette, Interaction, ReplayError, replay, replay_settings, summarize_request

ROOT = Path(__file__).parent / "cassettes"
TASK = "How can we improve the conversion rate of our landing page?"


@pytest.fixture
def runtime(tmp_path, cache_dir, embedder):
    return Runtime(replay_settings(tmp_path / "home", cache_dir=cache_dir), embedder=embedder)


def write(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_unexpected_request_fails_and_shows_the_request(runtime, tmp_path):
    cassette = write(
        tmp_path / "c.yaml",
        {"interactions": [{"match": {"last_user": "something else"}, "response": {"content": "x"}}]},
    )
    with pytest.raises(ReplayError) as caught, replay(cassette):
        runtime.run(TASK)
    report = str(caught.value)
    assert "request #1 does not match interactions[0]" in report
    assert "last_user" in report and "does not contain 'something else'" in report
    assert TASK in report  # the request itself is shown
    assert "path: /v1/chat/completions" in report
    # the run saw a 400, not a hang or a retry loop; said in one line, not as a chain of
    # tracebacks above the report (436 lines of pytest output, QA)
    assert "(the code under test then raised ModelError: The model endpoint rejected the request" in report
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "No model request reached the cassette" not in report  # one did, and did not match


def test_request_past_the_end_of_the_cassette_fails(runtime, tmp_path):
    cassette = write(tmp_path / "empty.yaml", {"interactions": []})
    with pytest.raises(ReplayError, match="no interaction left"), replay(cassette):
        runtime.run(TASK)


def test_unplayed_response_fails(runtime, tmp_path):
    document = yaml.safe_load((ROOT / "semantic_route.yaml").read_text())
    document["interactions"].append({"match": {"system": "finance"}, "response": {"content": "never asked"}})
    cassette = write(tmp_path / "extra.yaml", document)
    never = (
        r"1 response\(s\) .* never requested: interactions\[1\]\n  \[1\] match: \{\"system\": \"finance\"\}$"
    )
    with pytest.raises(ReplayError, match=never), replay(cassette):
        runtime.run(TASK)


def test_a_runtime_that_made_no_model_call_is_told_why(tmp_path, cache_dir, embedder):
    """QA: a runtime built without replay_settings() runs the offline model; the report gave
    only the unplayed indices."""
    offline = Runtime(
        Settings(home=tmp_path / "home", cache_dir=cache_dir, provider="offline"), embedder=embedder
    )
    with pytest.raises(ReplayError) as caught, replay(ROOT / "semantic_route.yaml"):
        offline.run(TASK)
    report = str(caught.value)
    assert "never requested: interactions[0]" in report
    assert "No model request reached the cassette: was the runtime built with replay_settings()" in report


def test_a_missing_cassette_names_its_absolute_path_and_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ReplayError) as caught:
        Cassette.load("cassettes/legal.yaml")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'cassettes' / 'legal.yaml'}: no such cassette")
    assert f"(a relative path, from {tmp_path})" in message and "Path(__file__).parent" in message


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"nope": []}, "expected a mapping with an 'interactions' list"),
        ({"interactions": [{"match": {}}]}, "needs a 'response' mapping"),
        ({"interactions": [{"match": {"usr": "x"}, "response": {}}]}, "unknown keys ['usr']"),
        ({"interactions": [{"response": {"text": "x"}}]}, "response: unknown keys ['text']"),
        ({"interactions": [{"response": {}, "times": 0}]}, "times: must be a positive integer"),
        # found by a QA pass: each one failed mid-run with a bare Python error, or was ignored
        ({"interactions": [{"response": {}, "times": True}]}, "interactions[0].times: must be a positive"),
        ({"interactions": [{"response": {}, "tiems": 3}]}, "interactions[0]: unknown keys ['tiems']"),
        (
            {"interactions": [{"match": "finance", "response": {}}]},
            "interactions[0].match: must be a mapping",
        ),
        (
            {"interactions": [{"match": [{"a": 1}], "response": {}}]},
            "interactions[0].match: must be a mapping",
        ),
        ({"interactions": [{"response": {"status": "abc"}}]}, "response.status: must be an HTTP status"),
        ({"interactions": [{"response": {"headers": ["a"]}}]}, "response.headers: must map header names"),
        ({"interactions": [{"response": {"content": ["a"]}}]}, "response.content: must be text, not list"),
        (
            {"interactions": [{"response": {"tool_calls": {"name": "x"}}}]},
            "response.tool_calls: must be a list",
        ),
        (
            {"interactions": [{"response": {"tool_calls": [{"arguments": {}}]}}]},
            "tool_calls[0]: needs a 'name'",
        ),
        (
            {"interactions": [{"response": {"tool_calls": [{"name": "calculator", "arguments": [1]}]}}]},
            "tool_calls[0].arguments: must be a mapping",
        ),
        ({"interactions": [{"response": {"usage": {"prompt_tokens": "lots"}}}]}, "response.usage: must map"),
    ],
)
def test_invalid_cassette_is_reported_with_its_path(tmp_path, document, message):
    path = write(tmp_path / "bad.yaml", document)
    with pytest.raises(ReplayError) as caught:
        Cassette.load(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_a_cassette_that_is_not_utf8_or_is_a_folder_is_named(tmp_path):
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes("interactions: [{response: {content: caf\xe9}}]".encode("latin-1"))
    with pytest.raises(ReplayError, match=f"{re.escape(str(binary))}: not UTF-8 text"):
        Cassette.load(binary)
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    with pytest.raises(ReplayError, match=f"{re.escape(str(folder))}: cannot read the cassette"):
        Cassette.load(folder)


def test_missing_cassette_says_how_to_record(tmp_path):
    with pytest.raises(ReplayError, match="BRAINSTACK_RECORD=1"):
        Cassette.load(tmp_path / "missing.yaml")


def test_transport_injection_without_respx(tmp_path, cache_dir, embedder):
    """The same cassette can be handed to Runtime(transport=...) directly."""
    cassette = Cassette.load(ROOT / "tool_call.yaml")
    runtime = Runtime(
        replay_settings(tmp_path, cache_dir=cache_dir), embedder=embedder, transport=cassette.transport()
    )
    result = runtime.run("What is 17.5% of 2340?")
    cassette.check()
    assert result.tool_calls[0].result == "409.5"
    assert len(cassette.played) == 2


async def test_a_streaming_client_replays_the_cassette_as_server_sent_events(tmp_path, cache_dir, embedder):
    """LangGraph's `messages` stream mode (Studio's chat view) makes langchain-openai stream: the
    cassette answered such a request with JSON, which the client read as no chunks (QA)."""
    from langgraph.checkpoint.memory import InMemorySaver

    cassette = Cassette.load(ROOT / "tool_call.yaml")
    runtime = Runtime(
        replay_settings(tmp_path, cache_dir=cache_dir), embedder=embedder, transport=cassette.transport()
    )
    try:
        graph = runtime.graph.compile(checkpointer=InMemorySaver())
        config = {"configurable": {"thread_id": "streamed"}}
        tokens = []
        async for message, meta in graph.astream(
            {"task": "What is 17.5% of 2340?"}, config, stream_mode="messages"
        ):
            if meta["langgraph_node"] == "specialist_finance" and message.type == "AIMessageChunk":
                tokens.append(message)
        cassette.check()
        assert all(request.get("stream") for request in cassette.played)
        call = tokens[0]
        for token in tokens[1:]:
            call += token
        assert [c["name"] for c in call.tool_calls] == ["calculator"]
        answer = [t.content for t in tokens if t.content]
        assert len(answer) > 1 and "".join(answer) == "17.5% of 2,340 is 409.5."
        state = await graph.aget_state(config)
        assert state.values["answer"] == "17.5% of 2,340 is 409.5."
    finally:
        runtime.close()


class _FakeOpenAI(BaseHTTPRequestHandler):
    """A real HTTP server speaking the chat-completions format, for record mode."""

    seen_auth: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen_auth.append(self.headers.get("Authorization", ""))
        task = body["messages"][-1]["content"]
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        reply = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {
                        "role": "assistant",
                        # (a server that echoes the key it got: the recording must not keep it)
                        "content": f"Recorded answer to: {task} (key {key})",
                    },
                }
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        }
        content_type = "application/json"
        data = json.dumps(reply).encode()
        if body.get("stream"):  # as OpenAI streams: chunks, then the usage chunk, then [DONE]
            content_type = "text/event-stream"
            head = {k: reply[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
            words = reply["choices"][0]["message"]["content"].split(" ")
            deltas = [{"role": "assistant", "content": ""}, *({"content": w + " "} for w in words[:-1])]
            chunks = [
                head | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                for delta in [*deltas, {"content": words[-1]}]
            ]
            chunks.append(head | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            chunks.append(head | {"choices": [], "usage": reply["usage"]})
            data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks).encode() + b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Set-Cookie", "session=secret-cookie")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_openai():
    """A local chat-completions server (:class:`_FakeOpenAI`) for record mode: its base URL."""
    _FakeOpenAI.seen_auth = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def test_record_mode_without_a_key_says_what_recording_needs(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINSTACK_RECORD", "1")
    with pytest.raises(ConfigurationError) as caught:
        replay_settings(tmp_path)
    message = str(caught.value)
    assert "BRAINSTACK_RECORD=1" in message and "OPENAI_API_KEY" in message
    assert "BRAINSTACK_PROVIDER" not in message  # the user set no provider: replay_settings did


def test_record_mode_against_a_closed_port_is_a_clear_model_error(
    tmp_path, cache_dir, embedder, monkeypatch, port_factory
):
    from brainstack import ModelUnavailableError

    closed = port_factory()  # free: nothing listens there
    monkeypatch.setenv("BRAINSTACK_RECORD", "1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-dummy")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed}/v1")
    path = tmp_path / "never.yaml"
    settings = replay_settings(tmp_path / "home", cache_dir=cache_dir, model_max_retries=0)
    unreachable = re.escape(f"Cannot reach the model endpoint at http://127.0.0.1:{closed}")
    with pytest.raises(ModelUnavailableError, match=unreachable), replay(path):
        Runtime(settings, embedder=embedder).run(TASK)
    assert not path.exists()  # a failed recording writes no cassette


def test_record_true_with_the_placeholder_key_sends_nothing_and_says_why(
    tmp_path, cache_dir, embedder, monkeypatch, fake_openai
):
    """replay(record=True) without BRAINSTACK_RECORD: replay_settings gave the placeholder key,
    which must never go to the real endpoint (nor into a cassette of 401s)."""
    monkeypatch.delenv("BRAINSTACK_RECORD", raising=False)
    settings = replay_settings(
        tmp_path / "home",
        cache_dir=cache_dir,
        openai_base_url=fake_openai,
        model_max_retries=0,
    )
    path = tmp_path / "never.yaml"
    refused = pytest.raises(ReplayError, match="placeholder key: make the settings inside the replay")
    with refused, replay(path, record=True):
        Runtime(settings, embedder=embedder).run(TASK)
    # Even when the block catches the run's error itself.
    refused = pytest.raises(ReplayError, match="placeholder key")
    with refused, replay(path, record=True), pytest.raises(ModelUnavailableError):
        Runtime(settings, embedder=embedder).run(TASK)
    assert _FakeOpenAI.seen_auth == []  # nothing reached the server
    assert not path.exists()


def test_recording_a_run_of_the_offline_model_keeps_the_cassette(tmp_path, cache_dir, embedder, monkeypatch):
    """A runtime with no endpoint runs the offline model: nothing goes through the recorder, and the
    hand-written cassette used to be replaced with an empty one while the test passed."""
    from brainstack import Settings

    monkeypatch.setenv("BRAINSTACK_RECORD", "1")
    path = tmp_path / "mine.yaml"
    path.write_bytes((ROOT / "tool_call.yaml").read_bytes())
    offline = Settings(home=tmp_path / "home", cache_dir=cache_dir, provider="offline")
    kept = pytest.raises(ReplayError, match="caught no model call, so the cassette is left as it was")
    with kept, replay(path):
        assert "409.5" in Runtime(offline, embedder=embedder).run("What is 17.5% of 2340?").answer
    assert path.read_bytes() == (ROOT / "tool_call.yaml").read_bytes()


def test_record_mode_writes_a_scrubbed_cassette_that_replays(tmp_path, cache_dir, embedder, fake_openai):
    key = "sk-live-0123456789abcdef"
    settings = replay_settings(
        tmp_path / "home",
        cache_dir=cache_dir,
        openai_api_key=key,
        openai_base_url=fake_openai,
    )
    path = tmp_path / "recorded.yaml"
    with replay(path, record=True, scenario="recorded against a local server"):
        recorded = Runtime(settings, embedder=embedder).run(TASK)
    assert _FakeOpenAI.seen_auth == [f"Bearer {key}"]  # the real request carried the real key
    text = path.read_text()
    assert key not in text and "secret-cookie" not in text and "Bearer" not in text
    assert "<scrubbed>" in text
    document = yaml.safe_load(text)
    assert document["scenario"] == "recorded against a local server"
    [interaction] = document["interactions"]
    assert interaction["match"]["last_user"] == TASK
    assert interaction["response"]["status"] == 200

    # Replaying the recording gives the same answer, with no server.
    settings = replay_settings(tmp_path / "home2", cache_dir=cache_dir)
    with replay(path):
        replayed = Runtime(settings, embedder=embedder).run(TASK)
    assert replayed.answer == recorded.answer.replace(key, "<scrubbed>")
    assert replayed.route == recorded.route


async def test_a_streamed_answer_is_recorded_as_the_completion_it_adds_up_to(
    tmp_path, cache_dir, embedder, fake_openai
):
    """A recording of a streaming client kept the event stream as one unreadable string that no
    replay could serve; it is now the completion, replayed to streaming and plain clients alike."""
    from langgraph.checkpoint.memory import InMemorySaver

    path = tmp_path / "streamed.yaml"
    settings = replay_settings(
        tmp_path / "home",
        cache_dir=cache_dir,
        openai_api_key="sk-live-0123456789abcdef",
        openai_base_url=fake_openai,
    )
    runtime = Runtime(settings, embedder=embedder)
    with replay(path, record=True):
        graph = runtime.graph.compile(checkpointer=InMemorySaver())
        config = {"configurable": {"thread_id": "recorded"}}
        async for _ in graph.astream({"task": TASK}, config, stream_mode="messages"):
            pass
        recorded = (await graph.aget_state(config)).values["answer"]
    runtime.close()
    assert recorded.startswith(f"Recorded answer to: {TASK}")
    [interaction] = yaml.safe_load(path.read_text())["interactions"]
    body = interaction["response"]["body"]
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == recorded.replace(
        "sk-live-0123456789abcdef", "<scrubbed>"
    )
    assert body["usage"]["total_tokens"] == 10

    replayed = Runtime(replay_settings(tmp_path / "home2", cache_dir=cache_dir), embedder=embedder)
    with replay(path):
        plain = replayed.run(TASK)
    assert plain.answer == body["choices"][0]["message"]["content"]
    assert plain.usage.total_tokens == 10
    replayed.close()


@pytest.mark.parametrize(
    ("key", "in_environment"),
    [
        ("azure0123456789abcdefSECRET", False),  # given to the settings, and not sk-…
        ("e", True),  # OPENAI_API_KEY=e: a placeholder a local server takes
    ],
)
def test_recording_scrubs_the_key_the_requests_carried_and_leaves_short_placeholders(
    tmp_path, cache_dir, embedder, monkeypatch, key, in_environment, fake_openai
):
    """QA: a key passed to replay_settings() stayed in the cassette (only sk-… and OPENAI_API_KEY
    were scrubbed), and the key "e" was replaced inside every word ("payroll-mod<scrubbed>l"), so
    the cassette no longer replayed."""
    monkeypatch.delenv("BRAINSTACK_OPENAI_API_KEY", raising=False)
    if in_environment:
        monkeypatch.setenv("OPENAI_API_KEY", key)
    else:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = tmp_path / "recorded.yaml"
    settings = replay_settings(
        tmp_path / "home",
        cache_dir=cache_dir,
        openai_api_key=key,
        openai_base_url=fake_openai,
        model="payroll-model-7b",
    )
    with replay(path, record=True):
        recorded = Runtime(settings, embedder=embedder).run(TASK)
    text = path.read_text()
    assert f"(key {key})" in recorded.answer  # the server echoed the key it was sent
    if len(key) >= 8:
        assert key not in text and "(key <scrubbed>)" in text
    else:
        assert "payroll-model-7b" in text and "<scrubbed>" not in text
    replayed = Runtime(
        replay_settings(tmp_path / "home2", cache_dir=cache_dir, model="payroll-model-7b"), embedder=embedder
    )
    with replay(path):
        assert replayed.run(TASK).answer == recorded.answer.replace(
            key, "<scrubbed>" if len(key) >= 8 else key
        )


def test_a_replay_does_not_depend_on_the_developers_environment(tmp_path, cache_dir, embedder, monkeypatch):
    """QA: BRAINSTACK_MODEL=gpt-4o or BRAINSTACK_EMBEDDINGS=openai in a developer's shell changed
    the requests, and every replayed test failed on a cassette recorded with the defaults."""
    monkeypatch.setenv("BRAINSTACK_MODEL", "gpt-4o")
    monkeypatch.setenv("BRAINSTACK_EMBEDDINGS", "openai")
    monkeypatch.setenv("BRAINSTACK_ROUTER_THRESHOLD", "0.99")  # every route would go to the model
    monkeypatch.setenv("BRAINSTACK_MEMORY", "0")
    monkeypatch.setenv("BRAINSTACK_SQLITE_SYNCHRONOUS", "normal")  # (how the machine runs: kept)
    monkeypatch.setenv("BRAINSTACK_REDIS_URL", "redis://127.0.0.1:6379/15")  # (where state lives: kept)
    settings = replay_settings(tmp_path, cache_dir=cache_dir)
    assert (settings.model, settings.embeddings, settings.router_threshold) == ("gpt-4o-mini", "local", 0.32)
    assert settings.memory and settings.sqlite_synchronous == "normal"
    assert settings.redis_url == "redis://127.0.0.1:6379/15"
    settings = replay_settings(tmp_path, cache_dir=cache_dir, redis_url=None)
    with replay(ROOT / "semantic_route.yaml"):
        result = Runtime(settings, embedder=embedder).run(TASK)
    assert result.route.decided_by == "semantic" and result.answer.startswith("Cut the form")
    assert replay_settings(tmp_path, model="gpt-4o").model == "gpt-4o"  # what the test asks for


def test_settings_made_inside_a_record_true_block_record_with_the_real_key(
    tmp_path, cache_dir, embedder, monkeypatch, fake_openai
):
    """QA: replay(path, record=True) without BRAINSTACK_RECORD left replay_settings() on the
    placeholder key even when made inside the block, so every such recording was refused."""
    monkeypatch.delenv("BRAINSTACK_RECORD", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-0123456789abcdef")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai)
    path = tmp_path / "recorded.yaml"
    with replay(path, record=True):
        recorded = Runtime(replay_settings(tmp_path / "home", cache_dir=cache_dir), embedder=embedder).run(
            TASK
        )
    assert recorded.answer.startswith(f"Recorded answer to: {TASK}")
    assert len(yaml.safe_load(path.read_text())["interactions"]) == 1
    assert replay_settings(tmp_path / "after").openai_api_key.get_secret_value() != "sk-live-0123456789abcdef"


@pytest.mark.parametrize("result", ["409.5", '{"sku": "A-1", "price": 12.5}\nline2 \\ done'])
def test_a_recorded_request_after_a_tool_call_matches_on_the_tools_result(result):
    """QA: the request after a tool call was recorded with the same match as the one before it,
    so a changed calculator result replayed green."""
    import httpx2

    from brainstack.testing.cassette import interactions_from_calls

    url = "https://api.openai.com/v1/chat/completions"
    asked = [
        {"role": "system", "content": "You are the finance agent."},
        {"role": "user", "content": "17.5% of 2340?"},
    ]
    called = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "calculator", "arguments": "{}"}}
        ],
    }
    calls = [
        (httpx2.Request("POST", url, json={"model": "m", "messages": asked}), httpx2.Response(200, json={})),
        (
            httpx2.Request(
                "POST",
                url,
                json={
                    "model": "m",
                    "messages": [*asked, called, {"role": "tool", "tool_call_id": "c1", "content": result}],
                },
            ),
            httpx2.Response(200, json={}),
        ),
    ]
    first, second = interactions_from_calls(calls, [])
    assert "contains" not in first["match"]
    assert second["match"]["contains"] == [result]
    # it matches the request it was recorded from (a result with quotes, a newline or a backslash
    # did not: the needle was looked up in the messages' JSON dump, which escapes them; review)
    assert Interaction(second["match"], {}, 1, 1).mismatches(summarize_request(calls[1][0])) == []
    changed = summarize_request(
        httpx2.Request(
            "POST", url, json={"model": "m", "messages": [*asked, called, {"role": "tool", "content": "410"}]}
        )
    )
    assert Interaction(second["match"], {}, 1, 1).mismatches(changed) == [f"no message contains {result!r}"]
