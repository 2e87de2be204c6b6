"""Read and write a results directory: ``results.json`` plus the per-sample table.

Every write is atomic (write to a temporary file in the same directory, then
``os.replace``), so a crash or Ctrl-C never leaves a half-written file and finished
probe results are always on disk. New files get the permissions the umask allows, as with
any tool (``0644`` under the usual ``022``): report artefacts are meant to be shared.

The engine rewrites both files after every probe. Those checkpoints are cheap: ``results.json``
is written compact (one line, json's C encoder) while the audit runs and indented once it has
finished, and :class:`PerSampleWriter` formats each per-sample column once, so a rewrite of the
table joins ready strings instead of making a Python call per value.

An operating-system error while creating or writing an output (read-only or full file system,
a parent that is a file, a name that is too long) becomes an :class:`OutputError` that names the
path and what happened (exit code 2); the files already written stay as they were.
"""
from __future__ import annotations

import csv
import errno
import json
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from robaudit.errors import OutputError, UsageError
from robaudit.probes.base import Flag, ProbeResult, Severity

RESULTS_FILE = "results.json"
PER_SAMPLE_FILE = "per_sample.csv"
REPORT_FILE = "report.html"
JUNIT_FILE = "gate-junit.xml"  # written by robaudit.gate.outputs
MARKDOWN_FILE = "gate-summary.md"
SCHEMA_VERSION = "1.0"

_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def printable(text: str) -> str:
    """``text`` as valid Unicode: the bytes of a path that is not UTF-8 (which Python holds as lone
    surrogates, e.g. ``b"ck\\xff.pt"`` → ``"ck\\udcff.pt"``) written as ``\\xNN``, like Python's own repr."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate that no OS byte maps to
            return text.encode("utf-8", "backslashreplace").decode("ascii")
        return raw.decode("utf-8", "backslashreplace")


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as printable text (see :func:`printable`)."""
    return printable(os.fsdecode(path))


def json_text(value: Any, *, compact: bool = False) -> str:
    """Strict JSON (no NaN) of ``value``, with every string made :func:`printable`, plus a newline.

    Args:
        compact: one line without spaces, from json's C encoder: the form of the checkpoints the
            engine writes while an audit runs (about 2.5× faster than the default form, which json
            writes with its pure-Python encoder: indented by 2 spaces, the form of a finished file).

    Raises:
        ValueError: ``value`` holds a non-finite float.
    """
    options: dict[str, Any] = {"separators": (",", ":")} if compact else {"indent": 2}
    text = json.dumps(value, allow_nan=False, **options)
    # json escapes every non-ASCII character (ensure_ascii), so a string that printable() would change,
    # one holding a surrogate, shows as "\udXXX"; without one the walk changes nothing and is skipped
    if "\\ud" in text:
        text = json.dumps(printable_strings(value), allow_nan=False, **options)
    return text + "\n"


