"""The engine's cheap checkpoint writes (issue #17) write exactly what the plain encoders write.

Oracles: the standard library's ``json`` (indented, and its C encoder for the compact form) applied
to :func:`store.printable_strings` of the value, as results files were always written; the
standard library's ``csv`` writer applied to rows of cells formatted one by one by the documented
rule (``repr`` for floats, integers for integral values, empty for non-finite ones); and, for
exactness, the values read back from disk by :func:`store.read_per_sample`. Through the real CLI:
a SIGKILL between probes leaves a compact, strictly valid checkpoint holding every finished probe
and its per-sample columns, and ``--resume`` writes the same finished files as an uninterrupted run.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from demo import DEMO_ARCH, DEMO_CHECKPOINT
from robaudit.cli.main import main
from robaudit.engine.runner import TEST_STOP_VARIABLE
from robaudit.exitcodes import ExitCode
from robaudit.results import store

SURROGATE = "ck\udcff.pt"  # a path whose bytes are not UTF-8, as Python holds it


def _stdlib_json(value: Any, *, compact: bool = False) -> str:
    options: dict[str, Any] = {"separators": (",", ":")} if compact else {"indent": 2}
    return json.dumps(store.printable_strings(value), allow_nan=False, **options) + "\n"


VALUES = [
    {"a": 1, "b": [1.5, -0.0, 1e-300, 2**60, True, None], "c": {}, "d": [], "e": (1, "x")},
    {"path": SURROGATE, SURROGATE: [SURROGATE, {"k": SURROGATE}]},   # lone surrogates in values and keys
    {"emoji": "grin \U0001F600 é", "literal": "\\udcff is text, not a surrogate"},  # \\ud without a surrogate
    {1: "int key", "nested": [[1, 2], [3.25, [4, {"x": "y"}]]]},
    [],
    "plain",
]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("compact", [False, True])
def test_json_text_is_the_stdlib_encoding_of_the_printable_value(value: Any, compact: bool) -> None:
    assert store.json_text(value, compact=compact) == _stdlib_json(value, compact=compact)


def test_json_text_still_refuses_nan() -> None:
    for compact in (False, True):
        with pytest.raises(ValueError):
            store.json_text({"x": [1.0, math.nan]}, compact=compact)


def test_a_checkpoint_is_the_compact_form_and_a_finished_file_the_indented_one(tmp_path: Path) -> None:
    results = {"schema_version": "1.0", "status": "running", "config": {"out": SURROGATE},
               "probes": {"clean": {"summary": {"v": 0.25, "grid": [[1 / 3, -0.0], [2.0, -1e-7]]}, "notes": ["é"]}}}
    for checkpoint in (True, False):
        store.write_results(tmp_path, results, checkpoint=checkpoint)
        text = (tmp_path / store.RESULTS_FILE).read_text()
        assert text == _stdlib_json(results, compact=checkpoint)
        assert store.read_results(tmp_path) == json.loads(_stdlib_json(results))


def _reference_cell(v: float) -> str:
    """The table's documented cell rule, one value at a time."""
    if not math.isfinite(v):
        return ""
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def _awkward_floats(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    special = [0.0, -0.0, 1.0, -1.0, 0.1, 1 / 3, 2.0**53, 2.0**53 - 1, -(2.0**53), 2.0**53 + 2, 1e16, 1e22,
               1e-5, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, math.inf, -math.inf, math.nan,
               123456789.0, 0.5, -2.5, 1e-7]
    randoms = np.concatenate([rng.standard_normal(n), rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n),
                              rng.integers(-5, 5, n).astype(np.float64),
                              rng.integers(0, 2**63 - 1, n, dtype=np.int64).view(np.float64)])  # any bits
    return np.concatenate([np.array(special), randoms])


def test_cells_follow_the_rule_and_read_back_to_the_persisted_value_bit_for_bit(tmp_path: Path) -> None:
    values = _awkward_floats(3000)
    cells = store.format_column(values)
    assert cells == [_reference_cell(v) for v in values.tolist()]
    persisted = store.persisted_column(values)
    read = np.array([float(c) if c else math.nan for c in cells])
    assert read.tobytes() == persisted.tobytes()  # NaN, −0.0 → 0.0 and every last bit included

    ids = [f"id{i}" for i in range(len(values))]
    store.write_per_sample(tmp_path, ids, np.zeros(len(values), dtype=np.int64), {"p/x": persisted})
    got_ids, cols = store.read_per_sample(tmp_path)
    assert got_ids == ids and cols["p/x"].tobytes() == persisted.tobytes()


@pytest.mark.parametrize("dtype", [np.bool_, np.int64, np.int32, np.uint8, np.float32, np.float16, object])
def test_other_column_types_format_as_their_values(dtype: type) -> None:
    raw = np.array([0, 1, 1, 0, 7, -3, 250], dtype=np.int64)
    values = raw.astype(dtype) if dtype is not object else np.array([1, 2.5, True, -0.0, math.nan, 2**40, 7],
                                                                     dtype=object)
    expected = [_reference_cell(float(v)) for v in values.tolist()]
    assert store.format_column(values) == expected
    assert store.persisted_column(values).tobytes() == np.array(
        [float(c) if c else math.nan for c in expected]).tobytes()
    if dtype in (np.float32, np.float16):  # the float32 value, widened exactly, not its decimal shortening
        assert store.format_column(np.array([0.1], dtype=dtype)) == [repr(float(np.array(0.1, dtype=dtype)))]


