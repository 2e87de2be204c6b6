"""Benchmark: the per-sample indicator analysis (robaudit.analysis.indicators.analyse), CPU seconds, old vs new.

The table has the standard audit's shape on the demo CNN (results.json of a 360-sample digits audit): 15
indicator columns (three of them Jacobian-sparsity fractions, so heavily tied), 15 attack-success columns
(FGSM, PGD L∞ and the worst case, each at the digits L∞ sweep 0.05 … 0.3, reference budget 0.1: from ~10 %
broken to all broken), one robustness column (the minimal ε), the confidence as the confounder, and ~2 %
misclassified samples. Synthetic and seeded, at 100, 360 and 1,000 samples; ``--run DIR`` also times the
table of a finished audit.

Three computations of each table, each in its own interpreter, alternately, best of ``--repeat``:

* **old**: the code at OLD_COMMIT (``git archive`` into a temporary folder; main before issue #17's analysis
  defaults): 240 tests, AUROC at every budget, the permutation p drawing both samples' orders;
* **new, all**: this tree with ``auroc_budgets = "all"``: the same 240 tests, the one-sample permutation p;
* **new, reference**: this tree's default, AUROC at the reference budget only: 15 × (1 + 3) = 60 tests.

With ``--baseline COMMIT`` (e.g. the commit a speed-up branched from), that commit's tree also runs both
settings (**base all**, **base reference**, same interpreter protocol, interleaved), and a second table
gives base vs new CPU s per setting and whether the whole ``analyse()`` output is bitwise identical (the
JSON text of the two trees compared).

The per-sample marginal is the least-squares slope of CPU s against the sample count over the synthetic
sizes; with ``--passes`` (default on) it is also given in forward+backward-equivalents of the demo CNN:
the slope divided by the CPU s per sample of one plain forward+backward (input gradient of the
cross-entropy, batch 128) of the demo CNN on digits, timed here (as benchmarks/passes_per_sample.py does).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/indicator_analysis.py [--sizes 100 360 1000] [--run DIR]
                                                                          [--repeat 3] [--json OUT.json]

CPU time (time.process_time) of analyse() alone, imports (scipy.stats included) excluded, numpy's BLAS and
torch pinned to one thread. The last column checks that the new default's point estimates (ρ, AUROC, the
partial ρ, the Mann–Whitney p: no resampling behind them) equal the old ones on the tests both ran; the
intervals and permutation p differ because the draws did (tests/analysis/test_indicators_batched.py checks
every number against scipy and the per-pair path).
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
OLD_COMMIT = "01eac76"
EPS = (0.05, 0.1, 0.15, 0.2, 0.3)
REFERENCE = 0.1
ATTACKS = ("attack.fgsm", "attack.pgd_linf")
WORST_CASE = "attack.worst_case"
INDICATORS = ("clean/loss", "clean/logit_margin", "curvature.topk/v1_curvature", "geometry.gradients/loss_grad_l2",
              "geometry.gradients/loss_grad_l1", "geometry.gradients/logit_jacobian_spectral",
              "geometry.gradients/decision_grad_l1", "geometry.gradients/linear_margin_l2",
              "geometry.gradients/linear_margin_linf", "geometry.gradients/jacobian_sparsity_0.001",
              "geometry.gradients/jacobian_sparsity_0.01", "geometry.gradients/jacobian_sparsity_0.1",
              "geometry.input_hessian/trace", "geometry.input_hessian/yu_slack", "geometry.input_hessian/lambda_1")
SETTINGS = ("old", "all", "reference")
BASE_SETTINGS = ("base all", "base reference")

TIMER = r"""
import json, sys, time
import numpy as np
import scipy.stats  # loaded by the probes before the analysis runs in an audit
import robaudit.analysis.cross_model
import robaudit.results.store  # loaded by the engine (and torch with it) before the analysis runs in an audit
from robaudit.analysis.indicators import analyse
table = np.load(sys.argv[1])
results = json.loads(open(sys.argv[2]).read())
columns = {k: table[k] for k in table.files}
kwargs = {}
if sys.argv[4] != "old":
    from robaudit.analysis.config import AnalysisConfig
    kwargs["config"] = AnalysisConfig(auroc_budgets=sys.argv[4])
