"""Procedural memory: skills — named, validated procedures that worked before.

A skill is a YAML file (see ``brainstack/skills/*.yaml``)::

    name: pricing-change-review
    description: How to review a proposed price change.
    when_to_use: ["Should we raise prices by 20 percent?", "Is our pricing too low?"]
    steps:
      - {kind: prompt, text: List the customer segments the change affects.}
      - {kind: tool, tool: calculator, arguments: {expression: 49 * 1.2}, note: the new list price}
      - {kind: check, contains: [churn], text: The answer estimates the churn risk.}

Only three step kinds exist, and none runs code: ``prompt`` (an instruction for the agent),
``tool`` (a call of a registered brainstack tool with fixed arguments) and ``check`` (a condition
the final answer must meet). Built-in skills are read-only; learned skills and every skill's
success count live in the user's skills folder. A skill name is a slug: it can never name a file
outside its folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from brainstack.errors import ConfigurationError, UsageError
from brainstack.memory.embeddings import query_embedding
from brainstack.memory.pii import mask_pii

if TYPE_CHECKING:
    from brainstack.memory.embeddings import Embedder

__all__ = [
    "BUILTIN_DIR",
    "CheckStep",
    "PromptStep",
    "Skill",
    "SkillMatch",
    "SkillRun",
    "SkillStore",
    "ToolStep",
    "run_skill",
]

log = logging.getLogger(__name__)
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML was built with it (about 10× faster), else the Python one."""
BUILTIN_DIR = Path(__file__).resolve().parents[1] / "skills"
NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")  # always used with fullmatch
STATS_FILE = "_stats.json"
VECTORS_FILE = "_vectors.{}.npz"
"""The examples' vectors, saved for the next store (process) on the folder; one file per embedder
(the placeholder is a hash of its name), keyed by a hash of each example's text."""
SAVE_VECTORS_AFTER = 32
"""A store that embedded this many examples since it last wrote the vectors file writes it again."""
RECENT_NS = 2_000_000_000
"""A skill file changed less than this long ago (ns) is parsed again on every reload."""
STATS_LOCK = "_stats.lock"
"""Held while the stats file is read, changed and written (see :meth:`SkillStore.record_success`)."""
RECENT_RUNS = 20
"""How many of a skill's last successes the stats file names (by run key), so none is counted twice."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PromptStep(_Strict):
    kind: Literal["prompt"]
    text: str = Field(min_length=1, max_length=1000)


class ToolStep(_Strict):
    kind: Literal["tool"]
    tool: str
    arguments: dict[str, str | int | float | bool] = Field(default_factory=dict)
    note: str = ""

    @field_validator("tool")
    @classmethod
    def _known_tool(cls, value: str) -> str:
        from brainstack.tools import MEMORY_TOOLS, TOOL_NAMES

        allowed = sorted(TOOL_NAMES - MEMORY_TOOLS)
        if value in MEMORY_TOOLS:  # (it exists: "unknown" sent the author looking for a typo)
            raise ValueError(
                f"{value!r} needs a runtime's memory, which skills run without; skills may call: {allowed}"
            )
        if value not in TOOL_NAMES:
            raise ValueError(f"unknown tool {value!r}; skills may call: {allowed}")
        return value


class CheckStep(_Strict):
    kind: Literal["check"]
    text: str = Field(min_length=1, max_length=500)
    """What the check means, for people and for the agent's instructions."""
    contains: list[str] = Field(default_factory=list)
    """Words the answer must contain (case-insensitive), all of them."""
    min_chars: int = Field(default=1, ge=1)


Step = Annotated[PromptStep | ToolStep | CheckStep, Field(discriminator="kind")]


class Provenance(_Strict):
    source: Literal["builtin", "user", "learned"] = "user"
    thread_id: str | None = None
    created: str | None = None
    """ISO date-time."""
    task: str | None = None
    route: str | None = None


