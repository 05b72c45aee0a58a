"""Typed settings, read once from ``BRAINSTACK_*`` environment variables.

A :class:`Settings` instance is built by the caller (or :meth:`Settings.from_env`) and passed
down; what a run does depends on it alone. A few variables are read elsewhere, outside a run's
settings: ``BRAINSTACK_DEBUG`` (the CLI shows tracebacks), ``BRAINSTACK_RECORD`` (the replay
harness records), ``OPENAI_API_KEY`` (the openai client's own default, for an OpenAI embedder
given no key) and, when the replay harness records, ``OPENAI_API_KEY`` and
``BRAINSTACK_OPENAI_API_KEY`` again (the keys it scrubs from the cassette).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings"]


def _default_home() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("brainstack"))


def _default_cache() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("brainstack"))


def _invalid(exc: Any, *, given: dict[str, Any]) -> Exception:
    """A ConfigurationError for pydantic's ValidationError: each problem with the keyword it was
    given as (``temperature=5``) or else the environment variable it came from."""
    from brainstack.errors import ConfigurationError

    aliases = {  # an aliased field's errors name the alias: back to the keyword it was given as
        alias: name
        for name, info in Settings.model_fields.items()
        for alias in getattr(info.validation_alias, "choices", ())
        if isinstance(alias, str)
    }
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        if aliases.get(field) in given:
            field = aliases[field]
        from_env = not (field in given or field.isupper())  # (an alias is the variable's name)
        name = f"BRAINSTACK_{field.upper()}" if from_env else field
        problems.append(f"{name}={error.get('input')!r}: {error['msg']}")
    return ConfigurationError("Invalid setting: " + "; ".join(problems) + ".")


class Settings(BaseSettings):
    """Everything a :class:`~brainstack.Runtime` can be configured with."""

    # extra="ignore" is for the environment (other BRAINSTACK_* variables, e.g. the test suite's);
    # an unknown keyword argument is refused in __init__.
    model_config = SettingsConfigDict(env_prefix="BRAINSTACK_", extra="ignore", frozen=True)

    def __init__(self, **values: Any) -> None:
        unknown = [name for name in values if not name.startswith("_") and name not in _accepted()]
        if unknown:
            import difflib

            name = unknown[0]
            close = difflib.get_close_matches(name, [n for n in _accepted() if n.islower()], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"Settings() got an unexpected keyword argument {name!r}{hint}")
        from pydantic import ValidationError

        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _invalid(exc, given=values) from None

    home: Path = Field(default_factory=_default_home)
    """Where the SQLite checkpoints, local memory (Chroma, skills) and the knowledge base live."""
    cache_dir: Path = Field(default_factory=_default_cache)
    """Where prepared artefacts are cached: the ONNX embedding models (MiniLM and its int8 copy) and
    the ``local`` provider's packaged model file."""
    agents_file: Path | None = None
    """A user agents.yaml; the built-in one when unset."""

    provider: Literal["auto", "openai", "offline", "local"] = "auto"
    """``auto`` uses OpenAI when a key or base URL is set, the offline model otherwise; ``local``
    (never chosen by ``auto``) serves a GGUF model with llama.cpp on loopback (``brainstack[local]``)."""
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("BRAINSTACK_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("BRAINSTACK_OPENAI_BASE_URL", "OPENAI_BASE_URL"),
    )
    model: str = "gpt-4o-mini"
    """Default chat model; agents.yaml can name another per agent or role."""
    model_max_retries: int = Field(default=2, ge=0, le=10)
    """Retries of one model call after a timeout, an HTTP 429 or a 5xx."""
    model_timeout_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    """Seconds for the whole answer of one model call attempt (a streamed answer: until its
    headers), and for the ``local`` provider's server to start."""
    temperature: float = Field(default=0.2, ge=0, le=2)
    """Sampling temperature of every model call."""

    local_model_path: Path | None = None
    """The GGUF file the ``local`` provider serves; the packaged Gemma 3 270M when unset
    (assembled once under ``cache_dir``)."""
    local_threads: int = Field(default=2, ge=1, le=256)
    """CPU threads llama.cpp uses for the ``local`` model."""
    local_context: int = Field(default=4096, ge=256, le=131072)
    """Context window of the ``local`` model, in tokens (prompt and answer together)."""
    local_max_tokens: int = Field(default=128, ge=1, le=8192)
    """Upper bound on the tokens of each ``local`` model answer (keeps runs fast on a CPU)."""

    embeddings: Literal["local", "openai"] = "local"
    """``local`` runs all-MiniLM-L6-v2 offline (the router is tuned on it); ``openai`` uses the endpoint."""
    embedding_model: str = "text-embedding-3-small"
    """The OpenAI embedding model when ``embeddings == "openai"``."""

    checkpoint_url: str | None = None
    """``postgresql://…`` for PostgreSQL; unset for the SQLite file under ``home``."""
    postgres_pool_size: int = Field(default=5, ge=1, le=100)
    """Connections a Runtime may hold to PostgreSQL."""
    postgres_connect_timeout_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    """Seconds to wait for a new connection to PostgreSQL, or for a free one of the pool."""
    postgres_command_timeout_s: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    """Seconds to wait for PostgreSQL's answer to one command (a checkpoint read or write, a
    lease) before the connection is given up and the run fails with a BackendError: a server
    that stops answering without closing its connections (a frozen process) is otherwise
    waited for without limit. Schema migrations are not bounded."""
    sqlite_synchronous: Literal["full", "normal"] = "full"
    """When the SQLite checkpointer waits for the disk. ``full`` (SQLite's and LangGraph's
    default): at every commit, so each checkpoint survives a power cut. ``normal`` (WAL mode):
    only at WAL checkpoints; a killed process still loses nothing and the file is never
    corrupted, but a power cut or OS crash may lose the last checkpoints. ``normal`` makes a
    run ~2.4 ms faster here (benchmarks/RESULTS.md): worth it where runs are short and many."""

    memory: bool = True
    """Recall before routing and remember after each run (``BRAINSTACK_MEMORY=0`` turns it off)."""
    chroma_url: str | None = None
    """``http://host:port`` of a Chroma server; unset for a local Chroma folder under ``home``."""
    skills_dir: Path | None = None
    """The user's skills folder (learned skills, success counts); default ``home/skills``."""
    memory_token_budget: int = Field(default=800, ge=0, le=20000)
    """Upper bound on the tokens recalled memory adds to a prompt."""
    history_token_budget: int = Field(default=1500, ge=0, le=100000)
    """Upper bound on the tokens of earlier thread messages given to the agents."""
    redis_url: str | None = None
    """``redis://…`` for working memory in Redis; unset for the in-process store."""
    working_memory_ttl_s: float = Field(default=3600.0, gt=0, le=1e9, allow_inf_nan=False)
    """How long preferences and session facts live (seconds; at most ~31 years, which Redis takes)."""

    query_embeddings: Literal["int8", "float32"] = "int8"
    """What local MiniLM memory embeds search queries with (episodes, knowledge base, skills):
    ``int8``, its quantized copy (the router's model: a run embeds its task once), or ``float32``.
    What memory stores is always float32."""
    router_embeddings: Literal["int8", "float32", "memory"] = "int8"
    """What the semantic router embeds with: ``int8`` MiniLM (the fastest), ``float32`` MiniLM, or
    ``memory`` (the embedder ``embeddings`` selects, e.g. OpenAI). Threshold and margin are tuned on
    MiniLM; re-tune them for ``memory`` with another model."""
    embed_threads: int | None = Field(default=None, ge=1, le=256)
    """onnxruntime threads per local MiniLM session (the router's and memory's); unset: 2, or 1 on
    a one-core host. 2 is fastest on an idle 2-core machine; on a host shared by several worker
    processes, 1 avoids oversubscribing the cores (benchmarks/RESULTS.md)."""
    router_threshold: float = Field(default=0.32, ge=-1, le=1)
    """Semantic route accepted when the best route scores at least this (cosine)."""
    router_margin: float = Field(default=0.04, ge=0, le=2)
    """…and beats the runner-up route by at least this much."""

    approval: bool = False
    """Pause for a human decision before the answers of ``approval_routes`` are final."""
    approval_routes: Annotated[tuple[str, ...], NoDecode] = ("group_chat",)
    """Route targets that need approval when ``approval`` is on (comma-separated in the env)."""

    max_task_chars: int = Field(default=8000, ge=1)
    """Longer tasks are refused (:class:`~brainstack.errors.InvalidTaskError`)."""
    history_messages: int = Field(default=8, ge=0)
    """How many earlier messages of the thread the agents see (the group chat: at most 4)."""
    max_tool_rounds: int = Field(default=4, ge=1, le=20)
    """Most rounds of tool calls a specialist makes in one run."""

    @field_validator("approval_routes", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():  # ``export …_ROUTES=`` is "not set"
            return cls.model_fields["approval_routes"].default
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator(
        "openai_api_key",
        "openai_base_url",
        "agents_file",
        "local_model_path",
        "checkpoint_url",
        "chroma_url",
        "skills_dir",
        "redis_url",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # ``export BRAINSTACK_REDIS_URL=`` means "not set", not "an empty URL" (or, for a path,
        # the current directory).
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "must be a redis://, rediss:// or unix:// URL (unset: in-process working memory)"
            )
        return value

    @field_validator("chroma_url")
    @classmethod
    def _chroma_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL of a Chroma server (unset: a local folder)")
        return value

    @field_validator("model", mode="before")
    @classmethod
    def _blank_model_is_the_default(cls, value: object) -> object:
        # ``export BRAINSTACK_MODEL=`` means "not set": an empty name would only fail at the
        # first model call.
        if isinstance(value, str) and not value.strip():
            return cls.model_fields["model"].default
        return value

    @field_validator("home", "cache_dir", mode="before")
    @classmethod
    def _blank_is_default(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str) and not value.strip():
            return _default_home() if info.field_name == "home" else _default_cache()
        return value

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from the environment, with keyword overrides on top (the same as
        ``Settings(**overrides)``). Invalid values raise :class:`~brainstack.errors.ConfigurationError`
        naming each keyword or environment variable and its problem."""
        return cls(**overrides)

    @property
    def resolved_provider(self) -> Literal["openai", "offline", "local"]:
        if self.provider != "auto":
            return self.provider
        return "openai" if self.openai_configured else "offline"

    @property
    def offline_reason(self) -> str:
        """Why runs use the offline model, as the CLI's banner and ``doctor`` say it: asked for
        (``BRAINSTACK_PROVIDER=offline``, whatever key is set) or no endpoint configured."""
        if self.provider == "offline":
            return "BRAINSTACK_PROVIDER=offline"
        return "no OPENAI_API_KEY or OPENAI_BASE_URL set"

    @property
    def openai_configured(self) -> bool:
        """Whether an OpenAI(-compatible) endpoint is set: a key, or a base URL (a server that
        may take no key)."""
        return bool(self.openai_api_key or self.openai_base_url)

    @property
    def sqlite_path(self) -> Path:
        return self.home / "checkpoints.sqlite"

    @property
    def chroma_path(self) -> Path:
        return self.home / "chroma"

    @property
    def skills_path(self) -> Path:
        return self.skills_dir or self.home / "skills"


@functools.cache
def _accepted() -> frozenset[str]:
    """The keyword arguments ``Settings`` takes: its fields' names and their aliases."""
    names = set(Settings.model_fields)
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias] if alias else []
        names.update(c for c in choices if isinstance(c, str))
    return frozenset(names)
