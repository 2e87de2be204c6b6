"""Read and write a results directory: ``results.json`` plus the per-sample table.

Every write is atomic (write to a temporary file in the same directory, then
``os.replace``), so a crash or Ctrl-C never leaves a half-written file and finished
probe results are always on disk.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from robaudit.errors import UsageError

RESULTS_FILE = "results.json"
PER_SAMPLE_FILE = "per_sample.csv"
REPORT_FILE = "report.html"
SCHEMA_VERSION = "1.0"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(out_dir: Path, results: dict[str, Any]) -> Path:
    """Write ``results.json`` atomically; ``results`` must already be JSON-safe."""
    path = out_dir / RESULTS_FILE
    atomic_write_text(path, json.dumps(results, indent=2, allow_nan=False) + "\n")
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


def write_per_sample(out_dir: Path, ids: list[str], labels: np.ndarray, columns: dict[str, np.ndarray]) -> Path:
    """Write the per-sample table (CSV, one row per sample id) atomically.

    Args:
        ids: N sample ids (first column ``sample_id``).
        labels: N true labels (second column ``label``).
        columns: column name → length-N array (floats written with full precision;
            NaN written as an empty cell).
    """
    names = list(columns)
    rows = [["sample_id", "label", *names]]
    arrays = [np.asarray(columns[n]) for n in names]
    for i, sample_id in enumerate(ids):
        rows.append([sample_id, str(int(labels[i])), *(_cell(a[i]) for a in arrays)])
    path = out_dir / PER_SAMPLE_FILE
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return path


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
            cols[name] = np.array([float(r[j]) if r[j] != "" else np.nan for r in rows], dtype=np.float64)
        except ValueError as exc:
            raise UsageError(f"{path} column {name!r} holds a cell that is not a number ({exc})", fix=bad) from None
    return ids, cols


def _cell(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    f = float(v)
    return "" if not np.isfinite(f) else repr(f)
