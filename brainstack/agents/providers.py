"""Chat-model providers: one place that builds the LangChain and AutoGen clients.

Every provider uses the real OpenAI clients (langchain-openai for the graph's
agents, autogen-ext for the group chat). ``offline`` points them at the
in-process :class:`~brainstack.agents.offline.OfflineModel`; ``local`` at a
llama.cpp server on loopback (:class:`~brainstack.agents.local.LocalModelServer`),
started on first use; a caller (the replay harness, a test) may pass any
``httpx2`` transport instead.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import warnings
import weakref
from typing import TYPE_CHECKING, Any, Literal

from brainstack.agents.offline import OFFLINE_MODEL_NAME, OfflineModel

if TYPE_CHECKING:
    from autogen_ext.models.openai import OpenAIChatCompletionClient
    from langchain_openai import ChatOpenAI

    from brainstack.agents.local import LocalModelServer
    from brainstack.config import AgentsConfig, Settings

__all__ = ["ModelProvider"]

OFFLINE_BASE_URL = "http://offline.brainstack.invalid/v1"
_UNKNOWN_MODEL_INFO = {
    "vision": False,
    "function_calling": True,
    "json_output": True,
    "family": "unknown",
    "structured_output": True,
    "multiple_system_messages": True,
}
# The packaged Gemma base model has no template that llama.cpp can render tools with.
_LOCAL_MODEL_INFO = {**_UNKNOWN_MODEL_INFO, "function_calling": False}


class ModelProvider:
    """Builds chat clients for one provider (``openai``, ``offline`` or ``local``)."""

    def __init__(self, settings: Settings, agents: AgentsConfig, *, transport: Any | None = None) -> None:
        self.settings = settings
        self.name: Literal["openai", "offline", "local"] = settings.resolved_provider
        if self.name == "openai" and transport is None and not settings.openai_configured:
            from brainstack.errors import ConfigurationError

            raise ConfigurationError(
                "BRAINSTACK_PROVIDER=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a server that "
                "takes no key); set one, or unset BRAINSTACK_PROVIDER to run with the offline model."
            )
        if self.name == "offline" and transport is None:
            import httpx2

            model = OfflineModel(
                termination_word=agents.group_chat.termination_word,
                team=[role.name for role in agents.group_chat.roles],
            )
            transport = httpx2.MockTransport(model.handle)
        self._transport = transport
        self._local: LocalModelServer | None = None
        self._local_lock = threading.Lock()
        # One pooled async HTTP client per event loop, shared by every model client of the provider
        # (see _async_http_client).
        self._http_lock = threading.Lock()
        self._loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def can_classify(self) -> bool:
        """Whether the model may decide routes (neither the offline nor the small local model)."""
        return self.name == "openai"

    @property
    def can_call_tools(self) -> bool:
        """Whether agents get their tools (the packaged local model cannot call them)."""
        return not (self.name == "local" and self.settings.local_model_path is None)

    @property
    def max_tokens(self) -> int | None:
        """The cap on each answer's tokens (``local`` only: a CPU model must stay brief)."""
        return self.settings.local_max_tokens if self.name == "local" else None

    @property
    def endpoint(self) -> str:
        """Where model calls go, for messages: the base URL, "OpenAI", or the in-process model."""
        if self.name == "offline":
            return "(the in-process offline model)"
        if self.name == "local":
            return self._local.base_url if self._local is not None else "(the local model server)"
        return self.settings.openai_base_url or "OpenAI"

    def model_name(self, override: str | None = None) -> str:
        if self.name == "offline":
            return OFFLINE_MODEL_NAME
        if self.name == "local":  # one server, one model: agents' `model:` names do not apply
            return _local_model_name(self.settings)
        return override or self.settings.model

    def local_server(self) -> LocalModelServer:
        """The provider's llama.cpp server, started on first use (``local`` only; thread-safe)."""
        if self.name != "local":
            raise RuntimeError(f"the {self.name} provider has no local model server")
        with self._local_lock:
            if self._local is None or not self._local.running:
                from brainstack.agents.local import LocalModelServer, packaged_model_path

                settings = self.settings
                self._local = LocalModelServer(
                    settings.local_model_path or packaged_model_path(settings.cache_dir),
                    model_name=_local_model_name(settings),
                    # the packaged GGUF has no chat template; llama.cpp has Gemma's built in
                    chat_template=None if settings.local_model_path else "gemma",
                    threads=settings.local_threads,
                    context=settings.local_context,
                    max_tokens=settings.local_max_tokens,
                    startup_timeout_s=settings.model_timeout_s,
                ).start()
            return self._local

    def close(self) -> None:
        """Stop what the provider started (the local model server); clients made later restart it."""
        with self._local_lock:
            server, self._local = self._local, None
        if server is not None:
            server.close()

    def _connection(self) -> dict[str, Any]:
        settings = self.settings
        if self.name == "offline":
            return {"api_key": "offline", "base_url": OFFLINE_BASE_URL}
        if self.name == "local" and self._transport is None:
            server = self.local_server()  # started here: a missing extra or model fails plainly
            return {"api_key": server.api_key, "base_url": server.base_url}
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused"
        return {"api_key": key, "base_url": settings.openai_base_url}

    def _http_clients(self) -> tuple[Any, Any]:
        """The sync and async HTTP clients of a model client (None: the library's own). The async
        one, which runs use, is shared (:meth:`_async_http_client`)."""
        import httpx2

        transport = self._transport
        if transport is None and self.name == "local":
            from brainstack.agents.local import CompactJsonTransport

            transport = CompactJsonTransport()
        timeout = self.settings.model_timeout_s
        sync = None if transport is None else httpx2.Client(transport=transport, timeout=timeout)
        return sync, self._async_http_client()

    def _async_http_client(self) -> Any:
        """The async HTTP client every model client of this provider shares on the running loop.

        Each agent and each group chat member had a client, and so a connection pool, of its own:
        a group chat opened four connections to the endpoint (three members and the selector, a
        TLS handshake each) on every run, as they were made per chat. Sharing one pool per loop
        reuses the connections across agents and runs. It is bound to the loop (an async HTTP
        connection is), so a client made with no running loop gets one of its own. Each request's
        whole answer is bounded (:func:`_deadline_client`)."""
        timeout = self.settings.model_timeout_s
        transport = self._transport
        if transport is None and self.name == "local":
            from brainstack.agents.local import AsyncCompactJsonTransport

            transport = AsyncCompactJsonTransport()
        client_type = _deadline_client()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return client_type(transport=transport, timeout=timeout, deadline_s=timeout)
        with self._http_lock:
            client = self._loop_clients.get(loop)
            if client is None or client.is_closed:
                client = client_type(transport=transport, timeout=timeout, deadline_s=timeout, shared=True)
                self._loop_clients[loop] = client
        return client

    async def aclose_http(self) -> None:
        """Close the HTTP client the model clients share on the running loop (its connections),
        as the runtime does before it stops its loop. Model clients made later get a new one."""
        with self._http_lock:
            client = self._loop_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close_shared()

    def chat_model(self, model: str | None = None) -> ChatOpenAI:
        """A LangChain chat model for the graph's agents."""
        from langchain_openai import ChatOpenAI

        sync_client, async_client = self._http_clients()
        return ChatOpenAI(
            model=self.model_name(model),
            temperature=self.settings.temperature,
            max_retries=self.settings.model_max_retries,
            timeout=self.settings.model_timeout_s,
            http_client=sync_client,
            http_async_client=async_client,
            stream_usage=True,
            max_completion_tokens=self.max_tokens,
            **self._connection(),
        )

    def autogen_client(self, model: str | None = None) -> OpenAIChatCompletionClient:
        """An AutoGen model client for the group chat."""
        from autogen_ext.models.openai import OpenAIChatCompletionClient
        from autogen_ext.models.openai._model_info import get_info

        # autogen compares the response's dated model name (gpt-4o-mini-2024-07-18) with its own
        # mapping and warns on every call for OpenAI-compatible servers; the warning is not actionable.
        warnings.filterwarnings("ignore", message="Resolved model mismatch", category=UserWarning)
        name = self.model_name(model)
        try:
            get_info(name)
            info: dict[str, Any] | None = None
        except (KeyError, ValueError):
            info = _UNKNOWN_MODEL_INFO  # vLLM, Ollama, llama.cpp, offline: names autogen doesn't know
        if not self.can_call_tools:
            info = _LOCAL_MODEL_INFO
        async_client = self._async_http_client()  # (autogen's client is async only)
        kwargs: dict[str, Any] = {k: v for k, v in self._connection().items() if v is not None}
        if info is not None:
            kwargs["model_info"] = info
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        kwargs["http_client"] = async_client
        return OpenAIChatCompletionClient(
            model=name,
            temperature=self.settings.temperature,
            max_retries=self.settings.model_max_retries,
            timeout=self.settings.model_timeout_s,
            **kwargs,
        )


