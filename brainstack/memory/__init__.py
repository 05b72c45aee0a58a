"""Memory layers and the embeddings they share."""

from brainstack.memory.embeddings import (
    Embedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
    chroma_embedding_function,
    default_embedder,
    llamaindex_embedding,
)

__all__ = [
    "Embedder",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "chroma_embedding_function",
    "default_embedder",
    "llamaindex_embedding",
]