def printable_strings(value: Any) -> Any:
    """``value`` (JSON types) with every string and key made :func:`printable`."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(k) if isinstance(k, str) else k: printable_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable_strings(v) for v in value]
    return value


def output_error(exc: OSError, path: str | os.PathLike[str], doing: str = "write") -> OutputError:
    """One line for an OS error on an output path: ``cannot <doing> <path>: <what happened>``, with a fix.

    Args:
        exc: the error the OS raised.
        path: the file or directory robaudit tried to create or write.
        doing: the verb phrase, e.g. ``"write"`` or ``"create the results directory"``.
    """
    path = Path(path)
    code = exc.errno
    where = "choose an --out directory you can write to"
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        what = "no space left on the device" if code == errno.ENOSPC else "disk quota exceeded"
        where = "free space on that file system, or choose an --out directory on another one"
    elif code == errno.EROFS:
        what = "the file system is read-only"
        where = "choose an --out directory on a writable file system"
    elif code in (errno.EACCES, errno.EPERM):
        what = "permission denied"
    elif code == errno.ENOTDIR:
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        what = f"{display_path(blocker)} is a file, not a directory" if blocker else "a parent is not a directory"
        where = "choose an --out path whose parents are all directories"
    elif code == errno.EEXIST:
        what = "it exists and is not a directory"
        where = "choose an --out path that is a directory or does not exist yet"
    elif code == errno.EISDIR:
        what = "it is a directory"
        where = "remove or rename that directory, or choose another --out directory"
    elif code == errno.ENAMETOOLONG:
        longest = max(path.parts, key=lambda part: len(os.fsencode(part)))
        shown = display_path(longest)
        what = (f"the name '{shown[:24]}…' is {len(os.fsencode(longest))} bytes long, more than the file system "
                "allows" if len(os.fsencode(longest)) > 255 else "the path is longer than the file system allows")
        where = "choose a shorter --out path"
    else:
        what = exc.strerror or type(exc).__name__
    return OutputError(f"cannot {doing} {display_path(path)}: {what}", fix=where)


def make_dirs(path: Path) -> None:
    """Create directory ``path`` and its parents (permissions from the umask).

    Raises:
        OutputError: it cannot be created.
    """
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, path, "create the directory") from None


def _open_temp(path: Path) -> tuple[int, Path]:
    """A new, empty temporary file beside ``path``; the kernel applies the umask to mode 0666."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", os.fspath(path))


def _write_fd(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8), creating the parent directories.

    Raises:
        OutputError: the OS refused (read-only or full file system, …); ``path`` is then unchanged.
    """
    path = Path(path)
    make_dirs(path.parent)
    data = text.encode("utf-8")
    tmp: Path | None = None
    try:
        fd, tmp = _open_temp(path)
        _write_fd(fd, data)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise output_error(exc, path) from None
        raise


def check_writable(directory: Path) -> None:
    """Create, write, sync and remove a small file in ``directory``, so a read-only or full file system
    is found before the audit starts.

    Raises:
        OutputError: the directory cannot be written.
    """
    directory = Path(directory)
    tmp: Path | None = None
    try:
        fd, tmp = _open_temp(directory / ".robaudit-write-check")
        _write_fd(fd, b"robaudit write check\n" * 200)
    except OSError as exc:
        raise output_error(exc, directory, "write in") from None
    finally:
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def write_results(out_dir: Path, results: dict[str, Any], *, checkpoint: bool = False) -> Path:
    """Write ``results.json`` atomically; ``results`` must already be JSON-safe (strings are made
    :func:`printable`, so a path that is not UTF-8 is stored with ``\\xNN`` escapes).

    Args:
        checkpoint: the compact one-line form of :func:`json_text`, as the engine writes after each
            probe while the audit runs; a finished file is indented.
    """
    path = out_dir / RESULTS_FILE
    atomic_write_text(path, json_text(results, compact=checkpoint))
    return path


def read_results(out_dir: Path) -> dict[str, Any]:
    """Read ``results.json`` from a results directory.

    Raises:
        UsageError: the directory or file is missing or unreadable, or fails the checks of
            :func:`robaudit.results.checks.parse_results` (strict JSON, schema version, shape).
    """
    from robaudit.results.checks import parse_results

    path = Path(out_dir) / RESULTS_FILE
    if not path.is_file():
        raise UsageError(f"no {RESULTS_FILE} in {out_dir}", fix="pass the --out directory of a 'robaudit run'")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", fix="check the path and its permissions") from None
    return parse_results(raw, path)


def per_sample_column(probe: str, key: str) -> str:
    """The per-sample table's column name for a probe's quantity: ``probe/key``."""
    return f"{probe}/{key}"


def write_per_sample(out_dir: Path, ids: list[str], labels: np.ndarray, columns: dict[str, Any]) -> Path:
    """Write the per-sample table (CSV, one row per sample id) atomically.

    Args:
        ids: N sample ids (first column ``sample_id``).
        labels: N true labels (second column ``label``).
        columns: column name → length-N array (cells as :func:`format_column` writes them).
    """
    return PerSampleWriter(out_dir, ids, labels).write(columns)


class _Echo:
    """A file whose ``write`` returns what it is given, so ``csv.writer(...).writerow`` returns the row's text."""

    def write(self, text: str) -> str:
        return text


