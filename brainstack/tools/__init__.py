"""Tools the agents can call, by the names agents.yaml uses."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from brainstack.memory.gateway import MemoryGateway
    from brainstack.memory.knowledge import Passage

__all__ = ["MEMORY_TOOLS", "TOOL_NAMES", "format_passages", "get_tools"]

TOOL_NAMES = frozenset({"calculator", "knowledge_search"})
MEMORY_TOOLS = frozenset({"knowledge_search"})
"""Tools that read the runtime's memory: an agent has them only with memory on
(``BRAINSTACK_MEMORY``), and skills, which run without a runtime, may not call them."""
KNOWLEDGE_SEARCH_K = 4
"""Passages a ``knowledge_search`` call weighs (the relevant ones are returned)."""


def format_passages(passages: Sequence[Passage]) -> str:
    """Passages as a tool result: each numbered, with its file to cite and its similarity. The
    file is named as recall names it in the prompt, without its folders (which tell the model
    nothing it should cite, and may name a user or a private path)."""
    return "\n\n".join(
        f"[{n}] {Path(p.source).name} (chunk {p.chunk}, similarity {p.score:.2f})\n{p.text.strip()}"
        for n, p in enumerate(passages, start=1)
    )


def get_tools(names: Iterable[str], *, memory: MemoryGateway | None = None) -> list[BaseTool]:
    """LangChain tools for the given names (validated against :data:`TOOL_NAMES`). Without
    ``memory``, the :data:`MEMORY_TOOLS` among them are left out."""
    from langchain_core.tools import tool

    from brainstack.errors import ConfigurationError
    from brainstack.tools.calculator import CalculatorError, calculate, format_number

    @tool("calculator")
    def calculator(expression: str) -> str:
        """Evaluate arithmetic exactly, e.g. '17.5% of 2340' or '(1200000 / 85000) * 30'.
        Supports + - * / // % ** and parentheses; '12%' is 0.12, '7 % 3' is modulo."""
        try:
            return format_number(calculate(expression))
        except CalculatorError as exc:
            return f"error: {exc}"

    available: dict[str, BaseTool] = {"calculator": calculator}
    if memory is not None:
        gateway = memory

        @tool("knowledge_search")
        async def knowledge_search(query: str) -> str:
            """Search the team's documents (the knowledge base: policies, prices, runbooks, plans)
            for passages about `query`, with the file each comes from, to quote and cite.
            Passages already found for this task are in your instructions; search when you need
            something else, in a few specific words."""
            from brainstack.memory.gateway import relevant_passages

            if not query.strip():
                return "error: the query is empty; say what to look for"
            # (``gateway.knowledge`` too off the event loop: the first use opens the collection)
            found = await asyncio.to_thread(lambda: gateway.knowledge.search(query, KNOWLEDGE_SEARCH_K))
            if not found:
                empty = await asyncio.to_thread(lambda: gateway.knowledge.count()) == 0
                return "The knowledge base is empty." if empty else "No passage matches that query."
            passages = relevant_passages(query, found)
            if not passages:
                return "No passage in the knowledge base is relevant to that query."
            return format_passages(passages)

        available["knowledge_search"] = knowledge_search
    names = list(names)
    unknown = [name for name in names if name not in TOOL_NAMES]
    if unknown:
        raise ConfigurationError(
            f"Unknown tool(s) {unknown}; available: {sorted(TOOL_NAMES)}. "
            "Fix the tools: list in the agents file."
        )
    return [available[name] for name in names if name in available]
