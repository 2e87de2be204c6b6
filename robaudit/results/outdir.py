"""Claim a results directory for one audit, so that nothing finished is ever lost.

:func:`claim_out_dir` is held for the whole of ``robaudit run`` (``--resume`` included):

1. it creates the directory and checks that it can be written, before any model is loaded;
2. it holds an OS-level lock on ``DIR/.robaudit.lock`` (``flock`` through the ``filelock``
   package, released by the OS even when the process is killed), with the holder's PID written
   in the lock file, so a second run into the same directory stops with exit code 2 and names it;
3. it refuses to start a new audit over an earlier one (finished, partial or interrupted) unless
   ``--resume`` continues it or ``--overwrite`` first moves its files into
   ``DIR/previous-<UTC time>/``. Nothing is deleted, and files that are not robaudit's are never
   touched.

If the run stops before writing anything (bad checkpoint, Ctrl-C during loading), the directory
is left as it was found: files moved aside go back, and directories it created are removed.
"""
from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from filelock import FileLock, Timeout

from robaudit.errors import UsageError
from robaudit.results import store

log = logging.getLogger("robaudit")

LOCK_FILE = ".robaudit.lock"
PREVIOUS_PREFIX = "previous-"
# The files an audit (and a gate on it) writes into its directory; --overwrite moves exactly these.
AUDIT_FILES = (store.RESULTS_FILE, store.PER_SAMPLE_FILE, store.REPORT_FILE, store.JUNIT_FILE, store.MARKDOWN_FILE)


@contextmanager
def claim_out_dir(out_dir: Path, *, resume: bool = False, overwrite: bool = False) -> Iterator[Path]:
    """Create, check, lock and (with ``overwrite``) clear ``out_dir`` for one audit; release on exit.

    Args:
        out_dir: the results directory (``--out``).
        resume: the run continues the audit in ``out_dir`` (its files are kept in place).
        overwrite: move an earlier audit's files into ``out_dir/previous-<UTC time>/`` first.

    Raises:
        OutputError: the directory cannot be created or written (exit code 2).
        UsageError: another run holds the directory, or it holds an audit and neither
            ``resume`` nor ``overwrite`` is set.
    """
    out_dir = Path(out_dir)
    created = [p for p in (out_dir, *out_dir.parents) if _missing(p)]
    lock_path = out_dir / LOCK_FILE
    lock: FileLock | None = None
    lock_created = False
    aside: Path | None = None
    moved: list[str] = []
    try:
        store.make_dirs(out_dir)
        lock_created = not lock_path.exists()
        lock = _lock(out_dir, lock_path, remove_on_error=lock_created)
        store.check_writable(out_dir)
        found = audit_files(out_dir)
        if found and not resume:
            if not overwrite:
                raise UsageError(
                    f"{store.display_path(out_dir)} already holds an audit ({_describe(out_dir, found)}); "
                    "a new run would replace it",
                    fix=f"continue it with --resume {store.display_path(out_dir)}, pass --overwrite to move it into "
                        f"{store.display_path(out_dir / (PREVIOUS_PREFIX + '<UTC time>'))}/ first, "
                        "or choose another --out directory")
            aside = _previous_dir(out_dir)
            store.make_dirs(aside)
            for name in found:
                _move(out_dir / name, aside / name)
                moved.append(name)
            log.info("moved the earlier audit in %s to %s", out_dir, aside)
        yield out_dir
    finally:
        try:
            if lock is not None:
                with suppress(OSError):
                    os.truncate(lock_path, 0)  # the PID of a finished run must not be reported later
            if not audit_files(out_dir):  # nothing written: leave the directory as it was found
                _restore(out_dir, aside, moved)
                if lock_created and lock is not None:
                    with suppress(OSError):
                        lock_path.unlink()
                for directory in created:  # innermost first; only the empty ones go
                    with suppress(OSError):
                        directory.rmdir()
        finally:
            if lock is not None:
                lock.release()


