"""Benchmark: the cross-model analysis of a zoo table (robaudit.analysis.cross_model.correlate), CPU seconds.

Synthetic zoo tables of 10, 100 and 1,000 models with a realistic width: 16 model-level indicators (λ1 and
trace of the train and audit Hessian sets, medians of per-sample indicator columns, ...) against 8 robustness
outcomes (robust accuracy at 4 ε for 2 norms), i.e. 128 (indicator, outcome) pairs, each with Kendall τ,
Spearman ρ, a 1,000-resample bootstrap interval and partial ρ controlling for the clean accuracy and the
parameter count (two more bootstraps). Timed with no missing values and with 2 % of the
indicator values missing at random. Also timed: the per-pair path it replaced (read from git at OLD_COMMIT),
at 5 models on 2 pairs, scaled to 128 pairs (its exact p enumerated n!² orderings, so 6 or more models do not
finish; see docs/zoo.md).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zoo_analysis.py [--old-commit COMMIT] [--json OUT.json]

CPU time (time.process_time), one thread (numpy's BLAS and torch pinned), as recorded in the output.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from robaudit.analysis import cross_model as cm  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
N_INDICATORS, N_OUTCOMES = 16, 8
OLD_COMMIT = "9190701"
OLD_PAIRS = 2


def zoo_table(n: int, missing: float = 0.02, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(indicators (n, 16), outcomes (n, 8), controls): heavy-tailed curvatures, robust accuracies on 500
    samples (so ties), and a ``missing`` share of indicator values missing at random (the worst case for
    speed: every indicator then has its own set of models, so its own ranks and resamples)."""
    rng = np.random.default_rng(seed)
    clean = rng.uniform(0.7, 0.99, n)
    params = rng.integers(10_000, 100_000_000, n).astype(float)
    lam = rng.lognormal(3, 1.5, n)
    ind = np.column_stack([lam * rng.lognormal(0, 0.5, n) for _ in range(N_INDICATORS)])
    ind[rng.random(ind.shape) < missing] = np.nan
    out = np.column_stack([np.round(500 * np.clip(clean * (1 - k / 10) - 0.01 * np.log(lam) + rng.normal(0, 0.03, n),
                                                  0, 1)) / 500 for k in range(N_OUTCOMES)])
    return ind, out, {"clean accuracy": clean, "parameter count": params}


def cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def old_stats(commit: str) -> types.ModuleType:
    """robaudit.analysis.stats as it was at ``commit`` (the per-pair path)."""
    source = subprocess.run(["git", "show", f"{commit}:robaudit/analysis/stats.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType("robaudit_old_stats")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{commit}:robaudit/analysis/stats.py", "exec"), module.__dict__)  # our own repo's code
    return module


def old_pair(old: types.ModuleType, x: np.ndarray, y: np.ndarray, controls: dict[str, np.ndarray],
             rng: np.random.Generator) -> None:
    """One (indicator, outcome) pair as the old compare_runs did it."""
    for method in ("kendall", "spearman"):
        old.rank_correlation_exact(x, y, method, rng)
    old.spearman_ci(x, y, rng)
    for z in controls.values():
        old.partial_spearman_ci(x, y, z, rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-commit", default=OLD_COMMIT)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    record: dict = {"threads": torch.get_num_threads(), "omp_num_threads": os.environ["OMP_NUM_THREADS"],
                    "pairs": N_INDICATORS * N_OUTCOMES, "indicators": N_INDICATORS, "outcomes": N_OUTCOMES,
                    "bootstrap_resamples": cm.Settings().n_resamples, "exact_max_models": cm.EXACT_MAX_MODELS,
                    "new_cpu_s": {}, "old_cpu_s_128_pairs": {}}
    for missing in (0.0, 0.02):
        for n in (5, 10, 100, 1000):
            ind, out, controls = zoo_table(n, missing)
            seconds = cpu_seconds(lambda: cm.correlate(ind, out, controls, np.random.default_rng(0)))
            record["new_cpu_s"][f"{n} models, {missing:.0%} missing"] = seconds
            print(f"new  {n:>5} models × {N_INDICATORS * N_OUTCOMES} pairs, {missing:.0%} missing: {seconds:8.2f} CPU s",
                  flush=True)
    old = old_stats(args.old_commit)
    for n in (5,):
        ind, out, controls = zoo_table(n, 0.0)
        ok = [(i, o) for i in range(N_INDICATORS) for o in range(N_OUTCOMES)
              if np.isfinite(ind[:, i]).all()][:OLD_PAIRS]
        rng = np.random.default_rng(0)
        per_pair = cpu_seconds(lambda: [old_pair(old, ind[:, i], out[:, o], controls, rng) for i, o in ok]) / len(ok)
        record["old_cpu_s_128_pairs"][n] = per_pair * N_INDICATORS * N_OUTCOMES
        ratio = record["old_cpu_s_128_pairs"][n] / record["new_cpu_s"][f"{n} models, 0% missing"]
        print(f"old  {n:>5} models × {N_INDICATORS * N_OUTCOMES} pairs: {record['old_cpu_s_128_pairs'][n]:8.2f} CPU s "
              f"({per_pair:.2f} s per pair, measured on {len(ok)}) = {ratio:,.0f}× the new path", flush=True)
    record["old_commit"] = args.old_commit
    record["note"] = ("old path at 6+ models: its exact permutation test enumerated n!² pairings "
                      f"({math.factorial(6) ** 2:,} at 6, {math.factorial(8) ** 2:,} at 8 models); 2 pairs at 6 models "
                      "did not finish in 15 minutes, 8 models ran out of memory")
    print(f"threads: torch {record['threads']}, OMP_NUM_THREADS={record['omp_num_threads']}")
    if args.json:
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
