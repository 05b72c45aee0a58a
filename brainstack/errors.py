"""The exceptions brainstack raises.

Every error says what happened and what to do next. Misuse (bad input, bad
configuration) is told apart from failures during a run::

    BrainstackError
    ├── UsageError                  the caller asked for something invalid
    │   ├── InvalidTaskError        empty or oversized task
    │   ├── UnknownAgentError       an agent name that is not configured
    │   ├── ThreadBusyError         another process (or Runtime) is running the thread
    │   ├── NotPausedError          a resume for a thread that is not waiting for an approval
    │   └── ConfigurationError      settings or agents file are wrong
    └── RunError                    a run could not complete
        ├── ModelError              the model endpoint failed or answered badly
        │   └── ModelUnavailableError   the endpoint could not be reached at all
        └── BackendError            a storage backend (checkpointer, memory) failed

Foreign exceptions (openai, httpx, psycopg, ...) are translated into these in
exactly one place: :func:`translate`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = [
    "BackendError",
    "BrainstackError",
    "ConfigurationError",
    "InvalidTaskError",
    "ModelError",
    "ModelUnavailableError",
    "NotPausedError",
    "RunError",
    "ThreadBusyError",
    "UnknownAgentError",
    "UsageError",
    "translate",
    "unreadable_answer",
]


class BrainstackError(Exception):
    """Root of every brainstack error."""

    def __init__(self, message: str, *, thread_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The thread the failed run belongs to, when there was one: resume it with this id.
        self.thread_id = thread_id

    def __str__(self) -> str:
        return self.message


class UsageError(BrainstackError, ValueError):
    """The caller asked for something brainstack cannot do as asked.

    Also a ``ValueError``, as Python's own bad-argument errors are: a LangGraph server
    (``langgraph dev``) passes a ``ValueError``'s message to its client and masks other errors'.
    """


class InvalidTaskError(UsageError):
    """The task is empty or longer than the configured limit."""

    @classmethod
    def check(cls, task: object, max_chars: int) -> str:
        """``task`` stripped, or this error saying why it cannot run (the Runtime and the graph's
        first node both ask, so a Studio client gets the same answer as a Python caller)."""
        if task is not None and not isinstance(task, str):  # bytes too: only the caller knows their encoding
            raise cls(f"The task must be text (str), not {type(task).__name__}.")
        text = (task or "").strip()
        if not text:
            raise cls("The task is empty: pass the question or instruction to run.")
        if len(text) > max_chars:
            raise cls(
                f"The task has {len(text)} characters; the limit is {max_chars}. Shorten it or raise "
                f"BRAINSTACK_MAX_TASK_CHARS."
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: bytes that were not UTF-8 (argv, files)
            raise cls(
                f"The task is not valid UTF-8 text (character {exc.start + 1} is {text[exc.start]!r}, "
                "undecodable input); pass it as UTF-8."
            ) from None
        if "\x00" in text:
            raise cls(f"The task contains a NUL character (character {text.index(chr(0)) + 1}); remove it.")
        text, control = control_character(text)
        if control is not None:
            raise cls(
                f"The task contains the control character {control.group()!r} (character "
                f"{control.start() + 1}); remove it (tabs and line breaks are fine)."
            )
        if not any(not c.isspace() and unicodedata.category(c) != "Cf" for c in text):
            # only format characters: zero-width spaces and joiners, direction marks and overrides
            raise cls("The task has no visible characters: pass the question or instruction to run.")
        return text


_LINE_BREAKS = str.maketrans({"\x0b": "\n", "\x0c": "\n", "\x85": "\n"})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
"""C0 and C1 control characters but tab, line feed and carriage return."""


def control_character(text: str) -> tuple[str, re.Match[str] | None]:
    """``text`` with its line breaks made line feeds, and its first other control character.

    Page breaks (form feed, from PDFs), Word's and PowerPoint's soft line break (vertical tab) and
    NEL are line breaks in pasted text (str.splitlines agrees): kept as such. Other control
    characters (ESC, backspace, C1 codes) would reach terminals, prompts and memory as they are: an
    ESC sequence in a task recolours or rewrites the screen it is shown on. Tasks, edited answers
    and rejection reasons are checked with it.
    """
    text = text.translate(_LINE_BREAKS)
    return text, _CONTROL.search(text)


class ThreadBusyError(UsageError):
    """Another process (or another Runtime on the same storage) is running the thread now."""


class NotPausedError(UsageError):
    """A resume (an approval decision) sent to a thread whose run is not waiting for one: it has
    ended, stopped part-way, or never ran. LangGraph itself accepts such a resume and drops the
    decision."""


class UnknownAgentError(UsageError):
    """An agent name that the agents file does not define."""

    @classmethod
    def naming(cls, name: str, targets: Iterable[str]) -> UnknownAgentError:
        """The error for ``name``, listing the ``targets`` there are."""
        return cls(f"No agent named {name!r}. Available: {', '.join(targets)}.")


class ConfigurationError(UsageError):
    """Settings or the agents file are invalid."""


class RunError(BrainstackError):
    """A run started but could not complete."""


class ModelError(RunError):
    """The chat-model endpoint returned an error or unusable output."""

    def __init__(self, message: str, *, status_code: int | None = None, thread_id: str | None = None) -> None:
        super().__init__(message, thread_id=thread_id)
        self.status_code = status_code


class ModelUnavailableError(ModelError):
    """The chat-model endpoint could not be reached."""


class BackendError(RunError):
    """A storage backend (checkpointer, Redis, Chroma) failed."""


def translate(
    exc: BaseException, *, thread_id: str | None = None, backend: str | None = None
) -> BrainstackError:
    """Map a foreign exception raised during a run to a brainstack error.

    This is the one place that knows about other libraries' exception types;
    it imports them lazily because most runs never need it. ``backend`` (a key of
    ``_BACKENDS``, e.g. ``"chromadb"``): the storage library the failing call went to, for the
    HTTP transport errors its client lets through as they are (a Chroma server lost mid-run
    raised httpx's ``ConnectError``, reported as "The run failed").
    """
    if isinstance(exc, BrainstackError):
        if exc.thread_id is None:
            exc.thread_id = thread_id
        return exc
    resume = f" The run's progress is saved on thread {thread_id!r}." if thread_id else ""
    try:
        import openai
    except ImportError:  # pragma: no cover - openai is a core dependency
        openai = None  # type: ignore[assignment]
    if openai is not None:
        if isinstance(exc, openai.APIConnectionError):
            request = getattr(exc, "_request", None) or getattr(exc, "request", None)
            url = getattr(request, "url", None)
            port = f":{url.port}" if url is not None and url.port else ""
            where = f" at {url.scheme}://{url.host}{port}" if url is not None else ""
            offline = "unset OPENAI_API_KEY and OPENAI_BASE_URL to run with the offline model"
            if isinstance(exc, openai.APITimeoutError):
                return ModelUnavailableError(
                    f"The model endpoint{where} did not answer in time. Check that it is up, raise "
                    f"BRAINSTACK_MODEL_TIMEOUT_S for a slow model, or {offline}.{resume}",
                    thread_id=thread_id,
                )
            cause = exc.__cause__ or exc.__context__
            detail = str(exc)
            if cause and str(cause) and str(cause).rstrip(".") != detail.rstrip("."):
                detail += f": {_short(str(cause), 160)}"
            return ModelUnavailableError(
                f"Cannot reach the model endpoint{where} ({detail}). Check OPENAI_BASE_URL and the "
                f"network, or {offline}.{resume}",
                thread_id=thread_id,
            )
        if isinstance(exc, openai.AuthenticationError):
            return ModelError(
                f"The model endpoint rejected the API key (HTTP 401). Check OPENAI_API_KEY.{resume}",
                status_code=401,
                thread_id=thread_id,
            )
        if isinstance(exc, openai.APIStatusError):
            return ModelError(
                _status_message(exc.status_code, _short(exc.message), _is_embeddings(exc)) + resume,
                status_code=exc.status_code,
                thread_id=thread_id,
            )
    found = _backend_of(exc)
    if found is None and backend is not None and is_transport_error(exc):
        found = _BACKENDS[backend]
    if found is not None:
        name, setting = found
        check = (  # a file in BRAINSTACK_HOME is never "down": its folder or its disk is the problem
            f"{setting} is a writable folder with free disk space"
            if name == "SQLite"
            else f"it is up and that {setting} is right"
        )
        if name == "Chroma":  # local by default: then its folder, not a server, is the problem
            check += (
                " (without it, Chroma is the folder BRAINSTACK_HOME/chroma: check that it is intact "
                "and writable)"
            )
        retry = f" Run again with thread {thread_id!r} once it is back." if thread_id else ""
        return BackendError(
            f"The {name} backend failed: {type(exc).__name__}: {_short(str(exc))}. Check that "
            f"{check}.{retry}",
            thread_id=thread_id,
        )
    return RunError(f"The run failed: {type(exc).__name__}: {_short(str(exc))}.{resume}", thread_id=thread_id)


# The statuses the openai client retries (with backoff, BRAINSTACK_MODEL_MAX_RETRIES times).
_RETRIED = frozenset({408, 409, 429})


def unreadable_answer(exc: BaseException, endpoint: str, *, thread_id: str | None = None) -> BrainstackError:
    """The error for a model call whose answer its client could not read (a body that is not
    JSON, a completion without choices, an error object in an HTTP 200): ``exc`` as the client
    raised it, ``endpoint`` where the call went ("http://host:port/v1", "OpenAI"). These reached
    the caller as "The run failed: IndexError: list index out of range" (QA). An API error or a
    brainstack error is translated as usual."""
    try:
        import openai
    except ImportError:  # pragma: no cover - openai is a core dependency
        openai = None  # type: ignore[assignment]
    if isinstance(exc, BrainstackError) or (openai is not None and isinstance(exc, openai.APIError)):
        return translate(exc, thread_id=thread_id)
    resume = f" The run's progress is saved on thread {thread_id!r}." if thread_id else ""
    check = (
        "Check that OPENAI_BASE_URL is an OpenAI-compatible chat-completions server and "
        "BRAINSTACK_MODEL a chat model it serves"
        if endpoint.startswith(("http", "OpenAI"))
        else "BRAINSTACK_DEBUG=1 shows where it failed"
    )
    return ModelError(
        f"The model endpoint {endpoint} answered with something that is not a usable chat completion "
        f"({type(exc).__name__}: {_short(str(exc), 200) or 'no detail'}). {check}.{resume}",
        thread_id=thread_id,
    )


def _status_message(status: int, detail: str, embeddings: bool) -> str:
    """What an HTTP error status from the model endpoint means, and what to do about it."""
    # openai's message repeats the status first ("Error code: 429 - {...}"), QA
    detail = re.sub(r"^Error code: \d+ - ", "", detail)
    if status in _RETRIED or status >= 500:
        return (
            f"The model endpoint returned HTTP {status} (retried up to BRAINSTACK_MODEL_MAX_RETRIES "
            f"times): {detail}. Try again later or raise BRAINSTACK_MODEL_MAX_RETRIES."
        )
    if status == 404:
        model = (
            "BRAINSTACK_EMBEDDING_MODEL"
            if embeddings
            else "BRAINSTACK_MODEL (or the agent's `model:` in the agents file)"
        )
        return (
            f"The model endpoint returned HTTP 404: {detail}. The model or the endpoint does not exist "
            f"there: check the model name in {model} and OPENAI_BASE_URL."
        )
    return (
        f"The model endpoint rejected the request (HTTP {status}): {detail}. Retrying will not help; "
        f"check the model settings and the agents file."
    )


def _is_embeddings(exc: BaseException) -> bool:
    """Whether the failed request went to an embeddings endpoint (not chat completions)."""
    request = getattr(exc, "request", None)
    url = getattr(request, "url", None)
    return str(getattr(url, "path", "")).rstrip("/").endswith("/embeddings")


_BACKENDS = {
    "psycopg": ("PostgreSQL", "BRAINSTACK_CHECKPOINT_URL"),
    "psycopg_pool": ("PostgreSQL", "BRAINSTACK_CHECKPOINT_URL"),
    "sqlite3": ("SQLite", "BRAINSTACK_HOME"),
    "aiosqlite": ("SQLite", "BRAINSTACK_HOME"),
    "redis": ("Redis", "BRAINSTACK_REDIS_URL"),
    "chromadb": ("Chroma", "BRAINSTACK_CHROMA_URL"),
}


def _backend_of(exc: BaseException) -> tuple[str, str] | None:
    """(backend name, the setting that points at it) when ``exc`` comes from a storage library."""
    module = (type(exc).__module__ or "").split(".")[0]
    return _BACKENDS.get(module)


def is_transport_error(exc: BaseException) -> bool:
    """An HTTP client's failure to reach or hear from a server (httpx's and httpx2's
    ``TransportError`` family), or the OS's own."""
    return isinstance(exc, ConnectionError | TimeoutError) or any(
        cls.__name__ == "TransportError" for cls in type(exc).__mro__
    )


def _short(text: str, limit: int = 300) -> str:
    """``text`` on one line, cut at ``limit``, without a final full stop: every message goes on
    after it ("… refused. Check that …" would otherwise read "… refused.. Check that …")."""
    text = " ".join(text.split()).rstrip(".")
    return text if len(text) <= limit else text[: limit - 1] + "…"
