"""Readiness check: does every part a run uses answer, with these settings?

``brainstack doctor`` (and :func:`check` from Python, e.g. in a deployment's readiness probe)
opens each part for real, the way a run would, and reports each one on its own: a part that is
down never hides the state of the others. Nothing here calls a chat model: the OpenAI(-compatible)
endpoint is asked for its model list, which costs no tokens.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from brainstack.errors import translate

if TYPE_CHECKING:
    from brainstack.config import Settings

__all__ = ["Check", "check"]

ENDPOINT_TIMEOUT_S = 10.0
"""The most the model endpoint check waits (or ``BRAINSTACK_MODEL_TIMEOUT_S`` when lower)."""


@dataclasses.dataclass(frozen=True)
class Check:
    """One part's state: ``ok`` False means a run that needs it fails or runs degraded."""

    part: str
    ok: bool
    detail: str
    ms: float


def check(settings: Settings | None = None) -> list[Check]:
    """Every part's :class:`Check`, in the order a run uses them: model, embeddings, checkpoints,
    then (with memory on) working memory, episodic memory, the knowledge base and skills."""
    from brainstack.config import Settings
    from brainstack.memory.gateway import MemoryGateway
    from brainstack.memory.knowledge import chunk_count

    settings = settings or Settings.from_env()
    gateway = MemoryGateway(settings)
    parts: list[tuple[str, Callable[[], str]]] = [
        ("model", lambda: _model(settings)),
        ("embeddings", lambda: _embeddings(gateway)),
        ("checkpoints", lambda: _checkpoints(settings)),
    ]
    if settings.memory:
        parts += [
            ("working memory", lambda: _working(gateway)),
            ("episodic memory", lambda: _episodic(gateway)),
            ("knowledge base", lambda: chunk_count(gateway.knowledge.count())),
            ("skills", lambda: _skills(gateway)),
        ]
    results = []
    for part, probe in parts:
        start = time.perf_counter()
        try:
            detail, ok = probe(), True
        except Exception as exc:  # each part on its own: one that is down hides nothing else
            detail, ok = str(translate(exc)), False
        results.append(Check(part, ok, detail, (time.perf_counter() - start) * 1000))
    if not settings.memory:
        results.append(Check("memory", True, "off (BRAINSTACK_MEMORY=0): nothing to check", 0.0))
    return results


def _model(settings: Settings) -> str:
    provider = settings.resolved_provider
    if provider == "offline":
        return f"offline model ({settings.offline_reason}): answers are assembled, not generated"
    if provider == "local":
        from brainstack.agents.local import packaged_model_path

        path = settings.local_model_path or packaged_model_path(settings.cache_dir)
        if not path.is_file():
            raise FileNotFoundError(f"the local model file {path} is missing")
        return f"local llama.cpp model {path.name} (the server starts on the first run)"
    return _endpoint(settings)


def _endpoint(settings: Settings) -> str:
    """Ask the OpenAI(-compatible) endpoint for its models: reachable, key accepted, model listed."""
    import httpx2

    from brainstack.errors import BackendError, ConfigurationError

    base = (settings.openai_base_url or "https://api.openai.com/v1").rstrip("/")
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx2.get(
            f"{base}/models", headers=headers, timeout=min(settings.model_timeout_s, ENDPOINT_TIMEOUT_S)
        )
    except httpx2.HTTPError as exc:
        raise BackendError(
            f"The model endpoint {base} cannot be reached ({type(exc).__name__}: {exc}). "
            "Check OPENAI_BASE_URL and that the server is up."
        ) from None
    if response.status_code in (401, 403):
        raise ConfigurationError(
            f"The model endpoint {base} refuses the key (HTTP {response.status_code}): check OPENAI_API_KEY."
        )
    if response.status_code != 200:
        raise BackendError(f"The model endpoint {base} answered HTTP {response.status_code} to GET /models.")
    try:
        listed = {str(m.get("id")) for m in response.json().get("data", []) if isinstance(m, dict)}
    except (ValueError, AttributeError):
        listed = set()
    note = "" if not listed or settings.model in listed else f"; {settings.model!r} is not among its models"
    return f"{base} answers ({len(listed)} model(s) listed){note}; model {settings.model}"


def _embeddings(gateway: Any) -> str:
    embedder = gateway.embedder
    vector = embedder.embed_query("brainstack doctor")  # loads (or prepares, once) the model
    return f"{embedder.name}, {len(vector)} dimensions"


def _checkpoints(settings: Settings) -> str:
    from brainstack.graphs.checkpointers import _where, open_checkpointer

    async def open_and_close() -> None:
        async with open_checkpointer(settings):
            pass

    asyncio.run(open_and_close())
    if settings.checkpoint_url:
        return f"PostgreSQL at {_where(settings.checkpoint_url)}"
    return f"SQLite {settings.sqlite_path} (synchronous={settings.sqlite_synchronous})"


def _working(gateway: Any) -> str:
    working = gateway.working
    working.ping()
    settings = gateway.settings
    if settings.redis_url:
        where = settings.redis_url.split("@")[-1]  # without a password
        return f"Redis at {where}, TTL {settings.working_memory_ttl_s:g} s"
    return "in-process (set BRAINSTACK_REDIS_URL to share it between processes)"


def _episodic(gateway: Any) -> str:
    gateway.chroma.heartbeat()
    settings = gateway.settings
    if settings.chroma_url:
        return f"Chroma server at {settings.chroma_url}"
    return f"local Chroma in {settings.chroma_path}"


def _skills(gateway: Any) -> str:
    import tempfile

    from brainstack.errors import ConfigurationError

    store = gateway.skills
    try:  # where a run writes what it learns: listing the skills would not notice it cannot
        store.user_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=store.user_dir, prefix=".doctor-"):
            pass
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot write learned skills to {store.user_dir}: {exc.strerror or exc}. Set "
            "BRAINSTACK_SKILLS_DIR (or BRAINSTACK_HOME) to a writable folder."
        ) from exc
    skills = store.all()
    skipped = store.skipped()
    if skipped:  # runs go on without them: say which, and how to mend or remove each
        raise ConfigurationError(
            f"{len(skipped)} skill file(s) cannot be used and runs skip them: "
            + "; ".join(skipped.values())
            + ". Fix each file, or delete it (`brainstack skills forget NAME` does, for a file named "
            "as a skill is: lower-case letters, digits and '-')."
        )
    builtin = sum(1 for s in skills if s.provenance.source == "builtin")
    return f"{builtin} built-in, {len(skills) - builtin} in {store.user_dir} (learned or your own)"
