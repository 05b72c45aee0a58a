"""brainstack's exceptions and the one place foreign exceptions are translated into them."""

from __future__ import annotations

import sqlite3

import httpx2
import openai
import psycopg
import pytest
import redis

import brainstack
from brainstack.errors import (
    BackendError,
    BrainstackError,
    ConfigurationError,
    InvalidTaskError,
    ModelError,
    ModelUnavailableError,
    RunError,
    UnknownAgentError,
    UsageError,
    translate,
)

URL = "https://api.openai.com/v1/chat/completions"


def _request() -> httpx2.Request:
    return httpx2.Request("POST", URL)


def _response(status: int, message: str = "") -> httpx2.Response:
    return httpx2.Response(status, request=_request(), json={"error": {"message": message}})


# --- The hierarchy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "parents"),
    [
        (UsageError, (BrainstackError, ValueError)),
        (InvalidTaskError, (UsageError, BrainstackError, ValueError)),
        (UnknownAgentError, (UsageError, BrainstackError, ValueError)),
        (ConfigurationError, (UsageError, BrainstackError, ValueError)),
        (RunError, (BrainstackError,)),
        (ModelError, (RunError, BrainstackError)),
        (ModelUnavailableError, (ModelError, RunError, BrainstackError)),
        (BackendError, (RunError, BrainstackError)),
    ],
)
def test_hierarchy(error: type[BrainstackError], parents: tuple[type, ...]) -> None:
    for parent in parents:
        assert issubclass(error, parent)
    assert issubclass(error, Exception)


@pytest.mark.parametrize("run_error", [RunError, ModelError, ModelUnavailableError, BackendError])
def test_usage_and_run_errors_are_disjoint(run_error: type[BrainstackError]) -> None:
    assert not issubclass(run_error, UsageError)
    for usage_error in (UsageError, InvalidTaskError, UnknownAgentError, ConfigurationError):
        assert not issubclass(usage_error, RunError)
    assert not issubclass(run_error, ValueError)  # a failed run is not a bad argument


def test_package_exports_the_public_errors() -> None:
    for name in ("BrainstackError", "UsageError", "InvalidTaskError", "UnknownAgentError"):
        assert getattr(brainstack, name) is getattr(brainstack.errors, name)
    for name in ("ConfigurationError", "RunError", "ModelError", "ModelUnavailableError", "BackendError"):
        assert getattr(brainstack, name) is getattr(brainstack.errors, name)


def test_str_is_the_message_and_thread_id_is_carried() -> None:
    error = RunError("The run failed: boom.", thread_id="thread-7")
    assert str(error) == "The run failed: boom."
    assert error.message == "The run failed: boom."
    assert error.args == ("The run failed: boom.",)
    assert error.thread_id == "thread-7"
    assert UsageError("bad").thread_id is None


def test_model_error_carries_status_code() -> None:
    error = ModelError("nope", status_code=503, thread_id="t")
    assert (error.status_code, error.thread_id, str(error)) == (503, "t", "nope")
    assert ModelUnavailableError("down").status_code is None


def test_thread_id_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        BrainstackError("message", "thread")  # type: ignore[misc]


def test_errors_can_be_raised_and_caught_by_family() -> None:
    with pytest.raises(RunError) as caught:
        raise ModelUnavailableError("endpoint down", thread_id="t1")
    assert caught.value.thread_id == "t1"


# --- translate(): openai ----------------------------------------------------------------


def test_rate_limit_becomes_model_error_with_status() -> None:
    exc = openai.RateLimitError(
        "Rate limit reached for gpt-4o-mini", response=_response(429, "slow down"), body=None
    )
    error = translate(exc, thread_id="t-1")
    assert type(error) is ModelError
    assert error.status_code == 429
    assert error.thread_id == "t-1"
    message = str(error)
    assert "HTTP 429" in message
    assert "Rate limit reached for gpt-4o-mini" in message
    assert "BRAINSTACK_MODEL_MAX_RETRIES" in message
    assert "thread 't-1'" in message


