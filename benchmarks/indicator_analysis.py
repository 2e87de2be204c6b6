"""Benchmark: the per-sample indicator analysis (robaudit.analysis.indicators.analyse), CPU seconds, new vs old.

The table has the standard audit's shape on the demo CNN (results.json of a 360-sample digits audit): 15
indicator columns (three of them Jacobian-sparsity fractions, so heavily tied), 15 attack-success columns
(3 attacks × 5 ε: from ~10 % broken to all broken), one robustness column (the minimal ε), the confidence as
the confounder, and ~2 % misclassified samples: 240 (indicator, outcome) tests at the default settings
(1,000 bootstrap resamples, 2,000 permutations). Synthetic and seeded, at 100, 360 and 1,000 samples;
``--run DIR`` also times the table of a finished audit.

"old" is the per-pair code at OLD_COMMIT (``git archive`` into a temporary folder), "new" this tree; each runs
in its own interpreter on the same table, alternately, best of ``--repeat``. Both compute the same numbers
(tests/analysis/test_indicators_batched.py); the last column checks it here too.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/indicator_analysis.py [--sizes 100 360 1000] [--run DIR]
                                                                          [--repeat 3] [--json OUT.json]

CPU time (time.process_time) of analyse() alone, imports (scipy.stats included) excluded, numpy's BLAS
pinned to one thread.
The floor: the 15 Spearman permutation tests draw 2 × 2,000 permutations of n each with
``Generator.permuted`` (scipy's draws, kept so that every p-value is unchanged), timed separately.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OLD_COMMIT = "a719e77"
EPS = (0.05, 0.1, 0.15, 0.2, 0.3)
ATTACKS = ("attack.fgsm", "attack.pgd_linf", "attack.worst_case")
INDICATORS = ("clean/loss", "clean/logit_margin", "curvature.topk/v1_curvature", "geometry.gradients/loss_grad_l2",
              "geometry.gradients/loss_grad_l1", "geometry.gradients/logit_jacobian_spectral",
              "geometry.gradients/decision_grad_l1", "geometry.gradients/linear_margin_l2",
              "geometry.gradients/linear_margin_linf", "geometry.gradients/jacobian_sparsity_0.001",
              "geometry.gradients/jacobian_sparsity_0.01", "geometry.gradients/jacobian_sparsity_0.1",
              "geometry.input_hessian/trace", "geometry.input_hessian/yu_slack", "geometry.input_hessian/lambda_1")

TIMER = r"""
import json, sys, time
import numpy as np
import scipy.stats  # loaded by the probes before the analysis runs in an audit
import robaudit.analysis.cross_model
from robaudit.analysis.indicators import analyse
table = np.load(sys.argv[1])
results = json.loads(open(sys.argv[2]).read())
columns = {k: table[k] for k in table.files}
start = time.process_time()
out = analyse(results, columns, seed=int(sys.argv[3]))
cpu = time.process_time() - start
print(json.dumps({"cpu_s": cpu, "analysis": out}))
"""


def standard_table(n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """(per-sample columns, results.json with their roles) shaped like the standard demo audit."""
    g = np.random.default_rng(seed)
    robust = g.lognormal(-2.3, 0.5, n)  # the minimal ε
    confidence = 1 / (1 + np.exp(-(8 * robust + 0.5 * g.normal(size=n))))
    cols: dict[str, np.ndarray] = {"clean/correct": (g.random(n) > 0.02).astype(float),
                                   "clean/confidence": confidence, "attack.min_eps/min_eps": robust}
    roles = {"clean/confidence": ("confidence p_top", "confounder"),
             "attack.min_eps/min_eps": ("minimal PGD ε", "robustness")}
    for k, name in enumerate(INDICATORS):
        value = np.exp(-np.log(robust) * g.uniform(-1, 1) + g.normal(size=n))
        if "sparsity" in name:
            value = np.round(np.clip(value / (1 + value), 0, 1) * 40) / 40  # fractions of 40 pixels: ties
        cols[name] = value
        roles[name] = (name, "indicator")
    for a, attack in enumerate(ATTACKS):
        for eps in EPS:
            name = f"{attack}/success_eps_{eps}"
            cols[name] = (robust * np.exp(0.1 * g.normal(size=n)) < eps * (1 + 0.1 * a)).astype(float)
            cols[name][:] = 1.0 if eps == EPS[-1] else cols[name]
            roles[name] = (name, "attack_success")
    results = {"probes": {"p": {"status": "ok", "columns": {
        c: {"label": label, "role": role, "unit": "", "scale_invariant": None}
        for c, (label, role) in roles.items()}}}}
    return cols, results


def timed(tree: Path, table: Path, results: Path, seed: int) -> tuple[float, dict]:
    """(CPU s of analyse, its output) in a fresh interpreter importing robaudit from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, "-c", TIMER, str(table), str(results), str(seed)], env=env, cwd=tree,
                          capture_output=True, text=True, check=True)
    out = json.loads(proc.stdout)
    return out["cpu_s"], out["analysis"]


