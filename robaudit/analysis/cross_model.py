"""Rank correlations of every model-level indicator with every robustness outcome, across models, on matrices.

The cross-model tests of ``robaudit compare`` and ``robaudit zoo`` (docs/analysis.md, docs/zoo.md), built to
run on 1,000 models in seconds:

* all columns are ranked at once (``scipy.stats.rankdata`` along the model axis) and Spearman's ρ of every
  (indicator, outcome) pair is one matrix product of centred ranks;
* Kendall's τ-b is ``scipy.stats.kendalltau`` per pair (O(n log n));
* the paired percentile bootstrap (models resampled with replacement) draws one set of resamples per group
  of pairs that share their models, and computes every pair's replicate in one batched product;
* partial Spearman ρ controlling for a covariate (the clean accuracy, the parameter count) is the
  correlation of rank residuals after regressing both ranks on the covariate's ranks, bootstrapped the
  same way;
* p-values are **exact** up to :data:`EXACT_MAX_MODELS` models, over all n! pairings of the models: Kendall
  by ``scipy.stats.kendalltau(method="exact")`` when neither variable has ties, else (and for Spearman) by
  ``scipy.stats.permutation_test`` enumerating the pairings. Above it, Kendall's p is scipy's asymptotic
  normal approximation (tie-corrected variance) and Spearman's is scipy's t approximation
  (``scipy.stats.spearmanr``). Each test records the method its p came from.

Pairs are tested on the models where both values (and the covariate, for a partial) are finite; pairs
sharing the same models share their bootstrap resamples. All randomness comes from the ``rng`` argument.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from robaudit.analysis import stats as st

EXACT_MAX_MODELS = 8
"""Up to this many models, p-values enumerate all n! pairings (8! = 40,320); above it, scipy's approximations."""
MIN_MODELS = 3
"""Fewest models for a correlation."""
MIN_MODELS_PARTIAL = 4
"""Fewest models for a partial correlation."""
EXACT = "exact"
EXACT_PERMUTATION = "exact permutation"
ASYMPTOTIC_NORMAL = "asymptotic normal"
T_APPROXIMATION = "t approximation"
CHUNK_VALUES = 2**19
"""Bootstrap resamples are processed in chunks of about this many (resample, column, model) values (4 MiB of floats: cache-sized)."""


@dataclass(frozen=True)
class Settings:
    """How the tests run: ``n_resamples`` bootstrap resamples, a two-sided ``level`` interval."""

    n_resamples: int = 1000
    level: float = 0.95


def method_text() -> str:
    """One sentence naming the statistics and the p-value methods (stored as the analysis' ``method``)."""
    return (f"Kendall τ-b and Spearman ρ across models; two-sided p exact over all pairings up to {EXACT_MAX_MODELS} "
            f"models (Kendall: scipy's exact distribution without ties, else a permutation test; Spearman: a "
            f"permutation test), above that Kendall's asymptotic normal and Spearman's t approximation; Spearman ρ "
            f"and partial Spearman ρ with paired percentile-bootstrap 95 % intervals over models")


def correlate(indicators: np.ndarray, outcomes: np.ndarray, controls: dict[str, np.ndarray],
              rng: np.random.Generator, settings: Settings = Settings()) -> list[list[dict[str, Any]]]:
    """Test every indicator column against every outcome column across models.

    Args:
        indicators: shape ``(n_models, n_indicators)``; NaN where a model lacks the value.
        outcomes: shape ``(n_models, n_outcomes)``; NaN where missing.
        controls: covariate name → shape ``(n_models,)`` (NaN where missing); each pair gets a partial
            Spearman ρ controlling for each covariate, where at least :data:`MIN_MODELS_PARTIAL` models have
            all three values and each varies.
        rng: the source of every resample.
        settings: bootstrap size and interval level.

    Returns:
        ``out[i][o]``: the test of indicator i against outcome o, a dict with ``n_models``, ``kendall_tau``,
        ``kendall_p``, ``kendall_p_method``, ``spearman_rho``, ``spearman_p``, ``spearman_p_method``,
        ``spearman_low``, ``spearman_high`` (None where untestable) and ``partial`` (covariate name →
        ``{"rho", "low", "high", "n_models"}``).
    """
    x_all, y_all = np.asarray(indicators, dtype=np.float64), np.asarray(outcomes, dtype=np.float64)
    n_ind, n_out = x_all.shape[1], y_all.shape[1]
    out = [[_empty_row() for _ in range(n_out)] for _ in range(n_ind)]
    fin_x, fin_y = np.isfinite(x_all), np.isfinite(y_all)
    testable: dict[bytes, list[tuple[int, int]]] = {}
    for i in range(n_ind):
        for o in range(n_out):
            ok = fin_x[:, i] & fin_y[:, o]
            out[i][o]["n_models"] = int(ok.sum())
            if ok.sum() >= MIN_MODELS and np.ptp(x_all[ok, i]) > 0 and np.ptp(y_all[ok, o]) > 0:
                testable.setdefault(ok.tobytes(), []).append((i, o))
    for key, pairs in testable.items():
        ok = np.frombuffer(key, dtype=bool)
        _pair_tests(x_all[ok], y_all[ok], pairs, out, rng, settings)
    for name, values in controls.items():
        z_all = np.asarray(values, dtype=np.float64)
        partial_groups: dict[bytes, list[tuple[int, int]]] = {}
        for i in range(n_ind):
            for o in range(n_out):
                ok = fin_x[:, i] & fin_y[:, o] & np.isfinite(z_all)
                if ok.sum() >= MIN_MODELS_PARTIAL and min(np.ptp(x_all[ok, i]), np.ptp(y_all[ok, o]), np.ptp(z_all[ok])) > 0:
                    partial_groups.setdefault(ok.tobytes(), []).append((i, o))
        for key, pairs in partial_groups.items():
            ok = np.frombuffer(key, dtype=bool)
            _partial_tests(x_all[ok], y_all[ok], z_all[ok], name, pairs, out, rng, settings)
    return out


