"""The analysis stage: does each per-sample indicator predict robustness on this model?

Inputs are the per-sample table and each column's declared role (``results.json`` →
``probes.<name>.columns``): ``indicator`` columns are tested against ``robustness``
outcomes (larger = more robust, e.g. the minimal adversarial ε) with Spearman's ρ, and
against ``attack_success`` outcomes (0/1) with AUROC, by default only at each norm's reference budget
(the audit's ε, science.md §4; :func:`auroc_outcomes`). Each test gets a percentile-bootstrap
95 % CI and a permutation (Spearman) or Mann–Whitney (AUROC) p-value, Benjamini–Hochberg
adjusted across all tests of the run; continuous tests also get the partial Spearman ρ
controlling for the ``confounder`` column (confidence p_top), because much raw curvature
signal is a confidence proxy (science.md §4). Tests use the clean-correct samples only: a
misclassified sample has minimal ε = 0 by definition and would dominate the ranks.
"""
from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np

from robaudit.analysis import stats as st
from robaudit.analysis.config import AnalysisConfig
from robaudit.attack_outcomes import success_budgets
from robaudit.threat_model import NORMS, same_eps

CORRECT_COLUMN = "clean/correct"


def column_roles(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Column name → metadata (label, role, unit, scale_invariant) for every finished probe."""
    roles: dict[str, dict[str, Any]] = {}
    for entry in results.get("probes", {}).values():
        if entry.get("status") == "ok":
            roles.update(entry.get("columns", {}))
    return roles


def analyse(results: dict[str, Any], columns: dict[str, np.ndarray], seed: int,
            config: AnalysisConfig = AnalysisConfig()) -> dict[str, Any] | None:
    """Test every (indicator, outcome) pair; ``None`` when there is no indicator or no outcome.

    When there are indicators and attack-success columns but ``auroc_budgets = "reference"`` leaves
    every one of them untested (each lies off its norm's reference budget) and no robustness column
    exists, the analysis is not silently absent: the result is ``{"skipped": reason, ...}``
    (:func:`_skipped_off_reference`).

    Args:
        results: the run's ``results.json`` content (for column roles).
        columns: the per-sample table, column name → length-N float array.
        seed: seeds the bootstrap and permutation draws.

    Returns:
        The ``analysis`` section of ``results.json``: method, tests (one per pair) and verdicts.
    """
    meta = column_roles(results)
    present = {name: m for name, m in meta.items() if name in columns}
    indicators = [c for c, m in present.items() if m["role"] == "indicator"]
    success = [c for c, m in present.items() if m["role"] == "attack_success"]
    reference, budgets = reference_budgets(results), success_budgets(results.get("probes") or {})
    tested = auroc_outcomes(success, budgets, reference, config.auroc_budgets)
    tested_norms = {budgets[c][0] for c in tested if c in budgets}
    outcomes = [c for c, m in present.items() if m["role"] == "robustness" or c in tested]
    if indicators and success and not outcomes:
        return _skipped_off_reference(success, budgets, reference, config)
    if not indicators or not outcomes:
        return None
    confounders = [c for c, m in present.items() if m["role"] == "confounder"]
    confounder = confounders[0] if confounders else None
    keep = columns[CORRECT_COLUMN] == 1 if CORRECT_COLUMN in columns else np.ones(len(next(iter(columns.values()))), bool)
    rng = np.random.default_rng(seed)

    pairs = [_Pair(indicator, outcome, confounder, present, columns, keep, config)
             for outcome in outcomes for indicator in indicators]
    tests = _run_tests(pairs, columns, rng, config)
    adjusted = st.benjamini_hochberg([t["p"] if t["p"] is not None else math.nan for t in tests])
    for test, p_adj in zip(tests, adjusted):
        test["p_adjusted"] = None if math.isnan(p_adj) else p_adj
        test["verdict"] = _verdict(test, present, config)
    return {
        "method": {
            "samples": "clean-correct samples" if CORRECT_COLUMN in columns else "all samples",
            "continuous": f"Spearman ρ, percentile bootstrap {config.n_bootstrap} resamples, "
                          f"two-sided permutation p ({config.n_permutations} permutations)",
            "binary": _binary_method(config.auroc_budgets,
                                     {n: e for n, e in reference.items() if n in tested_norms}),
            "partial": f"partial Spearman controlling for {present[confounder]['label']}" if confounder else None,
            "multiple_testing": "Benjamini–Hochberg",
            "alpha": config.alpha,
            "level": config.level,
        },
        "config": asdict(config),
        "reference_eps": reference,
        "untested_success": [c for c in success if c not in tested],
        "confounder": confounder,
        "labels": {c: present[c]["label"] for c in [*indicators, *outcomes, *confounders]},
        "tests": tests,
        "verdicts": [t["verdict"] for t in tests],
        "matrix": _matrix([*indicators, *confounders, *outcomes], columns, keep),
        "scatter": _scatter(indicators, outcomes, present, columns, keep, rng, config),
    }


def reference_budgets(results: dict[str, Any]) -> dict[str, float]:
    """Norm → its reference budget (pixel units) in the run's threat model (``results.json`` →
    ``threat_model.norms.<norm>.reference``, :attr:`robaudit.threat_model.NormBudget.reference`); norms
    without one (a results file from before the threat model was recorded) are absent."""
    norms = (results.get("threat_model") or {}).get("norms") or {}
    return {norm: float(norms[norm]["reference"]) for norm in NORMS
            if isinstance(norms.get(norm), dict) and norms[norm].get("reference") is not None}


def auroc_outcomes(success: list[str], budgets: dict[str, tuple[str, float]], reference: dict[str, float],
                   auroc_budgets: str) -> list[str]:
    """The attack-success columns tested with AUROC, in the order of ``success``.

    With ``"all"``, every column. With ``"reference"``, a column whose (norm, ε) its probe states is
    tested when ε is that norm's reference budget. A column is kept, too, when it cannot be placed: its
    probe states no budget (a plugin's own success column), or the run's threat model has no reference for
    its norm (an old results file). Leaving it out would drop an outcome without evidence that it lies off
    the audit's ε.

    Args:
        success: the ``attack_success`` columns of the per-sample table.
        budgets: column → (norm, ε), :func:`robaudit.attack_outcomes.success_budgets`.
        reference: norm → reference budget, :func:`reference_budgets`.
        auroc_budgets: ``"reference"`` or ``"all"`` (:class:`AnalysisConfig`).
    """
    if auroc_budgets == "all":
        return list(success)

    def at_reference(column: str) -> bool:
        if column not in budgets or budgets[column][0] not in reference:
            return True
        norm, eps = budgets[column]
        return same_eps(eps, reference[norm])

    return [c for c in success if at_reference(c)]


def _skipped_off_reference(success: list[str], budgets: dict[str, tuple[str, float]], reference: dict[str, float],
                           config: AnalysisConfig) -> dict[str, Any]:
    """The ``analysis`` section of a run whose only outcomes are success columns off the reference budgets.

    ``skipped`` is one clause (no closing full stop) saying why no test ran; the report shows it with the
    two remedies (a minimal-ε probe, or ``auroc-budgets = "all"``).
    """
    placed = sorted({budgets[c] for c in success if c in budgets})
    ran = ", ".join(_eps_text(n, e) for n, e in placed)
    refs = ", ".join(_eps_text(n, e) for n, e in reference.items() if n in {norm for norm, _ in placed})
    return {
        "skipped": (f"no outcome to test: every attack-success column is off its norm's reference budget "
                    f"({ran} run; reference {refs}), auroc-budgets = \"reference\" tests only the "
                    "reference budget, and no minimal-ε or distance probe ran"),
        "config": asdict(config),
        "reference_eps": reference,
        "untested_success": list(success),
    }


def _eps_text(norm: str, eps: float) -> str:
    return f"{'L∞' if norm == 'linf' else 'L2'} ε = {eps:.6g}"


def _binary_method(auroc_budgets: str, reference: dict[str, float]) -> str:
    """The AUROC line of ``method``; ``reference``: the budgets of the norms whose columns were tested."""
    where = ""
    if auroc_budgets == "reference":
        budgets = ", ".join(_eps_text(n, e) for n, e in reference.items())
        where = f" at each norm's reference budget ({budgets})" if budgets else " at each norm's reference budget"
    return f"AUROC{where}, stratified percentile bootstrap, two-sided Mann–Whitney U p"


def _matrix(names: list[str], columns: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, Any]:
    """Pairwise Spearman ρ between the analysed columns (on samples where both are finite).

    Pairs on the same samples are ranked once and correlated in one product of centred ranks
    (half-integers, so the sums are exact and each ρ equals :func:`st.spearman` of the pair).
    """
    from robaudit.analysis.cross_model import _pearson_matrix

    finite = {c: keep & np.isfinite(columns[c]) for c in names}
    groups: dict[bytes, list[tuple[int, int]]] = {}
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            groups.setdefault((finite[a] & finite[b]).tobytes(), []).append((i, j))
    rho: list[list[float | None]] = [[None] * len(names) for _ in names]
    for key, cells in groups.items():
        ok = np.frombuffer(key, dtype=bool)
        if ok.sum() < 3:
            continue
        used = sorted({i for i, _ in cells} | {j for _, j in cells})
        ranks = _rank_rows(np.stack([columns[names[c]][ok] for c in used]))
        at = {c: k for k, c in enumerate(used)}
        values = _pearson_matrix(ranks, ranks)
        for i, j in cells:
            value = float(values[at[i], at[j]])
            rho[i][j] = None if math.isnan(value) else round(value, 4)
    return {"columns": names, "rho": rho}


def _rank_rows(values: np.ndarray) -> np.ndarray:
    """Average ranks (``scipy.stats.rankdata``) of each row of ``values`` (K, n)."""
    from scipy import stats
    return stats.rankdata(values, axis=1)


def _scatter(indicators: list[str], outcomes: list[str], meta: dict[str, dict[str, Any]],
             columns: dict[str, np.ndarray], keep: np.ndarray, rng: np.random.Generator,
             config: AnalysisConfig) -> dict[str, Any] | None:
    """Points of each indicator against the first robustness outcome, sub-sampled for the report."""
    targets = [o for o in outcomes if meta[o]["role"] == "robustness"]
    if not targets:
        return None
    outcome = targets[0]
    series = {}
    for indicator in indicators:
        ok = np.flatnonzero(keep & np.isfinite(columns[indicator]) & np.isfinite(columns[outcome]))
        if len(ok) > config.max_points:
            ok = np.sort(rng.choice(ok, config.max_points, replace=False))
        series[indicator] = {"x": [float(v) for v in columns[indicator][ok]],
                             "y": [float(v) for v in columns[outcome][ok]]}
    return {"outcome": outcome, "series": series}


class _Pair:
    """One (indicator, outcome) test: its samples, and its test dict as it fills in."""

    def __init__(self, indicator: str, outcome: str, confounder: str | None, meta: dict[str, dict[str, Any]],
                 columns: dict[str, np.ndarray], keep: np.ndarray, config: AnalysisConfig) -> None:
        self.indicator, self.outcome = indicator, outcome
        ok = keep & np.isfinite(columns[indicator]) & np.isfinite(columns[outcome])
        self.confounder = confounder if confounder and confounder != indicator else None
        if self.confounder is not None:
            ok &= np.isfinite(columns[self.confounder])
        self.ok, self.key = ok, ok.tobytes()
        self.kind = "auroc" if meta[outcome]["role"] == "attack_success" else "spearman"
        self.test: dict[str, Any] = {"indicator": indicator, "outcome": outcome, "kind": self.kind,
                                     "n": int(ok.sum()), "estimate": None, "p": None, "partial": None}
        self.testable = self.test["n"] >= config.min_samples
        self.value = self.partial_value = math.nan  # the point estimates
        self.p = math.nan


class _Samples:
    """The pairs tested on one set of samples: each column's ranks (and rank residuals on the confounder)
    computed once for all of them."""

    def __init__(self, ok: np.ndarray, names: list[str], columns: dict[str, np.ndarray]) -> None:
        self.ok, self.names = ok, names
        self.values = {c: columns[c][ok] for c in names}
        ranks = _rank_rows(np.stack([self.values[c] for c in names]))
        self.ranks = dict(zip(names, ranks))
        self._residuals: dict[tuple[str, str], np.ndarray] = {}

    def residual(self, name: str, confounder: str) -> np.ndarray:
        """Ranks of ``name`` residualised on the confounder's ranks (for the partial Spearman ρ)."""
        if (name, confounder) not in self._residuals:
            self._residuals[name, confounder] = st._residualise(self.ranks[name], self.ranks[confounder])
        return self._residuals[name, confounder]


def _run_tests(pairs: list[_Pair], columns: dict[str, np.ndarray], rng: np.random.Generator,
               config: AnalysisConfig) -> list[dict[str, Any]]:
    """Every pair's estimate, interval, p and partial ρ, batched over the pairs that share their samples.

    The random draws are made in the order, and with the calls, of testing the pairs one by one
    (outcome-major): per pair, its stratified bootstrap multiplicities (AUROC, first use of those samples and
    that outcome) or its paired ones (Spearman, first use of those samples) then its permutations, then the
    paired multiplicities of a partial ρ. So the resamples, and every number, are those of the per-pair
    computation; the statistics of all pairs on the same draws are then computed together.
    """
    samples: dict[bytes, _Samples] = {}
    for key in dict.fromkeys(p.key for p in pairs if p.testable):
        used = [p for p in pairs if p.key == key]
        names = list(dict.fromkeys(c for p in used for c in (p.indicator, p.outcome, p.confounder) if c))
        samples[key] = _Samples(used[0].ok, names, columns)
    for pair in pairs:
        if pair.testable:
            _point_estimates(pair, samples[pair.key])

    paired: dict[bytes, np.ndarray] = {}
    stratified: dict[tuple[str, bytes], np.ndarray] = {}
    for pair in pairs:  # the draws, in the per-pair order
        if not pair.testable:
            continue
        group = samples[pair.key]
        if pair.kind == "auroc":
            label = group.values[pair.outcome].astype(bool)
            if label.any() and not label.all() and (pair.outcome, pair.key) not in stratified:
                stratified[pair.outcome, pair.key] = st.stratified_weights(label, config.n_bootstrap, rng)
        else:
            if pair.key not in paired:
                paired[pair.key] = st.bootstrap_weights(pair.test["n"], config.n_bootstrap, rng)
            pair.p = st.rank_permutation_p(group.ranks[pair.indicator], group.ranks[pair.outcome], rng,
                                           config.n_permutations)
        if pair.confounder is not None and not math.isnan(pair.partial_value) and pair.key not in paired:
            paired[pair.key] = st.bootstrap_weights(pair.test["n"], config.n_bootstrap, rng)

    _auroc_tests(pairs, samples, stratified, config)
    _spearman_intervals(pairs, samples, paired, config)
    for pair in pairs:
        if pair.testable:
            pair.test["p"] = None if math.isnan(pair.p) else pair.p
    return [pair.test for pair in pairs]


def _point_estimates(pair: _Pair, group: _Samples) -> None:
    """ρ or AUROC, and the partial ρ, from the ranks computed once per column (exact, as per pair)."""
    rx, ry = group.ranks[pair.indicator], group.ranks[pair.outcome]
    if pair.kind == "auroc":
        label = group.values[pair.outcome].astype(bool)
        n_pos, n_neg = int(label.sum()), int((~label).sum())
        if n_pos and n_neg:
            pair.value = float((rx[label].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
        pair.test["positives"] = n_pos
    else:
        pair.value = float(st._pearson_last_axis(rx, ry))
    if pair.confounder is not None:
        pair.partial_value = float(st._pearson_last_axis(group.residual(pair.indicator, pair.confounder),
                                                         group.residual(pair.outcome, pair.confounder)))


def _auroc_tests(pairs: list[_Pair], samples: dict[bytes, _Samples],
                 stratified: dict[tuple[str, bytes], np.ndarray], config: AnalysisConfig) -> None:
    """AUROC intervals and Mann–Whitney p of every AUROC pair, one batch per (outcome, samples)."""
    batches: dict[tuple[str, bytes], list[_Pair]] = {}
    for pair in pairs:
        if pair.testable and pair.kind == "auroc":
            batches.setdefault((pair.outcome, pair.key), []).append(pair)
    for (outcome, key), batch in batches.items():
        group = samples[key]
        label = group.values[outcome].astype(bool)
        scores = np.stack([group.values[p.indicator] for p in batch])
        for pair, p in zip(batch, st.auroc_p_columns(scores, label)):
            pair.p = float(p)
        if (outcome, key) not in stratified:  # one class is empty
            for pair in batch:
                pair.test["estimate"] = _interval(st.Interval(math.nan, math.nan, math.nan, config.level))
            continue
        boot = st.auroc_replicates_columns(scores, label, stratified[outcome, key])
        for pair, interval in zip(batch, _intervals(boot, [p.value for p in batch], config.level)):
            pair.test["estimate"] = interval


def _spearman_intervals(pairs: list[_Pair], samples: dict[bytes, _Samples], paired: dict[bytes, np.ndarray],
                        config: AnalysisConfig) -> None:
    """Bootstrap intervals of the Spearman ρ and partial ρ, one batch per set of samples (no interval where
    the value is NaN)."""
    for key, group in samples.items():
        mine = [p for p in pairs if p.key == key and p.testable]
        spear = [p for p in mine if p.kind == "spearman"]
        partial = [p for p in mine if p.confounder is not None]
        for pair in spear:
            pair.test["estimate"] = _interval(st.Interval(pair.value, math.nan, math.nan, config.level))
        for pair in partial:
            pair.test["partial"] = _interval(st.Interval(pair.partial_value, math.nan, math.nan, config.level))
        _fill([p for p in spear if not math.isnan(p.value)], [p for p in partial if not math.isnan(p.partial_value)],
              group, paired, config)


def _fill(spear: list[_Pair], partial: list[_Pair], group: _Samples, paired: dict[bytes, np.ndarray],
          config: AnalysisConfig) -> None:
    """Percentile intervals of ``spear``'s ρ and ``partial``'s partial ρ (controlling for their confounder),
    all from one batched bootstrap on the group's resamples (:func:`robaudit.analysis.cross_model.replicates`,
    the zoo's), so each column is ranked once per resample for both."""
    from robaudit.analysis.cross_model import Batch, replicates

    todo = [(batch, field) for batch, field in ((spear, "estimate"), (partial, "partial")) if batch]
    if not todo:
        return
    pairs = [p for batch, _ in todo for p in batch]
    names = list(dict.fromkeys([*(p.indicator for p in pairs), *(p.outcome for p in pairs),
                                *(p.confounder for p in pairs if p.confounder)]))  # so blocks take runs of rows
    at = {c: k for k, c in enumerate(names)}
    blocks = []
    for batch, field in todo:
        ind = list(dict.fromkeys(p.indicator for p in batch))
        out = list(dict.fromkeys(p.outcome for p in batch))
        control = at[batch[0].confounder] if field == "partial" else None
        blocks.append(Batch([at[c] for c in ind], [at[c] for c in out], control))
    boots = replicates(np.stack([group.values[c] for c in names]), paired[pairs[0].key], blocks)
    for (batch, field), block, boot in zip(todo, blocks, boots):
        cells = boot[:, [block.rows.index(at[p.indicator]) for p in batch],
                     [block.cols.index(at[p.outcome]) for p in batch]]
        values = [p.value if field == "estimate" else p.partial_value for p in batch]
        for pair, interval in zip(batch, _intervals(cells, values, config.level)):
            pair.test[field] = interval


def _intervals(boot: np.ndarray, values: list[float], level: float) -> list[dict[str, float | None]]:
    """The :func:`st.percentile_interval` of each column of ``boot`` (R, pairs) around ``values``, in one
    quantile call (:func:`robaudit.analysis.cross_model._percentiles`)."""
    from robaudit.analysis.cross_model import _percentiles

    lows, highs = _percentiles(boot, np.asarray(values, dtype=np.float64), level)
    nan = math.nan
    return [_interval(st.Interval(v, nan if lo is None else lo, nan if hi is None else hi, level))
            for v, lo, hi in zip(values, lows, highs)]


def _interval(iv: st.Interval) -> dict[str, float | None]:
    clean = lambda v: None if v is None or math.isnan(v) else float(v)  # noqa: E731
    return {"value": clean(iv.value), "low": clean(iv.low), "high": clean(iv.high), "level": iv.level}


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _verdict(test: dict[str, Any], meta: dict[str, dict[str, Any]], config: AnalysisConfig) -> str:
    ind, out = meta[test["indicator"]]["label"], meta[test["outcome"]]["label"]
    if test["estimate"] is None or test["estimate"]["value"] is None:
        return (f"On this model, too few usable samples (n = {test['n']}, need {config.min_samples}) "
                f"to tell whether {ind} predicts {out}.")
    est = test["estimate"]
    pct = round(100 * est["level"])
    if test["kind"] == "auroc":
        stat = f"AUROC = {est['value']:.2f}, {pct} % CI [{est['low']:.2f}, {est['high']:.2f}]"
        effect = est["value"] - 0.5
        excludes = est["low"] > 0.5 or est["high"] < 0.5
    else:
        stat = f"ρ = {est['value']:+.2f}, {pct} % CI [{est['low']:+.2f}, {est['high']:+.2f}]"
        effect = est["value"]
        excludes = est["low"] > 0 or est["high"] < 0
    stat += f", {_fmt_p(test['p_adjusted'])} after Benjamini–Hochberg, n = {test['n']}"
    partial = test.get("partial")
    if partial and partial["value"] is not None:
        stat += f"; after controlling for confidence, {partial['value']:+.2f}"
    elif partial:
        stat += "; it ranks the samples exactly as confidence does, so it adds nothing beyond confidence"
    significant = excludes and test["p_adjusted"] is not None and test["p_adjusted"] < config.alpha
    if not significant:
        return f"On this model, the evidence that {ind} predicts {out} is too weak ({stat})."
    if test["kind"] == "auroc":
        direction = "a larger" if effect > 0 else "a smaller"
        return f"On this model, {direction} {ind} predicts {out} ({stat})."
    return f"On this model, a larger {ind} predicts a {'larger' if effect > 0 else 'smaller'} {out} ({stat})."