def max_difference(a: object, b: object) -> float:
    """Largest absolute difference between the floats of two JSON trees (inf where they differ otherwise)."""
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return max((max_difference(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return max((max_difference(u, v) for u, v in zip(a, b)), default=0.0)
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b)
    return 0.0 if a == b else float("inf")


def permutation_draws(n: int, pairs: int = 15, n_resamples: int = 2000) -> float:
    """CPU s of the permutation draws alone: ``pairs`` × Generator.permuted of (n_resamples, 2, n)."""
    rng = np.random.default_rng(0)
    start = time.process_time()
    for _ in range(pairs):
        rng.permuted(np.tile(np.arange(n), (n_resamples, 2, 1)), axis=-1)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 360, 1000])
    parser.add_argument("--run", type=Path, default=None, help="also time the table of this finished audit")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--old-commit", default=OLD_COMMIT)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    record: dict = {"omp_num_threads": os.environ["OMP_NUM_THREADS"], "old_commit": args.old_commit, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = tmp / "old"
        old.mkdir()
        archive = subprocess.run(["git", "archive", args.old_commit, "robaudit"], cwd=REPO, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        cases: list[tuple[str, dict[str, np.ndarray], dict, int]] = []
        for n in args.sizes:
            cols, results = standard_table(n)
            cases.append((f"standard-shaped, {n} samples", cols, results, 0))
        if args.run:
            sys.path.insert(0, str(REPO))
            from robaudit.engine.runner import derive_seed
            from robaudit.results.store import read_per_sample
            results = json.loads((args.run / "results.json").read_text())
            _, cols = read_per_sample(args.run)
            cols.pop("label", None)
            cases.append((f"audit {args.run.name}, {len(next(iter(cols.values())))} samples", cols, results,
                          derive_seed(results["config"]["seed"], "analysis")))
        print(f"{'table':<36} {'tests':>5} {'old CPU s':>10} {'new CPU s':>10} {'speed-up':>9} "
              f"{'draws CPU s':>11} {'max |new − old|':>16}")
        for name, cols, results, seed in cases:
            table, res = tmp / "table.npz", tmp / "results.json"
            np.savez(table, **cols)
            res.write_text(json.dumps(results))
            old_s, new_s = [], []
            for _ in range(args.repeat):
                t, old_out = timed(old, table, res, seed)
                old_s.append(t)
                t, new_out = timed(REPO, table, res, seed)
                new_s.append(t)
            n = len(next(iter(cols.values())))
            row = {"table": name, "samples": n, "tests": len(new_out["tests"]), "old_cpu_s": min(old_s),
                   "new_cpu_s": min(new_s), "permutation_draws_cpu_s": permutation_draws(n),
                   "max_abs_difference": max_difference(new_out, old_out)}
            record["rows"].append(row)
            print(f"{name:<36} {row['tests']:>5} {row['old_cpu_s']:>10.3f} {row['new_cpu_s']:>10.3f} "
                  f"{row['old_cpu_s'] / row['new_cpu_s']:>8.1f}× {row['permutation_draws_cpu_s']:>11.3f} "
                  f"{row['max_abs_difference']:>16.1e}")
    print(f"threads: OMP_NUM_THREADS={record['omp_num_threads']}; old = {args.old_commit}, best of {args.repeat}")
    if args.json:
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