@contextmanager
def hold_lock(out_dir: Path) -> Iterator[Path]:
    """Hold ``out_dir``'s lock (:data:`LOCK_FILE`, the holder's PID in it) for a job that writes many files
    there, such as a zoo sweep, creating the directory when needed; a lock file this call created, in a
    directory it leaves empty, is removed again, with the directories it created.

    Raises:
        UsageError: another robaudit process holds the lock (its PID is named; exit 2).
        OutputError: the directory cannot be created or written.
    """
    out_dir = Path(out_dir)
    created = [p for p in (out_dir, *out_dir.parents) if _missing(p)]
    store.make_dirs(out_dir)
    lock_path = out_dir / LOCK_FILE
    lock_created = not lock_path.exists()
    try:
        lock = _lock(out_dir, lock_path, remove_on_error=lock_created)
    except BaseException:
        for directory in created:
            with suppress(OSError):
                directory.rmdir()
        raise
    try:
        yield out_dir
    finally:
        if lock is not None:
            with suppress(OSError):
                os.truncate(lock_path, 0)
            if lock_created and [e.name for e in os.scandir(out_dir)] == [LOCK_FILE]:
                with suppress(OSError):
                    lock_path.unlink()
                for directory in created:
                    with suppress(OSError):
                        directory.rmdir()
            lock.release()


def audit_files(out_dir: Path) -> list[str]:
    """The robaudit files in ``out_dir``: :data:`AUDIT_FILES`, and temporary files left by a killed write."""
    names = [n for n in AUDIT_FILES if os.path.lexists(out_dir / n)]
    with suppress(OSError):
        names += sorted(e.name for e in os.scandir(out_dir)
                        if e.name.endswith(".tmp") and any(e.name.startswith(f".{n}.") for n in AUDIT_FILES))
    return names


def lock_holder(out_dir: Path) -> int | None:
    """The PID written in ``out_dir``'s lock file by the run holding it, or ``None``."""
    try:
        text = (Path(out_dir) / LOCK_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _missing(path: Path) -> bool:
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:  # e.g. a name too long: make_dirs reports it
        return False
    return False


def _lock(out_dir: Path, lock_path: Path, *, remove_on_error: bool) -> FileLock | None:
    """Take the directory's lock without waiting; ``None`` where the file system has no ``flock``.

    Args:
        remove_on_error: the lock file is new; remove it if the lock cannot be taken for an OS error.
    """
    lock = FileLock(lock_path, timeout=0, on_acquired=_write_pid, preserve_lock_file=True)
    try:
        lock.acquire()
    except Timeout:
        raise UsageError(f"{store.display_path(out_dir)} is in use by another robaudit run ({_holder_text(out_dir)})",
                         fix="wait for that run to finish, or choose another --out directory") from None
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            log.warning("cannot lock %s (the file system has no flock): concurrent runs into it are not prevented",
                        out_dir)
            return None
        if remove_on_error:
            with suppress(OSError):
                lock_path.unlink()
        raise store.output_error(exc, out_dir, "write in") from None
    return lock


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)


def _holder_text(out_dir: Path) -> str:
    for _ in range(20):  # the holder writes its PID just after it takes the lock
        pid = lock_holder(out_dir)
        if pid is not None:
            return f"PID {pid}"
        time.sleep(0.05)
    return "PID unknown"


def _describe(out_dir: Path, found: list[str]) -> str:
    try:
        results = json.loads((out_dir / store.RESULTS_FILE).read_text(encoding="utf-8"))
        return f"status {results['status']}, created {results['created']}"
    except (OSError, ValueError, KeyError, TypeError):
        return ", ".join(found)


def _previous_dir(out_dir: Path) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    candidate = out_dir / f"{PREVIOUS_PREFIX}{stamp}"
    n = 1
    while candidate.exists():
        n += 1
        candidate = out_dir / f"{PREVIOUS_PREFIX}{stamp}-{n}"
    return candidate


def _move(src: Path, dst: Path) -> None:
    try:
        os.rename(src, dst)  # same directory tree, same file system: atomic, nothing copied or deleted
    except OSError as exc:
        raise store.output_error(exc, src, "move aside") from None


def _restore(out_dir: Path, aside: Path | None, moved: list[str]) -> None:
    if aside is None:
        return
    for name in moved:
        with suppress(OSError):
            os.rename(aside / name, out_dir / name)
    with suppress(OSError):
        aside.rmdir()
    log.info("nothing new was written; the earlier audit is back in %s", out_dir)
