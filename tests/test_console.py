"""The console through the real CLI: the closing summary (headline per probe, worst-case robust accuracy
per (norm, ε) against a recount from per_sample.csv, the verdict), and progress lines in a non-TTY log."""
from __future__ import annotations

import copy
import csv
import json
import logging
import re
import time
from pathlib import Path

import pytest

from demo import DEMO_ARCH, DEMO_CHECKPOINT
from robaudit.cli.main import main
from robaudit.cli.summary import render_summary
from robaudit.engine.progress import INTERVAL_VARIABLE, AuditProgress
from robaudit.probes.base import wilson_interval

PROBES = "clean,attack.fgsm,attack.pgd_linf"


@pytest.fixture(scope="module")
def console_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One small audit through ``main`` with stderr captured (not a TTY) and a tiny progress interval."""
    out = tmp_path_factory.mktemp("console") / "audit"
    mp = pytest.MonkeyPatch()
    mp.setenv(INTERVAL_VARIABLE, "0.001")
    import contextlib
    import io

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            code = main(["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "40", "--probes", PROBES,
                         "--out", str(out), "--no-report"])
    finally:
        mp.undo()
    assert code == 0, err.getvalue()
    return out, err.getvalue()


def _worst_case_oracle(out: Path) -> dict[str, tuple[int, int]]:
    """Robust count per ε recounted from per_sample.csv: clean-correct and no attack succeeded at ε."""
    with (out / "per_sample.csv").open() as f:
        rows = list(csv.DictReader(f))
    eps_keys = sorted({c.rsplit("success_eps_", 1)[1] for c in rows[0] if "/success_eps_" in c}, key=float)
    counts = {}
    for key in eps_keys:
        cols = [c for c in rows[0] if c.endswith(f"/success_eps_{key}")]
        robust = sum(1 for r in rows if r["clean/correct"] in ("1", "True", "1.0")
                     and not any(r[c] in ("1", "True", "1.0") for c in cols))
        counts[key] = (robust, len(rows))
    return counts


def test_summary_shows_headlines_worst_case_and_verdict(console_run: tuple[Path, str]) -> None:
    out, err = console_run
    lines = err.splitlines()
    for attack in ("attack.fgsm", "attack.pgd_linf"):
        line = next(line for line in lines if line.startswith(attack))
        assert re.search(r"robust acc \d+\.\d % \[\d+\.\d, \d+\.\d\] at L∞ ε=0\.1$", line.rstrip()), line
    oracle = _worst_case_oracle(out)
    assert len(oracle) == 5
    for key, (robust, n) in oracle.items():
        est = wilson_interval(robust, n)
        expected = f"{100 * est.value:.1f} % [{100 * est.low:.1f}, {100 * est.high:.1f}]"
        row = next(line for line in lines if re.match(rf"L∞\s+{re.escape(key)}\s", line))
        assert expected in row and "attack.fgsm + attack.pgd_linf" in row, (row, expected)
    verdict = " ".join(err[err.index("verdict:"):].split())
    ref_robust, n = oracle["0.1"]
    assert f"worst-case robust accuracy is {100 * ref_robust / n:.1f} %" in verdict
    assert "L∞ ε = 0.1" in verdict and "AutoAttack was not run, so this is an upper bound." in verdict


def test_summary_columns_fit_a_long_plugin_probe_name(console_run: tuple[Path, str]) -> None:
    out, _ = console_run
    results = json.loads((out / "results.json").read_text())
    long_name = "acme_robustness_plugin.attack.very_long_descriptive_probe_name_v2"
    results["probes"] = {long_name: copy.deepcopy(results["probes"]["attack.fgsm"]), **results["probes"]}
    text = render_summary(results, width=200)
    probe_lines = [line for line in text.splitlines()
                   if line.split() and line.split()[0] in (long_name, "clean", "attack.fgsm", "attack.pgd_linf")]
    assert len(probe_lines) == 4
    assert probe_lines[0].startswith(long_name + " ")  # never wrapped or cut
    status_columns = {line.index(" ok ") for line in probe_lines}
    assert len(status_columns) == 1, text  # every status sits in one column, after the longest name
    assert status_columns.pop() > len(long_name)


def test_non_tty_progress_lines_give_probe_index_batches_and_eta(console_run: tuple[Path, str]) -> None:
    _, err = console_run
    progress = [line for line in err.splitlines() if "progress: probe" in line]
    for i, name in enumerate(PROBES.split(","), start=1):
        assert any(f"probe {i}/3 {name}:" in line for line in progress), err
    assert all(re.search(r"ETA (\?|\d+(s|m\d\ds|h\d\dm))$", line) for line in progress), progress
    assert any(re.search(r"attack\.pgd_linf: [1-5]/5 batches .*ETA \d", line) for line in progress), progress


def test_a_slow_batch_still_gets_a_line_every_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="robaudit.progress")
    with AuditProgress(2, quiet=False, tty=False, interval=0.05) as progress:
        progress.start_probe(1, "first")
        for _ in progress.track(range(2), "slow", 2):
            time.sleep(0.3)
        progress.start_probe(2, "second")
    lines = [r.getMessage() for r in caplog.records]
    during_slow = [line for line in lines if "probe 1/2 first: " in line and "(slow)" in line]
    assert len(during_slow) >= 4, lines  # 0.6 s of batches at a 0.05 s interval
    assert any("1/2 batches (slow)" in line and re.search(r"ETA \d", line) for line in during_slow), lines


def test_quiet_progress_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="robaudit.progress")
    with AuditProgress(1, quiet=True, tty=False, interval=0.01) as progress:
        progress.start_probe(1, "only")
        for _ in progress.track(range(2), "loop", 2):
            time.sleep(0.05)
    assert not caplog.records


def test_a_bad_progress_interval_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(INTERVAL_VARIABLE, "soon")
    code = main(["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "20", "--probes", "clean",
                 "--out", str(tmp_path / "a"), "--no-report", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"robaudit: error: {INTERVAL_VARIABLE}='soon' is not a positive number" in err
    assert not (tmp_path / "a" / "results.json").exists()  # refused before anything was written


def test_outcome_repr_html_shows_the_verdict_and_escapes(console_run: tuple[Path, str]) -> None:
    from html.parser import HTMLParser

    from robaudit.engine import AuditOutcome
    from robaudit.exitcodes import ExitCode
    from robaudit.report.verdict import verdict_sentence

    out, err = console_run
    results = json.loads((out / "results.json").read_text())
    hostile = "attack.<script>alert(1)</script>"
    results["probes"][hostile] = copy.deepcopy(results["probes"]["attack.fgsm"])
    html = AuditOutcome(out, results, ExitCode.OK)._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.text: list[str] = []

        def handle_data(self, data: str) -> None:
            self.text.append(data)

    parser = Cells()
    parser.feed(html)
    assert verdict_sentence(results) in parser.text
    assert hostile in parser.text  # unescaped back to the name, shown as text
    fgsm_line = next(line for line in err.splitlines() if line.startswith("attack.fgsm"))
    assert fgsm_line.split("ok", 1)[1].strip() in parser.text  # the same headline as the console
