"""A deliberately broken plugin distribution, installed for real (a dist-info on PYTHONPATH).

One of its probes fails to import, the other breaks the probe contract. Each gives one clear
line naming the plugin, and the rest of the audit still runs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo import DEMO_ARCH, DEMO_CHECKPOINT, REPO

DIST = "broken-plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    info = root / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[robaudit.probes]\n"
        "broken.import = no_such_module_xyz:Probe\n"
        "broken.contract = broken_contract:NoRun\n")
    (root / "broken_contract.py").write_text(
        "from robaudit.probes.base import Probe\n\n\n"
        "class NoRun(Probe):\n    name = 'broken.contract'\n    version = '1'\n    description = 'forgot run()'\n")
    return root


def _robaudit(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    env.pop("ROBAUDIT_NO_PLUGIN_AUTOLOAD", None)
    return subprocess.run([sys.executable, "-m", "robaudit", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          check=False)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "ERROR" in line or "Traceback" in line]


def test_listed_broken_probes_fail_alone_and_the_rest_of_the_audit_runs(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _robaudit(site, "run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "40", "--threads", "2",
                     "--probes", "clean,broken.import,broken.contract", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr  # a broken probe is a bug in that probe (exit code 3)
    errors = _errors(proc.stderr)
    assert len(errors) == 2 and "Traceback" not in proc.stderr
    assert any(f"'broken.import' from distribution '{DIST}' failed to import" in e and "ModuleNotFoundError" in e
               for e in errors)
    assert any(f"'broken.contract' from distribution '{DIST}' breaks the probe contract" in e and "'run'" in e
               for e in errors)
    results = json.loads((out / "results.json").read_text())
    assert results["probes"]["clean"]["status"] == "ok"
    for name in ("broken.import", "broken.contract"):
        entry = results["probes"][name]
        assert entry["status"] == "failed" and DIST in entry["error"]["message"]
    assert results["status"] == "partial"
    assert (out / "report.html").is_file()


def test_unlisted_broken_plugins_do_not_stop_the_default_audit(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _robaudit(site, "run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "20", "--threads", "2",
                     "--probes", "standard", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(_errors(proc.stderr)) == 2
    results = json.loads((out / "results.json").read_text())
    assert {b["probe"] for b in results["environment"]["broken_plugins"]} == {"broken.import", "broken.contract"}
    assert all(b["distribution"] == DIST for b in results["environment"]["broken_plugins"])
    assert all(p["status"] == "ok" for p in results["probes"].values())


def test_probes_lists_broken_plugins(site: Path, tmp_path: Path) -> None:
    proc = _robaudit(site, "probes", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("BROKEN") == 2 and "clean" in proc.stdout


def test_no_plugin_autoload_leaves_the_broken_plugin_unloaded(site: Path, tmp_path: Path) -> None:
    proc = _robaudit(site, "run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "40", "--probes", "clean",
                     "--no-plugin-autoload", "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert proc.returncode == 0 and _errors(proc.stderr) == []


def test_cli_plugin_flags_load_or_block_a_distribution(site: Path, tmp_path: Path) -> None:
    """-p DIST loads one plugin with autoload off; --block-plugin DIST keeps it out even with autoload on."""
    only = _robaudit(site, "probes", "--no-plugin-autoload", "-p", DIST, cwd=tmp_path)
    assert only.returncode == 0 and only.stdout.count("BROKEN") == 2
    assert "adv_landscape" not in only.stdout  # other installed plugins stay unloaded
    blocked = _robaudit(site, "probes", "--block-plugin", DIST, cwd=tmp_path)
    assert blocked.returncode == 0 and "BROKEN" not in blocked.stdout and _errors(blocked.stderr) == []
    unknown = _robaudit(site, "probes", "-p", "brokn-plugin", cwd=tmp_path)
    assert unknown.returncode == 2 and "did you mean 'broken-plugin'" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
