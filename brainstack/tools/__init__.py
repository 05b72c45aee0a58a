"""Tools the agents can call, by the names agents.yaml uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

__all__ = ["TOOL_NAMES", "get_tools"]

TOOL_NAMES = frozenset({"calculator"})


def get_tools(names: list[str]) -> list[BaseTool]:
    """LangChain tools for the given names (validated against :data:`TOOL_NAMES`)."""
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
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ConfigurationError(
            f"Unknown tool(s) {unknown}; available: {sorted(available)}. "
            "Fix the tools: list in the agents file."
        )
    return [available[name] for name in names]
