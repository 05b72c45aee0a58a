"""Settings: BRAINSTACK_* environment variables, the OpenAI aliases and the provider choice."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from brainstack import Settings
from brainstack.errors import ConfigurationError


def test_defaults_with_a_clean_environment() -> None:
    settings = Settings()
    assert settings.provider == "auto"
    assert settings.resolved_provider == "offline"
    assert settings.openai_api_key is None
    assert settings.openai_base_url is None
    assert settings.agents_file is None
    assert settings.checkpoint_url is None
    assert settings.model == "gpt-4o-mini"
    assert settings.embeddings == "local"
    assert settings.sqlite_synchronous == "full"  # every checkpoint survives a power cut
    assert settings.home.name == "brainstack"
    assert settings.cache_dir.name == "brainstack"
    assert settings.home.is_absolute()


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("BRAINSTACK_HOME", "/srv/brain", "home", Path("/srv/brain")),
        ("BRAINSTACK_CACHE_DIR", "/srv/cache", "cache_dir", Path("/srv/cache")),
        ("BRAINSTACK_AGENTS_FILE", "/etc/agents.yaml", "agents_file", Path("/etc/agents.yaml")),
        ("BRAINSTACK_MODEL", "gpt-4.1", "model", "gpt-4.1"),
        ("BRAINSTACK_MODEL_MAX_RETRIES", "5", "model_max_retries", 5),
        ("BRAINSTACK_MODEL_TIMEOUT_S", "2.5", "model_timeout_s", 2.5),
        ("BRAINSTACK_TEMPERATURE", "0", "temperature", 0.0),
        ("BRAINSTACK_EMBEDDINGS", "openai", "embeddings", "openai"),
        ("BRAINSTACK_EMBEDDING_MODEL", "text-embedding-3-large", "embedding_model", "text-embedding-3-large"),
        ("BRAINSTACK_CHECKPOINT_URL", "postgresql://db/x", "checkpoint_url", "postgresql://db/x"),
        ("BRAINSTACK_ROUTER_THRESHOLD", "0.5", "router_threshold", 0.5),
        ("BRAINSTACK_ROUTER_THRESHOLD", "-0.25", "router_threshold", -0.25),
        ("BRAINSTACK_ROUTER_MARGIN", "0.1", "router_margin", 0.1),
        ("BRAINSTACK_MAX_TASK_CHARS", "100", "max_task_chars", 100),
        ("BRAINSTACK_HISTORY_MESSAGES", "0", "history_messages", 0),
        ("BRAINSTACK_MAX_TOOL_ROUNDS", "3", "max_tool_rounds", 3),
        ("BRAINSTACK_PROVIDER", "offline", "provider", "offline"),
        ("BRAINSTACK_SQLITE_SYNCHRONOUS", "normal", "sqlite_synchronous", "normal"),
        (
            "BRAINSTACK_OPENAI_BASE_URL",
            "http://localhost:8000/v1",
            "openai_base_url",
            "http://localhost:8000/v1",
        ),
        ("OPENAI_BASE_URL", "http://localhost:11434/v1", "openai_base_url", "http://localhost:11434/v1"),
    ],
)
def test_reads_environment(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(Settings(), field) == expected
    assert getattr(Settings.from_env(), field) == expected


def test_unprefixed_names_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL", "not-mine")
    monkeypatch.setenv("HOME_DIR", "/nope")
    monkeypatch.setenv("BRAINSTACK_NOT_A_SETTING", "ignored")
    settings = Settings()
    assert settings.model == "gpt-4o-mini"
    assert not hasattr(settings, "not_a_setting")


@pytest.mark.parametrize("variable", ["OPENAI_API_KEY", "BRAINSTACK_OPENAI_API_KEY"])
def test_api_key_aliases_are_secret(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "sk-test-123")
    settings = Settings()
    assert isinstance(settings.openai_api_key, SecretStr)
    assert settings.openai_api_key.get_secret_value() == "sk-test-123"
    assert "sk-test-123" not in repr(settings)
    assert "sk-test-123" not in str(settings.model_dump())


def test_brainstack_prefixed_alias_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-generic")
    monkeypatch.setenv("BRAINSTACK_OPENAI_API_KEY", "sk-brainstack")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://generic/v1")
    monkeypatch.setenv("BRAINSTACK_OPENAI_BASE_URL", "http://brainstack/v1")
    settings = Settings()
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-brainstack"
    assert settings.openai_base_url == "http://brainstack/v1"


def test_keyword_overrides_beat_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BRAINSTACK_MODEL", "from-env")
    monkeypatch.setenv("BRAINSTACK_HOME", "/from/env")
    settings = Settings.from_env(model="from-kwarg", home=tmp_path)
    assert settings.model == "from-kwarg"
    assert settings.home == tmp_path


def test_auto_provider_is_offline_with_nothing_set() -> None:
    assert Settings().resolved_provider == "offline"


@pytest.mark.parametrize(
    "env",
    [
        {"OPENAI_API_KEY": "sk-x"},
        {"BRAINSTACK_OPENAI_API_KEY": "sk-x"},
        {"OPENAI_BASE_URL": "http://localhost:8000/v1"},
        {"BRAINSTACK_OPENAI_BASE_URL": "http://localhost:8000/v1"},
    ],
)
def test_auto_provider_is_openai_with_a_key_or_base_url(monkeypatch: pytest.MonkeyPatch, env: dict) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.provider == "auto"
    assert settings.resolved_provider == "openai"


@pytest.mark.parametrize("variable", ["OPENAI_API_KEY", "OPENAI_BASE_URL"])
def test_blank_key_or_url_counts_as_unset(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "")
    assert Settings().resolved_provider == "offline"


@pytest.mark.parametrize(
    "variable",
    [
        "BRAINSTACK_AGENTS_FILE",
        "BRAINSTACK_LOCAL_MODEL_PATH",
        "BRAINSTACK_CHECKPOINT_URL",
        "BRAINSTACK_CHROMA_URL",
        "BRAINSTACK_SKILLS_DIR",
        "BRAINSTACK_REDIS_URL",
    ],
)
def test_blank_optional_settings_count_as_unset(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "  ")
    settings = Settings()
    assert getattr(settings, variable.removeprefix("BRAINSTACK_").lower()) is None


def test_blank_home_and_cache_are_the_defaults_not_the_current_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = Settings()
    monkeypatch.setenv("BRAINSTACK_HOME", "")
    monkeypatch.setenv("BRAINSTACK_CACHE_DIR", " ")
    blank = Settings()
    assert (blank.home, blank.cache_dir) == (defaults.home, defaults.cache_dir)
    assert blank.home.is_absolute() and blank.sqlite_path != Path("checkpoints.sqlite")


def test_a_blank_model_is_the_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAINSTACK_MODEL", " ")  # an empty name would only fail at the first call
    assert Settings().model == Settings.model_fields["model"].default == "gpt-4o-mini"


def test_blank_approval_routes_are_the_default_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Blank is "not set", as for every other setting; " , " names no route (the graph refuses it).
    monkeypatch.setenv("BRAINSTACK_APPROVAL_ROUTES", "")
    assert Settings().approval_routes == Settings.model_fields["approval_routes"].default == ("group_chat",)
    monkeypatch.setenv("BRAINSTACK_APPROVAL_ROUTES", " , ")
    assert Settings().approval_routes == ()


def test_explicit_offline_wins_over_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("BRAINSTACK_PROVIDER", "offline")
    assert Settings().resolved_provider == "offline"
    assert Settings(provider="offline", openai_base_url="http://x/v1").resolved_provider == "offline"


def test_explicit_openai_wins_without_a_key() -> None:
    assert Settings(provider="openai").resolved_provider == "openai"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BRAINSTACK_ROUTER_THRESHOLD", "5"),
        ("BRAINSTACK_ROUTER_THRESHOLD", "-1.5"),
        ("BRAINSTACK_ROUTER_THRESHOLD", "high"),
        ("BRAINSTACK_ROUTER_MARGIN", "-0.1"),
        ("BRAINSTACK_PROVIDER", "foo"),
        ("BRAINSTACK_PROVIDER", "anthropic"),
        ("BRAINSTACK_EMBEDDINGS", "sentence-transformers"),
        ("BRAINSTACK_MODEL_MAX_RETRIES", "11"),
        ("BRAINSTACK_MODEL_MAX_RETRIES", "-1"),
        ("BRAINSTACK_MODEL_TIMEOUT_S", "0"),
        ("BRAINSTACK_MODEL_TIMEOUT_S", "inf"),  # a model call that may never end
        ("BRAINSTACK_POSTGRES_CONNECT_TIMEOUT_S", "inf"),
        ("BRAINSTACK_POSTGRES_COMMAND_TIMEOUT_S", "0"),
        ("BRAINSTACK_POSTGRES_COMMAND_TIMEOUT_S", "inf"),
        ("BRAINSTACK_WORKING_MEMORY_TTL_S", "inf"),  # Redis refused every write of such a TTL
        ("BRAINSTACK_WORKING_MEMORY_TTL_S", "1e300"),
        ("BRAINSTACK_WORKING_MEMORY_TTL_S", "nan"),
        ("BRAINSTACK_TEMPERATURE", "2.5"),
        ("BRAINSTACK_MAX_TASK_CHARS", "0"),
        ("BRAINSTACK_HISTORY_MESSAGES", "-1"),
        ("BRAINSTACK_MAX_TOOL_ROUNDS", "0"),
        ("BRAINSTACK_MAX_TOOL_ROUNDS", "21"),
        ("BRAINSTACK_REDIS_URL", "notaurl"),
        ("BRAINSTACK_REDIS_URL", "http://127.0.0.1:6379"),
        ("BRAINSTACK_CHROMA_URL", "localhost:8000"),
        ("BRAINSTACK_SQLITE_SYNCHRONOUS", "off"),
    ],
)
def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        Settings()
    assert str(caught.value).startswith(f"Invalid setting: {variable}={value!r}: ")
    assert str(caught.value).count("=") == 1  # that one variable only


def test_an_invalid_keyword_value_is_a_configuration_error_naming_the_keyword() -> None:
    """QA: ``Settings(temperature=5)`` raised pydantic's ValidationError, unlike from_env."""
    with pytest.raises(
        ConfigurationError, match=r"^Invalid setting: router_threshold=5: .*less than or equal"
    ):
        Settings(router_threshold=5)
    with pytest.raises(ValueError, match="temperature=5"):  # (a ConfigurationError is a ValueError)
        Settings(temperature=5)
    with pytest.raises(ConfigurationError, match=r"^Invalid setting: openai_api_key=5: "):  # not its alias
        Settings(openai_api_key=5)


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with pytest.raises(ValidationError, match="frozen"):
        settings.model = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        settings.home = tmp_path / "elsewhere"  # type: ignore[misc]
    assert settings.model == "gpt-4o-mini"
    assert settings.home == tmp_path


