"""The shared bootstrap of the analysis (issue #17) gives every number of the straightforward one, bit for bit.

The fast path ranks each column once per resample for the Spearman ρ and the partial ρ together
(``cross_model.replicates``), centres the confounder's ranks once, reads the ranks from prefix sums, and
gets the AUROC replicates from one prefix sum per column. The oracle below is the straightforward
computation it replaced, kept here only: every (ρ, partial ρ) block bootstrapped on its own, every column
ranked per block by ``per_pair_reference.weighted_ranks`` (a cumulative sum per resample), the confounder's
ranks recentred for every column, and each AUROC replicate from the weighted ranks of its resample. The whole
``analyse()`` output (and the zoo's ``correlate()``) is compared as JSON text, so one changed bit fails.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from robaudit.analysis import cross_model as cm
from robaudit.analysis import indicators
from robaudit.analysis import stats as st
from robaudit.analysis.indicators import AnalysisConfig, analyse
from robaudit.engine.runner import derive_seed
from robaudit.results.store import read_per_sample

from per_pair_reference import auroc_replicates, weighted_ranks


def _straightforward_replicates(x: np.ndarray, y: np.ndarray, z: np.ndarray | None, w: np.ndarray) -> np.ndarray:
    """Replicates of ρ (or partial ρ on z) of every row of x with every row of y, shape (R, k, m), as before
    the sharing: every column ranked here, z's ranks recentred for each column, all resamples at once."""
    wb = w[:, None, :]

    def centre(a: np.ndarray) -> np.ndarray:
        return a - (wb * a).sum(axis=-1, keepdims=True) / wb.sum(axis=-1, keepdims=True)

    a = np.stack([weighted_ranks(v, w) for v in x], axis=1)  # (R, k, n)
    b = np.stack([weighted_ranks(v, w) for v in y], axis=1)
    if z is not None:
        rz = weighted_ranks(z, w)[:, None, :]
        residuals = []
        for r in (a, b):
            rc, zc = centre(r), centre(np.broadcast_to(rz, r.shape))
            denom = (wb * zc * zc).sum(axis=-1, keepdims=True)
            beta = np.divide((wb * rc * zc).sum(axis=-1, keepdims=True), denom, out=np.zeros_like(denom),
                             where=denom > 0)
            residuals.append(rc - beta * zc)
        a, b = residuals
    a, b = centre(a), centre(b)
    num = (wb * a) @ b.transpose(0, 2, 1)
    denom = np.sqrt((wb * a * a).sum(axis=-1)[:, :, None] * (wb * b * b).sum(axis=-1)[:, None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, num / denom, np.nan)


def _straightforward_intervals(pairs: list, samples: dict, paired: dict, config: AnalysisConfig) -> None:
    """``indicators._spearman_intervals`` with one bootstrap per (samples, ρ or partial ρ) block."""
    for key, group in samples.items():
        mine = [p for p in pairs if p.key == key and p.testable]
        for field in ("estimate", "partial"):
            batch = [p for p in mine if (p.kind == "spearman" if field == "estimate" else p.confounder is not None)]
            value = (lambda p: p.value) if field == "estimate" else (lambda p: p.partial_value)  # noqa: E731
            for pair in batch:
                pair.test[field] = indicators._interval(st.Interval(value(pair), np.nan, np.nan, config.level))
            batch = [p for p in batch if not np.isnan(value(p))]
            if not batch:
                continue
            ind = list(dict.fromkeys(p.indicator for p in batch))
            out = list(dict.fromkeys(p.outcome for p in batch))
            z = group.values[batch[0].confounder] if field == "partial" else None
            boot = _straightforward_replicates(np.stack([group.values[c] for c in ind]),
                                               np.stack([group.values[c] for c in out]), z, paired[key])
            cells = boot[:, [ind.index(p.indicator) for p in batch], [out.index(p.outcome) for p in batch]]
            for pair, interval in zip(batch, indicators._intervals(cells, [value(p) for p in batch], config.level)):
                pair.test[field] = interval


def _straightforward_auroc(scores: np.ndarray, label: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.stack([auroc_replicates(s, np.asarray(label).astype(bool), w) for s in scores], axis=1)


def _both(monkeypatch: pytest.MonkeyPatch, run) -> tuple[str, str]:
    """(JSON of ``run()`` on the fast path, JSON of ``run()`` on the straightforward one)."""
    fast = json.dumps(run())
    with monkeypatch.context() as m:
        m.setattr(indicators, "_spearman_intervals", _straightforward_intervals)
        m.setattr(st, "auroc_replicates_columns", _straightforward_auroc)
        m.setattr(cm, "_replicates", _straightforward_replicates)
        slow = json.dumps(run())
    return fast, slow


def _roles(names: dict[str, str]) -> dict:
    return {"probes": {"p": {"status": "ok", "columns": {
        c: {"label": c, "role": role, "unit": "", "scale_invariant": None} for c, role in names.items()}}}}


def _table(seed: int, n: int) -> dict[str, np.ndarray]:
    """Indicators with ties, NaNs and a constant, an indicator equal to the confounder, attack success
    (one always true) and two minimal-ε outcomes, one with NaNs."""
    g = np.random.default_rng(seed)
    base = g.normal(size=n)
    cols = {"clean/correct": (g.random(n) > 0.1).astype(float),
            "g/tied": np.round(base + g.normal(size=n), 1), "g/heavy": g.lognormal(size=n),
            "g/coarse": np.round(g.normal(size=n)), "g/close": base + 0.3 * g.normal(size=n),
            "g/constant": np.full(n, 2.0),
            "o/success": (base + 0.5 * g.normal(size=n) > 0.3).astype(float), "o/rare": (base > 1.2).astype(float),
            "o/all": np.ones(n), "o/eps": np.round(base + 0.4 * g.normal(size=n), 1), "o/eps2": g.normal(size=n) ** 2,
            "c/conf": np.round(-base + g.normal(size=n), 1)}
    cols["g/tied"][g.choice(n, 5, replace=False)] = np.nan
    cols["o/eps2"][g.choice(n, 7, replace=False)] = np.nan
    cols["c/conf"][g.choice(n, 4, replace=False)] = np.nan
    cols["g/as_confounder"] = cols["c/conf"].copy()  # its partial ρ is undefined: nothing left after z
    return cols


ROLES = {"g/tied": "indicator", "g/heavy": "indicator", "g/coarse": "indicator", "g/close": "indicator",
         "g/constant": "indicator", "g/as_confounder": "indicator", "o/success": "attack_success",
         "o/rare": "attack_success", "o/all": "attack_success", "o/eps": "robustness", "o/eps2": "robustness",
         "c/conf": "confounder"}


@pytest.mark.parametrize(("seed", "n"), [(0, 60), (1, 150), (2, 400)])
@pytest.mark.parametrize("budgets", ["reference", "all"])
def test_analysis_with_ties_nans_and_a_confounder_copy_is_bitwise_the_straightforward_one(
        seed: int, n: int, budgets: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cols = _table(seed, n)
    config = AnalysisConfig(n_bootstrap=257, n_permutations=100, auroc_budgets=budgets)
    fast, slow = _both(monkeypatch, lambda: analyse(_roles(ROLES), cols, seed=seed, config=config))
    assert fast == slow
    tests = json.loads(fast)["tests"]
    assert any(t["partial"] and t["partial"]["low"] is not None for t in tests)  # partial intervals were drawn
    assert any(t["indicator"] == "g/as_confounder" and t["estimate"]["low"] is not None for t in tests)
    assert any(t["kind"] == "auroc" and t["estimate"]["low"] is not None for t in tests)


def test_analysis_without_a_confounder_is_bitwise_the_straightforward_one(monkeypatch: pytest.MonkeyPatch) -> None:
    cols = _table(3, 200)
    roles = {c: r for c, r in ROLES.items() if r != "confounder"}
    config = AnalysisConfig(n_bootstrap=300, n_permutations=100)
    fast, slow = _both(monkeypatch, lambda: analyse(_roles(roles), cols, seed=3, config=config))
    assert fast == slow


@pytest.mark.parametrize("budgets", ["reference", "all"])
def test_a_real_audit_analysis_is_bitwise_the_straightforward_one(demo_run: Path, budgets: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    results = json.loads((demo_run / "results.json").read_text())
    _, cols = read_per_sample(demo_run)
    cols.pop("label")
    seed = derive_seed(results["config"]["seed"], "analysis")
    config = AnalysisConfig(auroc_budgets=budgets)
    fast, slow = _both(monkeypatch, lambda: analyse(results, cols, seed=seed, config=config))
    assert fast == slow
    assert len(json.loads(fast)["tests"]) > 50


@pytest.mark.parametrize("seed", range(4))
def test_zoo_correlations_are_bitwise_the_straightforward_ones(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``robaudit compare`` / ``zoo``: ρ and partial ρ bootstraps on models with ties and missing values,
    a control equal to an indicator."""
    g = np.random.default_rng(seed)
    m = 9 + 10 * seed
    ind = np.round(g.normal(size=(m, 4)), 1)
    out = np.round(g.normal(size=(m, 3)), 1)
    ind[g.random(ind.shape) < 0.1] = np.nan
    controls = {"clean accuracy": np.round(g.normal(size=m), 1), "parameter count": ind[:, 1].copy()}
    settings = cm.Settings(n_resamples=300)
    fast, slow = _both(monkeypatch, lambda: cm.correlate(ind, out, controls, np.random.default_rng(seed), settings))
    assert fast == slow
    assert any(row["spearman_low"] is not None and any(p["low"] is not None for p in row["partial"].values())
               for rows in json.loads(fast) for row in rows)
