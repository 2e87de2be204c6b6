"""End to end: ``robaudit run`` finds the probe through the installed entry point and renders its section."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from adv_landscape_helpers import DEMO_ARCH, DEMO_CHECKPOINT

from robaudit.plugin import ProbeRegistry

pytestmark = pytest.mark.slow


def _robaudit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("ROBAUDIT_NO_PLUGIN_AUTOLOAD", None)
    return subprocess.run([sys.executable, "-m", "robaudit", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_entry_point_registration() -> None:
    registry = ProbeRegistry(autoload_plugins=True)
    assert "adv_landscape" in registry.names()
    assert registry.distribution("adv_landscape")[0] == "robaudit-adversarial-landscape"


def test_robaudit_run_on_the_demo_checkpoint(tmp_path: Path) -> None:
    if not DEMO_CHECKPOINT.is_file():
        pytest.skip("the demo checkpoint is not in this checkout")
    names = ProbeRegistry(autoload_plugins=True).names()
    probes = "adv_landscape" + (",attack.fhsm" if "attack.fhsm" in names else "")
    out = tmp_path / "audit"
    done = _robaudit("run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--dataset", "digits", "--n-samples", "40",
                     "--probes", probes, "--out", str(out), "--threads", "1",
                     "--set", "adv_landscape.k=2", "--set", "adv_landscape.steps=3",
                     "--set", "adv_landscape.a=[0,0.5]", "--set", "adv_landscape.eps=[0,0.1]",
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    entry = results["probes"]["adv_landscape"]
    assert entry["status"] == "ok"
    assert entry["distribution"]["name"] == "robaudit-adversarial-landscape"
    assert entry["higher_is_better"]["lambda_1"] is False and entry["higher_is_better"]["cosine_random"] is True
    s = entry["summary"]
    assert s["consistency"]["0.1"]["eigenvector"]["0"]["cosine"] == 1.0
    assert set(s["lambda_1"]) == {"0", "0.1"} and all(v > 0 for v in s["lambda_1"].values())
    assert entry["per_sample_columns"] == ["adv_landscape/cosine_eigenvector", "adv_landscape/cosine_random"]
    assert entry["columns"]["adv_landscape/cosine_eigenvector"]["role"] == "indicator"

    html = (out / "report.html").read_text()
    assert 'id="plugin-adv_landscape"' in html
    assert "Top eigenvalues against ε" in html and "Consistency of adversarial examples" in html
    assert "dependence of δ* on θ is ignored" in html

    (out / "report.html").unlink()  # re-rendered from the saved results alone
    again = _robaudit("report", str(out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Top eigenvalues against ε" in (out / "report.html").read_text()