def _empty_row() -> dict[str, Any]:
    return {"n_models": 0, "kendall_tau": None, "kendall_p": None, "kendall_p_method": None,
            "spearman_rho": None, "spearman_p": None, "spearman_p_method": None,
            "spearman_low": None, "spearman_high": None, "partial": {}}


def _columns(pairs: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    return sorted({i for i, _ in pairs}), sorted({o for _, o in pairs})


def _pair_tests(x: np.ndarray, y: np.ndarray, pairs: list[tuple[int, int]], out: list[list[dict[str, Any]]],
                rng: np.random.Generator, settings: Settings) -> None:
    """Kendall, Spearman and the Spearman bootstrap of ``pairs`` on the same n models (rows of x and y)."""
    cols_i, cols_o = _columns(pairs)
    rx = stats.rankdata(x[:, cols_i], axis=0).T  # (I, n)
    ry = stats.rankdata(y[:, cols_o], axis=0).T  # (O, n)
    rho = _pearson_matrix(rx, ry)
    n = x.shape[0]
    w = st.bootstrap_weights(n, settings.n_resamples, rng)
    boot = _replicates(x[:, cols_i].T, y[:, cols_o].T, None, w)  # (R, I, O)
    pos_i, pos_o = {c: k for k, c in enumerate(cols_i)}, {c: k for k, c in enumerate(cols_o)}
    ks = [pos_i[i] for i, _ in pairs]
    ko = [pos_o[o] for _, o in pairs]
    lows, highs = _percentiles(boot[:, ks, ko], rho[ks, ko], settings.level)
    for (i, o), a, b, value, low, high in zip(pairs, ks, ko, rho[ks, ko], lows, highs):
        row = out[i][o]
        tau, tau_p, tau_method = _kendall(x[:, i], y[:, o], rx[a], ry[b])
        row.update(kendall_tau=tau, kendall_p=tau_p, kendall_p_method=tau_method, spearman_rho=float(value),
                   spearman_low=low, spearman_high=high)
        row["spearman_p"], row["spearman_p_method"] = _spearman_p(float(value), rx[a], ry[b])


def _partial_tests(x: np.ndarray, y: np.ndarray, z: np.ndarray, name: str, pairs: list[tuple[int, int]],
                   out: list[list[dict[str, Any]]], rng: np.random.Generator, settings: Settings) -> None:
    """Partial Spearman ρ (controlling for z) with bootstrap intervals, for ``pairs`` on the same n models."""
    cols_i, cols_o = _columns(pairs)
    rz = stats.rankdata(z)
    res_x = _residualise(stats.rankdata(x[:, cols_i], axis=0).T, rz)
    res_y = _residualise(stats.rankdata(y[:, cols_o], axis=0).T, rz)
    value = _pearson_matrix(res_x, res_y)
    w = st.bootstrap_weights(len(z), settings.n_resamples, rng)
    boot = _replicates(x[:, cols_i].T, y[:, cols_o].T, z, w)
    pos_i, pos_o = {c: k for k, c in enumerate(cols_i)}, {c: k for k, c in enumerate(cols_o)}
    ks = [pos_i[i] for i, _ in pairs]
    ko = [pos_o[o] for _, o in pairs]
    lows, highs = _percentiles(boot[:, ks, ko], value[ks, ko], settings.level)
    for (i, o), v, low, high in zip(pairs, value[ks, ko], lows, highs):
        out[i][o]["partial"][name] = {"rho": _finite_or_none(float(v)), "low": low, "high": high,
                                      "n_models": int(len(z))}


def _residualise(r: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Residuals of each row of ``r`` (shape (k, n)) after least squares on ``z`` (n,) with intercept."""
    zc = z - z.mean()
    rc = r - r.mean(axis=-1, keepdims=True)
    denom = float(zc @ zc)
    beta = (rc @ zc) / denom if denom > 0 else np.zeros(len(r))
    return rc - beta[:, None] * zc


def _pearson_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson's r of every row of ``a`` (k, n) with every row of ``b`` (m, n), shape (k, m); NaN when constant."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    denom = np.sqrt(np.outer((a * a).sum(axis=-1), (b * b).sum(axis=-1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a @ b.T) / denom, np.nan)


@dataclass(frozen=True)
class Batch:
    """One block of bootstrapped correlations: every column in ``rows`` against every column in ``cols``
    (indices into the ``columns`` of :func:`replicates`), partialled on column ``control`` when it is set."""

    rows: list[int]
    cols: list[int]
    control: int | None = None


def _replicates(x: np.ndarray, y: np.ndarray, z: np.ndarray | None, w: np.ndarray) -> np.ndarray:
    """Bootstrap replicates of Spearman's ρ (or, with ``z``, the partial ρ controlling for z) of every row of
    ``x`` (k, n) with every row of ``y`` (m, n) under multiplicities ``w`` (R, n): shape (R, k, m)."""
    k, m = len(x), len(y)
    columns = np.concatenate([x, y, z[None, :]] if z is not None else [x, y])
    block = Batch(list(range(k)), list(range(k, k + m)), k + m if z is not None else None)
    return replicates(columns, w, [block])[0]


def replicates(columns: np.ndarray, w: np.ndarray, batches: list[Batch]) -> list[np.ndarray]:
    """Bootstrap replicates of several blocks of Spearman ρ and partial ρ on the same resamples.

    Each replicate is the weighted Pearson r of the resample's average ranks (:func:`st.weighted_ranks`), or
    of their weighted least-squares residuals on the control's ranks: the same quantity as
    :func:`st.spearman_replicates` / :func:`st.partial_spearman_replicates` per pair. Every column is ranked,
    centred and (per control) residualised once per resample, whichever blocks use it; each block's
    numerators are one matrix product per resample, of the block's own shape (a product's rounding can
    depend on its shape, so blocks are not merged).

    Args:
        columns: shape ``(K, n)``, the values (finite).
        w: multiplicities, shape ``(R, n)``.
        batches: the blocks to compute.

    Returns:
        Per block, shape ``(R, len(rows), len(cols))``.
    """
    out = [np.empty((len(w), len(b.rows), len(b.cols))) for b in batches]
    controls = list(dict.fromkeys(b.control for b in batches if b.control is not None))
    partialled = {z: sorted({c for b in batches if b.control == z for c in (*b.rows, *b.cols)}) for z in controls}
    at = {None: np.arange(len(columns))}  # column index → its row in the centred ranks (or in the residuals)
    for z, used in partialled.items():
        at[z] = np.zeros(len(columns), dtype=np.intp)
        at[z][used] = np.arange(len(used))
    picks = [(_run(at[b.control][b.rows]), _run(at[b.control][b.cols])) for b in batches]
    plain = any(b.control is None for b in batches)
    index = st.rank_index(columns)
    chunk = max(1, CHUNK_VALUES // columns.size)
    for start in range(0, len(w), chunk):
        wb = w[start:start + chunk, None, :]  # (r, 1, n)
        total = wb.sum(axis=-1, keepdims=True)
        centred = st.weighted_ranks_columns(columns, w[start:start + chunk], index)  # (r, K, n)
        centred -= (wb * centred).sum(axis=-1, keepdims=True) / total
        weighted = wb * centred
        blocks = {None: (centred, weighted, (weighted * centred).sum(axis=-1))} if plain else {}
        for z in controls:
            zc, used = centred[:, z:z + 1], _run(partialled[z])
            zz = (weighted[:, z:z + 1] * zc).sum(axis=-1, keepdims=True)
            cov = (weighted[:, used] * zc).sum(axis=-1, keepdims=True)
            beta = np.divide(cov, zz, out=np.zeros_like(cov), where=zz > 0)
            res = beta * zc
            np.subtract(centred[:, used], res, out=res)
            res -= (wb * res).sum(axis=-1, keepdims=True) / total
            wres = wb * res
            blocks[z] = (res, wres, (wres * res).sum(axis=-1))
        for batch, (rows, cols), dest in zip(batches, picks, out):
            a, wa, ss = blocks[batch.control]
            num = wa[:, rows] @ a[:, cols].transpose(0, 2, 1)
            denom = np.sqrt(ss[:, rows, None] * ss[:, None, cols])
            with np.errstate(invalid="ignore", divide="ignore"):
                dest[start:start + len(wb)] = np.where(denom > 0, num / denom, np.nan)
    return out


def _run(idx: np.ndarray | list[int]) -> slice | np.ndarray:
    """``idx`` as a slice where it is a run of consecutive indices (a view rather than a copy), else as is."""
    idx = np.asarray(idx, dtype=np.intp)
    if len(idx) and np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
        return slice(int(idx[0]), int(idx[0]) + len(idx))
    return idx


def _percentiles(boot: np.ndarray, values: np.ndarray, level: float) -> tuple[list[float | None], list[float | None]]:
    """Per column of ``boot`` (R, pairs): the percentile interval of its finite replicates (None where the value is
    NaN or no replicate is finite), as :func:`st.percentile_interval`."""
    usable = np.isfinite(values) & np.isfinite(boot).any(axis=0)
    lows: list[float | None] = [None] * len(values)
    highs: list[float | None] = [None] * len(values)
    if usable.any():
        cols = boot[:, usable]
        q = (np.quantile(cols, [(1 - level) / 2, (1 + level) / 2], axis=0) if np.isfinite(cols).all()
             else np.nanquantile(cols, [(1 - level) / 2, (1 + level) / 2], axis=0))
        for k, lo, hi in zip(np.flatnonzero(usable), q[0], q[1]):
            lows[k], highs[k] = float(lo), float(hi)
    return lows, highs


def _kendall(x: np.ndarray, y: np.ndarray, rx: np.ndarray, ry: np.ndarray) -> tuple[float, float | None, str]:
    """Kendall's τ-b with its two-sided p and the p's method (module docstring)."""
    n = len(x)
    if n > EXACT_MAX_MODELS:
        res = stats.kendalltau(x, y, method="asymptotic")
        return float(res.statistic), _finite_or_none(float(res.pvalue)), ASYMPTOTIC_NORMAL
    if len(np.unique(x)) == n and len(np.unique(y)) == n:
        res = stats.kendalltau(x, y, method="exact")
        return float(res.statistic), _finite_or_none(float(res.pvalue)), EXACT
    tau = float(stats.kendalltau(x, y).statistic)
    return tau, _permutation_p(rx, ry, _kendall_tau_b), EXACT_PERMUTATION


def _spearman_p(rho: float, rx: np.ndarray, ry: np.ndarray) -> tuple[float | None, str]:
    """Spearman's two-sided p and its method: exact over all pairings up to :data:`EXACT_MAX_MODELS` models,
    else scipy's t approximation (the p of ``scipy.stats.spearmanr``)."""
    n = len(rx)
    if n <= EXACT_MAX_MODELS:
        return _permutation_p(rx, ry, _pearson_rows), EXACT_PERMUTATION
    return _finite_or_none(float(stats.spearmanr(rx, ry).pvalue)), T_APPROXIMATION


def _permutation_p(rx: np.ndarray, ry: np.ndarray, statistic: Any) -> float | None:
    """Two-sided p of ``statistic(rx, ry)`` over all n! pairings (y's order permuted, x's fixed)."""
    res = stats.permutation_test((ry,), lambda b, axis=-1: statistic(rx, b), permutation_type="pairings",
                                 vectorized=True, n_resamples=np.inf, alternative="two-sided")
    return _finite_or_none(float(res.pvalue))


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson's r of the vector ``a`` (n,) with each row of ``b`` (..., n)."""
    a = a - a.mean()
    b = b - b.mean(axis=-1, keepdims=True)
    return (b @ a) / np.sqrt((a @ a) * (b * b).sum(axis=-1))


def _kendall_tau_b(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall's τ-b of the vector ``a`` (n,) with each row of ``b`` (..., n): concordant minus discordant
    pairs over √(untied pairs of a × untied pairs of b)."""
    i, j = np.triu_indices(len(a), k=1)
    sa = np.sign(a[i] - a[j])
    sb = np.sign(b[..., i] - b[..., j])
    return (sb @ sa) / np.sqrt((sa @ sa) * (sb * sb).sum(axis=-1))


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
