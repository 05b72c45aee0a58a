"""Procedural memory: skill files, their schema, the store (match, learn, statistics) and run_skill."""

from __future__ import annotations

import json
import os
import re
import textwrap
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import yaml

from brainstack.errors import ConfigurationError, UsageError
from brainstack.memory.skills import (
    BUILTIN_DIR,
    SAVE_VECTORS_AFTER,
    STATS_FILE,
    STATS_LOCK,
    VECTORS_FILE,
    CheckStep,
    PromptStep,
    Skill,
    SkillStore,
    ToolStep,
    _text_key,
    run_skill,
)

BUILTIN_NAMES = sorted(path.stem for path in BUILTIN_DIR.glob("*.yaml"))
PRICING_QUESTION = "Should we raise the price of our pro plan by 15 percent?"
LEARNED_TASK = "Compute the monthly cloud hosting bill for three regions"


@pytest.fixture
def store(tmp_path, embedder) -> SkillStore:
    return SkillStore(tmp_path / "skills", embedder=embedder)


def _document(name: str, **changes) -> dict:
    document = {
        "name": name,
        "description": "A test skill.",
        "when_to_use": ["Plan the quarterly offsite for the sales team."],
        "steps": [{"kind": "prompt", "text": "List the attendees."}],
    }
    document.update(changes)
    return document


def _write(folder: Path, name: str, document) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document), encoding="utf-8")
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".tmp")


# -- built-in skills ---------------------------------------------------------------------------