class Skill(_Strict):
    name: str
    description: str = Field(min_length=1, max_length=500)
    when_to_use: list[str] = Field(min_length=1, max_length=50)
    steps: list[Step] = Field(min_length=1, max_length=20)
    provenance: Provenance = Field(default_factory=Provenance)

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not NAME.fullmatch(value):
            raise ValueError("a skill name is 2-63 lower-case letters, digits and '-', not starting with '-'")
        return value

    def render(self) -> str:
        """The skill as instructions for an agent's prompt."""
        lines = [f"Procedure '{self.name}' ({self.description}):"]
        for number, step in enumerate(self.steps, start=1):
            if isinstance(step, PromptStep):
                lines.append(f"{number}. {step.text}")
            elif isinstance(step, ToolStep):
                args = ", ".join(f"{k}={v!r}" for k, v in step.arguments.items())
                note = f": {step.note}" if step.note else ""
                lines.append(f"{number}. Use the {step.tool} tool ({args}){note}.")
            else:
                lines.append(f"{number}. Make sure: {step.text}")
        return "\n".join(lines)


class SkillMatch(BaseModel):
    name: str
    score: float
    success_count: int = 0
    source: str = "builtin"


class SkillRun(BaseModel):
    """What running a skill produced: instructions, tool results and check outcomes."""

    name: str
    instructions: str
    tool_results: list[dict[str, Any]] = Field(default_factory=list)
    checks: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check["passed"] for check in self.checks)


def run_skill(skill: Skill, answer: str | None = None) -> SkillRun:
    """Execute a skill's tool steps, and its checks against ``answer`` when one is given.

    Tool steps call registered brainstack tools only (the schema admits no other name); a
    failing tool records its error instead of raising.
    """
    from brainstack.tools import get_tools

    run = SkillRun(name=skill.name, instructions=skill.render())
    for step in skill.steps:
        if isinstance(step, ToolStep):
            (tool,) = get_tools([step.tool])
            try:
                result = str(tool.invoke(dict(step.arguments)))
            except Exception as exc:
                result = f"error: {type(exc).__name__}: {exc}"
            run.tool_results.append({"tool": step.tool, "arguments": dict(step.arguments), "result": result})
        elif isinstance(step, CheckStep) and answer is not None:
            missing = [word for word in step.contains if word.casefold() not in answer.casefold()]
            passed = not missing and len(answer.strip()) >= step.min_chars
            run.checks.append({"check": step.text, "passed": passed, "missing": missing})
    return run