class PerSampleWriter:
    """Writes one audit's per-sample table, again after each probe as columns are added.

    The CSV text is what :mod:`csv` writes for the rows ``[sample_id, label, *cells]``
    (``lineterminator="\\n"``), with cells from :func:`format_column`. Each row's id and label are
    quoted once, and each column is formatted once (kept while the same array object is passed
    again), so a write only joins strings that are ready: the engine's checkpoints cost about the
    size of the table, not a Python call per cell.
    """

    def __init__(self, out_dir: Path, ids: list[str], labels: np.ndarray) -> None:
        """Args: the results directory, the N sample ids, their N true labels."""
        self.path = Path(out_dir) / PER_SAMPLE_FILE
        self._csv = csv.writer(_Echo(), lineterminator="\n")
        self._rows = [self._csv.writerow((sample_id, str(int(label))))[:-1]
                      for sample_id, label in zip(ids, np.asarray(labels).tolist())]
        self._formatted: dict[str, tuple[Any, list[str]]] = {}

    def text(self, columns: dict[str, Any]) -> str:
        """The table's CSV text with ``columns`` (name → length-N array) after ``sample_id`` and ``label``."""
        header = self._csv.writerow(["sample_id", "label", *columns])
        cells = [self._cells(name, values) for name, values in columns.items()]
        self._formatted = {name: self._formatted[name] for name in columns}
        if not self._rows:
            return header
        return header + "\n".join(map(",".join, zip(self._rows, *cells))) + "\n"

    def write(self, columns: dict[str, Any]) -> Path:
        """Write the table with ``columns`` atomically; returns its path.

        Raises:
            OutputError: the OS refused; the table on disk is then unchanged.
        """
        atomic_write_text(self.path, self.text(columns))
        return self.path

    def _cells(self, name: str, values: Any) -> list[str]:
        cached = self._formatted.get(name)
        if cached is None or cached[0] is not values:
            cached = self._formatted[name] = (values, format_column(values))
        return cached[1]


