"""The vectorised cross-model tests (robaudit.analysis.cross_model) against a per-pair oracle.

The oracle is the analysis as it was done before vectorisation, pair by pair: scipy's kendalltau and
spearmanr on each pair, the p-value by enumerating every pairing of the models, the partial Spearman ρ by
least squares on the ranks, and each pair's bootstrap interval from the scalar replicate functions of
robaudit.analysis.stats on the same resamples (recorded from the generator the analysis draws them with).
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from robaudit.analysis import cross_model as cm
from robaudit.analysis import stats as st

TOL = 1e-12


def _oracle_partial(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    rx, ry, rz = (stats.rankdata(v) for v in (x, y, z))
    design = np.column_stack([np.ones_like(rz), rz])
    res = [r - design @ np.linalg.lstsq(design, r, rcond=None)[0] for r in (rx, ry)]
    return float(np.corrcoef(res[0], res[1])[0, 1])


def _enumerated_p(x: np.ndarray, y: np.ndarray, statistic) -> float:
    """Two-sided p over every ordering of y (scipy's convention: twice the smaller tail, at most 1)."""
    observed = statistic(x, y)
    null = np.array([statistic(x, y[list(q)]) for q in itertools.permutations(range(len(y)))])
    gamma = 1e-14 * max(1.0, abs(observed))  # scipy's tolerance for ties in the null distribution
    less, greater = np.mean(null <= observed + gamma), np.mean(null >= observed - gamma)
    return min(1.0, 2 * min(less, greater))


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    draws: list[np.ndarray] = []
    real = st.bootstrap_weights

    def record(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
        draws.append(real(n, n_resamples, rng))
        return draws[-1]

    monkeypatch.setattr(st, "bootstrap_weights", record)
    return draws


def _interval(boot: np.ndarray, value: float) -> tuple[float, float]:
    ci = st.percentile_interval(value, boot, 0.95)
    return ci.low, ci.high


def _zoo(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Three indicators (one with ties), two outcomes (robust accuracies on 50 samples: ties), two controls."""
    rng = np.random.default_rng(seed)
    clean = rng.uniform(0.8, 0.99, n)
    params = rng.integers(1_000, 50_000, n).astype(float)
    lam = rng.lognormal(3, 1, n)
    ind = np.column_stack([lam, np.round(rng.normal(size=n), 0), lam * clean + rng.normal(0, 5, n)])
    out = np.column_stack([np.round(50 * np.clip(0.9 - lam / 200 + rng.normal(0, 0.05, n), 0, 1)) / 50,
                           np.round(50 * rng.uniform(0.1, 0.6, n)) / 50])
    return ind, out, {"clean accuracy": clean, "parameter count": params}


@pytest.mark.parametrize("n", [5, 6, 12, 40])
def test_every_pair_equals_the_per_pair_oracle(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    ind, out, controls = _zoo(n, seed=n)
    draws = _recording(monkeypatch)
    tests = cm.correlate(ind, out, controls, np.random.default_rng(0))
    w_pairs, w_clean, w_params = draws  # no missing values: one resample set per analysis
    for i, o in itertools.product(range(ind.shape[1]), range(out.shape[1])):
        x, y, row = ind[:, i], out[:, o], tests[i][o]
        assert row["n_models"] == n
        assert row["kendall_tau"] == pytest.approx(stats.kendalltau(x, y).statistic, abs=TOL)
        rho = stats.spearmanr(x, y).statistic
        assert row["spearman_rho"] == pytest.approx(rho, abs=TOL)
        tied = len(np.unique(x)) < n or len(np.unique(y)) < n
        if n <= cm.EXACT_MAX_MODELS:
            tau_b = lambda a, b: stats.kendalltau(a, b).statistic  # noqa: E731
            assert row["kendall_p"] == pytest.approx(_enumerated_p(x, y, tau_b), abs=TOL)
            assert row["kendall_p_method"] == (cm.EXACT_PERMUTATION if tied else cm.EXACT)
            assert row["spearman_p"] == pytest.approx(_enumerated_p(x, y, st.spearman), abs=TOL)
            assert row["spearman_p_method"] == cm.EXACT_PERMUTATION
        else:
            assert row["kendall_p"] == pytest.approx(stats.kendalltau(x, y, method="asymptotic").pvalue, abs=TOL)
            assert row["spearman_p"] == pytest.approx(stats.spearmanr(x, y).pvalue, abs=TOL)
            assert (row["kendall_p_method"], row["spearman_p_method"]) == (cm.ASYMPTOTIC_NORMAL, cm.T_APPROXIMATION)
        boot = st.spearman_replicates(st.weighted_ranks(x, w_pairs), st.weighted_ranks(y, w_pairs), w_pairs)
        np.testing.assert_allclose((row["spearman_low"], row["spearman_high"]), _interval(boot, rho), rtol=0, atol=TOL)
        for name, w in (("clean accuracy", w_clean), ("parameter count", w_params)):
            z = controls[name]
            part = row["partial"][name]
            value = st.partial_spearman(x, y, z)  # the scalar implementation the analysis used per pair
            assert part["n_models"] == n
            if math.isnan(value):  # x ranks exactly as z does: no residual left to correlate
                assert part == {"rho": None, "low": None, "high": None, "n_models": n}
                continue
            assert part["rho"] == pytest.approx(value, abs=TOL)
            assert value == pytest.approx(_oracle_partial(x, y, z), abs=1e-9)
            boot = st.partial_spearman_replicates(st.weighted_ranks(x, w), st.weighted_ranks(y, w),
                                                  st.weighted_ranks(z, w), w)
            np.testing.assert_allclose((part["low"], part["high"]), _interval(boot, value), rtol=0, atol=TOL)


def test_kendall_exact_p_without_ties_is_scipys_exact_distribution() -> None:
    """Seven untied models: scipy's exact Kendall p equals enumerating all 7! = 5,040 pairings."""
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=7), rng.normal(size=7) + np.arange(7) * 0.3
    (row,), = cm.correlate(x[:, None], y[:, None], {}, np.random.default_rng(0))
    assert row["kendall_p_method"] == cm.EXACT
    expected = _enumerated_p(x, y, lambda a, b: stats.kendalltau(a, b).statistic)
    assert row["kendall_p"] == pytest.approx(expected, abs=TOL)


def test_missing_values_drop_models_per_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model without an indicator is left out of that indicator's tests only, with its own resamples."""
    ind, out, controls = _zoo(14, seed=3)
    ind[[2, 9], 0] = np.nan
    draws = _recording(monkeypatch)
    tests = cm.correlate(ind, out, {}, np.random.default_rng(1))
    by_n = {len(w[0]): w for w in draws}
    assert sorted(by_n) == [12, 14]
    ok = np.isfinite(ind[:, 0])
    for o in range(out.shape[1]):
        row = tests[0][o]
        x, y = ind[ok, 0], out[ok, o]
        assert row["n_models"] == 12
        assert row["spearman_rho"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=TOL)
        assert row["kendall_tau"] == pytest.approx(stats.kendalltau(x, y).statistic, abs=TOL)
        w = by_n[12]
        boot = st.spearman_replicates(st.weighted_ranks(x, w), st.weighted_ranks(y, w), w)
        np.testing.assert_allclose((row["spearman_low"], row["spearman_high"]),
                                   _interval(boot, row["spearman_rho"]), rtol=0, atol=TOL)
        assert tests[1][o]["n_models"] == 14


def test_untestable_pairs_carry_no_numbers() -> None:
    """Fewer than three models, or a constant column: no statistic; fewer than four: no partial."""
    x = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [np.nan, 5.0]])
    y = np.array([[0.3], [0.2], [0.4], [0.1]])
    tests = cm.correlate(x, y, {"clean accuracy": np.array([0.9, 0.8, 0.7, 0.6])}, np.random.default_rng(0))
    assert tests[0][0]["n_models"] == 3 and tests[0][0]["spearman_rho"] == pytest.approx(0.5)
    assert tests[0][0]["partial"] == {}  # three models have all three values
    assert tests[1][0]["spearman_rho"] is None and tests[1][0]["kendall_p"] is None  # constant indicator
    two = cm.correlate(x[:2], y[:2], {}, np.random.default_rng(0))
    assert two[0][0]["n_models"] == 2 and two[0][0]["spearman_rho"] is None


def test_a_thousand_models_rank_like_scipy() -> None:
    """At zoo scale every statistic is still scipy's (a sample of pairs), and the intervals cover the estimate."""
    ind, out, controls = _zoo(1000, seed=5)
    tests = cm.correlate(ind, out, controls, np.random.default_rng(0), cm.Settings(n_resamples=200))
    for i, o in [(0, 0), (1, 1), (2, 0)]:
        row = tests[i][o]
        assert row["spearman_rho"] == pytest.approx(stats.spearmanr(ind[:, i], out[:, o]).statistic, abs=TOL)
        assert row["kendall_p"] == pytest.approx(stats.kendalltau(ind[:, i], out[:, o]).pvalue, abs=TOL)
        assert row["spearman_low"] <= row["spearman_rho"] <= row["spearman_high"]
        value = _oracle_partial(ind[:, i], out[:, o], controls["parameter count"])
        assert row["partial"]["parameter count"]["rho"] == pytest.approx(value, abs=1e-10)
    assert not math.isclose(tests[0][0]["spearman_rho"], 0.0, abs_tol=0.1)  # the planted association is found
