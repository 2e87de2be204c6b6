"""The public exit codes of every robaudit command (documented in the README)."""
from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit status of the ``robaudit`` CLI.

    The values are part of the public interface: CI pipelines branch on them.
    """

    OK = 0
    """Everything requested ran (and the gate, if any, passed)."""
    GATE_FAILED = 1
    """A gate rule failed."""
    USAGE = 2
    """Usage error or bad input: a missing file, a bad config key, an unloadable checkpoint."""
    INTERNAL = 3
    """A bug in robaudit or a probe; run again with ``--debug`` and report it."""
    INTERRUPTED = 4
    """Interrupted (Ctrl-C or SIGTERM); finished probe results are already on disk."""
    NOTHING_RAN = 5
    """No probe ran (or nothing to gate)."""
