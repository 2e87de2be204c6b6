"""CPU time of the engine's writes during a standard digits audit: a pinned older checkout vs this tree.

The engine rewrites ``results.json`` and ``per_sample.csv`` after every probe, so that a crash or
Ctrl-C loses nothing finished (issue #17's target: all writes of a standard audit ≤ 0.15 CPU-s at
360 samples, and about linear in the sample count). For each sample count and each code tree, one
child process (``PYTHONPATH`` = that tree, torch pinned to one thread) runs a small warm-up audit,
then the standard audit of the digits demo CNN, and adds up the process CPU time
(``time.process_time``) spent in the engine's write step (``_RunState.write``: the outcome counts
and flags, both files' text, the atomic write with ``fsync``), call by call.

The pinned tree is exported with ``git archive`` (default: the commit before the cheap checkpoint
writes), so the repository is not changed. Both trees write into the same ``--out`` from the same
working directory (both are recorded in ``results.json``), and the finished files are compared:
``per_sample.csv`` byte for byte, ``results.json`` byte for byte after blanking its timings
(``created``, ``started``, ``duration_s``, ``seconds``, … and durations in notes), which differ from
run to run.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/checkpoint_writes.py [--n-samples 100 360]
      [--before COMMIT | --before-tree DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BEFORE = "a719e777b1434727e4d8ff483239d85760992e7e"
"""main before the cheap checkpoint writes: ``results.json`` re-encoded indented and every per-sample
cell re-formatted by a Python call after each probe."""
TARGET_CPU_S = 0.15
"""Issue #17: all writes of a standard digits audit at 360 samples."""
VOLATILE = re.compile(r'("(?:created|started|duration_s|seconds|seconds_per_fwd_bwd)": )("[^"]*"|[^,\n]*)')
DURATION = re.compile(r"\d+(?:\.\d+)?(?:e[-+]?\d+)? ?(?:ms|s)\b")


def child(n: int, out: str) -> None:
    """In a child process: time the writes of one standard digits audit; print a JSON line."""
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from passes_per_sample import model_options

    import robaudit
    from robaudit.engine import runner

    calls: list[float] = []
    write = runner._RunState.write

    def timed(self: Any) -> None:
        start = time.process_time()
        write(self)
        calls.append(time.process_time() - start)

    runner._RunState.write = timed
    with tempfile.TemporaryDirectory() as tmp:
        base = {**model_options("demo", Path(tmp), n), "threads": 1, "batch_size": 128, "seed": 0,
                "report": False, "quiet": True, "overwrite": True}
        robaudit.audit(**base, n_samples=min(n, 16), out=str(Path(tmp) / "warm-up"))  # one-off imports
        calls.clear()
        start = time.process_time()
        robaudit.audit(**base, n_samples=n, out=out)
        audit_cpu = time.process_time() - start
    print(json.dumps({"calls": calls, "audit_cpu": audit_cpu, "threads": torch.get_num_threads(),
                      "robaudit": robaudit.__file__}))


def measure(tree: Path, n: int, workdir: Path) -> dict[str, Any]:
    """Run :func:`child` with ``tree`` first on the path, in ``workdir``; its JSON line."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(n), "--out", "audit"],
                          cwd=workdir, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"the audit with {tree} failed:\n{proc.stderr[-3000:]}")
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(record["robaudit"]).resolve().is_relative_to(tree.resolve()), record["robaudit"]
    return record


def masked(text: str) -> str:
    """``results.json`` text with the run-to-run timings blanked, every other byte kept."""
    return DURATION.sub("<t>", VOLATILE.sub(r"\1<t>", text))


def export(commit: str, dest: Path) -> Path:
    """The ``robaudit`` package of ``commit``, exported under ``dest`` with ``git archive``."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "robaudit"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-samples", type=int, nargs="+", default=[100, 360])
    parser.add_argument("--before", default=BEFORE, help="the commit to compare with (default: %(default)s)")
    parser.add_argument("--before-tree", type=Path, help="an existing checkout to compare with, instead of --before")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.out)
        return

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        trees = {"before": args.before_tree or export(args.before, tmp / "before-tree"), "after": REPO}
        rows = []
        for n in args.n_samples:
            runs = {}
            for label, tree in trees.items():  # the same working directory and --out: both are recorded
                workdir = tmp / "run"
                workdir.mkdir(exist_ok=True)
                runs[label] = measure(Path(tree), n, workdir)
                runs[label]["dir"] = (workdir / "audit").rename(tmp / f"{label}-{n}")
            same_csv = (runs["before"]["dir"] / "per_sample.csv").read_bytes() == \
                (runs["after"]["dir"] / "per_sample.csv").read_bytes()
            same_json = masked((runs["before"]["dir"] / "results.json").read_text()) == \
                masked((runs["after"]["dir"] / "results.json").read_text())
            rows.append((n, runs, same_csv, same_json))

    print(f"Engine writes during a standard digits audit (demo CNN), CPU seconds (time.process_time), "
          f"torch threads {rows[0][1]['after']['threads']}; before = {args.before_tree or args.before[:12]}")
    print(f"{'samples':>8}{'writes':>8}{'before':>10}{'after':>10}{'before/after':>14}{'final write':>13}"
          f"{'audit before':>14}{'audit after':>13}   finished files identical")
    for n, runs, same_csv, same_json in rows:
        b, a = sum(runs["before"]["calls"]), sum(runs["after"]["calls"])
        print(f"{n:>8}{len(runs['after']['calls']):>8}{b:>10.3f}{a:>10.3f}{b / a:>14.1f}"
              f"{runs['after']['calls'][-1]:>13.3f}{runs['before']['audit_cpu']:>14.2f}"
              f"{runs['after']['audit_cpu']:>13.2f}"
              f"   per_sample.csv {'yes' if same_csv else 'NO'}, results.json {'yes' if same_json else 'NO'}")
    for n, runs, _, _ in rows:
        print(f"after, {n} samples, per write (ms): {' '.join(f'{c * 1000:.1f}' for c in runs['after']['calls'])}")
    if len(rows) > 1:
        (n0, r0, _, _), (n1, r1, _, _) = rows[0], rows[-1]
        growth = {k: sum(r1[k]["calls"]) / sum(r0[k]["calls"]) for k in ("before", "after")}
        print(f"growth {n0} → {n1} samples (×{n1 / n0:.1f}): before ×{growth['before']:.1f}, "
              f"after ×{growth['after']:.1f}")
    at_360 = [sum(r["after"]["calls"]) for n, r, _, _ in rows if n == 360]
    if at_360:
        print(f"target (issue #17): writes ≤ {TARGET_CPU_S} CPU-s at 360 samples: {at_360[0]:.3f} "
              f"({'met' if at_360[0] <= TARGET_CPU_S else 'NOT met'})")
    if not all(same_csv and same_json for _, _, same_csv, same_json in rows):
        sys.exit("the finished files differ between the two trees")


if __name__ == "__main__":
    main()
