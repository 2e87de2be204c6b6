"""Peak memory of the Jacobian probes does not grow with the sample count (issue #17).

Each run is a fresh ``robaudit run`` process (the real CLI) whose peak resident set (``ru_maxrss`` of the
child) is read by the parent: ``geometry.input_hessian`` on the quarter-width timm ResNet-18 at 32×32 with
``--batch-size`` as large as the larger sample count, so only the probe's own memory-based batch sizing
can keep the peak flat. Before it, the whole 240-sample batch went through the vmapped Jacobian and the
double backward at once (about 5.6 MB per sample in float64: over 1 GB more than 48 samples need).
Not a timing test: peak bytes only.
"""
from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ARGS = ["timm:resnet18", "--arch-kwargs", '{"channels": [16, 32, 64, 128], "stem_width": 16, "num_classes": 10}',
        "--probes", "geometry.input_hessian", "--no-report", "--quiet", "--threads", "1", "--batch-size", "240"]


def _peak_mib(tmp_path: Path, n: int) -> float:
    g = np.random.default_rng(0)
    data = tmp_path / f"random{n}.npz"
    np.savez(data, x=g.random((n, 3, 32, 32), dtype=np.float32), y=g.integers(0, 10, n))
    code = ("import resource, sys\n"
            "from robaudit.cli.main import main\n"
            "rc = main(sys.argv[1:])\n"
            "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
            "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code, "run", *ARGS, "--dataset", str(data), "--n-samples", str(n),
                           "--out", str(tmp_path / f"audit{n}")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("PEAK_KIB")][-1]
    return int(line.split()[1]) / 1024


def test_input_hessian_peak_rss_does_not_grow_with_the_sample_count(tmp_path: Path) -> None:
    small, large = _peak_mib(tmp_path, 48), _peak_mib(tmp_path, 240)
    # 5× the samples; the working set per batch is capped at 256 MiB, so the peaks differ by far less
    assert large - small < 150, (small, large)
