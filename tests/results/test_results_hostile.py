"""Hostile ``results.json`` files read by ``robaudit report``, ``gate`` and ``compare``: every malformed section
that a reader indexes into is one line and exit 2 (never exit 3), and nothing on disk changes."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from demo import DEMO_ARCH, DEMO_CHECKPOINT
from robaudit.cli.main import main


def _cli(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(args)
    return code, err.getvalue()


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hostile") / "audit"
    code, err = _cli(["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "20", "--probes",
                      "clean,calibration,attack.fgsm", "--threads", "1", "--out", str(out), "-q"])
    assert code == 0, err
    return out


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(results: dict[str, Any]) -> None:
        node = results
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


HOSTILE = {
    "threat_model a string": (_set(("threat_model",), "x"), "threat_model is the string 'x'"),
    "attack_outcomes a list": (_set(("attack_outcomes",), [1]), "attack_outcomes is a list of 1"),
    "packages a string": (_set(("environment", "packages"), "x"), "environment › packages"),
    "gate rules a string": (_set(("gate",), {"status": "passed", "counts": {}, "rules": "x"}), "gate › rules"),
    "a flag without severity": (lambda r: r["flags"].append({"id": "x", "source": "clean", "message": "m"}),
                                "flags › [0] › severity is null"),
    "a probe flag of unknown severity": (_set(("probes", "clean", "flags"), [{"id": "x", "severity": "fatal",
                                                                            "source": "clean", "message": "m"}]),
                                         "probes › clean › flags › [0] › severity"),
    "probe_order holding a number": (_set(("probe_order",), ["clean", 3]), "probe_order › [1]"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_report_refuses_a_malformed_section_in_one_line(audit: Path, tmp_path: Path, case: str) -> None:
    edit, said = HOSTILE[case]
    run = tmp_path / "audit"
    shutil.copytree(audit, run)
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    edit(results)
    (run / "results.json").write_text(json.dumps(results), encoding="utf-8")
    before = hashlib.sha256((run / "report.html").read_bytes()).hexdigest()
    code, err = _cli(["report", str(run)])
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("robaudit: error")]
    assert len(lines) == 1 and said in lines[0] and "Traceback" not in err, err
    assert hashlib.sha256((run / "report.html").read_bytes()).hexdigest() == before


@pytest.mark.parametrize("number", ["1e999", "-1e999"])
def test_a_number_that_overflows_to_infinity_is_refused_as_a_nan_literal_is(audit: Path, tmp_path: Path,
                                                                            number: str) -> None:
    run = tmp_path / "audit"
    shutil.copytree(audit, run)
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    results["probes"]["clean"]["summary"]["accuracy"]["value"] = "__BIG__"
    (run / "results.json").write_text(json.dumps(results).replace('"__BIG__"', number), encoding="utf-8")
    rules = tmp_path / "gate.toml"
    rules.write_text('[[rule]]\nmetric = ["probes", "clean", "summary", "accuracy"]\nthreshold = 0.5\n'
                     "higher-is-better = " + ("true" if number == "1e999" else "false") + "\n", encoding="utf-8")
    for args in (["report", str(run)], ["gate", str(run), "--rules", str(rules)]):
        code, err = _cli(args)
        assert code == 2, err
        assert "too large for a float" in err and "probes › clean › summary › accuracy › value" in err
