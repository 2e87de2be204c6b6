"""Progress for a whole audit: on a terminal an overall bar above rich's per-loop bar; elsewhere (a CI
log) one line per probe at its start and then at least every ``ROBAUDIT_PROGRESS_INTERVAL`` seconds
(default 30), with the probe's place (i/n), its inner progress (batches done/total) and an ETA for the
whole audit; nothing when quiet.

The ETA is time-based: the elapsed time divided by the fraction of the audit done, where each probe
counts as an equal share and a probe's share is split by its batches done.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from robaudit.errors import ConfigError
from robaudit.probes.base import ProgressFactory

T = TypeVar("T")

INTERVAL_VARIABLE = "ROBAUDIT_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 30.0

log = logging.getLogger("robaudit.progress")


def progress_interval() -> float:
    """Seconds between progress lines in a non-TTY log (``ROBAUDIT_PROGRESS_INTERVAL``, default 30).

    Raises:
        ConfigError: the variable is set but not a positive number.
    """
    raw = os.environ.get(INTERVAL_VARIABLE)
    if raw is None or not raw.strip():
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ConfigError(f"{INTERVAL_VARIABLE}={raw!r} is not a positive number of seconds",
                          fix=f"set {INTERVAL_VARIABLE} to e.g. 30, or unset it")
    return value


def make_progress(quiet: bool) -> ProgressFactory:
    """A ``progress(iterable, label, total)`` wrapper for one loop outside an audit (probe tests):
    a pass-through when quiet or not a TTY, else a transient rich bar."""
    if quiet or not sys.stderr.isatty():
        def passthrough(iterable: Iterable[T], label: str, total: int | None = None) -> Iterator[T]:
            yield from iterable
        return passthrough

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    def with_bar(iterable: Iterable[Any], label: str, total: int | None = None) -> Iterator[Any]:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task(label, total=total)
            for item in iterable:
                yield item
                bar.advance(task)
    return with_bar


def format_seconds(seconds: float) -> str:
    """``75`` → ``1m15s``; ``3700`` → ``1h01m``; under a minute ``42s``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class AuditProgress:
    """Progress of one audit over ``n_probes`` probes. Use as a context manager; call
    :meth:`start_probe` before each probe and pass :meth:`track` to probes as their progress factory.

    Args:
        n_probes: how many probes the audit runs (reused ones included).
        quiet: show nothing.
        tty: draw rich bars (default: whether stderr is a terminal); else log lines.
        interval: seconds between log lines (default :func:`progress_interval`).
    """

    def __init__(self, n_probes: int, *, quiet: bool, tty: bool | None = None, interval: float | None = None) -> None:
        self.n = max(1, n_probes)
        self.quiet = quiet
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.interval = progress_interval() if interval is None else interval
        self.index = 0
        self.name = ""
        self.label = ""
        self.done = 0
        self.total: int | None = None
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: Any = None
        self._overall: Any = None

    def __enter__(self) -> AuditProgress:
        self._start = time.monotonic()
        if self.quiet:
            return self
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[eta]}"), transient=True)
            self._bar.start()
            self._overall = self._bar.add_task("audit", total=self.n, eta="")
        else:
            self._thread = threading.Thread(target=self._heartbeat, name="robaudit-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            self._bar.stop()

    def start_probe(self, index: int, name: str) -> None:
        """Probe ``index`` (1-based) named ``name`` starts; logs its first line in a non-TTY."""
        self.index, self.name, self.label, self.done, self.total = index, name, "", 0, None
        if self._bar is not None:
            self._bar.update(self._overall, completed=index - 1, description=f"audit {index}/{self.n}: {name}",
                             eta=self._eta_text())
        elif not self.quiet:
            log.info("%s", self.status_line())

    def fraction_done(self) -> float:
        """The share of the audit done, in [0, 1]: finished probes plus the current one's batch share."""
        inner = self.done / self.total if self.total else 0.0
        return min(1.0, (max(self.index - 1, 0) + inner) / self.n)

    def eta_seconds(self) -> float | None:
        """Seconds left for the whole audit (elapsed × remaining / done), or ``None`` before any progress."""
        f = self.fraction_done()
        if f <= 0:
            return None
        return (time.monotonic() - self._start) * (1 - f) / f

    def status_line(self) -> str:
        """``progress: probe 2/5 attack.pgd_linf: 3/10 batches (pgd); elapsed 12s, ETA 1m05s``."""
        inner = f"{self.done}/{self.total if self.total is not None else '?'} batches"
        if self.label:
            inner += f" ({self.label})"
        return (f"progress: probe {self.index}/{self.n} {self.name}: {inner}; "
                f"elapsed {format_seconds(time.monotonic() - self._start)}, {self._eta_text()}")

    def track(self, iterable: Iterable[T], label: str, total: int | None = None) -> Iterator[T]:
        """The :data:`~robaudit.probes.base.ProgressFactory` probes get: counts batches of one loop."""
        self.label, self.done, self.total = label, 0, total
        task = None
        if self._bar is not None:
            task = self._bar.add_task(f"  {label}", total=total, eta="")
        try:
            for item in iterable:
                yield item
                self.done += 1
                if task is not None:
                    self._bar.advance(task)
                    self._bar.update(self._overall, completed=self.fraction_done() * self.n, eta=self._eta_text())
        finally:
            if task is not None:
                self._bar.remove_task(task)

    def _eta_text(self) -> str:
        eta = self.eta_seconds()
        return "ETA ?" if eta is None else f"ETA {format_seconds(eta)}"

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.interval):
            if self.index:
                log.info("%s", self.status_line())
