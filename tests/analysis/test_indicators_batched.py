"""The batched indicator analysis equals scipy per pair, and the per-pair computation it replaced.

Oracles: ``scipy.stats`` (``spearmanr``, ``mannwhitneyu``, ``permutation_test`` with the same generator,
``rankdata`` of every explicitly resampled multiset) and ``per_pair_reference`` (the pre-batching path).
Every number is bitwise equal except the partial ρ's bootstrap bounds: their replicate numerators are one
matrix product (cross_model's) instead of a sum per pair, a different order of float additions (≤ 1e-12).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from robaudit.analysis import stats as st
from robaudit.analysis.indicators import AnalysisConfig, analyse, column_roles
from robaudit.engine.runner import derive_seed
from robaudit.results.store import read_per_sample

from per_pair_reference import analyse_tests

REORDERED_SUMS = 1e-12
"""Largest difference allowed where only the order of float additions changed (partial ρ bounds)."""


def _data(seed: int, n: int = 90) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores (4, n) with ties and NaNs, a 0/1 label, a continuous outcome with ties)."""
    g = np.random.default_rng(seed)
    base = g.normal(size=n)
    scores = np.stack([np.round(base + g.normal(size=n), 1), g.lognormal(size=n), np.round(g.normal(size=n)),
                       base + 0.3 * g.normal(size=n)])
    scores[0, g.choice(n, 5, replace=False)] = np.nan
    label = (base + 0.5 * g.normal(size=n) > 0.3).astype(float)
    return scores, label, np.round(base + 0.4 * g.normal(size=n), 1)


@pytest.mark.parametrize("seed", range(6))
def test_permutation_p_is_scipys_permutation_test_with_the_same_draws(seed: int) -> None:
    scores, _, y = _data(seed)
    for x in scores:
        ok = np.isfinite(x)
        rx, ry = stats.rankdata(x[ok]), stats.rankdata(y[ok])
        mine, theirs = np.random.default_rng(seed), np.random.default_rng(seed)
        expected = stats.permutation_test((ry,), lambda b, axis=-1: st._pearson_last_axis(rx, b),
                                          permutation_type="pairings", vectorized=True, n_resamples=700,
                                          alternative="two-sided", rng=theirs).pvalue
        assert st.permutation_p(x[ok], y[ok], mine, 700) == expected
        assert mine.bit_generator.state == theirs.bit_generator.state  # the same draws, no more, no fewer


def _one_sample_scipy(rx: np.ndarray, ry: np.ndarray, n_resamples: float, rng: np.random.Generator | None) -> float:
    return stats.permutation_test((ry,), lambda b, axis=-1: st._pearson_last_axis(rx, b), permutation_type="pairings",
                                  vectorized=True, n_resamples=n_resamples, alternative="two-sided", rng=rng).pvalue


@pytest.mark.parametrize("n", [3, 5, 8])
def test_permutation_p_is_scipys_exact_test_up_to_8_samples(n: int) -> None:
    g = np.random.default_rng(n)
    x, y = np.round(g.normal(size=n)), np.round(g.normal(size=n), 1)  # ties in x
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    mine = np.random.default_rng(0)
    assert st.rank_permutation_p(rx, ry, mine, 50) == _one_sample_scipy(rx, ry, np.inf, None)
    assert mine.bit_generator.state == np.random.default_rng(0).bit_generator.state  # exact: no draws


def test_permutation_p_is_exact_as_scipys_when_the_resamples_cover_every_order() -> None:
    """Above 8 samples scipy enumerates all n! orders once n_resamples reaches n! (an [analysis] knob can)."""
    g = np.random.default_rng(9)
    rx, ry = stats.rankdata(np.round(g.normal(size=9))), stats.rankdata(g.normal(size=9))
    mine, theirs = np.random.default_rng(0), np.random.default_rng(0)
    assert st.rank_permutation_p(rx, ry, mine, math.factorial(9)) == _one_sample_scipy(rx, ry, math.factorial(9),
                                                                                        theirs)
    assert mine.bit_generator.state == theirs.bit_generator.state == np.random.default_rng(0).bit_generator.state


def test_permutation_p_counts_null_values_equal_to_the_observed_one_as_extreme() -> None:
    """Two-valued samples: most permutations give exactly the observed ρ (scipy's 100-ulp rule counts them)."""
    x = np.array([0, 1] * 10, dtype=float)
    y = np.array([0, 0, 1, 1] * 5, dtype=float)
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    mine, theirs = np.random.default_rng(3), np.random.default_rng(3)
    p = st.rank_permutation_p(rx, ry, mine, 500)
    assert p == _one_sample_scipy(rx, ry, 500, theirs)
    assert p == 1.0  # ρ = 0 observed: every permutation is at least as extreme


