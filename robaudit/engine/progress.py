"""Progress bars for loops over data: rich on a terminal, silent otherwise or with --quiet."""
from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from robaudit.probes.base import ProgressFactory

T = TypeVar("T")


def make_progress(quiet: bool) -> ProgressFactory:
    """A ``progress(iterable, label, total)`` wrapper; a pass-through when quiet or not a TTY."""
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
