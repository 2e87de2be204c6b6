"""The cross-model analysis shared by ``compare`` and ``zoo``: declared indicators only, Spearman bootstrap
intervals and partial correlations, against scipy/numpy computed here."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from robaudit.analysis.compare import Run, compare_runs


def _run(i: int, clean: float, trace: float, robust: float) -> Run:
    est = lambda v: {"value": v, "low": max(0.0, v - 0.05), "high": min(1.0, v + 0.05), "n": 100}  # noqa: E731
    results = {
        "model": {"source": f"m{i}.pt"}, "data": {"source": "digits", "n_used": 100},
        "probes": {
            "clean": {"status": "ok", "summary": {"accuracy": est(clean), "n": 100}, "columns": {}},
            "curvature.trace": {"status": "ok", "columns": {}, "summary": {
                "trace": est(trace), "trace_set": "audit",
                "sets": {"audit": {"full": {"trace": est(trace), "hvps": 10 + i, "n": 100}},
                         "train": {"full": {"trace": est(2 * trace + i), "hvps": 7, "n": 50}}}}},
            "attack.fgsm": {"status": "ok", "columns": {}, "summary": {
                "robust_accuracy": {"0.1": est(robust)}, "mean_loss": {"0.1": 1.0 + i}, "n": 100}},
        },
    }
    return Run(Path(f"m{i}"), results, {}, [], f"m{i}")


def _oracle_partial(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    rx, ry, rz = (stats.rankdata(v) for v in (x, y, z))
    design = np.column_stack([np.ones_like(rz), rz])
    res = [r - design @ np.linalg.lstsq(design, r, rcond=None)[0] for r in (rx, ry)]
    return float(np.corrcoef(res[0], res[1])[0, 1])


def test_only_declared_values_are_tested_with_intervals_and_partials() -> None:
    rng = np.random.default_rng(3)
    n = 5
    clean = rng.uniform(0.8, 0.99, n)
    trace = rng.uniform(10, 100, n)
    robust = np.clip(0.9 - trace / 200 + rng.normal(0, 0.05, n), 0, 1)
    params = rng.integers(1000, 5000, n).astype(float)
    runs = [_run(i, clean[i], trace[i], robust[i]) for i in range(n)]
    out = compare_runs(runs, seed=0, controls={"parameter count": list(params)})
    rows = {(r["indicator"], r["outcome"]): r for r in out["correlations"]}
    audit, train = "curvature.trace sets › audit › full › trace", "curvature.trace sets › train › full › trace"
    assert {k[0] for k in rows} == {audit, train}  # every Hessian set, and no hvps / n / mean_loss
    assert {k[1] for k in rows} == {"attack.fgsm robust_accuracy › 0.1"}
    row = rows[(audit, "attack.fgsm robust_accuracy › 0.1")]
    assert row["spearman_rho"] == pytest.approx(stats.spearmanr(trace, robust).statistic)
    assert row["kendall_tau"] == pytest.approx(stats.kendalltau(trace, robust).statistic)
    assert row["spearman_low"] <= row["spearman_rho"] <= row["spearman_high"]
    for name, z in (("clean accuracy", clean), ("parameter count", params)):
        part = row["partial"][name]
        assert part["rho"] == pytest.approx(_oracle_partial(trace, robust, z))
        assert part["low"] <= part["rho"] <= part["high"] and part["n_models"] == n
    assert compare_runs(runs[:3], seed=0)["correlations"][0]["partial"] == {}  # fewer than 4 models: no partial
