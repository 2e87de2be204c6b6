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
from robaudit.probes.base import Flag, ProbeResult, Severity

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
        UsageError: the directory or file is missing or not valid JSON.
    """
    path = Path(out_dir) / RESULTS_FILE
    if not path.is_file():
        raise UsageError(f"no {RESULTS_FILE} in {out_dir}", fix="pass the --out directory of a 'robaudit run'")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON ({exc})", fix="re-run the audit to regenerate it") from None


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
    """Read the per-sample table: (sample ids, column name → float array; ``label`` included)."""
    path = Path(out_dir) / PER_SAMPLE_FILE
    if not path.is_file():
        return [], {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return [], {}
        rows = list(reader)
    ids = [r[0] for r in rows]
    cols = {}
    for j, name in enumerate(header[1:], start=1):
        cols[name] = np.array([_parse(r[j]) for r in rows], dtype=np.float64)
    return ids, cols


def persisted_column(values: Any) -> np.ndarray:
    """A per-sample array exactly as :func:`read_per_sample` will read it back: float64, booleans
    1.0 / 0.0, non-finite values NaN. The engine hands later probes this form, fresh or resumed."""
    return np.array([_parse(_cell(v)) for v in np.asarray(values).tolist()], dtype=np.float64)


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


def _cell(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    f = float(v)
    if not np.isfinite(f):
        return ""
    # integral floats as integers, so a 0/1 column reads the same whether it was written from
    # booleans or from their float64 persisted form (a resumed run writes the latter)
    return str(int(f)) if f.is_integer() and abs(f) < 2**53 else repr(f)
