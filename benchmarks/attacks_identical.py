"""Check that two robaudit trees print the same numbers: the standard demo audit, byte for byte.

Runs ``robaudit run examples/digits_cnn.safetensors --arch examples/digits_cnn.py:DigitsCNN --dataset
digits --threads 1`` (plus any extra arguments) once with this tree's code and once with another
checkout's (e.g. ``git worktree add /tmp/old main``), each in a fresh process whose ``import robaudit``
resolves to that tree, and compares:

* ``per_sample.csv``: byte for byte;
* ``results.json``: equal after dropping what measures the run rather than the model — the timing
  fields (``created``, each probe's ``started`` and ``duration_s``, the ``cost_estimate`` block, whose
  seconds come from a timed pass, durations written inside probe notes), the ``command`` and
  ``config`` (the output path) and the ``environment`` block (paths, versions). Every other field,
  every probe summary and flag included, must be equal. Both trees audit this tree's checkpoint
  file, so the recorded model paths agree.

Exit 0 when identical, 1 with the first differences listed otherwise.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/attacks_identical.py OLD_TREE [-- EXTRA robaudit run ARGS]
(about 20 CPU-s per tree on the digits demo).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STANDARD = [str(REPO / "examples" / "digits_cnn.safetensors"),
            "--arch", f"{REPO / 'examples' / 'digits_cnn.py'}:DigitsCNN", "--dataset", "digits", "--threads", "1"]
"""The standard demo audit's arguments; both trees audit this tree's checkpoint, so the recorded paths agree."""
VOLATILE_TOP = ("created", "command", "config", "environment", "cost_estimate")
"""Top-level results.json keys that describe the run (time, paths, machine), not the model's numbers."""
VOLATILE_PROBE = ("started", "duration_s")
"""Per-probe results.json keys that are timings."""
TIMING = re.compile(r"\b\d+(?:\.\d+)? (?:s|ms)\b")
"""A duration inside a note (curvature.topk reports its HVP timings in words); masked before comparing."""


def comparable(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` without its timing and environment fields (:data:`VOLATILE_TOP`, :data:`VOLATILE_PROBE`)."""
    out = {k: v for k, v in results.items() if k not in VOLATILE_TOP}
    out["probes"] = {name: {k: ([TIMING.sub("<time>", n) for n in v] if k == "notes" else v)
                            for k, v in probe.items() if k not in VOLATILE_PROBE}
                     for name, probe in results.get("probes", {}).items()}
    return out


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths where two JSON values differ (every one; types and values compared exactly)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}/{k}: only in {'first' if k in a else 'second'}" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += differences(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    same = a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)  # NaN == NaN here
    return [] if same and type(a) is type(b) else [f"{path}: {a!r} != {b!r}"]


def audit(tree: Path, out: Path, extra: list[str]) -> None:
    """The standard demo audit with ``tree``'s robaudit (run from ``tree``, so its package is imported)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "robaudit", "run", *STANDARD, "--out", str(out), "--no-report", "-q", *extra]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"audit with {tree} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")


def compare(old: Path, new: Path) -> list[str]:
    """Differences between two audit directories (empty: identical)."""
    problems = []
    if (old / "per_sample.csv").read_bytes() != (new / "per_sample.csv").read_bytes():
        problems.append("per_sample.csv differs")
    a, b = (comparable(json.loads((d / "results.json").read_text())) for d in (old, new))
    return problems + differences(a, b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old_tree", type=Path, help="another robaudit checkout, e.g. `git worktree add /tmp/old main`")
    parser.add_argument("extra", nargs="*", help="extra `robaudit run` arguments (after --)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        audit(args.old_tree.resolve(), Path(tmp) / "old", args.extra)
        audit(REPO, Path(tmp) / "new", args.extra)
        problems = compare(Path(tmp) / "old", Path(tmp) / "new")
    if problems:
        print(f"DIFFERENT: {len(problems)} differences, first 20:", *problems[:20], sep="\n  ")
        return 1
    print(f"identical: per_sample.csv byte for byte, results.json without {', '.join(VOLATILE_TOP)} and "
          f"per-probe {', '.join(VOLATILE_PROBE)} ({args.old_tree} vs {REPO})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
