"""The agents file: specialists, the group chat, and the examples the router learns from."""

from __future__ import annotations

from collections.abc import Hashable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from brainstack.errors import ConfigurationError

if TYPE_CHECKING:
    from brainstack.config.settings import Settings

__all__ = [
    "GROUP_CHAT",
    "AgentSpec",
    "AgentsConfig",
    "GroupChatSpec",
    "RoleSpec",
    "check_approval_routes",
    "load_agents",
    "load_yaml",
]

GROUP_CHAT = "group_chat"
"""The route name of the group chat; no specialist may use it."""

_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
_ROLE_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,39}$"
_WORD_PATTERN = r"^[A-Z][A-Z_]{2,30}$"

Name = Annotated[str, StringConstraints(pattern=_NAME_PATTERN)]
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

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, tools: list[str]) -> list[str]:
        from brainstack.tools import TOOL_NAMES

        unknown = sorted(set(tools) - TOOL_NAMES)
        if unknown:
            raise PydanticCustomError(
                "unknown_tool",
                "unknown tools {unknown}; available: {available}",
                {"unknown": str(unknown), "available": str(sorted(TOOL_NAMES))},
            )
        return tools


class RoleSpec(_Strict):
    """One member of the group chat."""

    name: Annotated[str, StringConstraints(pattern=_ROLE_PATTERN)]
    description: Text
    system_prompt: Text
    model: str | None = None


class GroupChatSpec(_Strict):
    """The AutoGen SelectorGroupChat for cross-functional decisions."""

    description: Text
    roles: list[RoleSpec] = Field(min_length=2)
    examples: list[Text] = Field(min_length=3)
    max_rounds: int = Field(default=6, ge=2, le=50, strict=True)  # (strict: `true` is not 1)
    termination_word: Annotated[str, StringConstraints(pattern=_WORD_PATTERN)] = "TERMINATE"
    selector_model: str | None = None

    @model_validator(mode="after")
    def _unique_roles(self) -> GroupChatSpec:
        names = [role.name for role in self.roles]
        if len({name.casefold() for name in names}) != len(names):
            # (the selector model names the next speaker: "cto" would be either of CTO and Cto)
            raise ValueError(f"role names must be unique, even ignoring case, got {names}")
        if any(name.casefold() == "user" for name in names):
            # AutoGen's name for the task's sender: that role's turns would be taken for the task.
            raise ValueError("'user' is reserved (AutoGen names the task's sender so); rename that role")
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
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot read agents file {where}: {exc.strerror or exc}. "
                f"Fix the path in BRAINSTACK_AGENTS_FILE (or --agents)."
            ) from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            lineno = raw[: exc.start].count(b"\n") + 1
            raise ConfigurationError(
                f"Agents file {where} is not UTF-8 text: byte {raw[exc.start]:#04x} on line {lineno} "
                f"cannot be decoded ({exc.reason}). Save the file as UTF-8."
            ) from exc
    try:
        data = load_yaml(text)
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


def load_yaml(text: str) -> Any:
    """``yaml.safe_load``, except that a key repeated in one mapping is a ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load``, except that a key repeated in one mapping is an error: PyYAML keeps the
    last one silently, so a second agent pasted under an existing name replaced the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: merged (and overridable)
                continue  # keys, which SafeLoader's construct_mapping flattens; no constructor of its own
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):  # unhashable: PyYAML says so
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)


def _explain(where: str, exc: ValidationError) -> str:
    lines = [f"Agents file {where} is invalid:"]
    for error in exc.errors()[:5]:
        field = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"  field {field}: {error['msg']}{_fix(error)}")
    if exc.error_count() > 5:
        lines.append(f"  … and {exc.error_count() - 5} more")
    return "\n".join(lines)


_FIXES = {
    "missing": "add this field",
    "extra_forbidden": "remove it or check its spelling",
    "too_short": "add more entries",
    "too_long": "remove entries",
    "string_too_short": "write some text; it must not be empty or blank",
    "string_too_long": "shorten it",
    "string_type": "use text (quote it if YAML reads it as a number, date or yes/no)",
    "int_parsing": "use a whole number, e.g. 6",
    "int_type": "use a whole number, e.g. 6",
    "int_from_float": "use a whole number, e.g. 6",
    "bool_parsing": "use true or false",
    "bool_type": "use true or false",
    "list_type": "use a YAML list: one '- item' per line, or [a, b, c]",
    "dict_type": "use a mapping: one 'key: value' per line",
    "model_type": "use a mapping: one 'key: value' per line",
    "model_attributes_type": "use a mapping: one 'key: value' per line",
    "unknown_tool": "use only the available tools, or remove the unknown ones",
}

_PATTERN_FIXES = {
    _NAME_PATTERN: "start with a lower-case letter and use only lower-case letters, digits and "
    "underscores (at most 40 characters)",
    _ROLE_PATTERN: "start with a letter and use only letters, digits and underscores (at most 40 "
    "characters), e.g. CTO",
    _WORD_PATTERN: "use 3 to 31 UPPER-case letters or underscores, e.g. TERMINATE",
}

# pydantic's range errors: (wording, the ctx key that holds the limit)
_BOUNDS = {
    "greater_than_equal": ("of at least", "ge"),
    "greater_than": ("greater than", "gt"),
    "less_than_equal": ("of at most", "le"),
    "less_than": ("less than", "lt"),
}


def _fix(error: ErrorDetails) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        fix = _PATTERN_FIXES.get(pattern, f"match the pattern {pattern}")
    elif kind in _BOUNDS:
        bound, key = _BOUNDS[kind]
        fix = f"use a number {bound} {ctx.get(key, 'the limit')}"
    else:
        fix = _FIXES.get(kind, "")
    return f" (fix: {fix})" if fix else ""


def check_approval_routes(settings: Settings, agents: AgentsConfig) -> None:
    """``ConfigurationError`` when approval is on and its routes name no route of ``agents``, or
    none at all. The Runtime checks when it is made, so the CLI says it before its banner."""
    approval = settings.approval_routes if settings.approval else ()
    routes = ", ".join([*agents.agents, GROUP_CHAT])
    unknown = set(approval) - {*agents.agents, GROUP_CHAT}
    if unknown:
        raise ConfigurationError(
            f"BRAINSTACK_APPROVAL_ROUTES names {', '.join(sorted(unknown))}, which is not a route; "
            f"use {routes}."
        )
    if settings.approval and not approval:  # no run would ever wait for the approval turned on
        raise ConfigurationError(
            f"BRAINSTACK_APPROVAL is on but BRAINSTACK_APPROVAL_ROUTES names no route; name one or "
            f"more of {routes} (unset: group_chat), or turn approval off."
        )
