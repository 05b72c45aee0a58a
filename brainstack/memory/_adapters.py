"""Chroma and LlamaIndex wrappers around an :class:`~brainstack.memory.embeddings.Embedder`.

Kept apart from ``embeddings.py`` so the router never imports chromadb or llama-index; the
LlamaIndex class is only defined (and llama-index imported) when first asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

from brainstack.errors import ConfigurationError
from brainstack.memory.embeddings import (
    MINILM_NAME,
    Embedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
    QueryFastEmbedder,
    _existing_minilm,
    _openai_from_settings,
    _shared_minilm,
    query_embedding,
)

__all__ = ["BrainstackChromaEmbedding"]  # and BrainstackLlamaEmbedding, defined on first use


@register_embedding_function
class BrainstackChromaEmbedding(EmbeddingFunction[Documents]):
    """Chroma embedding function; vectors are normalised, so cosine space is the natural one.

    Registered with Chroma, which otherwise learns it only when a collection is created with it:
    a process that only opened existing collections could not read or change their configuration
    ("Embedding function brainstack not found")."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embedder.embed(list(input)))

    def embed_query(self, input: Documents) -> Embeddings:
        """What Chroma embeds ``query_texts`` with: the embedder's query side."""
        return [query_embedding(self.embedder, text) for text in input]

    @staticmethod
    def name() -> str:
        return "brainstack"

    def default_space(self) -> Space:
        return "cosine"

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"embedder": self.embedder.name, "dim": self.embedder.dim}
        stored = self.embedder.documents if isinstance(self.embedder, QueryFastEmbedder) else self.embedder
        if isinstance(stored, MiniLMEmbedder):
            config["cache_dir"] = str(stored.cache_dir.absolute())
        elif isinstance(stored, OpenAIEmbedder) and stored.dimensions:
            config["dimensions"] = stored.dimensions
        return config

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> BrainstackChromaEmbedding:
        """Rebuild the function Chroma persisted with a collection (Chroma also calls this on create).

        MiniLM comes back with the same cache folder (when it still exists there), ``openai:<model>``
        with the key and endpoint of the current settings. Any other embedder cannot be rebuilt
        from a config: it comes back as a stand-in that says so when it is asked to embed, so the
        collection still opens (pass ``embedding_function=`` to query it). Never raising here keeps
        Chroma from treating the function as legacy (``l2`` space, DeprecationWarning).
        """
        from brainstack.config import Settings

        name = str(config.get("embedder", ""))
        if name == MINILM_NAME:
            cache_dir = config.get("cache_dir")
            # Chroma rebuilds the function from the config on some calls (twice per memory-on run):
            # reuse the app's session without reading the settings (~1.7 ms) each time.
            known = _existing_minilm(str(cache_dir)) if cache_dir else None
            if known is not None:
                return BrainstackChromaEmbedding(known)
            try:
                settings: Settings | None = Settings.from_env()
            except ConfigurationError:  # never raise here (see above): the default thread count
                settings = None
            if not (cache_dir and Path(cache_dir).is_dir()):  # an older config, or moved elsewhere
                cache_dir = (settings or Settings.from_env()).cache_dir
            threads = settings.embed_threads if settings else None  # the app's session, not another
            return BrainstackChromaEmbedding(_shared_minilm(str(cache_dir), threads=threads))
        if name.startswith("openai:"):
            model = name.removeprefix("openai:")
            dimensions = config.get("dimensions")
            return BrainstackChromaEmbedding(
                _openai_from_settings(Settings.from_env(), model, dimensions=dimensions)
            )
        return BrainstackChromaEmbedding(_NotRebuilt(name, int(config.get("dim") or 0)))

    def __repr__(self) -> str:
        return f"BrainstackChromaEmbedding({self.embedder!r})"


class _NotRebuilt:
    """Stands in for an embedder that a Chroma config cannot recreate; fails clearly when used."""

    def __init__(self, name: str, dim: int) -> None:
        self.name = name
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise ConfigurationError(
            f"cannot rebuild embedder {self.name!r} from a Chroma config: open the collection with "
            f"embedding_function=chroma_embedding_function(<the embedder>)."
        )

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    embed_query = embed_one  # one model: a query is embedded like anything else

    def __repr__(self) -> str:
        return f"_NotRebuilt({self.name!r})"


_llama_class: Any = None


def __getattr__(name: str) -> Any:
    if name == "BrainstackLlamaEmbedding":
        return _define_llama_class()
    raise AttributeError(name)


def _define_llama_class() -> Any:
    global _llama_class
    if _llama_class is not None:
        return _llama_class
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from pydantic import PrivateAttr

    class BrainstackLlamaEmbedding(BaseEmbedding):
        """LlamaIndex embedding model (no query/document instruction: MiniLM uses none)."""

        _embedder: Any = PrivateAttr()

        def __init__(self, embedder: Embedder, **kwargs: Any) -> None:
            kwargs.setdefault("model_name", embedder.name)
            kwargs.setdefault("embed_batch_size", 64)
            super().__init__(**kwargs)
            self._embedder = embedder

        @classmethod
        def class_name(cls) -> str:
            return "BrainstackEmbedding"

        def _get_query_embedding(self, query: str) -> list[float]:
            return [float(x) for x in query_embedding(self._embedder, query)]

        def _get_text_embedding(self, text: str) -> list[float]:
            return [float(x) for x in self._embedder.embed_one(text)]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            vectors: list[list[float]] = self._embedder.embed(texts).tolist()
            return vectors

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        async def _aget_text_embedding(self, text: str) -> list[float]:
            return self._get_text_embedding(text)

    _llama_class = BrainstackLlamaEmbedding
    return _llama_class
