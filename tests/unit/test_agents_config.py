"""The agents file: the built-in agents.yaml and the errors a broken user file produces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from brainstack import AgentsConfig, ConfigurationError
from brainstack.config.agents import GROUP_CHAT, load_agents

SPECIALISTS = ["technical", "finance", "marketing", "general"]


@pytest.fixture(scope="module")
def default() -> AgentsConfig:
    return load_agents()


def minimal() -> dict[str, Any]:
    """The smallest valid agents file."""
    return {
        "default_agent": "helper",
        "agents": {
            "helper": {
                "description": "Answers anything.",
                "system_prompt": "You are a helper.",
                "examples": ["hello", "help me", "what can you do"],
            }
        },
        "group_chat": {
            "description": "A two-person meeting.",
            "roles": [
                {"name": "Alice", "description": "Engineer.", "system_prompt": "You are Alice."},
                {"name": "Bob", "description": "Accountant.", "system_prompt": "You are Bob."},
            ],
            "examples": ["should we do it", "shall we launch", "decide on the plan"],
        },
    }


def write(tmp_path: Path, data: Any = None, *, text: str | None = None) -> Path:
    path = tmp_path / "my_agents.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False) if text is None else text, "utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_agents(path)
    return str(caught.value)


# --- The built-in file ------------------------------------------------------------------


def test_default_file_has_the_four_specialists(default: AgentsConfig) -> None:
    assert list(default.agents) == SPECIALISTS
    assert default.default_agent == "general"


@pytest.mark.parametrize("name", SPECIALISTS)
def test_default_specialist_is_complete(default: AgentsConfig, name: str) -> None:
    spec = default.agents[name]
    assert len(spec.description) > 20
    assert spec.system_prompt.lower().startswith(f"you are the {name}") or name == "general"
    assert len(spec.system_prompt) > 50
    assert isinstance(spec.tools, list)
    assert len(spec.examples) >= 10
    assert len(set(spec.examples)) == len(spec.examples), "duplicate examples"
    assert all(example.strip() == example and example for example in spec.examples)


def test_default_tools(default: AgentsConfig) -> None:
    assert default.agents["finance"].tools == ["calculator", "knowledge_search"]
    assert default.agents["technical"].tools == ["calculator", "knowledge_search"]
    assert default.agents["general"].tools == ["calculator", "knowledge_search"]
    assert default.agents["marketing"].tools == ["knowledge_search"]


def test_default_group_chat(default: AgentsConfig) -> None:
    chat = default.group_chat
    assert [role.name for role in chat.roles] == ["CTO", "CMO", "CFO"]
    for role in chat.roles:
        assert role.description
        assert role.system_prompt.startswith(f"You are the {role.name}.")
    assert 2 <= chat.max_rounds <= 50
    assert chat.max_rounds == 6
    assert chat.termination_word == "TERMINATE"
    assert len(chat.examples) >= 10
    assert all(name in chat.description for name in ("CTO", "CMO", "CFO"))


def test_default_examples_do_not_overlap_between_routes(default: AgentsConfig) -> None:
    seen: dict[str, str] = {}
    for route, examples in default.routes.items():
        for example in examples:
            assert example.lower() not in seen, f"{example!r} is in {seen.get(example.lower())} and {route}"
            seen[example.lower()] = route


def test_routes(default: AgentsConfig) -> None:
    routes = default.routes
    assert list(routes) == [*SPECIALISTS, GROUP_CHAT]
    assert GROUP_CHAT == "group_chat"
    assert routes["group_chat"] == default.group_chat.examples
    assert routes["finance"] == default.agents["finance"].examples
    routes["finance"].append("mutating the copy")
    assert "mutating the copy" not in default.routes["finance"]


def test_default_config_is_frozen(default: AgentsConfig) -> None:
    with pytest.raises(Exception, match="frozen"):
        default.default_agent = "finance"  # type: ignore[misc]


def test_default_file_round_trips_through_a_user_file(tmp_path: Path, default: AgentsConfig) -> None:
    path = write(tmp_path, default.model_dump(mode="json"))
    assert load_agents(path) == default
    assert load_agents(str(path)) == default


# --- A valid custom file ----------------------------------------------------------------


def test_minimal_custom_file_loads_with_defaults(tmp_path: Path) -> None:
    config = load_agents(write(tmp_path, minimal()))
    assert list(config.agents) == ["helper"]
    helper = config.agents["helper"]
    assert helper.tools == []
    assert helper.model is None
    assert helper.system_prompt == "You are a helper."
    assert [role.name for role in config.group_chat.roles] == ["Alice", "Bob"]
    assert config.group_chat.max_rounds == 6
    assert config.group_chat.termination_word == "TERMINATE"
    assert config.routes == {
        "helper": ["hello", "help me", "what can you do"],
        "group_chat": ["should we do it", "shall we launch", "decide on the plan"],
    }


def test_custom_file_overrides(tmp_path: Path) -> None:
    data = minimal()
    data["agents"]["helper"].update(tools=["calculator"], model="gpt-4o")
    data["group_chat"].update(max_rounds=10, termination_word="DONE_NOW", selector_model="small")
    data["group_chat"]["roles"][0]["model"] = "big"
    config = load_agents(write(tmp_path, data))
    assert config.agents["helper"].tools == ["calculator"]
    assert config.agents["helper"].model == "gpt-4o"
    assert config.group_chat.max_rounds == 10
    assert config.group_chat.termination_word == "DONE_NOW"
    assert config.group_chat.selector_model == "small"
    assert config.group_chat.roles[0].model == "big"


def test_text_fields_are_stripped(tmp_path: Path) -> None:
    data = minimal()
    data["agents"]["helper"]["system_prompt"] = "  You are a helper.\n"
    assert load_agents(write(tmp_path, data)).agents["helper"].system_prompt == "You are a helper."


# --- Invalid user files -----------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "agents.yaml"
    message = load_error(path)
    assert str(path) in message
    assert "No such file or directory" in message
    assert "BRAINSTACK_AGENTS_FILE" in message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    message = load_error(tmp_path)
    assert f"Cannot read agents file {tmp_path}" in message
    assert "BRAINSTACK_AGENTS_FILE" in message


def test_unreadable_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, text="agents:\n  helper: [unclosed\n  other: : x\n")
    message = load_error(path)
    assert str(path) in message
    assert "line 3" in message
    assert "not valid YAML" in message


def test_a_name_given_twice_is_refused_not_silently_replaced(tmp_path: Path) -> None:
    helper = yaml.safe_dump({"helper": minimal()["agents"]["helper"]}, sort_keys=False)
    text = yaml.safe_dump(minimal(), sort_keys=False).replace("agents:\n", "agents:\n" + _indent(helper), 1)
    path = write(tmp_path, text=text)
    message = load_error(path)
    assert str(path) in message
    assert "duplicate key 'helper'" in message
    assert f"line {text.splitlines().index('  helper:', 3) + 1}" in message  # the second one


def test_yaml_merge_keys_still_load_and_may_override(tmp_path: Path) -> None:
    """`<<: *anchor` shares fields between agents, as yaml.safe_load allowed; a merged key that the
    mapping sets again is an override, not a name given twice."""
    text = yaml.safe_dump(minimal(), sort_keys=False).replace("  helper:\n", "  helper: &agent\n", 1)
    text = text.replace(
        "group_chat:\n",
        "  second:\n    <<: *agent\n    description: Answers the rest.\n"
        "  third:\n    <<: [*agent]\ngroup_chat:\n",
        1,
    )
    config = load_agents(write(tmp_path, text=text))
    assert list(config.agents) == ["helper", "second", "third"]
    assert config.agents["second"].description == "Answers the rest."
    assert config.agents["third"].system_prompt == config.agents["helper"].system_prompt


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_bytes("# agents\ndefault_agent: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigurationError) as caught:
        load_agents(path)
    message = str(caught.value)
    assert str(path) in message
    assert "UTF-8" in message
    assert "0xe9 on line 2" in message
    assert isinstance(caught.value.__cause__, UnicodeDecodeError)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a\n- b\n", "just a string\n", "42\n"])
def test_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text=text)
    message = load_error(path)
    assert str(path) in message
    assert "must be a mapping with 'agents' and 'group_chat' keys" in message


def test_unknown_tool(tmp_path: Path) -> None:
    data = minimal()
    data["agents"]["helper"]["tools"] = ["calculator", "web_search"]
    message = load_error(write(tmp_path, data))
    assert str(tmp_path / "my_agents.yaml") in message
    assert "agents.helper.tools" in message  # the agent, by its field path
    assert "['web_search']" in message
    assert "available: ['calculator', 'knowledge_search']" in message


def test_unknown_tool_names_the_field(tmp_path: Path) -> None:
    data = minimal()
    data["agents"]["helper"]["tools"] = ["web_search"]
    message = load_error(write(tmp_path, data))
    assert (
        "field agents.helper.tools: unknown tools ['web_search']; "
        "available: ['calculator', 'knowledge_search']" in message
    )
    assert "(top level)" not in message
    assert "fix: use only the available tools" in message


def test_unknown_tools_are_reported_per_agent(tmp_path: Path) -> None:
    data = minimal()
    data["agents"]["helper"]["tools"] = ["web_search"]
    data["agents"]["other"] = {**data["agents"]["helper"], "tools": ["calculator", "shell"]}
    message = load_error(write(tmp_path, data))
    assert "field agents.helper.tools: unknown tools ['web_search']" in message
    assert "field agents.other.tools: unknown tools ['shell']" in message


# (how to break minimal(), the field the message must name, the fix it must suggest)
INVALID: list[tuple[str, Any, str, str]] = [
    ("empty examples", ("agents", "helper", "examples", []), "agents.helper.examples", "add more entries"),
    (
        "too few examples",
        ("agents", "helper", "examples", ["one", "two"]),
        "agents.helper.examples",
        "add more entries",
    ),
    (
        "empty group chat examples",
        ("group_chat", "examples", []),
        "group_chat.examples",
        "add more entries",
    ),
    ("missing roles", ("group_chat", "roles", None), "group_chat.roles", "add this field"),
    (
        "one role",
        ("group_chat", "roles", [minimal()["group_chat"]["roles"][0]]),
        "group_chat.roles",
        "add more entries",
    ),
    ("missing group chat", ("group_chat", None), "group_chat", "add this field"),
    ("missing agents", ("agents", None), "agents", "add this field"),
    (
        "missing system prompt",
        ("agents", "helper", "system_prompt", None),
        "agents.helper.system_prompt",
        "add this field",
    ),
    ("unknown agent key", ("agents", "helper", "tool", ["calculator"]), "agents.helper.tool", "spelling"),
    ("unknown top-level key", ("routing", {"x": 1}), "routing", "remove it or check its spelling"),
    (
        "unknown role key",
        ("group_chat", "roles", 0, "nam", "X"),
        "group_chat.roles.0.nam",
        "remove it or check its spelling",
    ),
    (
        "upper-case agent name",
        ("agents", "Helper", minimal()["agents"]["helper"]),
        "agents.Helper",
        "lower-case",
    ),
]


def _apply(data: dict[str, Any], change: tuple[Any, ...]) -> dict[str, Any]:
    *path, key, value = change
    target: Any = data
    for part in path:
        target = target[part]
    if value is None:
        del target[key]
    else:
        target[key] = value
    return data


@pytest.mark.parametrize(
    ("change", "field", "fix"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_file_names_path_field_and_fix(tmp_path: Path, change: tuple, field: str, fix: str) -> None:
    path = write(tmp_path, _apply(minimal(), change))
    message = load_error(path)
    assert f"Agents file {path} is invalid" in message
    assert f"field {field}" in message
    assert "fix:" in message
    assert fix in message


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (("default_agent", "nobody"), "default_agent 'nobody'", "is not one of the agents ['helper']"),
        (("agents", "group_chat", minimal()["agents"]["helper"]), "'group_chat'", "rename that agent"),
        (("group_chat", "roles", 1, "name", "Alice"), "group_chat", "role names must be unique"),
        (("group_chat", "roles", 1, "name", "ALICE"), "group_chat", "must be unique, even ignoring case"),
        (("group_chat", "roles", 1, "name", "User"), "group_chat", "'user' is reserved"),
    ],
    ids=[
        "unknown default agent",
        "reserved agent name",
        "duplicate role",
        "role differing in case",
        "role named user",
    ],
)
def test_cross_field_errors_explain_themselves(
    tmp_path: Path, change: tuple, field: str, reason: str
) -> None:
    path = write(tmp_path, _apply(minimal(), change))
    message = load_error(path)
    assert str(path) in message
    assert field in message
    assert reason in message


# Wrong types and out-of-range values: the message names the path and the field...
WRONG_TYPES: list[tuple[str, tuple, str]] = [
    ("max_rounds not a number", ("group_chat", "max_rounds", "many"), "group_chat.max_rounds"),
    ("max_rounds too small", ("group_chat", "max_rounds", 1), "group_chat.max_rounds"),
    ("max_rounds true", ("group_chat", "max_rounds", True), "group_chat.max_rounds"),
    ("examples not a list", ("agents", "helper", "examples", "just one"), "agents.helper.examples"),
    ("tools not a list", ("agents", "helper", "tools", "calculator"), "agents.helper.tools"),
    ("agents not a mapping", ("agents", ["helper"]), "agents"),
    ("blank system prompt", ("agents", "helper", "system_prompt", "   "), "agents.helper.system_prompt"),
]


@pytest.mark.parametrize(("change", "field"), [c[1:] for c in WRONG_TYPES], ids=[c[0] for c in WRONG_TYPES])
def test_wrong_types_name_path_and_field(tmp_path: Path, change: tuple, field: str) -> None:
    path = write(tmp_path, _apply(minimal(), change))
    message = load_error(path)
    assert f"Agents file {path} is invalid" in message
    assert f"field {field}:" in message


# ...and suggests a fix that fits the error.
WRONG_TYPE_FIXES = [
    "use a whole number",
    "use a number of at least 2",
    "use a whole number",
    "use a YAML list",
    "use a YAML list",
    "use a mapping",
    "must not be empty or blank",
]


@pytest.mark.parametrize(
    ("change", "fix"),
    [(c[1], fix) for c, fix in zip(WRONG_TYPES, WRONG_TYPE_FIXES, strict=True)],
    ids=[c[0] for c in WRONG_TYPES],
)
def test_wrong_types_suggest_a_fix(tmp_path: Path, change: tuple, fix: str) -> None:
    message = load_error(write(tmp_path, _apply(minimal(), change)))
    assert "fix:" in message
    assert fix in message


def test_too_many_rounds_suggests_the_maximum(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, _apply(minimal(), ("group_chat", "max_rounds", 51))))
    assert "field group_chat.max_rounds" in message
    assert "fix: use a number of at most 50" in message


def test_termination_word_fix_is_not_lower_case(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, _apply(minimal(), ("group_chat", "termination_word", "done"))))
    assert "field group_chat.termination_word" in message
    assert "lower-case" not in message
    assert "UPPER-case" in message


def test_role_name_fix_allows_capitals(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, _apply(minimal(), ("group_chat", "roles", 0, "name", "The CTO"))))
    assert "field group_chat.roles.0.name" in message
    assert "lower-case" not in message
    assert "use only letters, digits and underscores" in message


def test_agent_name_fix_is_lower_case(tmp_path: Path) -> None:
    data = _apply(minimal(), ("default_agent", "Helper"))
    message = load_error(write(tmp_path, data))
    assert "field default_agent" in message
    assert "fix: start with a lower-case letter" in message


def test_many_errors_are_summarised(tmp_path: Path) -> None:
    data = minimal()
    data.update(a=1, b=2, c=3, d=4, e=5, f=6, g=7)
    message = load_error(write(tmp_path, data))
    assert message.count("  field ") == 5
    assert "… and 2 more" in message


def test_error_is_a_usage_error_and_keeps_the_cause(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from brainstack import UsageError

    with pytest.raises(UsageError) as caught:
        load_agents(write(tmp_path, _apply(minimal(), ("agents", None))))
    assert isinstance(caught.value, ConfigurationError)
    assert isinstance(caught.value.__cause__, ValidationError)