def test_the_table_is_what_csv_writes_for_its_rows() -> None:
    ids = ["plain", "with,comma", 'with "quote"', "new\nline", "", "ünïcode", " space "]
    labels = np.array([0, 1, 2, 3, 4, 5, 6])
    rng = np.random.default_rng(1)
    columns = {"a/x": rng.standard_normal(7), "b/flag": np.array([1.0, 0, 1, 0, 1, np.nan, 0]),
               'odd,"name"': np.array([np.inf, -0.0, 1e300, 2.0**60, 3.0, -7.0, 0.25])}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["sample_id", "label", *columns])
    for i, sample_id in enumerate(ids):
        writer.writerow([sample_id, str(labels[i]), *(_reference_cell(float(c[i])) for c in columns.values())])
    table = store.PerSampleWriter(Path("unused"), ids, labels)
    assert table.text(columns) == buf.getvalue()
    header_only = store.PerSampleWriter(Path("unused"), [], labels[:0]).text(columns)
    assert header_only == 'sample_id,label,a/x,b/flag,"odd,""name"""\n'


def test_each_column_is_formatted_once_while_the_same_array_is_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    formatted: list[str] = []
    real = store.format_column
    monkeypatch.setattr(store, "format_column", lambda values: formatted.append(values[0]) or real(values))
    table = store.PerSampleWriter(Path("unused"), ["a", "b"], np.array([0, 1]))
    first, second = np.array([1.5, 2.0]), np.array([3.5, 4.0])
    table.text({"p/x": first})
    table.text({"p/x": first, "q/y": second})
    assert formatted == [1.5, 3.5]
    replaced = np.array([9.5, 9.0])  # a resume re-runs p: new values under the same name
    assert table.text({"p/x": replaced, "q/y": second}).splitlines()[1:] == ["a,0,9.5,3.5", "b,1,9,4"]
    assert formatted == [1.5, 3.5, 9.5]


# ---- through the real CLI ---------------------------------------------------------------------------------

PROBES = "clean,calibration,attack.fgsm,geometry.gradients"
ARGS = [str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--dataset", "digits", "--n-samples", "24", "--seed", "5",
        "--threads", "1", "--no-report", "-q", "--probes", PROBES]
VOLATILE = re.compile(r'("(?:created|started|duration_s|seconds|seconds_per_fwd_bwd|out|resume)": )("[^"]*"|[^,\n]*)')


def _masked(text: str) -> str:
    """The file's text with timings and the --out/--resume paths blanked, its layout untouched."""
    return VOLATILE.sub(r"\1<volatile>", re.sub(r'"command": \[[^\]]*\]', '"command": <volatile>', text))


@pytest.mark.slow
def test_sigkill_leaves_a_compact_checkpoint_and_resume_writes_the_uninterrupted_files(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    assert main(["run", *ARGS, "--out", str(reference)]) == ExitCode.OK
    ref_text = (reference / "results.json").read_text()
    assert ref_text == store.json_text(json.loads(ref_text))  # a finished file is indented

    out = tmp_path / "killed"
    env = {**os.environ, TEST_STOP_VARIABLE: "attack.fgsm:KILL", "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-m", "robaudit", "run", *ARGS, "--out", str(out)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr
    text = (out / "results.json").read_text()
    saved = store.read_results(out)  # strict JSON, schema checks
    assert text == store.json_text(saved, compact=True) and text.count("\n") == 1
    assert saved["status"] == "running"
    assert [n for n, e in saved["probes"].items() if e["status"] == "ok"] == ["clean", "calibration", "attack.fgsm"]
    ids, cols = store.read_per_sample(out)
    ref_ids, ref_cols = store.read_per_sample(reference)
    assert ids == ref_ids
    finished = [c for n in ("clean", "calibration", "attack.fgsm") for c in saved["probes"][n]["per_sample_columns"]]
    assert finished and set(cols) == {"label", *finished}
    for column in finished:
        assert cols[column].tobytes() == ref_cols[column].tobytes(), column

    assert main(["run", *ARGS, "--resume", str(out)]) == ExitCode.OK
    assert (out / "per_sample.csv").read_bytes() == (reference / "per_sample.csv").read_bytes()
    assert _masked((out / "results.json").read_text()) == _masked(ref_text)


@pytest.mark.slow
def test_ctrl_c_leaves_the_indented_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "audit"
    monkeypatch.setenv(TEST_STOP_VARIABLE, "calibration:INT")
    assert main(["run", *ARGS, "--probes", "clean,calibration,attack.fgsm", "--out", str(out)]) == \
        ExitCode.INTERRUPTED
    text = (out / "results.json").read_text()
    results = json.loads(text)
    assert results["status"] == "interrupted" and text == store.json_text(results)
    assert list(results["probes"]) == ["clean", "calibration"]
