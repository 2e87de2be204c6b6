"""Fixed cost of re-rendering a report: ``robaudit report DIR`` vs ``python -c "import torch, timm"``.

Issue #17's target: re-rendering a standard audit's report costs at most 1.5× the CPU time of
importing torch and timm (the floor any robaudit command pays). Both commands run as fresh child
processes, interleaved, ``--repeats`` times each; the CPU time of each child (user + system, from
``resource.getrusage(RUSAGE_CHILDREN)``) is read around it, so other jobs on a shared machine do not
count. Printed: the median CPU seconds of each, the median of the per-pair ratios, and the target.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/report_render.py AUDIT_DIR [--repeats 3]

``AUDIT_DIR`` is a finished audit (``results.json``); re-rendering rewrites its ``report.html``
from the same results, so use a copy if the original must stay untouched. Without ``AUDIT_DIR``
a standard audit of the demo model on 120 digits samples is run first into a temporary directory.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROBAUDIT = [sys.executable, "-m", "robaudit"]
IMPORTS = [sys.executable, "-c", "import torch, timm"]
TARGET = 1.5


def child_cpu(cmd: list[str]) -> float:
    """CPU seconds (user + system) of one run of ``cmd`` as a child process; fails on a non-zero exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        audit = args.audit_dir or demo_audit(Path(tmp) / "audit")
        child_cpu(IMPORTS)  # warm the file cache for both sides
        imports, renders = [], []
        for _ in range(args.repeats):
            imports.append(child_cpu(IMPORTS))
            renders.append(child_cpu([*ROBAUDIT, "report", str(audit)]))
    ratios = [r / i for r, i in zip(renders, imports)]
    print(f"{'command':<40} {'median CPU s':>12}")
    label = 'python -c "import torch, timm"'
    print(f"{label:<40} {statistics.median(imports):>12.2f}")
    print(f"{'robaudit report DIR':<40} {statistics.median(renders):>12.2f}")
    ratio = statistics.median(ratios)
    print(f"ratio (median of {len(ratios)} pairs): {ratio:.2f}×  (target ≤ {TARGET}×: "
          f"{'met' if ratio <= TARGET else 'not met'})")


if __name__ == "__main__":
    main()
