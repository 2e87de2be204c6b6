"""The installed plugin through robaudit's real entry-point path: registry, CLI run, results.json, report."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from robaudit.plugin import ProbeRegistry
from robaudit_second_order_attacks.probes import FHSMProbe, L2HessProbe

DIST = "robaudit-second-order-attacks"
ENTRY_POINT_GROUP = "robaudit.probes"  # the documented entry-point group (docs/writing-a-probe.md)
REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "examples" / "digits_cnn.safetensors"


def _installed(*dists: str) -> list:
    """The installed entry points of ``dists`` only: other plugins in the environment (which may clash or
    be mid-reinstall) cannot affect these tests."""
    return [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.dist is not None and ep.dist.name in dists]


def fhsm_version() -> str:
    return next(ep.dist.version for ep in _installed(DIST))


def _others() -> str:
    """Every other distribution that registers robaudit probes, for ROBAUDIT_BLOCK_PLUGINS."""
    names = {ep.dist.name for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.dist is not None}
    return ",".join(sorted(names - {"robaudit", DIST}))


def test_registered_through_the_entry_point_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROBAUDIT_NO_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("ROBAUDIT_BLOCK_PLUGINS", raising=False)
    eps = _installed("robaudit", DIST)
    assert {ep.name for ep in eps if ep.dist.name == DIST} == {"attack.fhsm", "attack.l2hess"}
    registry = ProbeRegistry(entry_point_list=eps)
    assert registry.get("attack.fhsm") is FHSMProbe and registry.get("attack.l2hess") is L2HessProbe
    assert registry.distribution("attack.fhsm")[0] == DIST
    assert registry.plugins_used(["attack.fgsm", "attack.fhsm", "attack.l2hess"]) == [
        {"distribution": DIST, "version": registry.distribution("attack.fhsm")[1],
         "probes": ["attack.fhsm", "attack.l2hess"]}]
    assert "attack.fhsm" not in registry.standard_set()  # opt-in, not part of the default audit
    assert "attack.fhsm" not in ProbeRegistry(autoload_plugins=False, entry_point_list=eps).names()
    assert "attack.fhsm" in ProbeRegistry(autoload_plugins=False, entry_point_list=eps,
                                          plugins=[DIST.replace("-", "_")]).names()
    monkeypatch.setenv("ROBAUDIT_BLOCK_PLUGINS", DIST)
    assert "attack.fhsm" not in ProbeRegistry(entry_point_list=eps).names()


@pytest.mark.slow
@pytest.mark.skipif(not DEMO.is_file(), reason="needs robaudit's checkout (examples/digits_cnn.safetensors)")
def test_cli_run_joins_worst_case_and_renders_the_section(tmp_path: Path) -> None:
    out = tmp_path / "audit"
    env = {k: v for k, v in os.environ.items() if k not in ("ROBAUDIT_NO_PLUGIN_AUTOLOAD", "ROBAUDIT_BLOCK_PLUGINS")}
    env["ROBAUDIT_BLOCK_PLUGINS"] = _others()  # only robaudit and this plugin, whatever else is installed
    cmd = [sys.executable, "-m", "robaudit", "run", str(DEMO), "--arch", f"{REPO / 'examples' / 'digits_cnn.py'}:DigitsCNN",
           "--dataset", "digits", "--n-samples", "40", "--probes", "attack.fgsm,attack.fhsm,attack.worst_case",
           "--out", str(out), "--threads", "2", "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr

    results = json.loads((out / "results.json").read_text())
    assert results["environment"]["plugins"] == [
        {"distribution": DIST, "version": fhsm_version(), "probes": ["attack.fhsm"]}]
    fhsm = results["probes"]["attack.fhsm"]
    assert fhsm["status"] == "ok" and fhsm["distribution"]["name"] == DIST
    assert fhsm["summary"]["comparison"]["source"] == "previous"  # FGSM ran first and was reused
    assert fhsm["columns"]["attack.fhsm/success_eps_0.1"]["role"] == "attack_success"
    assert fhsm["higher_is_better"]["comparison"]["gradient_robust_accuracy"] is True
    worst = results["probes"]["attack.worst_case"]["summary"]
    assert "attack.fhsm" in worst["sources"] and worst["linf"]["attacks"]["0.1"] == ["attack.fgsm", "attack.fhsm"]
    with open(out / "per_sample.csv", newline="") as f:
        header = next(csv.reader(f))
    assert "attack.fhsm/success_eps_0.1" in header and "attack.fhsm/newton_damping" in header

    def section(html: str) -> str:
        start = html.index('<section id="plugin-attack-fhsm">')
        return html[start:html.index("</section>", start)]

    first = section((out / "report.html").read_text())
    assert "Newton vs FGSM" in first and "How the Newton systems were solved" in first
    assert "reused from this audit" in first
    (out / "report.html").unlink()
    proc = subprocess.run([sys.executable, "-m", "robaudit", "report", str(out)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert section((out / "report.html").read_text()) == first  # redrawn from saved results only