def test_there_are_built_in_skills():
    assert {"pricing-change-review", "launch-decision", "incident-review"} <= set(BUILTIN_NAMES)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_every_built_in_skill_validates(store, name):
    skill = store.get(name)
    assert skill.name == name == (BUILTIN_DIR / f"{name}.yaml").stem
    assert skill.provenance.source == "builtin"
    assert skill.when_to_use and skill.steps
    raw = yaml.safe_load((BUILTIN_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    Skill.model_validate(raw)  # the file itself, not only what the loader makes of it
    rendered = skill.render()
    assert rendered.startswith(f"Procedure '{name}' (")
    assert len(rendered.splitlines()) == len(skill.steps) + 1


def test_the_module_docstring_s_example_skill_is_a_valid_skill():
    """The example a reader copies: its unquoted questions ("… 20 percent?, …") were not YAML."""
    import brainstack.memory.skills as skills

    example = skills.__doc__.split("::\n", 1)[1].split("\n\n", 1)[0]
    skill = Skill.model_validate(yaml.safe_load(textwrap.dedent(example)))
    assert skill.when_to_use == ["Should we raise prices by 20 percent?", "Is our pricing too low?"]
    assert [step.kind for step in skill.steps] == ["prompt", "tool", "check"]


def test_all_lists_the_built_in_skills_sorted(store):
    assert [skill.name for skill in store.all()] == BUILTIN_NAMES


def test_unknown_skill_is_a_key_error(store):
    with pytest.raises(KeyError, match="no-such-skill"):
        store.get("no-such-skill")


# -- schema ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "document", "field"),
    [
        ("runs-python", _document("runs-python", steps=[{"kind": "python", "code": "import os"}]), "steps.0"),
        ("runs-shell", _document("runs-shell", steps=[{"kind": "shell", "command": "rm -rf /"}]), "steps.0"),
        ("extra-key", _document("extra-key", run="rm -rf /"), "run"),
        (
            "extra-step-key",
            _document("extra-step-key", steps=[{"kind": "prompt", "text": "x", "exec": "ls"}]),
            "exec",
        ),
        ("unknown-tool", _document("unknown-tool", steps=[{"kind": "tool", "tool": "shell"}]), "tool"),
        (
            "tool-bad-args",
            _document(
                "tool-bad-args", steps=[{"kind": "tool", "tool": "calculator", "arguments": {"x": [1]}}]
            ),
            "arguments",
        ),
        ("bad-name", _document("Bad_Name"), "name"),
        ("bad-slug", _document("-bad-slug"), "name"),
        ("empty-steps", _document("empty-steps", steps=[]), "steps"),
        ("no-examples", _document("no-examples", when_to_use=[]), "when_to_use"),
        (
            "no-description",
            {k: v for k, v in _document("no-description").items() if k != "description"},
            "description",
        ),
        ("empty-prompt", _document("empty-prompt", steps=[{"kind": "prompt", "text": ""}]), "text"),
        (
            "bad-check",
            _document("bad-check", steps=[{"kind": "check", "text": "x", "min_chars": 0}]),
            "min_chars",
        ),
        ("bad-provenance", _document("bad-provenance", provenance={"source": "internet"}), "provenance"),
    ],
)
def test_schema_rejections_name_the_file_and_the_field(tmp_path, embedder, name, document, field):
    folder = tmp_path / "skills"
    path = _write(folder, name, document)
    store = SkillStore(folder, embedder=embedder, builtin_dir=None)
    with pytest.raises(ConfigurationError) as error:
        store.get(name)
    message = str(error.value)
    assert str(path) in message
    assert field in message
    assert store.all() == []  # skipped, not fatal (see test_one_unusable_skill_file_costs_only_itself)
    assert store.skipped() == {path: message}


def test_name_must_match_the_file(tmp_path, embedder):
    path = _write(tmp_path / "skills", "offsite", _document("other-name"))
    store = SkillStore(tmp_path / "skills", embedder=embedder, builtin_dir=None)
    with pytest.raises(ConfigurationError, match="must match the file name") as error:
        store.get("offsite")
    assert str(path) in str(error.value) and "other-name" in str(error.value)


@pytest.mark.parametrize(
    "content", ["- just\n- a list\n", "just a string\n", "42\n", "", "name: [unclosed\n", "\tname: tab\n"]
)
def test_a_file_that_is_not_a_mapping_is_rejected(tmp_path, embedder, content):
    path = _write(tmp_path / "skills", "odd", content)
    store = SkillStore(tmp_path / "skills", embedder=embedder, builtin_dir=None)
    with pytest.raises(ConfigurationError, match=re.escape(str(path))):
        store.get("odd")


def test_a_non_utf8_file_is_rejected_clearly(tmp_path, embedder):
    folder = tmp_path / "skills"
    folder.mkdir()
    (folder / "latin.yaml").write_bytes(b"name: latin\ndescription: caf\xe9\n")
    with pytest.raises(ConfigurationError, match="cannot be read"):
        SkillStore(folder, embedder=embedder, builtin_dir=None).get("latin")


def test_the_model_rejects_code_steps_directly():
    with pytest.raises(ValueError, match="python"):
        Skill.model_validate(_document("x1", steps=[{"kind": "python", "code": "print(1)"}]))
    with pytest.raises(ValueError, match="unknown tool"):
        ToolStep(kind="tool", tool="subprocess")


def test_a_name_with_a_trailing_newline_is_not_a_slug():
    with pytest.raises(ValueError):
        Skill.model_validate(_document("pricing\n"))


# -- names never leave the folder --------------------------------------------------------------

BAD_NAMES = [
    "../x",
    "../../etc/passwd",
    "/etc/passwd",
    "a/b",
    "..",
    ".",
    "Pricing",
    "-x",
    "x",
    "a" * 64,
    "a b",
    "",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_get_refuses_names_that_are_not_slugs(store, name):
    with pytest.raises(ConfigurationError, match="not a skill name"):
        store.get(name)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_save_refuses_names_that_are_not_slugs(tmp_path, embedder, name):
    user_dir = tmp_path / "deep" / "skills"
    store = SkillStore(user_dir, embedder=embedder)
    skill = Skill.model_construct(**{**Skill.model_validate(_document("valid-name")).__dict__, "name": name})
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(ConfigurationError):
        store.save(skill)
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_the_longest_valid_name(store):
    name = "a" * 63
    path = store.save(Skill.model_validate(_document(name)))
    assert path == (store.user_dir / f"{name}.yaml").resolve()
    assert store.get(name).name == name


# -- user skills -------------------------------------------------------------------------------


def test_save_then_get_round_trip(store):
    skill = Skill.model_validate(
        _document(
            "offsite-planning",
            steps=[
                {"kind": "prompt", "text": "List the attendees."},
                {
                    "kind": "tool",
                    "tool": "calculator",
                    "arguments": {"expression": "12 * 85"},
                    "note": "budget",
                },
                {"kind": "check", "text": "Mentions the venue.", "contains": ["venue"]},
            ],
        )
    )
    path = store.save(skill)
    assert path.parent == store.user_dir.resolve()
    assert store.get("offsite-planning") == skill
    assert store.get("offsite-planning").provenance.source == "user"
    assert "offsite-planning" in [s.name for s in store.all()]


def test_a_user_skill_overrides_a_built_in_one(store):
    builtin = store.get("pricing-change-review")
    override = _document(
        "pricing-change-review",
        description="Our own pricing review.",
        when_to_use=["Review our pricing."],
        steps=[{"kind": "prompt", "text": "Ask finance first."}],
    )
    _write(store.user_dir, "pricing-change-review", override)
    mine = store.get("pricing-change-review")
    assert mine.description == "Our own pricing review." != builtin.description
    assert mine.provenance.source == "user"
    listed = [s for s in store.all() if s.name == "pricing-change-review"]
    assert listed == [mine]
    assert (BUILTIN_DIR / "pricing-change-review.yaml").read_text(encoding="utf-8").count("Ask finance") == 0


def test_one_unusable_skill_file_costs_only_itself(store, caplog):
    good = store.save(Skill.model_validate(_document("offsite-planning")))
    broken = _write(store.user_dir, "quarterly-review", "name: quarterly-review\nsteps: [unclosed\n")
    invalid = _write(store.user_dir, "no-steps", _document("no-steps", steps=[]))

    with caplog.at_level("WARNING", logger="brainstack.memory.skills"):
        names = [s.name for s in store.all()]
        store.all()
    assert names == sorted([*BUILTIN_NAMES, "offsite-planning"])
    assert good.is_file()
    skipped = store.skipped()
    assert sorted(skipped) == [invalid, broken]
    assert "cannot be read" in skipped[broken] and "steps" in skipped[invalid]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and all(str(invalid) in w or str(broken) in w for w in warnings)  # once each

    assert store.match("Plan the quarterly offsite for the sales team.")[0].name == "offsite-planning"
    assert store.match(PRICING_QUESTION)[0].name == "pricing-change-review"
    assert store.unusable("quarterly-review") == skipped[broken]
    assert store.unusable("offsite-planning") is None and store.unusable("absent") is None
    with pytest.raises(ConfigurationError, match=re.escape(str(broken))):
        store.get("quarterly-review")

    store.forget("quarterly-review")  # deletable without being readable
    _write(store.user_dir, "no-steps", _document("no-steps"))  # mended
    assert store.skipped() == {} and "no-steps" in {s.name for s in store.all()}


def test_an_unusable_override_leaves_the_built_in_skill_in_use(store):
    path = _write(store.user_dir, "pricing-change-review", "name: pricing-change-review\n")
    skill = store.get("pricing-change-review")
    assert skill.provenance.source == "builtin"
    assert [s.provenance.source for s in store.all() if s.name == "pricing-change-review"] == ["builtin"]
    assert list(store.skipped()) == [path] and "steps" in store.unusable("pricing-change-review")
    assert store.match(PRICING_QUESTION)[0].name == "pricing-change-review"


def test_a_yml_skill_file_is_named_with_the_rename_that_makes_it_a_skill(store):
    """QA: a ``.yml`` file was ignored without a word (skills are ``<name>.yaml``)."""
    path = store.user_dir / "offsite-planning.yml"
    store.user_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(_document("offsite-planning")), encoding="utf-8")
    (store.user_dir / ".draft.yml").write_text("editor's backup", encoding="utf-8")
    assert "offsite-planning" not in {s.name for s in store.all()}
    assert store.skipped() == {
        path: f"{path}: skill files end in .yaml; rename it to offsite-planning.yaml to use it"
    }
    path.rename(path.with_suffix(".yaml"))
    assert store.skipped() == {} and "offsite-planning" in {s.name for s in store.all()}


# -- match -------------------------------------------------------------------------------------


def test_match_finds_the_pricing_skill(store):
    matches = store.match(PRICING_QUESTION)
    assert matches and matches[0].name == "pricing-change-review"
    assert matches[0].score >= store.min_score
    assert matches[0].source == "builtin" and matches[0].success_count == 0
    assert all(m.score >= store.min_score for m in matches)


@pytest.mark.parametrize(
    "text", ["What is the capital of France?", "Bake a chocolate cake.", "hello", "   ", ""]
)
def test_match_finds_nothing_for_unrelated_text(store, text):
    assert store.match(text) == []


def test_match_respects_min_score_and_k(tmp_path, embedder):
    everything = SkillStore(tmp_path / "a", embedder=embedder, min_score=-1.0)
    all_matches = everything.match("What is the capital of France?", k=10)
    assert sorted(m.name for m in all_matches) == BUILTIN_NAMES
    assert [m.score for m in all_matches] == sorted((m.score for m in all_matches), reverse=True)
    assert len(everything.match(PRICING_QUESTION, k=1)) == 1
    score = all_matches[0].score
    strict = SkillStore(tmp_path / "b", embedder=embedder, min_score=score + 0.01)
    assert strict.match("What is the capital of France?", k=10) == []
    top = everything.match(PRICING_QUESTION, k=1)[0]
    assert (
        SkillStore(tmp_path / "c", embedder=embedder, min_score=top.score + 0.01).match(PRICING_QUESTION)
        == []
    )


def test_match_picks_up_a_newly_saved_skill(store):
    question = "How should we plan the quarterly offsite for the sales team?"
    assert store.match(question) == []  # builds the index
    store.save(Skill.model_validate(_document("offsite-planning")))
    matches = store.match(question)
    assert [m.name for m in matches] == ["offsite-planning"]
    assert matches[0].source == "user"


def test_hidden_files_in_the_folder_are_not_skills(store):
    """Editors leave hidden files next to the one being edited (Emacs: the lock ``.#name.yaml``, a
    dangling symlink, while the buffer has unsaved changes). The folder check skipped them but the
    reload read them, so every match failed once anything else changed (a skill learned)."""
    store.save(Skill.model_validate(_document("offsite-planning")))
    question = "How should we plan the quarterly offsite for the sales team?"
    expected = store.match(question)
    os.symlink("ada@host.4242:1700000000", store.user_dir / ".#offsite-planning.yaml")
    _write(store.user_dir, ".offsite-planning", _document("offsite-planning"))
    store.save(Skill.model_validate(_document("launch-review", when_to_use=["Should we launch?"])))
    assert store.match(question) == expected
    assert "launch-review" in [s.name for s in store.all()]
    assert SkillStore(store.user_dir, embedder=store.embedder).match(question) == expected


def test_match_sees_a_skill_written_by_another_store(tmp_path, embedder):
    first = SkillStore(tmp_path / "skills", embedder=embedder)
    question = "How should we plan the quarterly offsite for the sales team?"
    assert first.match(question) == []
    SkillStore(tmp_path / "skills", embedder=embedder).save(
        Skill.model_validate(_document("offsite-planning"))
    )
    assert [m.name for m in first.match(question)] == ["offsite-planning"]


class _CountingEmbedder:
    """The suite's embedder, counting the texts it is asked to embed in batches."""

    def __init__(self, inner):
        self.inner = inner
        self.embedded: list[str] = []

    name = property(lambda self: self.inner.name)
    dim = property(lambda self: self.inner.dim)

    def embed(self, texts):
        self.embedded += list(texts)
        return self.inner.embed(texts)

    def embed_one(self, text):
        return self.inner.embed_one(text)

    def embed_query(self, text):
        return self.inner.embed_query(text)


def test_a_changed_skill_file_costs_only_its_new_examples_embeddings(tmp_path, embedder, monkeypatch):
    """Skills learned elsewhere (another store, another process) reload the index: only the files
    that changed are parsed and only their new examples embedded, with the same matches as a store
    that reads everything afresh."""
    counting = _CountingEmbedder(embedder)
    store = SkillStore(tmp_path / "skills", embedder=counting)
    parsed: list[str] = []
    parse = store._parse_file

    def parse_counted(path, source):
        parsed.append(path.name)
        return parse(path, source)

    monkeypatch.setattr(store, "_parse_file", parse_counted)
    question = "How should we plan the quarterly offsite for the sales team?"
    assert store.match(question) == []
    builtin_examples = len(counting.embedded)
    assert builtin_examples >= len(BUILTIN_NAMES)

    counting.embedded.clear()
    offsite = _document("offsite-planning", when_to_use=["Plan the quarterly offsite for the sales team."])
    SkillStore(tmp_path / "skills", embedder=embedder).save(Skill.model_validate(offsite))  # another store
    parsed.clear()
    assert [m.name for m in store.match(question)] == ["offsite-planning"]
    assert counting.embedded == ["Plan the quarterly offsite for the sales team."]
    assert parsed == ["offsite-planning.yaml"]

    counting.embedded.clear()  # an edited example is embedded again; a removed skill is forgotten
    offsite["when_to_use"] = ["Organise the yearly retreat for engineering."]
    os.utime(_write(tmp_path / "skills", "offsite-planning", offsite), ns=(1, 1))
    parsed.clear()
    assert store.match(question) == []
    assert counting.embedded == ["Organise the yearly retreat for engineering."]
    assert parsed == ["offsite-planning.yaml"]
    (tmp_path / "skills" / "offsite-planning.yaml").unlink()
    assert store.match("Organise the yearly retreat for engineering.") == []

    fresh = SkillStore(tmp_path / "skills", embedder=embedder)  # same answers as a store built now
    assert store.match(PRICING_QUESTION) == fresh.match(PRICING_QUESTION)


def test_a_skill_file_rewritten_in_place_within_one_clock_tick_is_read_again(tmp_path, embedder):
    """Written in place (same inode, as nano does) with the same size within one tick of the file
    system's clock (a second on some), an edited file keeps its stamp. Reading it again once the
    folder next changes is what a store did before it kept parsed files; a kept parse of a file
    that new must not hide the edit from then on."""
    store = SkillStore(tmp_path / "skills", embedder=embedder)
    question = "How should we plan the quarterly offsite for the sales team?"
    now = time.time_ns()
    path = _write(tmp_path / "skills", "offsite-planning", _document("offsite-planning"))
    os.utime(path, ns=(now, now))
    assert [m.name for m in store.match(question)] == ["offsite-planning"]

    retreat = _document("offsite-planning", when_to_use=["Plan the quarterly retreat for the legal team."])
    with path.open("r+", encoding="utf-8") as handle:  # the same number of characters, in place
        handle.write(yaml.safe_dump(retreat))
    os.utime(path, ns=(now, now))  # within the tick of the first version
    store.save(Skill.model_validate(_document("launch-review", when_to_use=["Should we launch?"])))
    assert store.match(question) == []
    assert store.get("offsite-planning").when_to_use == retreat["when_to_use"]


def test_a_new_store_starts_from_the_vectors_an_earlier_one_saved(tmp_path, embedder):
    """A new process on a folder with many learned skills embeds none of their examples again: the
    first store saved them (keyed by a hash: the file holds no skill's text)."""
    first = SkillStore(tmp_path / "skills", embedder=embedder)
    for k in range(3):
        first.save(Skill.model_validate(_document(f"offsite-{k}", when_to_use=[f"Plan offsite number {k}."])))
    question = "How should we plan offsite number 1?"
    expected = first.match(question)
    assert expected[0].name == "offsite-1"
    [saved] = (tmp_path / "skills").glob("_vectors.*.npz")
    assert b"offsite" not in saved.read_bytes()

    counting = _CountingEmbedder(embedder)
    assert SkillStore(tmp_path / "skills", embedder=counting).match(question) == expected
    assert counting.embedded == []


def test_skills_learned_one_at_a_time_reach_the_saved_vectors(tmp_path, embedder):
    """A long-lived process that learns one skill at a time writes the vectors file again once its
    new examples add up, so a new process does not embed everything learned since it started."""
    store = SkillStore(tmp_path / "skills", embedder=embedder)
    store.match(PRICING_QUESTION)  # the first build writes the file
    for k in range(SAVE_VECTORS_AFTER):
        store.save(Skill.model_validate(_document(f"offsite-{k}", when_to_use=[f"Plan offsite number {k}."])))
        store.match(f"How should we plan offsite number {k}?")
    counting = _CountingEmbedder(embedder)
    assert (
        SkillStore(tmp_path / "skills", embedder=counting).match("Plan offsite number 3.")[0].name
        == "offsite-3"
    )
    assert counting.embedded == []


def test_a_damaged_or_stale_vectors_file_is_replaced(tmp_path, embedder):
    store = SkillStore(tmp_path / "skills", embedder=embedder)
    store.save(Skill.model_validate(_document("offsite-planning")))
    question = "How should we plan the quarterly offsite for the sales team?"
    expected = store.match(question)
    [saved] = (tmp_path / "skills").glob("_vectors.*.npz")

    saved.write_bytes(b"PK\x03\x04 not a zip")  # damaged: embedded again, then saved again
    counting = _CountingEmbedder(embedder)
    assert SkillStore(tmp_path / "skills", embedder=counting).match(question) == expected
    assert "Plan the quarterly offsite for the sales team." in counting.embedded
    counting.embedded.clear()
    assert SkillStore(tmp_path / "skills", embedder=counting).match(question) == expected
    assert counting.embedded == []

    size = saved.stat().st_size  # a removed skill's vectors leave the file when a store next opens it
    (tmp_path / "skills" / "offsite-planning.yaml").unlink()
    assert SkillStore(tmp_path / "skills", embedder=embedder).match(question) == []
    assert saved.stat().st_size < size


@pytest.mark.parametrize(
    "forge",
    [
        lambda vectors: vectors[:, :5].copy(),  # another model of the same name (or made by hand)
        lambda vectors: np.zeros((len(vectors), 0), np.float32),
        lambda vectors: np.full_like(vectors, np.nan),
    ],
    ids=["other-dimension", "no-dimension", "not-a-number"],
)
def test_saved_vectors_this_embedder_cannot_have_made_are_embedded_again(tmp_path, embedder, forge):
    """A vectors file whose every key is right but whose vectors are not this embedder's (another
    dimension, NaN) is damaged like any other: the store matches as one that embeds everything, and
    the file is written again, instead of every match failing (or never matching) from then on."""
    store = SkillStore(tmp_path / "skills", embedder=embedder)
    store.save(Skill.model_validate(_document("offsite-planning")))
    question = "How should we plan the quarterly offsite for the sales team?"
    expected = store.match(question)
    [saved] = (tmp_path / "skills").glob("_vectors.*.npz")
    with np.load(saved) as data:
        keys, vectors = data["keys"], data["vectors"]
    np.savez(saved.with_suffix(""), keys=keys, vectors=forge(vectors))  # savez adds the ".npz"

    assert SkillStore(tmp_path / "skills", embedder=embedder).match(question) == expected
    counting = _CountingEmbedder(embedder)
    assert SkillStore(tmp_path / "skills", embedder=counting).match(question) == expected
    assert counting.embedded == []


def test_vectors_are_saved_per_embedder(tmp_path, embedder):
    class Renamed(_CountingEmbedder):
        name = property(lambda self: "another-model")

    SkillStore(tmp_path / "skills", embedder=embedder).match(PRICING_QUESTION)
    other = Renamed(embedder)
    SkillStore(tmp_path / "skills", embedder=other).match(PRICING_QUESTION)
    assert other.embedded  # nothing of the first model's vectors was used
    assert len(list((tmp_path / "skills").glob("_vectors.*.npz"))) == 2


def test_an_unwritable_folder_only_costs_embedding_again(tmp_path, embedder, monkeypatch):
    import brainstack.memory.skills as skills

    def refuse(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(skills, "_atomic_write", refuse)
    assert SkillStore(tmp_path / "skills", embedder=embedder).match(PRICING_QUESTION)[0].name == (
        "pricing-change-review"
    )


def test_forget_deletes_a_learned_skill_and_its_count(store):
    name, _ = store.learn(task=LEARNED_TASK, route="cfo", steps=_steps(), description="d", thread_id="t1")
    assert store.match(LEARNED_TASK)[0].name == name
    store.record_success("pricing-change-review", "t2")

    assert store.forget(name) == store.user_dir / f"{name}.yaml"
    assert name not in {s.name for s in store.all()} and name not in store.stats()
    assert store.stats()["pricing-change-review"]["success_count"] == 1  # the others' counts stay
    assert [m.name for m in store.match(LEARNED_TASK)] != [name]
    with pytest.raises(KeyError, match="no skill named"):
        store.forget(name)


def test_forget_refuses_a_built_in_skill_and_brings_one_back_when_its_override_goes(store):
    with pytest.raises(UsageError, match="'pricing-change-review' is a built-in skill and cannot be deleted"):
        store.forget("pricing-change-review")
    override = store.get("pricing-change-review").model_copy(update={"description": "Ours."})
    store.save(Skill.model_validate(override.model_dump() | {"provenance": {"source": "user"}}))
    store.record_success("pricing-change-review", "t1")
    assert store.get("pricing-change-review").description == "Ours."

    store.forget("pricing-change-review")
    assert store.get("pricing-change-review").provenance.source == "builtin"
    assert store.success_count("pricing-change-review") == 1  # the built-in's count is kept
    with pytest.raises(ConfigurationError, match="is not a skill name"):
        store.forget("../outside")


def test_match_reports_success_counts(store):
    store.record_success("pricing-change-review", "t1")
    store.record_success("pricing-change-review", "t2")
    assert store.match(PRICING_QUESTION)[0].success_count == 2


def test_a_run_recorded_again_counts_once(store):
    """The graph's remember step run again after a crash passes the same run key."""
    assert store.record_success("pricing-change-review", "t1", run="r1") == 1
    assert store.record_success("pricing-change-review", "t1", run="r1") == 1
    assert store.record_success("pricing-change-review", "t1", run="r2") == 2
    assert store.record_success("pricing-change-review", "t1") == 3  # no key: always counted
    name, created = store.learn(
        task=LEARNED_TASK, route="cfo", steps=_steps(), description="d", thread_id="t1", run="r3"
    )
    again = store.learn(
        task=LEARNED_TASK, route="cfo", steps=_steps(), description="d", thread_id="t1", run="r3"
    )
    assert created and again == (name, False) and store.success_count(name) == 1
    for n in range(30):  # only the last runs are kept, in the stats file
        store.record_success(name, "t1", run=f"many-{n}")
    assert len(store.stats()[name]["runs"]) == 20 and store.success_count(name) == 31


# -- run_skill ---------------------------------------------------------------------------------


def test_run_skill_executes_tool_steps(store):
    skill = Skill.model_validate(
        _document(
            "price-math",
            steps=[
                {"kind": "prompt", "text": "Work out the new price."},
                {
                    "kind": "tool",
                    "tool": "calculator",
                    "arguments": {"expression": "49 * 1.2"},
                    "note": "new price",
                },
                {"kind": "tool", "tool": "calculator", "arguments": {"expression": "1 / 0"}},
            ],
        )
    )
    run = run_skill(skill)
    assert run.name == "price-math"
    assert run.instructions == skill.render()
    assert run.tool_results[0] == {
        "tool": "calculator",
        "arguments": {"expression": "49 * 1.2"},
        "result": "58.8",
    }
    assert run.tool_results[1]["result"].startswith("error: ")  # a failing tool is recorded, not raised
    assert run.checks == [] and run.passed


def test_run_skill_of_a_built_in_skill_runs_no_tools(store):
    run = run_skill(store.get("incident-review"))
    assert run.tool_results == [] and run.checks == []
    assert "root cause" in run.instructions


def test_run_skill_evaluates_checks_against_an_answer():
    skill = Skill.model_validate(
        _document(
            "checked",
            steps=[
                {"kind": "check", "text": "Discusses churn and margin.", "contains": ["churn", "Margin"]},
                {"kind": "check", "text": "Long enough.", "min_chars": 30},
            ],
        )
    )
    good = run_skill(skill, "CHURN rises by 2%, but the margin improves a lot.")
    assert good.passed
    assert good.checks == [
        {"check": "Discusses churn and margin.", "passed": True, "missing": []},
        {"check": "Long enough.", "passed": True, "missing": []},
    ]
    bad = run_skill(skill, "Churn rises.")
    assert not bad.passed
    assert bad.checks[0] == {"check": "Discusses churn and margin.", "passed": False, "missing": ["Margin"]}
    assert bad.checks[1]["passed"] is False and bad.checks[1]["missing"] == []
    assert run_skill(skill).checks == []  # no answer: checks are not evaluated


def test_run_skill_never_executes_anything_else(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    code = f"__import__('os').system('touch {marker}')"
    skill = Skill.model_validate(
        _document(
            "harmless",
            steps=[
                {"kind": "prompt", "text": code},
                {"kind": "tool", "tool": "calculator", "arguments": {"expression": code}},
                {"kind": "check", "text": code, "contains": [code]},
            ],
        )
    )
    import subprocess

    def forbidden(*args, **kwargs):
        raise AssertionError("a skill started a process")

    monkeypatch.setattr(os, "system", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    run = run_skill(skill, "an answer")
    assert not marker.exists()
    assert run.tool_results[0]["result"].startswith("error: ")
    assert run.checks[0]["passed"] is False
    assert code in run.instructions  # text only


# -- learn and statistics ----------------------------------------------------------------------


def _steps():
    return [
        PromptStep(kind="prompt", text="Work the numbers out with the tools, then answer."),
        ToolStep(kind="tool", tool="calculator", arguments={"expression": "3 * 120"}),
        CheckStep(kind="check", text="States the total.", contains=["total"]),
    ]


def test_learn_creates_a_learned_skill_with_provenance(store):
    name, created = store.learn(
        task=LEARNED_TASK,
        route="cfo",
        steps=_steps(),
        description="Learned from a run.",
        thread_id="thread-1",
    )
    assert created is True
    assert name == "cfo-compute-the-monthly-cloud-hosting-bill-for-three-regions"
    assert (store.user_dir / f"{name}.yaml").is_file()
    skill = store.get(name)
    assert skill.provenance.source == "learned"
    assert skill.provenance.thread_id == "thread-1"
    assert skill.provenance.task == LEARNED_TASK
    assert skill.provenance.route == "cfo"
    created_at = datetime.fromisoformat(skill.provenance.created)
    assert created_at.tzinfo is not None
    assert skill.when_to_use == [LEARNED_TASK]
    assert list(skill.steps) == _steps()
    assert store.success_count(name) == 1
    assert store.stats()[name]["threads"] == ["thread-1"]
    assert store.match(LEARNED_TASK)[0].source == "learned"


def test_a_skill_whose_count_cannot_be_written_is_not_kept(store, monkeypatch):
    """QA: with the skills folder full, the skill file was written but not its count: the run said
    the skill was not saved, yet later runs recalled it (and its successes were lost)."""

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "record_success", full)
    with pytest.raises(OSError, match="No space left"):
        store.learn(task=LEARNED_TASK, route="cfo", steps=_steps(), description="d", thread_id="t")
    assert list(store.user_dir.glob("*.yaml")) == []
    assert all(match.source != "learned" for match in store.match(LEARNED_TASK))


PII_TASK = (
    "Should we launch a premium support tier for ada.lovelace@example.com, phone +44 20 7946 0958, "
    "card 4111 1111 1111 1111?"
)
RAW_PII = ("ada.lovelace", "lovelace@example.com", "7946", "4111", "ada-love")


def test_learn_masks_personal_data_in_everything_it_writes(store):
    """Learned skills are shared by every user: no e-mail, phone or card may reach the file."""
    name, created = store.learn(
        task=PII_TASK,
        route="group_chat",
        steps=[
            PromptStep(kind="prompt", text=f"CTO: on {PII_TASK} the support load matters."),
            ToolStep(
                kind="tool", tool="calculator", arguments={"expression": "3 * 120"}, note="mail ada@x.org"
            ),
            CheckStep(kind="check", text="Says who pays: ada.lovelace@example.com.", contains=["ada@x.org"]),
        ],
        description=f"Learned from a successful group_chat: {PII_TASK}",
        thread_id="t-pii",
    )
    assert created
    assert name == "group-chat-should-we-launch-a-premium-support-tier-for-email-ph"  # 63 characters at most
    written = (store.user_dir / f"{name}.yaml").read_text()
    for raw in RAW_PII:
        assert raw not in written and raw not in name
    skill = store.get(name)
    masked = "Should we launch a premium support tier for [email], phone [phone], card [card]?"
    assert skill.when_to_use == [masked] and skill.provenance.task == masked
    assert skill.description == f"Learned from a successful group_chat: {masked}"
    assert [s.model_dump() for s in skill.steps] == [
        {"kind": "prompt", "text": f"CTO: on {masked} the support load matters."},
        {
            "kind": "tool",
            "tool": "calculator",
            "arguments": {"expression": "3 * 120"},
            "note": "mail [email]",
        },
        {"kind": "check", "text": "Says who pays: [email].", "contains": ["[email]"], "min_chars": 1},
    ]


def test_a_tool_step_with_personal_data_in_its_arguments_is_not_learned(store):
    name, _ = store.learn(
        task="Charge the card 4111 1111 1111 1111 twice and add the fees",
        route="finance",
        steps=[
            PromptStep(kind="prompt", text="Work the numbers out with the tools, then answer."),
            ToolStep(kind="tool", tool="calculator", arguments={"expression": "4111 1111 1111 1111 * 2"}),
            ToolStep(kind="tool", tool="calculator", arguments={"expression": "2 * 1.5"}),
        ],
        description="d",
        thread_id="t",
    )
    steps = store.get(name).steps
    assert [getattr(s, "arguments", None) for s in steps] == [None, {"expression": "2 * 1.5"}]
    assert "4111" not in (store.user_dir / f"{name}.yaml").read_text()


@pytest.mark.parametrize("framing", [[], [PromptStep(kind="prompt", text="Work it out with the tools.")]])
def test_learning_nothing_but_personal_data_tool_steps_learns_nothing(store, framing):
    """As a run's tool procedure comes: a generic prompt step, then the tool steps."""
    learned = store.learn(
        task="Add up 4111 1111 1111 1111",
        route="finance",
        steps=[
            *framing,
            ToolStep(kind="tool", tool="calculator", arguments={"expression": "4111 1111 1111 1111 + 1"}),
            ToolStep(kind="tool", tool="calculator", arguments={"expression": "4111 1111 1111 1111 * 2"}),
        ],
        description="d",
        thread_id="t",
    )
    assert learned is None
    assert list(store.user_dir.glob("*.yaml")) == []


def test_a_thread_id_that_is_an_address_is_masked_in_the_skill_and_its_stats(store):
    name, _ = store.learn(
        task=LEARNED_TASK, route="cfo", steps=_steps(), description="Learned.", thread_id="ada@example.com"
    )
    store.record_success(name, "bob@example.com")
    files = [p.read_bytes() for p in store.user_dir.iterdir() if p.is_file()]
    assert files and not any(b"@example.com" in data for data in files)
    assert store.get(name).provenance.thread_id == "[email]"


def test_learning_a_near_identical_task_reinforces_the_skill(store):
    name, created = store.learn(
        task=LEARNED_TASK, route="cfo", steps=_steps(), description="Learned.", thread_id="thread-1"
    )
    assert created is True
    again, created_again = store.learn(
        task="Compute the monthly cloud hosting bill for 3 regions.",
        route="cfo",
        steps=_steps(),
        description="Learned.",
        thread_id="thread-2",
    )
    assert (again, created_again) == (name, False)
    assert store.success_count(name) == 2
    assert store.stats()[name]["threads"] == ["thread-1", "thread-2"]
    assert sorted(p.name for p in store.user_dir.glob("*.yaml")) == [f"{name}.yaml"]


def test_learning_a_different_task_writes_a_second_skill(store):
    first, _ = store.learn(task=LEARNED_TASK, route="cfo", steps=_steps(), description="d", thread_id="t1")
    second, created = store.learn(
        task="Draft the onboarding checklist for new engineers",
        route="cto",
        steps=_steps(),
        description="d",
        thread_id="t2",
    )
    assert created and second != first
    assert len(list(store.user_dir.glob("*.yaml"))) == 2


def test_learning_a_task_like_a_built_in_skill_reinforces_the_built_in(store):
    name, created = store.learn(
        task="Should we raise prices by 20 percent?",
        route="cfo",
        steps=_steps(),
        description="d",
        thread_id="t",
    )
    assert (name, created) == ("pricing-change-review", False)
    assert store.success_count("pricing-change-review") == 1
    assert list(store.user_dir.glob("*.yaml")) == []


def test_record_success_keeps_the_last_five_threads(store):
    for number in range(1, 9):
        assert store.record_success("incident-review", f"t{number}") == number
    entry = store.stats()["incident-review"]
    assert entry["success_count"] == 8
    assert entry["threads"] == ["t4", "t5", "t6", "t7", "t8"]
    datetime.fromisoformat(entry["last_success"])
    assert store.record_success("incident-review") == 9  # no thread: counted, threads unchanged
    assert store.stats()["incident-review"]["threads"] == ["t4", "t5", "t6", "t7", "t8"]


def test_statistics_survive_a_new_store(tmp_path, embedder):
    SkillStore(tmp_path / "s", embedder=embedder).record_success("launch-decision", "t1")
    assert SkillStore(tmp_path / "s", embedder=embedder).success_count("launch-decision") == 1


COUNTING = """
import sys
from brainstack.memory.skills import SkillStore

store = SkillStore(sys.argv[1], builtin_dir=None)
for number in range(int(sys.argv[2])):
    store.record_success("launch-decision", f"t{number}")
"""


def test_successes_counted_at_once_by_other_stores_and_processes_are_all_kept(tmp_path):
    """Two stores of this process (two Runtimes on one home) and two other processes count the
    same skill's successes at the same time: every success is kept. (Without a lock they all
    take, each read-change-replace of the stats file could overwrite another's: 299 of 400 were
    kept in one run here, 224 of 800 with four processes.)"""
    import subprocess
    import sys
    import threading

    folder = tmp_path / "skills"
    runs = 100
    others = [
        subprocess.Popen([sys.executable, "-c", COUNTING, str(folder), str(runs)], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    stores = [SkillStore(folder, builtin_dir=None) for _ in range(2)]

    def count(store: SkillStore) -> None:
        for number in range(runs):
            store.record_success("launch-decision", f"t{number}")

    threads = [threading.Thread(target=count, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for other in others:
        _, errors = other.communicate(timeout=120)
        assert other.returncode == 0, errors.decode()
    assert SkillStore(folder, builtin_dir=None).success_count("launch-decision") == 4 * runs
    assert _leftovers(folder) == []


@pytest.mark.parametrize("damage", ["{not json", "", "[1, 2, 3]", '"a string"', "\x00\x01"])
def test_a_damaged_stats_file_breaks_nothing(store, damage):
    store.user_dir.mkdir(parents=True)
    (store.user_dir / STATS_FILE).write_text(damage, encoding="utf-8")
    assert store.stats() == {}
    assert store.success_count("pricing-change-review") == 0
    assert store.match(PRICING_QUESTION)[0].name == "pricing-change-review"
    assert store.record_success("pricing-change-review", "t1") == 1
    assert (
        json.loads((store.user_dir / STATS_FILE).read_text(encoding="utf-8"))["pricing-change-review"][
            "success_count"
        ]
        == 1
    )
    name, created = store.learn(
        task=LEARNED_TASK, route="cfo", steps=_steps(), description="d", thread_id="t2"
    )
    assert created and store.success_count(name) == 1


@pytest.mark.parametrize(
    "damage", ['{"pricing-change-review": 3}', '{"pricing-change-review": {"success_count": "many"}}']
)
def test_a_stats_file_with_damaged_entries_breaks_nothing(store, damage):
    store.user_dir.mkdir(parents=True)
    (store.user_dir / STATS_FILE).write_text(damage, encoding="utf-8")
    assert store.match(PRICING_QUESTION)[0].name == "pricing-change-review"
    assert store.record_success("pricing-change-review", "t1") >= 1


def test_writes_are_atomic_and_leave_no_temporary_files(store):
    store.save(Skill.model_validate(_document("offsite-planning")))
    store.learn(task=LEARNED_TASK, route="cfo", steps=_steps(), description="d", thread_id="t1")
    for number in range(3):
        store.record_success("offsite-planning", f"t{number}")
    assert _leftovers(store.user_dir) == []
    assert sorted(p.name for p in store.user_dir.iterdir()) == sorted(
        [
            STATS_FILE,
            STATS_LOCK,
            VECTORS_FILE.format(_text_key(store.embedder.name)),
            "offsite-planning.yaml",
            "cfo-compute-the-monthly-cloud-hosting-bill-for-three-regions.yaml",
        ]
    )


def test_a_failed_write_keeps_the_old_file_and_no_temporary_file(store, monkeypatch):
    store.save(Skill.model_validate(_document("offsite-planning")))
    path = store.user_dir / "offsite-planning.yaml"
    before = path.read_text(encoding="utf-8")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.save(Skill.model_validate(_document("offsite-planning", description="Changed.")))
    with pytest.raises(OSError, match="disk full"):
        store.record_success("offsite-planning", "t1")
    assert path.read_text(encoding="utf-8") == before
    assert _leftovers(store.user_dir) == []
    assert not (store.user_dir / STATS_FILE).exists()
