"""Test brainstack agents against replayed OpenAI conversations: no network, no key.

Setup (once, in your ``tests/conftest.py``; openai talks through ``httpx2`` and
respx patches ``httpx``, so the two must be made one before anything imports them)::

    import httpx2; httpx2.alias_httpx()          # first line of conftest.py

and ``addopts = "-p no:respx"`` in the pytest configuration (respx's plugin would import httpx
before the alias). :func:`replay` needs nothing more; tests that also use respx's own
``respx_mock`` fixture load its plugin after the alias with ``pytest_plugins = ["respx.plugin"]``.

Then, in a test::

    from pathlib import Path

    from brainstack import Runtime
    from brainstack.testing import replay, replay_settings

    HERE = Path(__file__).parent  # not relative to where pytest runs

    def test_my_agents(tmp_path):
        with replay(HERE / "cassettes" / "pricing.yaml"):
            result = Runtime(replay_settings(tmp_path), agents=HERE / "my_agents.yaml").run("...")
        assert result.route.target == "finance"

Leaving the ``with`` block fails the test if a request did not match the cassette
(the request is shown) or if a response was never requested. Run with
``BRAINSTACK_RECORD=1`` and a real ``OPENAI_API_KEY`` to (re)write the cassette
from the real endpoint, credentials scrubbed. See :mod:`brainstack.testing.cassette`
for the file format. Runtime code never imports this package.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from brainstack.testing.cassette import Cassette, Interaction, ReplayError, summarize_request

__all__ = ["Cassette", "Interaction", "ReplayError", "replay", "replay_settings", "summarize_request"]

REPLAY_API_KEY = "replay-key-not-a-secret"
OPENAI_PATHS = r"/(chat/completions|completions|embeddings|responses)$"


FROM_ENVIRONMENT = frozenset(
    {
        "cache_dir",
        "checkpoint_url",
        "chroma_url",
        "redis_url",
        "working_memory_ttl_s",
        "embed_threads",
        "model_timeout_s",
        "postgres_connect_timeout_s",
        "postgres_command_timeout_s",
        "postgres_pool_size",
        "sqlite_synchronous",
    }
)
"""The settings :func:`replay_settings` takes from ``BRAINSTACK_*`` variables: where state and
models live (a suite's PostgreSQL, Redis or Chroma server) and how the machine runs, none of
which changes a request to the model by itself."""


def replay_settings(home: str | Path, **overrides: Any) -> Any:
    """Settings for a replayed run: the ``openai`` provider with a dummy key, state under ``home``.

    Every other setting is its default unless passed here, whatever the environment says (but
    :data:`FROM_ENVIRONMENT`): a developer's ``BRAINSTACK_MODEL``, agents file, embeddings or
    router threshold changed the requests, and the cassette no longer matched (QA). When
    recording (``BRAINSTACK_RECORD=1``) the real key and base URL from the environment are used.
    """
    from brainstack.config import Settings

    values: dict[str, Any] = {
        name: field.get_default(call_default_factory=True)
        for name, field in Settings.model_fields.items()
        if name not in FROM_ENVIRONMENT and name not in ("home", "openai_api_key", "openai_base_url")
    }
    values.update(provider="openai", home=Path(home))
    recording = _recording(None)
    if not recording:
        values.update(openai_api_key=REPLAY_API_KEY, openai_base_url="https://api.openai.com/v1")
    values.update(overrides)
    settings = Settings.from_env(**values)
    if recording and not settings.openai_configured:
        from brainstack.errors import ConfigurationError

        raise ConfigurationError(
            "BRAINSTACK_RECORD=1 records from the real endpoint, and none is set: set OPENAI_API_KEY "
            "(and OPENAI_BASE_URL for a server other than OpenAI), or unset BRAINSTACK_RECORD to "
            "replay the cassette."
        )
    return settings


@contextmanager
def replay(path: str | Path, *, record: bool | None = None, scenario: str = "") -> Iterator[Cassette]:
    """Serve the cassette at ``path`` to every OpenAI call made inside the block (through respx).

    ``record`` (default: ``BRAINSTACK_RECORD=1`` in the environment) sends the calls to the real
    endpoint instead and writes what happened to ``path``.
    """
    path = Path(path)
    if _recording(record):
        recording = _RECORDING_BLOCK.set(True)  # (record=True: settings made in the block record too)
        try:
            with _recorder() as (calls, refused):
                try:
                    yield Cassette(path)
                except BaseException as exc:
                    if refused:
                        raise ReplayError(refused[0]) from exc
                    raise
                if refused:  # the block caught the run's error itself
                    raise ReplayError(refused[0])
        finally:
            _RECORDING_BLOCK.reset(recording)
        from brainstack.testing.cassette import interactions_from_calls, write_cassette

        if not calls:  # the block ran no model call: its runtime ran the offline model, say
            raise ReplayError(
                f"Recording {path} caught no model call, so the cassette is left as it was: record "
                "with a real model (OPENAI_API_KEY, and OPENAI_BASE_URL for a server other than "
                "OpenAI; Settings from replay_settings() use them), or unset BRAINSTACK_RECORD to "
                "replay the cassette."
            )
        secrets = [os.environ.get("OPENAI_API_KEY", ""), os.environ.get("BRAINSTACK_OPENAI_API_KEY", "")]
        write_cassette(path, scenario, interactions_from_calls(calls, secrets))
        return

    _require_alias()
    import respx

    cassette = Cassette.load(path)
    with respx.mock(assert_all_called=False, assert_all_mocked=False) as router:
        router.route(path__regex=OPENAI_PATHS).mock(side_effect=cassette.handle)
        router.route().pass_through()  # anything else (a local Chroma server, ...) is not ours
        try:
            yield cassette
        except BaseException as exc:
            if cassette.unexpected:
                # The mismatch is the cause; the run's error that followed is one line of the report,
                # not a chain of tracebacks (openai's, LangChain's, autogen's) above it: a mismatch
                # printed 436 lines of pytest output, the report at the very end (QA).
                after = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
                report = "\n\n".join(cassette.unexpected) + f"\n\n(the code under test then raised {after})"
                raise ReplayError(report) from None
            raise
    cassette.check()


@contextmanager
def _recorder() -> Iterator[tuple[list[tuple[Any, Any]], list[str]]]:
    """Let OpenAI calls reach the real endpoint and keep each (request, response) pair; a call
    carrying :func:`replay_settings`' placeholder key is refused unsent and explained.

    Patches the httpx2 transports for the duration of the block (respx's pass-through
    does not keep responses).
    """
    import re

    import httpx2

    calls: list[tuple[Any, Any]] = []
    refused: list[str] = []
    wanted = re.compile(OPENAI_PATHS)
    sync_send = httpx2.HTTPTransport.handle_request
    async_send = httpx2.AsyncHTTPTransport.handle_async_request

    def refuse_placeholder(request: Any) -> None:
        if request.headers.get("authorization") != f"Bearer {REPLAY_API_KEY}":
            return
        refused.append(
            f"Recording {request.method} {request.url} would send replay_settings' placeholder key: "
            "make the settings inside the replay(..., record=True) block, or set BRAINSTACK_RECORD=1 "
            "before they are made (replay_settings then takes OPENAI_API_KEY and OPENAI_BASE_URL "
            "from the environment), or pass openai_api_key=... to replay_settings."
        )
        raise httpx2.ConnectError(refused[-1], request=request)

    def handle_request(self: Any, request: Any) -> Any:
        refuse_placeholder(request)
        response = sync_send(self, request)
        if wanted.search(request.url.path):
            response.read()
            calls.append((request, response))
        return response

    async def handle_async_request(self: Any, request: Any) -> Any:
        refuse_placeholder(request)
        response = await async_send(self, request)
        if wanted.search(request.url.path):
            await response.aread()
            calls.append((request, response))
        return response

    httpx2.HTTPTransport.handle_request = handle_request  # type: ignore[method-assign]
    httpx2.AsyncHTTPTransport.handle_async_request = handle_async_request  # type: ignore[method-assign]
    try:
        yield calls, refused
    finally:
        httpx2.HTTPTransport.handle_request = sync_send  # type: ignore[method-assign]
        httpx2.AsyncHTTPTransport.handle_async_request = async_send  # type: ignore[method-assign]


_RECORDING_BLOCK: ContextVar[bool] = ContextVar("brainstack_recording", default=False)
"""True inside ``replay(..., record=True)``: :func:`replay_settings` made there takes the real key."""


def _recording(record: bool | None) -> bool:
    if record is not None:
        return record
    if _RECORDING_BLOCK.get():
        return True
    return os.environ.get("BRAINSTACK_RECORD", "").strip().lower() in ("1", "true", "yes")


def _require_alias() -> None:
    import httpx2

    if sys.modules.get("httpx") is not httpx2:
        raise ReplayError(
            "brainstack.testing.replay needs `httpx2.alias_httpx()` to run before anything imports "
            "httpx (openai uses httpx2; respx patches httpx). Put `import httpx2; httpx2.alias_httpx()` "
            'on the first line of tests/conftest.py and `addopts = "-p no:respx"` in the pytest '
            "configuration (in a notebook: restart the kernel and run `import httpx2; "
            "httpx2.alias_httpx()` in its first cell), or pass `Cassette.load(path).transport()` to "
            "`Runtime(transport=...)`."
        )
