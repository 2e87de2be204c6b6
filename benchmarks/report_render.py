"""Fixed cost of re-rendering a report: ``robaudit report DIR`` vs ``python -c "import torch, timm"``.

Issue #17's target: re-rendering a standard audit's report costs at most 1.5× the CPU time of
importing torch and timm (the floor any robaudit command pays). Both commands run as fresh child
processes, interleaved, ``--repeats`` times each; the CPU time of each child (user + system, from
``resource.getrusage(RUSAGE_CHILDREN)``) is read around it, so other jobs on a shared machine do not
count. Printed: the median CPU seconds of each, the median of the per-pair ratios, and the target.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/report_render.py AUDIT_DIR [--repeats 3] [--baseline-src OLD_CHECKOUT]

``AUDIT_DIR`` is a finished audit (``results.json``); re-rendering rewrites its ``report.html``
from the same results, so use a copy if the original must stay untouched. Without ``AUDIT_DIR``
a standard audit of the demo model on 120 digits samples is run first into a temporary directory.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROBAUDIT = [sys.executable, "-m", "robaudit"]
IMPORTS = [sys.executable, "-c", "import torch, timm"]
TARGET = 1.5


def child_cpu(cmd: list[str], cwd: Path | None = None, pythonpath: Path | None = None) -> float:
    """CPU seconds (user + system) of one run of ``cmd`` as a child process; fails on a non-zero exit."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"PYTHONPATH": str(pythonpath)} if pythonpath else {})}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, cwd=cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def demo_audit(out: Path) -> Path:
    """A standard audit of the demo model on 120 digits samples (what the report tests render)."""
    subprocess.run([*ROBAUDIT, "run", str(REPO / "examples" / "digits_cnn.safetensors"), "--arch",
                    f"{REPO / 'examples' / 'digits_cnn.py'}:DigitsCNN", "--n-samples", "120", "--out", str(out),
                    "--threads", "1", "-q"], check=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audit_dir", nargs="?", type=Path, help="a finished audit directory (default: run the demo)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-python", type=Path,
                        help="also time 'PYTHON -m robaudit report' of another installation (e.g. an older "
                             "checkout's .venv/bin/python) on a copy of the same results, interleaved")
    parser.add_argument("--baseline-src", type=Path,
                        help="a checkout of older robaudit sources (e.g. 'git worktree add /tmp/old COMMIT'): time "
                             "'robaudit report' from them (PYTHONPATH=DIR, this Python) on a copy of the same results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        audit = args.audit_dir or demo_audit(Path(tmp) / "audit")
        baseline_dir = Path(tmp) / "baseline"
        if args.baseline_python or args.baseline_src:
            shutil.copytree(audit, baseline_dir)
        child_cpu(IMPORTS)  # warm the file cache for both sides
        imports, renders, baseline = [], [], []
        for _ in range(args.repeats):
            imports.append(child_cpu(IMPORTS))
            renders.append(child_cpu([*ROBAUDIT, "report", str(audit)]))
            if args.baseline_python or args.baseline_src:
                # run outside this checkout, or ``-m robaudit`` would import it from the working directory
                python = str(args.baseline_python or sys.executable)
                baseline.append(child_cpu([python, "-m", "robaudit", "report", str(baseline_dir)], cwd=Path(tmp),
                                          pythonpath=args.baseline_src))
    label = 'python -c "import torch, timm"'
    print(f"{'command':<44} {'median CPU s':>12} {'ratio':>7}")
    print(f"{label:<44} {statistics.median(imports):>12.2f}")
    rows = [("robaudit report DIR", renders)] + ([("baseline: robaudit report DIR", baseline)] if baseline else [])
    for name, times in rows:
        ratio = statistics.median(t / i for t, i in zip(times, imports))  # per-pair ratios: load drifts cancel
        print(f"{name:<44} {statistics.median(times):>12.2f} {ratio:>6.2f}×")
    ratio = statistics.median(r / i for r, i in zip(renders, imports))
    print(f"target ≤ {TARGET}× the imports: {'met' if ratio <= TARGET else 'not met'} ({ratio:.2f}×, "
          f"median of {len(renders)} pairs)")


if __name__ == "__main__":
    main()