def test_server_error_message_is_collapsed_and_shortened() -> None:
    exc = openai.APIStatusError(
        "Internal\n\n   server   error " + "x" * 1000, response=_response(500), body=None
    )
    error = translate(exc)
    assert type(error) is ModelError
    assert error.status_code == 500
    message = str(error)
    assert "HTTP 500" in message
    assert "Internal server error x" in message
    assert "\n" not in message
    assert "…" in message
    assert len(message) < 500
    assert "thread" not in message  # no thread, no resume hint


def test_authentication_error_points_at_the_key() -> None:
    exc = openai.AuthenticationError("Incorrect API key provided: sk-abc", response=_response(401), body=None)
    error = translate(exc, thread_id="t")
    assert type(error) is ModelError
    assert error.status_code == 401
    assert "OPENAI_API_KEY" in str(error)
    assert "sk-abc" not in str(error)  # the key is not echoed back


@pytest.mark.parametrize(
    ("exc", "detail"),
    [
        (openai.APIConnectionError(request=_request()), "(Connection error.)"),
        (openai.APITimeoutError(request=_request()), "did not answer in time"),
    ],
)
def test_unreachable_endpoint_becomes_model_unavailable(exc: Exception, detail: str) -> None:
    error = translate(exc, thread_id="t-9")
    assert type(error) is ModelUnavailableError
    assert isinstance(error, ModelError)
    assert error.status_code is None
    assert error.thread_id == "t-9"
    message = str(error)
    assert detail in message
    assert "OPENAI_BASE_URL" in message
    assert "offline model" in message
    assert "thread 't-9'" in message


def test_unknown_model_does_not_suggest_retrying() -> None:
    exc = openai.NotFoundError(
        "The model `gpt-9` does not exist", response=_response(404, "model not found"), body=None
    )
    error = translate(exc, thread_id="t-5")
    assert type(error) is ModelError
    assert error.status_code == 404
    message = str(error)
    assert "HTTP 404" in message
    assert "The model `gpt-9` does not exist" in message
    assert "MAX_RETRIES" not in message
    assert "after retries" not in message
    assert "BRAINSTACK_MODEL " in message
    assert "`model:`" in message
    assert "thread 't-5'" in message


def test_unknown_embedding_model_points_at_the_embedding_setting() -> None:
    request = httpx2.Request("POST", "https://api.openai.com/v1/embeddings")
    response = httpx2.Response(404, request=request, json={"error": {"message": "no such model"}})
    error = translate(openai.NotFoundError("no such model", response=response, body=None))
    assert error.status_code == 404  # type: ignore[attr-defined]
    assert "BRAINSTACK_EMBEDDING_MODEL" in str(error)
    assert "MAX_RETRIES" not in str(error)


@pytest.mark.parametrize(
    ("error_type", "status"),
    [
        (openai.BadRequestError, 400),
        (openai.PermissionDeniedError, 403),
        (openai.UnprocessableEntityError, 422),
    ],
)
def test_rejected_request_is_not_blamed_on_retries(
    error_type: type[openai.APIStatusError], status: int
) -> None:
    exc = error_type("Invalid 'messages[0].role'", response=_response(status, "bad"), body=None)
    error = translate(exc)
    assert type(error) is ModelError
    assert error.status_code == status
    message = str(error)
    assert f"HTTP {status}" in message
    assert "rejected the request" in message
    assert "Invalid 'messages[0].role'" in message
    assert "MAX_RETRIES" not in message


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 529])
def test_retried_statuses_suggest_more_retries(status: int) -> None:
    error = translate(
        openai.APIStatusError(f"Error code: {status} - busy", response=_response(status), body=None)
    )
    assert error.status_code == status  # type: ignore[attr-defined]
    # (not "after retries": with BRAINSTACK_MODEL_MAX_RETRIES=0 there were none; openai's own
    # "Error code: N - " is not repeated after the status, QA)
    assert str(error).startswith(
        f"The model endpoint returned HTTP {status} (retried up to BRAINSTACK_MODEL_MAX_RETRIES times): busy."
    )


