"""Human approval: the answers a paused run accepts (shared by the graph, the runtime and the CLI)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brainstack.errors import NotPausedError

__all__ = ["RESUME_FORMS", "not_paused", "parse_resume"]

APPROVE_WORDS = frozenset({"approve", "approved", "yes", "y", "ok"})
REJECT_WORDS = frozenset({"reject", "rejected", "no", "n"})
RESUME_FORMS = '"approve", "reject", {"reject": "why"} or {"edit": "the corrected answer"}'


def parse_resume(value: Any) -> tuple[str, str]:
    """A human's answer to an approval request → (``approved``|``rejected``|``edited``, text).

    ``text`` is the edited answer or the rejection's reason. Raises ``ValueError`` naming the
    accepted forms for anything else.
    """
    if isinstance(value, str):
        word = value.strip().lower()
        if word in APPROVE_WORDS:
            return "approved", ""
        if word in REJECT_WORDS:
            return "rejected", ""
    elif isinstance(value, dict) and len(value) == 1:
        ((key, text),) = value.items()
        key = str(key).strip().lower()
        if key == "edit" and isinstance(text, str) and text.strip():
            return "edited", _checked("edited answer", text.strip())
        if key == "reject" and isinstance(text, str | None):
            return "rejected", _checked("reason", (text or "").strip())
        if key == "approve" and (text is True or text is None):  # {"approve": False} is no approval
            return "approved", ""
    raise ValueError(f"{value!r} is not a decision; answer {RESUME_FORMS}")


def not_paused(thread_id: str, last_run: str | None, what_to_do: str) -> NotPausedError:
    """The error for a resume sent to a thread that is not waiting for an approval: ``last_run``
    says what its last run did (``None``: it has none), ``what_to_do`` how to go on instead
    (the Runtime, the CLI and the Studio graph each name their own way)."""
    from brainstack.errors import NotPausedError

    why = f"its last run {last_run}" if last_run else "it has no run yet"
    return NotPausedError(
        f"Thread {thread_id!r} is not waiting for an approval: {why}, so a resume (a decision on "
        f"a paused run's answer) has nothing to answer. {what_to_do}",
        thread_id=thread_id,
    )


MAX_TEXT_CHARS = 20_000
"""The longest edited answer or reason (an agent's answer is cut at the same length)."""


def _checked(what: str, text: str) -> str:
    """``text`` (an edited answer or a rejection's reason), or ValueError saying why it is refused:
    it is stored in the checkpoint, the conversation and memory, as a task is, and checked alike."""
    from brainstack.errors import control_character

    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"the {what} has {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"the {what} is not valid UTF-8 text (character {exc.start + 1})") from None
    text, control = control_character(text)
    if control is not None:
        raise ValueError(
            f"the {what} contains the control character {control.group()!r} (character "
            f"{control.start() + 1}); remove it"
        )
    return text