class SkillStore:
    """Built-in skills plus the user's folder (learned and hand-written skills, success counts)."""

    def __init__(
        self,
        user_dir: str | Path,
        *,
        embedder: Embedder | None = None,
        builtin_dir: str | Path | None = BUILTIN_DIR,
        min_score: float = 0.55,
    ) -> None:
        self.user_dir = Path(user_dir)
        self.builtin_dir = Path(builtin_dir) if builtin_dir else None
        self.min_score = min_score
        self._embedder = embedder
        self._lock = threading.RLock()
        # (file signature, example vectors, owner of each example, skills by name)
        self._index: tuple[tuple[Any, ...], Any, list[str], dict[str, Skill]] | None = None
        self._loaded: dict[tuple[Path, str], tuple[tuple[int, int, int], Skill]] = {}
        """Each skill file read, with the stamp it had (see :func:`_stamp`): parsing YAML is most
        of what a reload costs, and only the files that changed need it."""
        self._example_vectors: dict[str, Any] = {}
        """Each current example's vector, kept across reloads: a changed skill file (a skill
        learned here or in another process) costs only its new examples' embeddings."""
        self._unsaved = 0
        """Examples this store embedded since it last wrote the vectors file."""
        self._skipped: dict[Path, str] = {}
        """The skill files the last :meth:`all` could not use, with why (see :meth:`skipped`)."""

    # -- files ---------------------------------------------------------------------------------

    def _path(self, folder: Path, name: str) -> Path:
        if not NAME.fullmatch(name):
            raise ConfigurationError(f"{name!r} is not a skill name (lower-case letters, digits and '-')")
        path = (folder / f"{name}.yaml").resolve()
        if path.parent != folder.resolve():  # defence in depth: the slug already forbids this
            raise ConfigurationError(f"skill {name!r} resolves outside {folder}")
        return path

    def _load_file(self, path: Path, source: str) -> Skill:
        """The skill in ``path``, parsed again only when the file changed since it was last read."""
        now = time.time_ns()
        stamp = _stamp(path)
        with self._lock:
            known = self._loaded.get((path, source))
        if known is not None and stamp is not None and known[0] == stamp:
            return known[1]
        skill = self._parse_file(path, source)
        # Stamped before reading: a file replaced meanwhile is read again. A file changed within
        # RECENT_NS is not kept: written again in place in the same tick of the file system's clock
        # (a second on some), with the same size, it would keep its stamp and never be read again.
        if stamp is not None and now - stamp[1] > RECENT_NS:
            with self._lock:
                self._loaded[(path, source)] = (stamp, skill)
        return skill

    def _parse_file(self, path: Path, source: str) -> Skill:
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            problem = " ".join(str(exc).split())  # YAML's own spans lines: one line, as every error
            raise ConfigurationError(f"skill file {path}: cannot be read ({problem})") from None
        if not isinstance(data, dict):
            raise ConfigurationError(f"skill file {path}: expected a mapping with name, description, steps")
        if source == "builtin":
            data["provenance"] = {**(data.get("provenance") or {}), "source": "builtin"}
        try:
            skill = Skill.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigurationError(f"skill file {path} is invalid: {problems}") from None
        if skill.name != path.stem:
            raise ConfigurationError(f"skill file {path}: name {skill.name!r} must match the file name")
        return skill

    def _folders(self) -> list[tuple[Path, str]]:
        folders = []
        if self.builtin_dir and self.builtin_dir.is_dir():
            folders.append((self.builtin_dir, "builtin"))
        if self.user_dir.is_dir():
            folders.append((self.user_dir, "user"))
        return folders

    def all(self) -> list[Skill]:
        """Every skill; a user skill overrides a built-in one of the same name.

        A file that cannot be read or is not a valid skill is skipped, with a warning naming it
        and why (once per problem), so one bad hand-edit costs that skill, not every skill: a
        broken user file of a built-in skill's name leaves the built-in one in use. :meth:`skipped`
        lists them."""
        skills: dict[str, Skill] = {}
        seen = set()
        skipped: dict[Path, str] = {}
        for folder, source in self._folders():
            for entry in _skill_files(folder):
                path = Path(entry.path)
                seen.add((path, source))
                try:
                    skills[path.stem] = self._load_file(path, source)
                except ConfigurationError as exc:
                    skipped[path] = str(exc)
            for path in _misnamed(folder):
                skipped[path] = f"{path}: skill files end in .yaml; rename it to {path.stem}.yaml to use it"
        with self._lock:  # forget the files that are gone
            self._loaded = {key: value for key, value in self._loaded.items() if key in seen}
            new = [reason for path, reason in skipped.items() if self._skipped.get(path) != reason]
            self._skipped = skipped
        for reason in new:
            log.warning("skipped a skill file: %s", reason)
        return sorted(skills.values(), key=lambda s: s.name)

    def skipped(self) -> dict[Path, str]:
        """The skill files that cannot be used (unreadable, not YAML or not a valid skill), each
        with the reason, as the folders are now."""
        self.all()
        with self._lock:
            return dict(self._skipped)

    def get(self, name: str) -> Skill:
        """The skill ``name`` (the user's, else the built-in one: as :meth:`all` does, a built-in
        skill stands in for a user file of its name that cannot be used). ``KeyError`` when there
        is none; ``ConfigurationError`` naming the file and the problem when the only one is
        unusable."""
        problem: ConfigurationError | None = None
        for folder, source in reversed(self._folders()):
            path = self._path(folder, name)
            if path.is_file():
                try:
                    return self._load_file(path, source)
                except ConfigurationError as exc:
                    problem = problem or exc
        if problem is not None:
            raise problem
        raise KeyError(f"no skill named {name!r}")

    def unusable(self, name: str) -> str | None:
        """Why the user folder's file for skill ``name`` cannot be used, or ``None`` when it can
        (or there is none)."""
        path = self._path(self.user_dir, name)
        if not path.is_file():
            return None
        try:
            self._load_file(path, "user")
        except ConfigurationError as exc:
            return str(exc)
        return None

    # -- statistics ----------------------------------------------------------------------------

    def stats(self) -> dict[str, dict[str, Any]]:
        path = self.user_dir / STATS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # a damaged stats file loses counts, never a run
        if not isinstance(data, dict):
            return {}
        clean = {}
        for name, entry in data.items():
            if isinstance(entry, dict) and isinstance(entry.get("success_count", 0), int):
                clean[str(name)] = entry
        return clean

    def success_count(self, name: str) -> int:
        return int(self.stats().get(name, {}).get("success_count", 0))

    def record_success(self, name: str, thread_id: str | None = None, *, run: str | None = None) -> int:
        """Raise a skill's success count; returns the new count.

        ``run`` identifies the success (the graph passes its remember step's task): a run
        recorded again, as when that step runs again after a crash, is counted once (among the
        skill's last ``RECENT_RUNS`` runs).

        The stats file is read, changed and replaced under a lock every store on the folder
        takes (other Runtimes and processes on the same skills folder count too): without it, two
        writers read the same counts and the second write drops the first one's success.
        """
        with self._stats_locked():
            stats = self.stats()
            entry = stats.setdefault(name, {"success_count": 0, "threads": []})
            runs = [r for r in entry.get("runs", []) if isinstance(r, str)]
            if run is not None and run in runs:
                return int(entry.get("success_count", 0))
            if run is not None:
                entry["runs"] = [*runs, run][-RECENT_RUNS:]
            entry["success_count"] = int(entry.get("success_count", 0)) + 1
            entry["last_success"] = datetime.now(UTC).isoformat(timespec="seconds")
            if thread_id:  # masked: a thread id may be an e-mail address
                entry["threads"] = [*entry.get("threads", []), mask_pii(thread_id)][-5:]
            self._write_stats(stats)
            return int(entry["success_count"])

    def _write_stats(self, stats: dict[str, Any]) -> None:
        """Replace the stats file (the caller holds :meth:`_stats_locked`)."""
        _atomic_write(self.user_dir / STATS_FILE, json.dumps(stats, indent=2, sort_keys=True))

    @contextlib.contextmanager
    def _stats_locked(self) -> Iterator[None]:
        """Hold the folder's stats lock: this store's threads, then every other store's (any
        process) through an exclusive lock on the file ``STATS_LOCK`` in the folder."""
        from brainstack.memory._filelock import exclusive

        with self._lock:
            self.user_dir.mkdir(parents=True, exist_ok=True)
            with exclusive(self.user_dir / STATS_LOCK):
                yield

    # -- writing -------------------------------------------------------------------------------

    def save(self, skill: Skill) -> Path:
        """Write a skill to the user folder (atomically)."""
        path = self._path(self.user_dir, skill.name)
        document = skill.model_dump(mode="json", exclude_defaults=False)
        _atomic_write(path, yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100))
        with self._lock:
            self._index = None
        return path

    def forget(self, name: str) -> Path:
        """Delete a learned (or hand-written) skill from the user folder, with its success count;
        returns the deleted file. Built-in skills are read-only (a user skill of the same name
        overrides one; forgetting that brings the built-in back, with its count). ``KeyError``
        when there is no such skill."""
        path = self._path(self.user_dir, name)
        builtin = self.builtin_dir is not None and self._path(self.builtin_dir, name).is_file()
        if not path.is_file():
            if builtin:
                raise UsageError(
                    f"{name!r} is a built-in skill and cannot be deleted; a user skill of the same "
                    f"name in {self.user_dir} overrides it."
                )
            raise KeyError(f"no skill named {name!r}")
        with self._stats_locked():
            path.unlink()
            stats = self.stats()
            if not builtin and stats.pop(name, None) is not None:
                self._write_stats(stats)
            self._index = None
        return path

    # -- matching ------------------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from brainstack.memory.embeddings import default_embedder

            self._embedder = default_embedder()
        return self._embedder

    def _signature(self) -> tuple[tuple[str, tuple[int, int, int] | None], ...]:
        """Every skill file's path and stamp: what tells whether the index is current. Checked on
        every match, so with ``os.scandir``: pathlib's glob took 7.7 ms per match at 1,000 skills on
        a 2-core VM, this 3.0 ms."""
        return tuple((e.path, _stamp(e)) for folder, _ in self._folders() for e in _skill_files(folder))

    def match(self, task: str, k: int = 2) -> list[SkillMatch]:
        """Skills whose when-to-use examples resemble ``task`` (score ≥ ``min_score``), best first."""
        with self._lock:
            signature = self._signature()
            if self._index is None or self._index[0] != signature:
                skills = self.all()
                examples = [(s.name, text) for s in skills for text in s.when_to_use]
                vectors = self._vectors([t for _, t in examples]) if examples else None
                self._index = (signature, vectors, [n for n, _ in examples], {s.name: s for s in skills})
            _, vectors, owners, by_name = self._index
        if vectors is None or not task.strip():
            return []
        sims = vectors @ query_embedding(self.embedder, task)
        best: dict[str, float] = {}
        for name, score in zip(owners, sims, strict=True):
            best[name] = max(best.get(name, -1.0), float(score))
        stats = self.stats()
        ranked = sorted(best.items(), key=lambda item: -item[1])
        return [
            SkillMatch(
                name=name,
                score=round(score, 4),
                success_count=int(stats.get(name, {}).get("success_count", 0)),
                source=by_name[name].provenance.source,
            )
            for name, score in ranked[:k]
            if score >= self.min_score
        ]

    def _vectors(self, texts: list[str]) -> Any:
        """The vectors of ``texts``, embedding only those not embedded before (the caller holds
        ``_lock``); the kept vectors become exactly those of ``texts``.

        A store's first build starts from the vectors an earlier store saved in the folder (see
        :data:`VECTORS_FILE`): a new process with hundreds of learned skills would otherwise embed
        every example before its first match (seconds). The file is written again once this store
        has embedded :data:`SAVE_VECTORS_AFTER` examples since it last wrote it (skills learned one
        at a time add up), or when a first build found it missing, damaged or holding examples no
        skill has any more.
        """
        known = self._example_vectors
        first = not known
        stale = False
        if first:
            saved = self._read_vectors()
            keys = {t: _text_key(t) for t in texts}
            known = {t: saved[key] for t, key in keys.items() if key in saved}
            stale = saved.keys() != set(keys.values())
        new = list(dict.fromkeys(t for t in texts if t not in known))
        if new:
            vectors = np.asarray(self.embedder.embed(new), dtype=np.float32)
            if known and next(iter(known.values())).shape != vectors.shape[1:]:
                known = {}  # saved by another model of the same name: embed everything again
                new = list(dict.fromkeys(texts))
                vectors = np.asarray(self.embedder.embed(new), dtype=np.float32)
                stale = True
            known.update(zip(new, vectors, strict=True))
        self._example_vectors = {t: known[t] for t in texts}
        self._unsaved += len(new)
        if (first and stale) or self._unsaved >= SAVE_VECTORS_AFTER:
            self._write_vectors()
        return np.stack([known[t] for t in texts])

    def _vectors_path(self) -> Path:
        return self.user_dir / VECTORS_FILE.format(_text_key(self.embedder.name))

    def _read_vectors(self) -> dict[str, Any]:
        """The saved vectors by text key; nothing if the file is missing or damaged."""
        try:
            with np.load(self._vectors_path(), allow_pickle=False) as data:
                keys, vectors = data["keys"], data["vectors"]
        except FileNotFoundError:
            return {}
        except Exception as exc:  # any damage (truncated zip, wrong arrays): embed again
            log.debug("skill vectors in %s are unreadable (%s); embedding again", self._vectors_path(), exc)
            return {}
        if vectors.ndim != 2 or vectors.dtype != np.float32 or keys.shape != (len(vectors),):
            return {}
        if vectors.shape[1] != self.embedder.dim or not np.isfinite(vectors).all():
            return {}  # not this embedder's (another model of its name, or made by hand)
        return {str(key): vector for key, vector in zip(keys, vectors, strict=True)}

    def _write_vectors(self) -> None:
        vectors = self._example_vectors
        buffer = io.BytesIO()
        np.savez(
            buffer,
            keys=np.array([_text_key(t) for t in vectors]),
            vectors=np.stack(list(vectors.values())) if vectors else np.zeros((0, 0), np.float32),
        )
        self._unsaved = 0  # written, or unwritable: either way, not tried again at every build
        try:
            _atomic_write(self._vectors_path(), buffer.getvalue())
        except OSError as exc:  # a read-only folder: the next process embeds again, nothing more
            log.debug("cannot save skill vectors in %s (%s)", self.user_dir, exc)

    def learn(
        self,
        *,
        task: str,
        route: str,
        steps: Sequence[PromptStep | ToolStep | CheckStep],
        description: str,
        thread_id: str | None,
        run: str | None = None,
    ) -> tuple[str, bool] | None:
        """Reinforce the skill that matches ``task`` or write a new learned one.

        Returns ``(name, created)``, or ``None`` when nothing worth keeping is left once personal
        data is out (a tool procedure whose every tool step held some). Everything the skill file
        holds (its name, description, when-to-use example, steps and provenance, and the thread ids
        in its stats) is masked for personal data first, as episodes are: learned skills are shared
        by every user, so nothing of one user's may reach them. A tool step whose arguments held
        personal data is left out (masked arguments would only make the tool fail when the skill is
        replayed).
        """
        task = mask_pii(task)
        description = mask_pii(description)
        had_tools = any(isinstance(step, ToolStep) for step in steps)
        steps = [masked for step in steps if (masked := _masked_step(step)) is not None]
        if not steps or (had_tools and not any(isinstance(step, ToolStep) for step in steps)):
            return None  # only the generic framing would be left: nothing to learn
        matches = self.match(task, k=1)
        if matches and matches[0].score >= max(self.min_score, 0.8):
            name = matches[0].name
            self.record_success(name, thread_id, run=run)
            return name, False
        name = _slug(f"{route}-{task}")
        if (self.user_dir / f"{name}.yaml").exists() or (
            self.builtin_dir and (self.builtin_dir / f"{name}.yaml").exists()
        ):
            name = _slug(f"{name[:50]}-{int(time.time())}")
        skill = Skill(
            name=name,
            description=description[:500],
            when_to_use=[task[:500]],
            steps=list(steps)[:20],
            provenance=Provenance(
                source="learned",
                thread_id=mask_pii(thread_id) if thread_id else thread_id,  # ids may be addresses
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                task=task[:500],
                route=route,
            ),
        )
        path = self.save(skill)
        try:
            self.record_success(name, thread_id, run=run)
        except BaseException:
            # All or nothing: a full disk wrote the skill but not its count, and the run reported
            # the skill not saved while later runs recalled it with no success (QA).
            with contextlib.suppress(OSError):
                path.unlink()
            with self._lock:
                self._index = None
            raise
        return name, True