# --- translate(): storage backends ------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "backend", "setting", "detail"),
    [
        (sqlite3.OperationalError("database is locked"), "SQLite", "BRAINSTACK_HOME", "database is locked"),
        (
            psycopg.OperationalError("connection to server at 127.0.0.1 failed"),
            "PostgreSQL",
            "BRAINSTACK_CHECKPOINT_URL",
            "connection to server",
        ),
        (
            redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused"),
            "Redis",
            "BRAINSTACK_REDIS_URL",
            "Connection refused",
        ),
        (
            redis.exceptions.TimeoutError("Timeout reading from socket"),
            "Redis",
            "BRAINSTACK_REDIS_URL",
            "Timeout reading",
        ),
    ],
    ids=["sqlite", "psycopg", "redis-connection", "redis-timeout"],
)
def test_backend_failures_become_backend_error(
    exc: Exception, backend: str, setting: str, detail: str
) -> None:
    error = translate(exc, thread_id="t-2")
    assert type(error) is BackendError
    assert error.thread_id == "t-2"
    message = str(error)
    assert backend in message
    assert f"{type(exc).__name__}: " in message
    assert detail in message
    assert setting in message  # the setting to check
    assert "'t-2'" in message  # how to resume


def test_backend_error_without_thread_has_no_resume_hint() -> None:
    message = str(translate(sqlite3.OperationalError("disk I/O error")))
    assert "disk I/O error" in message
    assert "thread" not in message


def test_a_sqlite_failure_points_at_the_folder_and_its_disk_not_at_a_server() -> None:
    message = str(translate(sqlite3.OperationalError("disk I/O error"), thread_id="t-3"))
    assert "Check that BRAINSTACK_HOME is a writable folder with free disk space." in message
    assert "is up" not in message


def test_builtin_connection_error_is_not_a_backend_error() -> None:
    # Only exceptions defined by the storage libraries count: a builtin one is a generic run failure.
    error = translate(ConnectionRefusedError("refused"))
    assert type(error) is RunError


# --- translate(): everything else -------------------------------------------------------


def test_unknown_exception_is_wrapped_as_run_error() -> None:
    original = ValueError("something odd")
    error = translate(original, thread_id="t-3")
    assert type(error) is RunError
    assert error is not original
    assert error.thread_id == "t-3"
    assert str(error) == (
        "The run failed: ValueError: something odd. The run's progress is saved on thread 't-3'."
    )


def test_unknown_exception_without_thread() -> None:
    assert str(translate(KeyError("k"))) == "The run failed: KeyError: 'k'."


def test_brainstack_error_is_returned_unchanged() -> None:
    original = InvalidTaskError("empty task")
    assert translate(original) is original
    assert original.thread_id is None


def test_brainstack_error_gets_the_thread_when_it_has_none() -> None:
    original = BackendError("down")
    assert translate(original, thread_id="t-4") is original
    assert original.thread_id == "t-4"


def test_brainstack_error_keeps_its_own_thread() -> None:
    original = ModelError("bad", thread_id="first")
    assert translate(original, thread_id="second") is original
    assert original.thread_id == "first"


def test_translate_can_be_raised_from_the_original() -> None:
    original = sqlite3.OperationalError("disk I/O error")
    with pytest.raises(BackendError) as caught:
        try:
            raise original
        except Exception as exc:
            raise translate(exc, thread_id="t") from exc
    assert caught.value.__cause__ is original


