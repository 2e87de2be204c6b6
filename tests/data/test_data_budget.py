"""The default sample budget: a stratified, seeded 1,000 of a larger split; ``all`` restores every sample.

Oracle: the exact class proportions of the split (each class keeps ``1,000 · n_c / N`` ± 1).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from demo import DEMO_ARCH, DEMO_CHECKPOINT

import robaudit
from robaudit.cli.main import main
from robaudit.data import DataRequest, load_data
from robaudit.exitcodes import ExitCode
from robaudit.results import schema_text

COUNTS = [1234, 900, 611, 500, 455, 400, 300, 250, 200, 150]  # 5,000 samples, unbalanced
INFO_LINE = "auditing a stratified 1,000 of 5,000 samples; --n-samples all for every sample"


@pytest.fixture
def five_thousand(tmp_path: Path) -> Path:
    rng = np.random.default_rng(7)
    y = rng.permutation(np.repeat(np.arange(10), COUNTS)).astype(np.int64)
    x = rng.integers(0, 256, size=(len(y), 1, 8, 8), dtype=np.uint8)
    path = tmp_path / "five_thousand.npz"
    np.savez(path, x=x, y=y)
    return path


def test_the_default_is_a_stratified_seeded_thousand(five_thousand: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="robaudit"):
        audit = load_data(DataRequest(str(five_thousand)))
    assert len(audit) == 1000
    counts = np.bincount(audit.y.numpy(), minlength=10)
    exact = np.asarray(COUNTS) * 1000 / 5000
    assert np.all(np.abs(counts - exact) <= 1), (counts, exact)
    assert audit.provenance["sampling"] == {"method": "stratified", "seed": 0, "default_budget": 1000}
    assert audit.provenance["n_requested"] is None and audit.provenance["n_available"] == 5000
    assert [r.getMessage() for r in caplog.records].count(INFO_LINE) == 1
    again = load_data(DataRequest(str(five_thousand)))
    assert again.ids == audit.ids  # seeded: the same 1,000
    assert load_data(DataRequest(str(five_thousand), seed=1)).ids != audit.ids


def test_a_split_within_the_budget_is_used_whole(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="robaudit"):
        audit = load_data(DataRequest("digits"))  # 360 samples
    assert len(audit) == 360 and audit.provenance["sampling"] == {"method": "all", "seed": 0}
    assert not any("auditing a stratified" in r.getMessage() for r in caplog.records)


def _run(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(args)
    assert "Traceback" not in err.getvalue()
    return code, err.getvalue()


def _base(dataset: Path, out: Path) -> list[str]:
    return ["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--dataset", str(dataset), "--probes", "clean",
            "--out", str(out), "--no-report", "--threads", "1"]


def _n_used(out: Path) -> int:
    results = json.loads((out / "results.json").read_text())
    jsonschema.validate(results, json.loads(schema_text()))
    rows = (out / "per_sample.csv").read_text().strip().splitlines()
    assert len(rows) - 1 == results["data"]["n_used"]
    return int(results["data"]["n_used"])


def test_cli_default_and_all(five_thousand: Path, tmp_path: Path) -> None:
    code, err = _run(_base(five_thousand, tmp_path / "default"))
    assert code == ExitCode.OK and INFO_LINE in err
    assert _n_used(tmp_path / "default") == 1000

    code, err = _run([*_base(five_thousand, tmp_path / "all"), "--n-samples", "all"])
    assert code == ExitCode.OK and INFO_LINE not in err
    assert _n_used(tmp_path / "all") == 5000


def test_config_file_and_python_api_take_all(five_thousand: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "robaudit.toml").write_text('n-samples = "all"\n')
    monkeypatch.chdir(tmp_path)
    code, _ = _run(_base(five_thousand, tmp_path / "file"))
    assert code == ExitCode.OK and _n_used(tmp_path / "file") == 5000

    outcome = robaudit.audit(model=str(DEMO_CHECKPOINT), arch=DEMO_ARCH, dataset=str(five_thousand),
                             n_samples="all", probes=["clean"], out=tmp_path / "api", report=False)
    assert outcome.results["data"]["n_used"] == 5000 and outcome.results["config"]["n_samples"] == "all"


@pytest.mark.parametrize(("value", "in_line"), [("most", "'most'"), ("0", "0")])
def test_bad_n_samples_get_one_line_and_exit_2(five_thousand: Path, tmp_path: Path, value: str, in_line: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    code, err = _run([*_base(five_thousand, tmp_path / "out"), "--n-samples", value])
    assert code == ExitCode.USAGE and "positive integer or 'all'" in err and in_line in err
    (tmp_path / "robaudit.toml").write_text(f'n-samples = "{value}"\n')
    monkeypatch.chdir(tmp_path)
    code, err = _run(_base(five_thousand, tmp_path / "out"))
    assert code == ExitCode.USAGE and "positive integer or 'all'" in err
    with pytest.raises(robaudit.errors.ConfigError, match="positive integer or 'all'"):
        robaudit.audit(model=str(DEMO_CHECKPOINT), arch=DEMO_ARCH, n_samples=value, out=tmp_path / "api")