def _masked_step(step: PromptStep | ToolStep | CheckStep) -> PromptStep | ToolStep | CheckStep | None:
    """``step`` with personal data masked; ``None`` for a tool step whose arguments held some."""
    if isinstance(step, ToolStep):
        arguments = {k: mask_pii(v) if isinstance(v, str) else v for k, v in step.arguments.items()}
        if arguments != step.arguments:
            return None
        return ToolStep(kind="tool", tool=step.tool, arguments=step.arguments, note=mask_pii(step.note))
    if isinstance(step, CheckStep):
        return CheckStep(
            kind="check",
            text=mask_pii(step.text)[:500],
            contains=[mask_pii(word) for word in step.contains],
            min_chars=step.min_chars,
        )
    return PromptStep(kind="prompt", text=mask_pii(step.text)[:1000])


def _skill_files(folder: Path) -> list[os.DirEntry[str]]:
    """The skill files in ``folder``, by name: ``*.yaml`` but not hidden files (editors' lock and
    backup files); none if the folder went away."""
    try:
        with os.scandir(folder) as entries:
            found = [e for e in entries if e.name.endswith(".yaml") and not e.name.startswith(".")]
    except OSError:
        return []
    return sorted(found, key=lambda e: e.name)


def _misnamed(folder: Path) -> list[Path]:
    """The ``*.yml`` files in ``folder``: YAML, likely meant as skills, but not read as such (a
    skill's name is its file's, ``<name>.yaml``, everywhere: saving, forgetting, overriding)."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if e.name.endswith(".yml") and not e.name.startswith(".")]
    except OSError:
        return []
    return sorted(folder / name for name in names)


def _stamp(path: Path | os.DirEntry[str]) -> tuple[int, int, int] | None:
    """What tells a file's versions apart: inode (a file replaced atomically, as :meth:`SkillStore.save`
    and editors do, gets a new one), modification time and size; ``None`` if it cannot be read."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].strip("-")
    return slug if len(slug) >= 2 else f"skill-{slug or 'x'}"


def _text_key(text: str) -> str:
    """What the vectors file keys an example by: a hash, so the file holds no skill's text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _atomic_write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
