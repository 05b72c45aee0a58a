"""Chat-model providers: one place that builds the LangChain and AutoGen clients.

Both providers use the real OpenAI clients (langchain-openai for the graph's
agents, autogen-ext for the group chat). ``offline`` points them at the
in-process :class:`~brainstack.agents.offline.OfflineModel`; a caller (the
replay harness, a test) may pass any ``httpx2`` transport instead.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Literal

from brainstack.agents.offline import OFFLINE_MODEL_NAME, OfflineModel

if TYPE_CHECKING:
    from autogen_ext.models.openai import OpenAIChatCompletionClient
    from langchain_openai import ChatOpenAI

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


class ModelProvider:
    """Builds chat clients for one provider (``openai`` or ``offline``)."""

    def __init__(self, settings: Settings, agents: AgentsConfig, *, transport: Any | None = None) -> None:
        self.settings = settings
        self.name: Literal["openai", "offline"] = settings.resolved_provider
        if self.name == "offline" and transport is None:
            import httpx2

            model = OfflineModel(
                termination_word=agents.group_chat.termination_word,
                team=[role.name for role in agents.group_chat.roles],
            )
            transport = httpx2.MockTransport(model.handle)
        self._transport = transport

    @property
    def can_classify(self) -> bool:
        """Whether the model may decide routes (the offline model does not)."""
        return self.name != "offline"

    def model_name(self, override: str | None = None) -> str:
        return OFFLINE_MODEL_NAME if self.name == "offline" else (override or self.settings.model)

    def _connection(self) -> dict[str, Any]:
        settings = self.settings
        if self.name == "offline":
            return {"api_key": "offline", "base_url": OFFLINE_BASE_URL}
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused"
        return {"api_key": key, "base_url": settings.openai_base_url}

    def _http_clients(self) -> tuple[Any, Any]:
        if self._transport is None:
            return None, None
        import httpx2

        timeout = self.settings.model_timeout_s
        return (
            httpx2.Client(transport=self._transport, timeout=timeout),
            httpx2.AsyncClient(transport=self._transport, timeout=timeout),
        )

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
        _, async_client = self._http_clients()
        kwargs: dict[str, Any] = {k: v for k, v in self._connection().items() if v is not None}
        if info is not None:
            kwargs["model_info"] = info
        kwargs["http_client"] = async_client
        return OpenAIChatCompletionClient(
            model=name,
            temperature=self.settings.temperature,
            max_retries=self.settings.model_max_retries,
            timeout=self.settings.model_timeout_s,
            **kwargs,
        )