start = time.process_time()
out = analyse(results, columns, seed=int(sys.argv[3]), **kwargs)
cpu = time.process_time() - start
print(json.dumps({"cpu_s": cpu, "analysis": out}))
"""


def standard_table(n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """(per-sample columns, results.json with their roles, the attacks' typed budgets and the threat model)
    shaped like the standard demo audit."""
    g = np.random.default_rng(seed)
    robust = g.lognormal(-2.3, 0.5, n)  # the minimal ε
    confidence = 1 / (1 + np.exp(-(8 * robust + 0.5 * g.normal(size=n))))
    cols: dict[str, np.ndarray] = {"clean/correct": (g.random(n) > 0.02).astype(float),
                                   "clean/confidence": confidence, "attack.min_eps/min_eps": robust}
    roles = {"clean/confidence": ("confidence p_top", "confounder"),
             "attack.min_eps/min_eps": ("minimal PGD ε", "robustness")}
    for name in INDICATORS:
        value = np.exp(-np.log(robust) * g.uniform(-1, 1) + g.normal(size=n))
        if "sparsity" in name:
            value = np.round(np.clip(value / (1 + value), 0, 1) * 40) / 40  # fractions of 40 pixels: ties
        cols[name] = value
        roles[name] = (name, "indicator")
    probes: dict[str, dict] = {}
    for a, attack in enumerate((*ATTACKS, WORST_CASE)):
        key = "success_linf_eps_" if attack == WORST_CASE else "success_eps_"
        names = []
        for eps in EPS:
            name = f"{attack}/{key}{eps:.6g}"
            cols[name] = (robust * np.exp(0.1 * g.normal(size=n)) < eps * (1 + 0.1 * a)).astype(float)
            cols[name][:] = 1.0 if eps == EPS[-1] else cols[name]
            roles[name] = (name, "attack_success")
            names.append(name)
        summary = {"linf": {"eps": list(EPS)}} if attack == WORST_CASE else {"norm": "linf", "eps": list(EPS)}
        probes[attack] = {"status": "ok", "summary": summary, "per_sample_columns": names, "columns": {}}
    probes["p"] = {"status": "ok", "summary": {}, "per_sample_columns": [], "columns": {
        c: {"label": label, "role": role, "unit": "", "scale_invariant": None} for c, (label, role) in roles.items()}}
    threat_model = {"norms": {"linf": {"eps": list(EPS), "reference": REFERENCE, "search_max": 0.5,
                                       "tolerance": 1 / 255, "source": "default:digits"}}}
    return cols, {"threat_model": threat_model, "probes": probes}


def timed(tree: Path, table: Path, results: Path, seed: int, setting: str) -> tuple[float, dict]:
    """(CPU s of analyse, its output) in a fresh interpreter importing robaudit from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, "-c", TIMER, str(table), str(results), str(seed), setting], env=env,
                          cwd=tree, capture_output=True, text=True, check=True)
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


def point_difference(new: dict, old: dict) -> float:
    """Largest difference of the resampling-free numbers (ρ / AUROC, partial ρ, Mann–Whitney p, n) between
    the tests ``new`` and ``old`` both ran (inf where one has a number the other lacks)."""
    old_tests = {(t["indicator"], t["outcome"]): t for t in old["tests"]}
    worst = 0.0
    for t in new["tests"]:
        o = old_tests[t["indicator"], t["outcome"]]
        pairs = [(t["n"], o["n"]), ((t["estimate"] or {}).get("value"), (o["estimate"] or {}).get("value")),
                 ((t["partial"] or {}).get("value"), (o["partial"] or {}).get("value"))]
        if t["kind"] == "auroc":
            pairs.append((t["p"], o["p"]))
        worst = max([worst, *(max_difference(a, b) for a, b in pairs)])
    return worst