def test_equal_settings_hash_equal(tmp_path: Path) -> None:
    # brainstack caches one Runtime per Settings (functools.lru_cache), so they must be hashable.
    first = Settings(home=tmp_path, provider="offline")
    second = Settings(home=tmp_path, provider="offline")
    assert first == second
    assert hash(first) == hash(second)
    assert first != Settings(home=tmp_path, provider="openai")


def test_sqlite_path_is_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(home=tmp_path / "state")
    assert settings.sqlite_path == tmp_path / "state" / "checkpoints.sqlite"
    assert settings.sqlite_path.parent == settings.home
    monkeypatch.setenv("BRAINSTACK_HOME", str(tmp_path / "env-home"))
    assert Settings().sqlite_path.is_relative_to(tmp_path / "env-home")


def test_fixture_settings_are_offline_and_isolated(settings: Settings, tmp_path: Path) -> None:
    assert settings.resolved_provider == "offline"
    assert settings.home.is_relative_to(tmp_path)
    assert settings.sqlite_path.is_relative_to(tmp_path)


def readme_configuration_rows() -> list[str]:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("## Configuration") :]
    section = section[: section.index("\n## ", 1)] if "\n## " in section[1:] else section
    return [line for line in section.splitlines() if line.startswith("| `")]


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    """A new setting without a README row fails here (the table is the users' reference)."""
    table = "\n".join(readme_configuration_rows())
    missing = [name for name in Settings.model_fields if f"`BRAINSTACK_{name.upper()}`" not in table]
    assert not missing, f"README's Configuration table has no row for {missing}"


