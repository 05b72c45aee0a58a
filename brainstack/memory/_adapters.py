"""Chroma and LlamaIndex wrappers around an :class:`~brainstack.memory.embeddings.Embedder`.

Kept apart from ``embeddings.py`` so the router never imports chromadb or llama-index.
"""

from __future__ import annotations

from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from brainstack.memory.embeddings import MINILM_NAME, Embedder, MiniLMEmbedder

__all__ = ["BrainstackChromaEmbedding", "BrainstackLlamaEmbedding"]


class BrainstackChromaEmbedding(EmbeddingFunction[Documents]):
    """Chroma embedding function; vectors are normalised, so cosine space is the natural one."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embedder.embed(list(input)))

    @staticmethod
    def name() -> str:
        return "brainstack"

    def default_space(self) -> Space:
        return "cosine"

    def get_config(self) -> dict[str, Any]:
        return {"embedder": self.embedder.name, "dim": self.embedder.dim}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> BrainstackChromaEmbedding:
        # Chroma persists the config with the collection; only the local model can be rebuilt
        # from it without credentials. Other embedders are passed explicitly by brainstack.
        if config.get("embedder") != MINILM_NAME:
            raise ValueError(f"cannot rebuild embedder {config.get('embedder')!r} from a Chroma config")
        return BrainstackChromaEmbedding(MiniLMEmbedder())

    def __repr__(self) -> str:
        return f"BrainstackChromaEmbedding({self.embedder!r})"


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
        return [float(x) for x in self._embedder.embed_one(query)]

    def _get_text_embedding(self, text: str) -> list[float]:
        return [float(x) for x in self._embedder.embed_one(text)]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = self._embedder.embed(texts).tolist()
        return vectors

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embedding(text)
