"""Small helpers that keep load errors to one readable line."""
from __future__ import annotations

from collections.abc import Sequence


def one_line(exc: BaseException, limit: int = 160) -> str:
    """``"TypeError: first line of the message"`` for an exception, cut to about ``limit`` characters.

    Long first lines are cut at their first sentence, then at ``limit`` with an ellipsis.
    """
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = lines[0].strip()
    if len(text) > limit and ". " in text:
        text = text[: text.index(". ") + 1]
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return f"{type(exc).__name__}: {text}"


def hint(suggestion: str) -> str:
    """A did-you-mean suggestion as a parenthesised suffix (``" (did you mean 'x'?)"``), or ``""``."""
    return f" ({suggestion})" if suggestion else ""


def list_some(items: Sequence[str], limit: int = 5) -> str:
    """Join up to ``limit`` items with commas, then ``"… and N more"``."""
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f" … and {len(items) - limit} more"
    return shown


def exit_call(exc: SystemExit) -> str:
    """``"sys.exit(7)"`` for the :class:`SystemExit` that user code raised (its code as given)."""
    return f"sys.exit({exc.code!r})" if exc.code is not None else "sys.exit()"
