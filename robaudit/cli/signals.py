"""SIGTERM, which CI sends when it cancels a job, handled exactly like Ctrl-C.

Inside :func:`sigterm_as_interrupt` (around every CLI command), SIGTERM raises :class:`Terminated`, a
``KeyboardInterrupt``: the engine writes every finished probe's result with status
``interrupted`` and renders the report from them, and the CLI exits with code 4.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; handled everywhere as Ctrl-C is."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` in the main thread for the duration; restore the old handler after.

    Further SIGTERMs are ignored once the first arrives, so they cannot cut short the writing of the
    finished results (a job runner's SIGKILL still ends the process; every file is written atomically).
    Elsewhere than the main thread (where Python allows no handler) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return

    saved_sigint: list[Any] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # a process-group SIGTERM can come with a SIGINT (a zoo worker forwards one to its audit): one stop
        saved_sigint.append(signal.signal(signal.SIGINT, signal.SIG_IGN))
        raise Terminated(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        if saved_sigint:
            signal.signal(signal.SIGINT, saved_sigint[0] if saved_sigint[0] is not None else signal.SIG_DFL)