def fwd_bwd_cpu_per_sample(n: int = 360, batch_size: int = 128) -> float:
    """CPU s per sample of one plain forward+backward of the demo CNN on digits (one torch thread)."""
    import torch

    sys.path.insert(0, str(REPO))
    from robaudit.config import config_from_mapping
    from robaudit.engine.runner import prepare, select_probes
    from robaudit.probes.registry import ProbeRegistry

    torch.set_num_threads(1)
    config = config_from_mapping({"model": str(REPO / "examples" / "digits_cnn.safetensors"),
                                  "arch": f"{REPO / 'examples' / 'digits_cnn.py'}:DigitsCNN", "dataset": "digits",
                                  "n_samples": n, "probes": ["clean"], "out": "unused", "threads": 1})
    _, _, model, data = prepare(config, select_probes(config, ProbeRegistry()))
    repeats, start = 0, time.process_time()
    while repeats < 3 or time.process_time() - start < 2.0:
        for _rows, x, y in data.batches(batch_size):
            xi = x.clone().requires_grad_(True)
            torch.autograd.grad(torch.nn.functional.cross_entropy(model(xi).float(), y), xi)
        repeats += 1
    return (time.process_time() - start) / repeats / len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 360, 1000])
    parser.add_argument("--run", type=Path, default=None, help="also time the table of this finished audit")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--old-commit", default=OLD_COMMIT)
    parser.add_argument("--baseline", default=None, metavar="COMMIT",
                        help="also time this commit's tree with both settings and check its output is bitwise ours")
    parser.add_argument("--passes", action=argparse.BooleanOptionalAction, default=True,
                        help="time the demo CNN's forward+backward to give the marginal in passes per sample")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    record: dict = {"omp_num_threads": os.environ["OMP_NUM_THREADS"], "torch_threads": 1,
                    "old_commit": args.old_commit, "repeat": args.repeat, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = tmp / "old"
        old.mkdir()
        archive = subprocess.run(["git", "archive", args.old_commit, "robaudit"], cwd=REPO, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        settings = SETTINGS
        if args.baseline:
            base = tmp / "base"
            base.mkdir()
            archive = subprocess.run(["git", "archive", args.baseline, "robaudit"], cwd=REPO, check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
            settings = (*SETTINGS, *BASE_SETTINGS)
            record["baseline"] = args.baseline
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
        print(f"{'table':<36} {'tests old/all/ref':>17} {'old CPU s':>10} {'all CPU s':>10} {'ref CPU s':>10} "
              f"{'old/ref':>8} {'points |Δ|':>11}")
        for name, cols, results, seed in cases:
            table, res = tmp / "table.npz", tmp / "results.json"
            np.savez(table, **cols)
            res.write_text(json.dumps(results))
            cpu: dict[str, list[float]] = {s: [] for s in settings}
            outs: dict[str, dict] = {}
            for _ in range(args.repeat):
                for setting in settings:
                    tree = old if setting == "old" else base if setting in BASE_SETTINGS else REPO
                    t, outs[setting] = timed(tree, table, res, seed, setting.removeprefix("base "))
                    cpu[setting].append(t)
            row = {"table": name, "samples": len(next(iter(cols.values()))),
                   "tests": {s: len(outs[s]["tests"]) for s in SETTINGS},
                   "cpu_s": {s: min(cpu[s]) for s in SETTINGS},
                   "point_difference": point_difference(outs["reference"], outs["old"])}
            if args.baseline:
                row["base_cpu_s"] = {s: min(cpu[f"base {s}"]) for s in ("all", "reference")}
                row["bitwise_equal_to_base"] = {s: json.dumps(outs[f"base {s}"]) == json.dumps(outs[s])
                                                for s in ("all", "reference")}
            record["rows"].append(row)
            tests, c = row["tests"], row["cpu_s"]
            print(f"{name:<36} {tests['old']:>5}/{tests['all']:>3}/{tests['reference']:>3}      "
                  f"{c['old']:>10.3f} {c['all']:>10.3f} {c['reference']:>10.3f} {c['old'] / c['reference']:>7.1f}× "
                  f"{row['point_difference']:>11.1e}")
    synthetic = [r for r in record["rows"] if r["table"].startswith("standard-shaped")]
    if len(synthetic) >= 2:
        n = np.array([r["samples"] for r in synthetic], dtype=float)
        record["marginal_cpu_s_per_sample"] = {
            s: float(np.polyfit(n, [r["cpu_s"][s] for r in synthetic], 1)[0]) for s in SETTINGS}
        fb = fwd_bwd_cpu_per_sample() if args.passes else None
        record["demo_fwd_bwd_cpu_s_per_sample"] = fb
        print("per-sample marginal (slope over the synthetic sizes): "
              + "; ".join(f"{s}: {1e6 * m:.0f} µs" + (f" = {m / fb:.1f} demo-CNN fwd+bwd" if fb else "")
                          for s, m in record["marginal_cpu_s_per_sample"].items())
              + (f" (one fwd+bwd: {1e6 * fb:.1f} µs per sample)" if fb else ""))
    print(f"threads: OMP_NUM_THREADS={record['omp_num_threads']}, torch 1; old = {args.old_commit}, "
          f"best of {args.repeat}")
    if args.baseline:
        _print_baseline(record)
    if args.json:
        args.json.write_text(json.dumps(record, indent=2))


def _print_baseline(record: dict) -> None:
    """The ``--baseline`` table: base vs this tree, CPU s per setting, bitwise equality, per-sample marginal."""
    print(f"\nbaseline {record['baseline']} vs this tree (CPU s, best of {record['repeat']}; "
          f"= : the whole analyse() output bitwise identical)")
    print(f"{'table':<36} {'base all':>9} {'all':>7} {'':>2} {'base ref':>9} {'ref':>7} {'':>2}")
    for row in record["rows"]:
        b, c, eq = row["base_cpu_s"], row["cpu_s"], row["bitwise_equal_to_base"]
        print(f"{row['table']:<36} {b['all']:>9.3f} {c['all']:>7.3f} {'=' if eq['all'] else '≠':>2} "
              f"{b['reference']:>9.3f} {c['reference']:>7.3f} {'=' if eq['reference'] else '≠':>2}")
    synthetic = [r for r in record["rows"] if r["table"].startswith("standard-shaped")]
    if len(synthetic) >= 2:
        n = np.array([r["samples"] for r in synthetic], dtype=float)
        fb = record.get("demo_fwd_bwd_cpu_s_per_sample")
        marginal = {}
        for s in ("all", "reference"):
            marginal[s] = {"base": float(np.polyfit(n, [r["base_cpu_s"][s] for r in synthetic], 1)[0]),
                           "new": float(np.polyfit(n, [r["cpu_s"][s] for r in synthetic], 1)[0])}
        record["baseline_marginal_cpu_s_per_sample"] = marginal
        print("per-sample marginal, base → this tree: " + "; ".join(
            f"{s}: {1e3 * m['base']:.2f} → {1e3 * m['new']:.2f} ms"
            + (f" ({m['base'] / fb:.1f} → {m['new'] / fb:.1f} demo-CNN fwd+bwd)" if fb else "")
            for s, m in marginal.items()))


if __name__ == "__main__":
    main()
