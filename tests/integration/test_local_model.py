"""A real model over real HTTP: the ``local`` provider end to end.

llama.cpp's OpenAI-compatible server (xllamacpp) serves the packaged Gemma 3 270M on loopback;
langchain-openai (the specialists, structured output) and autogen (the group chat) reach it
through their ordinary HTTP stacks. The semantic router makes the routing decisions; the
model's answers are poor and only have to be well-formed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import httpx2
import pytest
from pydantic import BaseModel, Field

from brainstack import Runtime, Settings
from brainstack.agents.local import LocalModelServer, packaged_model_path
from brainstack.errors import ModelUnavailableError

pytestmark = pytest.mark.slow

MAX_TOKENS = 64  # short answers keep the module fast on two cores


@pytest.fixture(scope="module")
def runtime(
    tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, embedder, local_extra
) -> Iterator[Runtime]:
    """One runtime for the module, configured the way a user would: BRAINSTACK_PROVIDER=local."""
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith(("BRAINSTACK_", "OPENAI_")):
                env.delenv(name)
        env.setenv("BRAINSTACK_PROVIDER", "local")
        env.setenv("BRAINSTACK_MEMORY", "0")
        env.setenv("BRAINSTACK_HOME", str(tmp_path_factory.mktemp("local-model-home")))
        env.setenv("BRAINSTACK_CACHE_DIR", str(cache_dir))
        env.setenv("BRAINSTACK_LOCAL_MAX_TOKENS", str(MAX_TOKENS))
        env.setenv("BRAINSTACK_TEMPERATURE", "0")  # greedy: the same answers on every run
        settings = Settings.from_env()
    rt = Runtime(settings, embedder=embedder)
    yield rt
    rt.close()


def test_specialist_answers_through_langchain_over_http(runtime: Runtime) -> None:
    result = runtime.run("Our Python workers leak memory after every deploy; how do I find the leak?")
    assert result.route.target == "technical" and result.route.decided_by == "semantic"
    assert result.model == "local"
    assert result.answer.strip() and "[offline model" not in result.answer
    assert result.tool_calls == []  # the base model gets no tools
    usage = result.usage  # counted by the llama.cpp server, not estimated
    assert usage.model_calls == 1 and usage.prompt_tokens > 20
    assert 0 < usage.completion_tokens <= MAX_TOKENS  # the cap reached the server
    assert runtime.provider.local_server().base_url.startswith("http://127.0.0.1:")


def test_group_chat_runs_through_autogen_over_http(runtime: Runtime) -> None:
    result = runtime.run("Should we launch a freemium tier?")
    assert result.route.target == "group_chat" and result.route.decided_by == "semantic"
    assert result.model == "local"
    turns = result.transcript
    assert turns and all(turn.content.strip() for turn in turns)
    # the small model does not pick speakers: each role speaks in the agents file's order
    assert [turn.speaker for turn in turns] == ["CTO", "CMO", "CFO", "CTO", "CMO", "CFO"][: len(turns)]
    assert result.answer.startswith(f"{turns[-1].speaker}: ")
    usage = result.usage
    assert usage.model_calls == len(turns)  # one call per turn, none to select speakers
    assert usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= MAX_TOKENS * len(turns)


def route_schema(targets: list[str]) -> dict[str, object]:
    """The Route node's classifier schema, with a bound on the reason (the model rambles)."""
    return {
        "title": "RouteChoice",
        "description": "Which agent should handle the request.",
        "type": "object",
        "properties": {
            "target": {"type": "string", "enum": targets},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "reason": {"type": "string", "maxLength": 80},
        },
        "required": ["target", "confidence", "reason"],
        "additionalProperties": False,
    }


@pytest.mark.parametrize(
    "task",
    [
        "Prepare a budget for the next quarter.",
        "How do I fix a memory leak in Python?",
        "Should we launch a freemium tier?",
        "What is our gross margin?",
    ],
)
def test_structured_output_with_a_json_schema(runtime: Runtime, task: str) -> None:
    import jsonschema
    from langchain_core.messages import HumanMessage, SystemMessage

    targets = [*runtime.agents.agents, "group_chat"]
    schema = route_schema(targets)
    model = runtime.provider.chat_model().with_structured_output(
        schema, method="json_schema", include_raw=True, strict=True
    )
    instructions = f"Route the request to one of: {', '.join(targets)}. Give a confidence and a short reason."
    out = model.invoke([SystemMessage(instructions), HumanMessage(task)])
    assert out["parsing_error"] is None, out["raw"].content
    jsonschema.validate(out["parsed"], schema)
    assert out["raw"].usage_metadata["output_tokens"] > 0


class Verdict(BaseModel):
    decision: Literal["launch", "delay", "cancel"]
    reason: str = Field(max_length=80)


# autogen logs the parsed completion with model_dump(), which pydantic warns about (autogen's own call)
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
async def test_structured_output_through_autogen(runtime: Runtime) -> None:
    from autogen_core.models import SystemMessage, UserMessage

    client = runtime.provider.autogen_client()
    try:
        result = await client.create(
            [
                SystemMessage(content="You are the CFO. Decide and give a short reason."),
                UserMessage(content="Should we launch a freemium tier?", source="user"),
            ],
            json_output=Verdict,
        )
    finally:
        await client.close()
    assert isinstance(result.content, str)
    Verdict.model_validate_json(result.content)
    assert result.usage.completion_tokens > 0


def test_server_serves_on_loopback_with_its_own_key(cache_dir: Path, local_extra) -> None:
    with LocalModelServer(packaged_model_path(cache_dir), chat_template="gemma", max_tokens=8) as server:
        root = server.base_url.removesuffix("/v1")
        assert httpx2.get(f"{root}/health").json() == {"status": "ok"}
        body = {"model": server.model_name, "messages": [{"role": "user", "content": "Hello"}]}
        assert httpx2.post(f"{server.base_url}/chat/completions", json=body).status_code == 401
        reply = httpx2.post(
            f"{server.base_url}/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {server.api_key}"},
            timeout=60,
        ).json()
        assert reply["model"] == "gemma3-270m" and reply["usage"]["completion_tokens"] <= 8
    assert not server.running
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(f"{root}/health")


def test_a_file_that_is_not_a_model_is_a_clear_error(tmp_path: Path, local_extra) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("not a model")
    with pytest.raises(ModelUnavailableError, match=r"could not serve .*notes\.gguf.*GGUF"):
        LocalModelServer(bad).start()


def test_runtime_close_stops_the_server(runtime: Runtime) -> None:
    root = runtime.provider.local_server().base_url.removesuffix("/v1")
    assert httpx2.get(f"{root}/health").status_code == 200
    runtime.close()
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(f"{root}/health")


def test_a_closed_runtime_runs_again_on_a_new_server(runtime: Runtime) -> None:
    """After close() (last test: the server is stopped) the next run starts a new server and new
    model clients: the old ones were bound to the stopped event loop."""
    runtime.close()
    result = runtime.run("Our Python workers leak memory after every deploy; how do I find the leak?")
    assert result.model == "local" and result.answer.strip()
    runtime.close()
