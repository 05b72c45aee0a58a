"""Memory layers and the embeddings they share.

>>> from brainstack.memory import EpisodicMemory, open_chroma       # doctest: +SKIP
>>> memory = EpisodicMemory(open_chroma(path="/tmp/episodes"))      # doctest: +SKIP
>>> memory.add("ada", "Decided to launch freemium")                 # doctest: +SKIP
>>> memory.search("ada", "free plan", k=5)                          # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from brainstack.memory.embeddings import (
    Embedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
    QueryFastEmbedder,
    chroma_embedding_function,
    default_embedder,
    llamaindex_embedding,
    router_embedder,
)

if TYPE_CHECKING:
    from brainstack.memory.episodic import Episode, EpisodicMemory, open_chroma
    from brainstack.memory.gateway import MemoryGateway
    from brainstack.memory.knowledge import KnowledgeBase, Passage
    from brainstack.memory.skills import Skill, SkillStore
    from brainstack.memory.working import InProcessWorkingMemory, RedisWorkingMemory, WorkingMemory

__all__ = [
    "Embedder",
    "Episode",
    "EpisodicMemory",
    "InProcessWorkingMemory",
    "KnowledgeBase",
    "MemoryGateway",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "Passage",
    "QueryFastEmbedder",
    "RedisWorkingMemory",
    "Skill",
    "SkillStore",
    "WorkingMemory",
    "chroma_embedding_function",
    "default_embedder",
    "llamaindex_embedding",
    "open_chroma",
    "router_embedder",
]

_LAZY = {
    "Episode": "episodic",
    "EpisodicMemory": "episodic",
    "open_chroma": "episodic",
    "MemoryGateway": "gateway",
    "KnowledgeBase": "knowledge",
    "Passage": "knowledge",
    "Skill": "skills",
    "SkillStore": "skills",
    "InProcessWorkingMemory": "working",
    "RedisWorkingMemory": "working",
    "WorkingMemory": "working",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"brainstack.memory.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'brainstack.memory' has no attribute {name!r}")
