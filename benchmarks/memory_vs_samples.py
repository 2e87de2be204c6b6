"""Peak RSS of an audit against the sample count: memory must not grow with n (issue #17).

Each (probe set, n) runs in its own child process (``python benchmarks/memory_vs_samples.py --child``),
and the child's peak resident set (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` read at its end) is
reported, so one measurement never inherits another's allocations. Model: the quarter-width timm
ResNet-18 at 32×32 (``timm:resnet18`` with ``--arch-kwargs channels=[16,32,64,128] stem_width=16
num_classes=10``, random init) on a seeded tensor file of random 32×32 RGB images, as in
``benchmarks/passes_per_sample.py``. Torch threads are pinned (default 1, printed).

Run:  .venv/bin/python benchmarks/memory_vs_samples.py [--sizes 50,100,300,1000] [--probes standard]
      [--per-probe] [--batch-size 128]
``--per-probe`` measures each standard probe on its own (with the attack it reads) at the smallest
and largest size, to find which one holds memory per sample.
Target: peak RSS at 1,000 samples ≤ 1.3 × the peak at 100.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]  # this checkout's robaudit, then passes_per_sample

# Each standard probe with the probes it reads (its inputs are part of what it holds).
PER_PROBE = {
    "clean": "clean",
    "calibration": "calibration",
    "attack.fgsm": "attack.fgsm",
    "attack.pgd_linf": "attack.pgd_linf",
    "attack.min_eps": "attack.pgd_linf,attack.min_eps",
    "attack.worst_case": "attack.fgsm,attack.worst_case",
    "curvature.topk": "curvature.topk",
    "geometry.gradients": "geometry.gradients",
    "geometry.input_hessian": "geometry.input_hessian",
    "geometry.surfaces": "geometry.surfaces",
}


def child(n: int, probes: str, batch_size: int, threads: int) -> None:
    """Run one quiet audit without a report; print JSON with the peak RSS and CPU time."""
    import torch

    import robaudit
    from passes_per_sample import model_options

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        options = {**model_options("resnet", tmp, n), "n_samples": n, "threads": threads, "batch_size": batch_size,
                   "seed": 0, "out": str(tmp / "audit")}
        if probes != "standard":
            options["probes"] = probes.split(",")
        start = time.process_time()
        outcome = robaudit.audit(**options, report=False, overwrite=True, quiet=True)
        cpu = time.process_time() - start
        statuses = {k: v["status"] for k, v in outcome.results["probes"].items()}
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"n": n, "peak_mib": peak_kib / 1024, "cpu_s": cpu, "statuses": statuses}))


def measure(n: int, probes: str, batch_size: int, threads: int) -> dict:
    """Peak RSS (MiB) and CPU seconds of one audit in a fresh child process."""
    cmd = [sys.executable, __file__, "--child", "--sizes", str(n), "--probes", probes,
           "--batch-size", str(batch_size), "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="50,100,300,1000")
    parser.add_argument("--probes", default="standard", help="'standard' or a comma-separated probe list")
    parser.add_argument("--per-probe", action="store_true")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        child(sizes[0], args.probes, args.batch_size, args.threads)
        return
    print(f"quarter-width timm ResNet-18, 32×32; batch {args.batch_size}; torch threads {args.threads}; "
          f"peak RSS of a fresh child process per row (ru_maxrss)")
    sets = PER_PROBE if args.per_probe else {args.probes: args.probes}
    if args.per_probe:
        sizes = [min(sizes), max(sizes)]
    for label, probes in sets.items():
        rows = [measure(n, probes, args.batch_size, args.threads) for n in sizes]
        for r in rows:
            bad = {k: s for k, s in r["statuses"].items() if s != "ok"}
            print(f"{label:<24} n={r['n']:>5}  peak {r['peak_mib']:8.1f} MiB  {r['cpu_s']:7.1f} CPU-s"
                  + (f"  NOT OK: {bad}" if bad else ""), flush=True)
        by_n = {r["n"]: r["peak_mib"] for r in rows}
        slope = (rows[-1]["peak_mib"] - rows[0]["peak_mib"]) / max(1, rows[-1]["n"] - rows[0]["n"])
        line = f"{label:<24} slope {slope * 1024:.1f} KiB per sample"
        if 100 in by_n and 1000 in by_n:
            ratio = by_n[1000] / by_n[100]
            line += f"; peak(1000) / peak(100) = {ratio:.2f} (target ≤ 1.3: {'met' if ratio <= 1.3 else 'NOT met'})"
        print(line, flush=True)


if __name__ == "__main__":
    main()