def test_permuting_one_sample_has_the_null_law_of_permuting_both() -> None:
    """All n!² pairings (π0, π1) of two 5-samples give each statistic of the n! orders π of one sample
    exactly n! times: Σ a_{π0(i)} b_{π1(i)} = Σ a_j b_{π(j)} with π = π1∘π0⁻¹ (the docstring's argument)."""
    from collections import Counter
    from itertools import permutations

    a, b = np.array([1.0, 2.5, 2.5, 4.0, 5.0]), np.array([3.0, 1.0, 5.0, 2.0, 4.0])
    orders = np.array(list(permutations(range(5))))
    one = Counter(st._pearson_last_axis(a, b[orders]).tolist())
    both = Counter(st._pearson_last_axis(a[orders][:, None, :], b[orders][None, :, :]).ravel().tolist())
    assert both == Counter({value: count * len(orders) for value, count in one.items()})


def test_permutation_p_agrees_with_scipy_on_a_strong_and_a_null_relation() -> None:
    """A p-value that can fail: the strong relation sits at the floor 2/(B + 1), the null one does not."""
    g = np.random.default_rng(1)
    x = g.normal(size=60)
    assert st.permutation_p(x, x + 0.1 * g.normal(size=60), g, 999) == pytest.approx(2 / 1000)
    assert st.permutation_p(x, g.normal(size=60), g, 999) > 0.01


@pytest.mark.parametrize("seed", range(6))
def test_batched_auroc_statistics_equal_scipy_per_column(seed: int) -> None:
    scores, label, _ = _data(seed)
    ok = np.isfinite(scores).all(axis=0)
    s, lab = scores[:, ok], label[ok].astype(bool)
    p = st.auroc_p_columns(s, lab)
    w = st.stratified_weights(lab, 60, np.random.default_rng(seed))
    boot = st.auroc_replicates_columns(s, lab, w)
    for k, x in enumerate(s):
        assert p[k] == stats.mannwhitneyu(x[lab], x[~lab], alternative="two-sided").pvalue
        for r in range(len(w)):  # the resample as an explicit multiset, ranked by scipy
            counts = w[r].astype(int)
            u = stats.mannwhitneyu(np.repeat(x[lab], counts[lab]), np.repeat(x[~lab], counts[~lab])).statistic
            assert boot[r, k] == u / (lab.sum() * (~lab).sum())


def test_small_classes_keep_scipys_per_column_method_choice() -> None:
    """With ≤ 8 positives scipy picks the exact test without ties and the asymptotic one with ties."""
    g = np.random.default_rng(4)
    label = np.zeros(40, bool)
    label[:6] = True
    tied, untied = np.round(g.normal(size=40)), g.normal(size=40)
    p = st.auroc_p_columns(np.stack([tied, untied]), label)
    assert p[0] == stats.mannwhitneyu(tied[label], tied[~label]).pvalue
    assert p[1] == stats.mannwhitneyu(untied[label], untied[~label]).pvalue
    assert p[1] == stats.mannwhitneyu(untied[label], untied[~label], method="exact").pvalue


def test_weighted_ranks_of_columns_rank_every_resample_like_scipy() -> None:
    scores, _, _ = _data(7)
    s = np.nan_to_num(scores, nan=0.0)
    w = st.bootstrap_weights(s.shape[1], 40, np.random.default_rng(7))
    ranks = st.weighted_ranks_columns(s, w)
    for r in range(len(w)):
        counts = w[r].astype(int)
        drawn = counts > 0
        for k in range(len(s)):
            multiset = np.repeat(s[k], counts)
            expected = stats.rankdata(multiset)[np.cumsum(counts)[drawn] - 1]  # the last copy of each drawn value
            np.testing.assert_array_equal(ranks[r, k, drawn], expected)


def _roles(with_confounder: bool = True) -> dict:
    roles = {"g/a": ("a", "indicator"), "g/b": ("b", "indicator"), "g/c": ("c", "indicator"), "g/d": ("d", "indicator"),
             "o/success": ("success", "attack_success"), "o/eps": ("minimal ε", "robustness"),
             "o/all": ("always", "attack_success")}
    if with_confounder:
        roles["c/conf"] = ("confidence", "confounder")
    return {"probes": {"p": {"status": "ok", "columns": {
        c: {"label": label, "role": role, "unit": "", "scale_invariant": None} for c, (label, role) in roles.items()}}}}


