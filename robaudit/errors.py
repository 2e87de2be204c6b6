"""Exceptions that the CLI turns into one clear line and a documented exit code.

Every error raised for bad user input is a :class:`RobauditError` carrying *what* is
wrong and *how to fix it*; anything else that escapes is an internal error.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

from robaudit.exitcodes import ExitCode


RESUME_REFUSED = "those results"
"""Follows ``--resume DIR: `` in the reason why an earlier audit cannot be continued (another model or other
samples); ``robaudit zoo --resume`` reads it to start such a model's audit afresh with ``--overwrite``."""


class RobauditError(Exception):
    """Base class for errors reported to the user as a single line.

    Args:
        message: what is wrong, as one sentence without a trailing period.
        fix: how to fix it, as one imperative sentence (optional).
    """

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return self.one_line()

    def one_line(self) -> str:
        """The message and fix, joined on one line with newlines flattened."""
        text = self.message.rstrip(".")
        if self.fix:
            text = f"{text}. Fix: {self.fix.rstrip('.')}."
        else:
            text += "."
        return " ".join(text.split())


class UsageError(RobauditError):
    """Bad command-line usage or configuration."""


class ConfigError(UsageError):
    """A bad configuration file or key."""


class ModelLoadError(UsageError):
    """The model could not be built or its checkpoint could not be loaded."""


class DataError(UsageError):
    """The dataset could not be found, read or matched to the model."""


class ProbeError(UsageError):
    """A probe name or probe configuration is invalid."""


class OutputError(UsageError):
    """The results directory or a file in it cannot be created or written (read-only, full, not a directory …)."""


class PreflightError(UsageError):
    """The model failed a preflight check that makes every probe meaningless (e.g. NaN logits)."""


class InternalError(RobauditError):
    """A bug: something that should not happen whatever the input."""

    exit_code = ExitCode.INTERNAL


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``"did you mean 'x' or 'y'?"`` for close matches of ``name``, or ``""``."""
    matches = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    if not matches:
        return ""
    quoted = " or ".join(f"'{m}'" for m in matches)
    return f"did you mean {quoted}?"
