"""Build the wheel, install it into a fresh venv, and render a report from the installed copy."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from demo import REPO

pytestmark = pytest.mark.slow


def test_wheel_ships_templates_and_renders_a_report(tmp_path: Path, demo_run: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(REPO)],
                   check=True, capture_output=True, text=True)
    (wheel,) = dist.glob("robaudit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "robaudit/templates/report.html.j2" in names
    assert "robaudit/results/schema.json" in names
    assert any(n.endswith("entry_points.txt") for n in names)
    assert "robaudit/py.typed" in names
    meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = zipfile.ZipFile(wheel).read(meta_name).decode()
    # config.py and gate/rules.py import tomli where tomllib is missing (Python < 3.11)
    assert "Requires-Dist: tomli>=2.0; python_version < '3.11'" in metadata.replace('"', "'")
    assert "Classifier: Framework :: Pytest" in metadata and "Keywords:" in metadata

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The fresh venv reaches torch & co. through a .pth file; robaudit itself comes only from the wheel.
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True)

    results = tmp_path / "audit"
    shutil.copytree(demo_run, results)
    (results / "report.html").unlink()
    probe = ("import robaudit, robaudit.report.render as r; print(robaudit.__file__); print(r.template_dir())")
    where = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path).stdout.split()
    assert where[0].startswith(str(site)), where
    assert where[1] == str(site / "robaudit" / "templates"), where
    proc = subprocess.run([str(py), "-m", "robaudit", "report", str(results)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Robustness audit" in (results / "report.html").read_text()