def _assert_same(tests: list[dict], reference: list[dict]) -> None:
    assert len(tests) == len(reference)
    for got, ref in zip(tests, reference):
        got = {k: v for k, v in got.items() if k not in ("p_adjusted", "verdict")}
        assert list(got) == list(ref)  # the same keys in the same order (results.json bytes)
        partial, ref_partial = got.pop("partial"), ref.pop("partial")
        assert got == ref, (got, ref)
        if ref_partial is None or ref_partial["low"] is None:
            assert partial == ref_partial
        else:
            assert partial["value"] == ref_partial["value"]
            for bound in ("low", "high"):
                assert partial[bound] == pytest.approx(ref_partial[bound], rel=0, abs=REORDERED_SUMS)


@pytest.mark.parametrize("seed", range(3))
def test_analysis_equals_the_per_pair_computation_on_ties_and_nans(seed: int) -> None:
    scores, label, eps = _data(seed, n=120)
    g = np.random.default_rng(seed + 50)
    cols = {"clean/correct": (g.random(120) > 0.1).astype(float), "g/a": scores[0], "g/b": scores[1],
            "g/c": scores[2], "g/d": scores[3], "o/success": label, "o/eps": eps, "o/all": np.ones(120),
            "c/conf": np.round(-eps + g.normal(size=120), 1)}
    cols["c/conf"][g.choice(120, 4, replace=False)] = np.nan
    config = AnalysisConfig(n_bootstrap=200, n_permutations=300)
    out = analyse(_roles(), cols, seed=seed, config=config)
    reference, matrix = analyse_tests(_roles(), cols, seed, config)
    _assert_same(out["tests"], reference)
    assert out["matrix"]["rho"] == matrix
    assert any(t["kind"] == "spearman" and t["p"] is not None for t in out["tests"])
    assert any(t["outcome"] == "o/success" and t["estimate"]["low"] is not None for t in out["tests"])
    assert any(t["partial"] and t["partial"]["low"] is not None for t in out["tests"])


def test_spearman_and_auroc_estimates_equal_scipy() -> None:
    scores, label, eps = _data(11, n=120)
    cols = {"g/a": scores[0], "g/b": scores[1], "g/c": scores[2], "g/d": scores[3], "o/success": label,
            "o/eps": eps, "o/all": np.ones(120)}
    out = analyse(_roles(with_confounder=False), cols, seed=0, config=AnalysisConfig(n_bootstrap=50, n_permutations=50))
    for t in out["tests"]:
        x, y = cols[t["indicator"]], cols[t["outcome"]]
        ok = np.isfinite(x) & np.isfinite(y)
        if t["outcome"] == "o/eps":
            assert t["estimate"]["value"] == pytest.approx(stats.spearmanr(x[ok], y[ok]).statistic, rel=1e-13)
        elif t["outcome"] == "o/success":
            lab = y[ok].astype(bool)
            res = stats.mannwhitneyu(x[ok][lab], x[ok][~lab])
            assert t["estimate"]["value"] == res.statistic / (lab.sum() * (~lab).sum())
            assert t["p"] == res.pvalue
        else:
            assert t["estimate"]["value"] is None and t["p"] is None  # one class only


def test_a_real_audit_stores_the_per_pair_analysis(demo_run: Path) -> None:
    """The standard demo audit (120 digits): its stored analysis, and analyse() on its table, equal the
    per-pair computation."""
    results = json.loads((demo_run / "results.json").read_text())
    _, cols = read_per_sample(demo_run)
    cols.pop("label")
    seed = derive_seed(results["config"]["seed"], "analysis")
    reference, matrix = analyse_tests(results, cols, seed, AnalysisConfig())
    assert len(reference) > 50 and {t["kind"] for t in reference} == {"auroc", "spearman"}
    stored = results["analysis"]
    _assert_same(stored["tests"], reference)
    assert stored["matrix"]["rho"] == matrix
    again = json.loads(json.dumps(analyse(results, cols, seed=seed)))
    assert again == stored


def test_every_budget_of_a_real_audit_equals_the_per_pair_computation(demo_run: Path) -> None:
    """``auroc_budgets = "all"``: every attack-success column of the demo audit, as before issue #17, and the
    per-pair numbers."""
    results = json.loads((demo_run / "results.json").read_text())
    _, cols = read_per_sample(demo_run)
    cols.pop("label")
    seed = derive_seed(results["config"]["seed"], "analysis")
    config = AnalysisConfig(auroc_budgets="all")
    reference, matrix = analyse_tests(results, cols, seed, config)
    out = analyse(results, cols, seed=seed, config=config)
    outcomes = [c for c, m in column_roles(results).items() if m["role"] in ("robustness", "attack_success")]
    indicators = [c for c, m in column_roles(results).items() if m["role"] == "indicator"]
    assert len(out["tests"]) == len(outcomes) * len(indicators)
    _assert_same(out["tests"], reference)
    assert out["matrix"]["rho"] == matrix
