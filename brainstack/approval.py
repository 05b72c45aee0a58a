"""Human approval: the answers a paused run accepts (shared by the graph, the runtime and the CLI)."""

from __future__ import annotations

from typing import Any

__all__ = ["RESUME_FORMS", "parse_resume"]

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
            return "edited", text.strip()
        if key == "reject" and isinstance(text, str | None):
            return "rejected", (text or "").strip()
        if key == "approve":
            return "approved", ""
    raise ValueError(f"{value!r} is not a decision; answer {RESUME_FORMS}")