def test_a_foreign_message_ending_in_a_full_stop_gives_no_double_period():
    import redis

    from brainstack.errors import BackendError, translate

    error = translate(redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."))
    assert isinstance(error, BackendError)
    assert "Connection refused. Check that it is up" in str(error) and ".." not in str(error)
    assert ".." not in str(translate(RuntimeError("it broke.")))


def test_tasks_keep_tabs_line_breaks_and_printable_unicode() -> None:
    from brainstack.errors import InvalidTaskError

    task = "Compare:\n\tplan A: 5 €\r\n\tplan B: 7 € 🚀"
    assert InvalidTaskError.check(f"  {task}  ", 8000) == task


@pytest.mark.parametrize(
    ("task", "kept"),
    [
        ("Page 1 text\x0cPage 2 text", "Page 1 text\nPage 2 text"),  # a PDF's page break
        ("Line one\x0bline two", "Line one\nline two"),  # Word's and PowerPoint's soft line break
        ("First\x85second", "First\nsecond"),  # NEL
    ],
)
def test_pasted_page_and_line_breaks_are_line_breaks_not_refused(task: str, kept: str) -> None:
    from brainstack.errors import InvalidTaskError

    assert InvalidTaskError.check(task, 8000) == kept
    assert InvalidTaskError.check(kept, 8000) == kept  # the graph's first node checks it again


def test_a_missing_task_is_empty_and_one_of_another_type_is_named() -> None:
    from brainstack.errors import InvalidTaskError

    with pytest.raises(InvalidTaskError, match="The task is empty"):
        InvalidTaskError.check(None, 8000)  # a Studio input without a task
    with pytest.raises(InvalidTaskError, match=r"must be text \(str\), not list"):
        InvalidTaskError.check(["What is 2 + 2?"], 8000)


@pytest.mark.parametrize("task", ["\u200b\u200b", "\u202e", " \u2060\ufeff ", "\u200d\n\u200c"])
def test_a_task_of_only_invisible_characters_is_refused(task: str) -> None:
    from brainstack.errors import InvalidTaskError

    with pytest.raises(InvalidTaskError, match="The task has no visible characters"):
        InvalidTaskError.check(task, 8000)


def test_invisible_characters_inside_a_task_are_kept() -> None:
    from brainstack.errors import InvalidTaskError

    assert (
        InvalidTaskError.check("\u200bWhat is 2\u00a0+ 2?\u202c", 8000) == "\u200bWhat is 2\u00a0+ 2?\u202c"
    )


def test_a_chroma_failure_also_points_at_the_local_folder() -> None:
    """Chroma is a folder in BRAINSTACK_HOME unless BRAINSTACK_CHROMA_URL names a server: a corrupt
    local file used to be reported as a server to check only."""
    from chromadb.errors import InternalError

    message = str(translate(InternalError("file is not a database")))
    assert message.startswith("The Chroma backend failed: InternalError: file is not a database.")
    assert "BRAINSTACK_CHROMA_URL is right" in message and "BRAINSTACK_HOME/chroma" in message


def test_a_transport_error_from_a_backends_call_is_that_backends_failure() -> None:
    """QA: a Chroma server lost mid-run raised httpx's ConnectError, reported as "The run failed"."""
    import httpx2

    lost = httpx2.ConnectError("[Errno 111] Connection refused")
    error = translate(lost, backend="chromadb", thread_id="t1")
    assert isinstance(error, BackendError)
    assert str(error).startswith("The Chroma backend failed: ConnectError: [Errno 111] Connection refused.")
    assert "BRAINSTACK_CHROMA_URL" in str(error) and "Run again with thread 't1'" in str(error)
    assert isinstance(translate(ConnectionRefusedError(111, "refused"), backend="chromadb"), BackendError)
    assert not isinstance(translate(lost), BackendError)  # whose call it was is not known
    assert not isinstance(translate(ValueError("bad"), backend="chromadb"), BackendError)  # not transport


def test_autogen_errors_are_dropped_only_inside_a_brainstack_group_chat():
    """The filter on autogen_core's logger is process-wide: an autogen team of the host
    application's own logs its failures as it always did."""
    import logging

    import httpx2
    import openai

    from brainstack.agents import group_chat

    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    error = openai.APIConnectionError(request=request)
    record = logging.LogRecord(
        "autogen_core",
        logging.ERROR,
        __file__,
        1,
        "Error processing publish message",
        (),
        (type(error), error, None),
    )
    reported = group_chat._Reported()
    assert reported.filter(record)  # not ours: kept
    token = group_chat._CHAT_FAILURES.set([])
    try:
        assert not reported.filter(record)  # a brainstack chat reports it as the run's error
    finally:
        group_chat._CHAT_FAILURES.reset(token)