@functools.cache
def _deadline_client() -> type:
    """openai's default async HTTP client, with a deadline on each request's whole answer.

    httpx's timeout bounds connecting and each wait for the next bytes, not the answer: a server
    (or a proxy) that trickled its body ten bytes a second held one call for 36 s under
    ``BRAINSTACK_MODEL_TIMEOUT_S=3`` (QA). Past the deadline the request fails as httpx's own
    timeout does, so openai retries it and brainstack reports "did not answer in time". A
    streamed answer (server-sent events) is bounded until its headers only."""
    import openai

    class DeadlineClient(openai.DefaultAsyncHttpxClient):
        def __init__(self, *, deadline_s: float, shared: bool = False, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.deadline_s = deadline_s
            self.shared = shared

        async def aclose(self) -> None:
            # A model client closing (autogen's group chat closes its members' after each chat)
            # must not close the pool the provider's other model clients share; it does that.
            if not self.shared:
                await super().aclose()

        async def close_shared(self) -> None:
            await super().aclose()

        async def send(self, request: Any, **kwargs: Any) -> Any:
            import httpx2

            try:
                async with asyncio.timeout(self.deadline_s):
                    return await super().send(request, **kwargs)
            except TimeoutError as exc:
                raise httpx2.ReadTimeout(
                    f"no whole answer within {self.deadline_s:g} s", request=request
                ) from exc

    return DeadlineClient


def _local_model_name(settings: Settings) -> str:
    """What the local server calls its model: ``gemma3-270m``, or the GGUF file's name."""
    from brainstack.agents.local import PACKAGED_MODEL_NAME

    path = settings.local_model_path
    return PACKAGED_MODEL_NAME if path is None else path.stem