def test_the_readme_configuration_table_gives_each_settings_default() -> None:
    """A default changed in the code and not in the table (or the reverse) fails here. A default
    in words ("unset", "user data folder") is for a setting without a fixed value."""
    wrong = []
    for row in readme_configuration_rows():
        names, defaults = (cell.strip() for cell in row.strip("|").split(" | ")[:2])
        if not names.startswith("`BRAINSTACK_"):  # the OPENAI_* row: one default, "unset"
            continue
        fields = [n.lower() for n in re.findall(r"`BRAINSTACK_([A-Z0-9_]+)`", names)]
        given = re.split(r", (?![^(]*\))", defaults)  # "a, b" but not inside "(Linux: x, or y)"
        assert len(given) == len(fields), f"{names}: {len(fields)} settings, defaults {given}"
        for name, text in zip(fields, given, strict=True):
            field = Settings.model_fields[name]
            literal = re.fullmatch(r"`([^`]*)`", text)
            if literal is None or literal.group(1).startswith("BRAINSTACK_"):  # said in words
                if field.default is not None and field.default_factory is None:
                    wrong.append(f"{name}: README {text!r}, code {field.default!r}")
                continue
            default = field.default
            shown = (
                ("1" if default else "0")
                if isinstance(default, bool)
                else f"{default:g}"
                if isinstance(default, float)
                else ",".join(default)
                if isinstance(default, tuple)
                else str(default)
            )
            if shown != literal.group(1):
                wrong.append(f"{name}: README {literal.group(1)!r}, code {shown!r}")
    assert not wrong, "README's Configuration table disagrees with Settings: " + "; ".join(wrong)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://cache.example:6380", "unix:///tmp/r.sock"]
)
def test_redis_urls_of_each_scheme_are_accepted(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize(
    ("keyword", "near"), [("aproval", "approval"), ("hme", "home"), ("memroy", "memory")]
)
def test_a_misspelled_keyword_is_refused_with_the_setting_it_is_close_to(keyword, near):
    """Settings(aproval=True) used to give approval off, silently (the environment may hold other
    BRAINSTACK_* variables, which are still ignored)."""
    message = f"unexpected keyword argument {keyword!r}; did you mean {near!r}?"
    with pytest.raises(TypeError, match=message):
        Settings(**{keyword: True})
    with pytest.raises(TypeError, match=message):
        Settings.from_env(**{keyword: True})


def test_aliases_are_accepted_and_unknown_environment_variables_are_ignored(monkeypatch):
    monkeypatch.setenv("BRAINSTACK_NOT_A_SETTING", "1")
    assert Settings(OPENAI_API_KEY="k").openai_api_key.get_secret_value() == "k"
    assert Settings(openai_api_key="k").openai_api_key.get_secret_value() == "k"
