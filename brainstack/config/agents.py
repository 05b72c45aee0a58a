"""The agents file: specialists, the group chat, and the examples the router learns from."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from brainstack.errors import ConfigurationError

__all__ = ["GROUP_CHAT", "AgentSpec", "AgentsConfig", "GroupChatSpec", "RoleSpec", "load_agents"]

GROUP_CHAT = "group_chat"
"""The route name of the group chat; no specialist may use it."""

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentSpec(_Strict):
    """One specialist: a tool-calling agent with its own prompt."""

    description: Text
    system_prompt: Text
    tools: list[str] = Field(default_factory=list)
    examples: list[Text] = Field(min_length=3)
    """Utterances that should route here (the semantic router learns from them)."""
    model: str | None = None
    """Chat model for this agent; the settings' default when unset."""


class RoleSpec(_Strict):
    """One member of the group chat."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,39}$")]
    description: Text
    system_prompt: Text
    model: str | None = None


class GroupChatSpec(_Strict):
    """The AutoGen SelectorGroupChat for cross-functional decisions."""

    description: Text
    roles: list[RoleSpec] = Field(min_length=2)
    examples: list[Text] = Field(min_length=3)
    max_rounds: int = Field(default=6, ge=2, le=50)
    termination_word: Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z_]{2,30}$")] = "TERMINATE"
    selector_model: str | None = None

    @model_validator(mode="after")
    def _unique_roles(self) -> GroupChatSpec:
        names = [role.name for role in self.roles]
        if len(set(names)) != len(names):
            raise ValueError(f"role names must be unique, got {names}")
        return self


class AgentsConfig(_Strict):
    """The whole agents file."""

    default_agent: Name = "general"
    agents: dict[Name, AgentSpec] = Field(min_length=1)
    group_chat: GroupChatSpec

    @model_validator(mode="after")
    def _check_names(self) -> AgentsConfig:
        if GROUP_CHAT in self.agents:
            raise ValueError(f"{GROUP_CHAT!r} is reserved for the group chat; rename that agent")
        if self.default_agent not in self.agents:
            raise ValueError(
                f"default_agent {self.default_agent!r} is not one of the agents {sorted(self.agents)}"
            )
        from brainstack.tools import TOOL_NAMES

        for name, spec in self.agents.items():
            unknown = sorted(set(spec.tools) - TOOL_NAMES)
            if unknown:
                raise ValueError(
                    f"agent {name!r} lists unknown tools {unknown}; available: {sorted(TOOL_NAMES)}"
                )
        return self

    @property
    def routes(self) -> dict[str, list[str]]:
        """Route name → example utterances, for the semantic router."""
        routes = {name: list(spec.examples) for name, spec in self.agents.items()}
        routes[GROUP_CHAT] = list(self.group_chat.examples)
        return routes


def load_agents(path: str | Path | None = None) -> AgentsConfig:
    """Load and validate an agents file (the built-in one when ``path`` is None)."""
    if path is None:
        text = resources.files("brainstack.config").joinpath("agents.yaml").read_text("utf-8")
        where = "built-in agents.yaml"
    else:
        where = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot read agents file {where}: {exc.strerror or exc}. "
                f"Fix the path in BRAINSTACK_AGENTS_FILE (or --agents)."
            ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigurationError(
            f"Agents file {where}{line} is not valid YAML: {getattr(exc, 'problem', exc)}."
        ) from exc
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"Agents file {where} must be a mapping with 'agents' and 'group_chat' keys."
        )
    try:
        return AgentsConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(_explain(where, exc)) from exc


def _explain(where: str, exc: ValidationError) -> str:
    lines = [f"Agents file {where} is invalid:"]
    for error in exc.errors()[:5]:
        field = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"  field {field}: {error['msg']}{_fix(error['type'])}")
    if exc.error_count() > 5:
        lines.append(f"  … and {exc.error_count() - 5} more")
    return "\n".join(lines)


_FIXES = {
    "missing": "add this field",
    "extra_forbidden": "remove it or check its spelling",
    "too_short": "add more entries",
    "string_pattern_mismatch": "use lower-case letters, digits and underscores",
}


def _fix(error_type: str) -> str:
    fix = _FIXES.get(error_type)
    return f" (fix: {fix})" if fix else ""