def read_per_sample(out_dir: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Read the per-sample table: (sample ids, column name → float array; ``label`` included).

    Raises:
        UsageError: the table is not UTF-8 CSV, a row has the wrong number of cells, or a cell
            is not a number (empty cells are NaN).
    """
    path = Path(out_dir) / PER_SAMPLE_FILE
    if not path.is_file():
        return [], {}
    bad = "re-run the audit that wrote it to regenerate it"
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return [], {}
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path} is not a UTF-8 CSV table ({exc})", fix=bad) from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", fix="check the path and its permissions") from None
    for line, r in enumerate(rows, start=2):
        if len(r) != len(header):
            raise UsageError(f"{path} line {line} has {len(r)} cells but the header has {len(header)}", fix=bad)
    ids = [r[0] for r in rows]
    cols = {}
    for j, name in enumerate(header[1:], start=1):
        try:
            cols[name] = np.array([_parse(r[j]) for r in rows], dtype=np.float64)
        except ValueError as exc:
            raise UsageError(f"{path} column {name!r} holds a cell that is not a number ({exc})", fix=bad) from None
    return ids, cols


def check_per_sample(results: dict[str, Any], ids: list[str], columns: dict[str, np.ndarray], out_dir: Path) -> None:
    """Check a per-sample table read by :func:`read_per_sample` against what ``results.json`` records of it.

    The engine writes the table before ``results.json`` after every probe, so a table with fewer rows than
    recorded, a recorded column it lacks, or a sample id twice was cut short or edited: a statistic over it
    would quietly cover other samples. A missing table is not checked here (a baseline may be committed
    without one; readers that need a column say so).

    Raises:
        UsageError: naming the file, what it holds and what ``results.json`` records (exit 2).
    """
    record = results.get("per_sample")
    path = Path(out_dir) / PER_SAMPLE_FILE
    if not isinstance(record, dict) or not path.is_file():
        return
    fix = "re-run the audit that wrote it ('robaudit run ... --out DIR') to regenerate both files"
    rows = record.get("rows")
    if isinstance(rows, int) and not isinstance(rows, bool) and rows != len(ids):
        raise UsageError(f"{path} has {len(ids)} row(s) but {RESULTS_FILE} records {rows}: the table is truncated "
                         "or belongs to another audit", fix=fix)
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        twice = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise UsageError(f"{path} lists sample id {twice!r} more than once", fix=fix)
    recorded = record.get("columns")
    if isinstance(recorded, list):
        lacking = [c for c in recorded if isinstance(c, str) and c not in columns]
        if lacking:
            raise UsageError(f"{path} lacks {len(lacking)} column(s) that {RESULTS_FILE} records, e.g. {lacking[0]!r}",
                             fix=fix)


def persisted_column(values: Any) -> np.ndarray:
    """A per-sample array exactly as :func:`read_per_sample` will read it back: float64, booleans
    1.0 / 0.0, non-finite values NaN, −0.0 as 0.0 (its cell is ``0``). The engine hands later
    probes this form, fresh or resumed."""
    out = np.array(values, dtype=np.float64).reshape(-1)  # a copy: the probe's array is left as it is
    out[~np.isfinite(out)] = np.nan
    out[out == 0.0] = 0.0
    return out


def format_column(values: Any) -> list[str]:
    """The per-sample table's cells of one column (length N → N strings), formatted vectorised.

    Booleans are ``1``/``0``; integers and integral floats below 2**53 in magnitude are written as
    integers (so a 0/1 column reads the same whether written from booleans or from their float64
    persisted form, as a resumed run writes it); other floats as ``repr``, which round-trips
    exactly; non-finite values as empty cells. :func:`read_per_sample` reads back
    :func:`persisted_column` of ``values``, bit for bit.
    """
    array = np.asarray(values)
    if array.dtype.kind == "b":
        return ["1" if v else "0" for v in array.tolist()]
    if array.dtype.kind in "iu":
        return list(map(str, array.tolist()))
    array = array.astype(np.float64)  # exact for any float dtype; object arrays of Python numbers too
    floats = array.tolist()
    cells = np.array(list(map(repr, floats)), dtype=object)
    finite = np.isfinite(array)
    safe = np.where(finite, array, 0.0)
    integral = finite & (np.abs(safe) < 2**53) & (safe == np.trunc(safe))
    cells[integral] = list(map(str, array[integral].astype(np.int64).tolist()))
    cells[~finite] = ""
    return cells.tolist()


def persisted_result(entry: dict[str, Any], columns: dict[str, np.ndarray]) -> ProbeResult:
    """One probe's result in its persisted form, from its ``results.json`` entry and the per-sample
    table's columns (column name → float64 array, as :func:`read_per_sample` returns them)."""
    prefix = f"{entry['name']}/"
    per_sample = {c[len(prefix):]: columns[c] for c in entry.get("per_sample_columns", []) if c in columns}
    flags = [Flag(f["id"], Severity(f["severity"]), f["message"], f["source"], f.get("docs", ""))
             for f in entry.get("flags", [])]
    return ProbeResult(summary=entry.get("summary", {}), per_sample=per_sample, flags=flags,
                       artifacts=entry.get("artifacts", {}), notes=list(entry.get("notes", [])))


def _parse(cell: str) -> float:
    return float(cell) if cell != "" else np.nan
