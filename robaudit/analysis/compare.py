"""Cross-model comparison: ``robaudit compare RUN_DIR... --out DIR``.

Asks Yao's Table 1/7 question of the user's own zoo: across models, does a model-level
indicator (λ1^θ, Hessian trace, the median of a per-sample indicator) rank the models the
way their robust accuracy does? With few models, only rank statistics with exact
p-values are honest (Kendall τ and Spearman ρ; exact up to 8 models: :mod:`robaudit.analysis.cross_model`,
which computes every test on matrices).

Model-level metrics are read from saved results only (no recomputation), and only where the
probe declares them (:func:`model_metrics`), so settings such as a batch size or a solver tolerance
are never correlated:

* robustness: the Estimates at each probe's ``outcome_keys`` (robust accuracy per ε);
* indicators: the values at each probe's ``indicator_keys`` (λ1 and the trace of *every* Hessian
  set, train and audit apart), and the median over clean-correct samples of every per-sample column
  whose role is ``indicator``;
* headline: the clean accuracy.

Indicators that change when logits are rescaled z → αz (which changes no decision) are
flagged in every cross-model claim, as are parameter-space curvatures, which are not
invariant to reparametrisation (Dinh et al.; Kamath et al.'s counter-example).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robaudit.analysis import cross_model
from robaudit.errors import UsageError
from robaudit.probes.base import Probe, summary_key_matches
from robaudit.probes.registry import ProbeRegistry
from robaudit.results import store
from robaudit.threat_model import eps_key

CURVE_PROBE_PREFIX = "attack."


@dataclass
class Run:
    """One audited model, read back from its results directory."""

    path: Path
    results: dict[str, Any]
    columns: dict[str, np.ndarray]
    ids: list[str] = field(default_factory=list)
    name: str = ""


@dataclass
class Metric:
    """A model-level number: ``values[i]`` for run i (NaN when absent)."""

    id: str
    label: str
    kind: str  # "robustness" | "indicator" | "headline"
    values: list[float] = field(default_factory=list)
    scale_invariant: bool | None = None
    reparametrisation_invariant: bool = True


def load_runs(paths: list[Path]) -> list[Run]:
    """Read each results directory; names are the directory names (made unique).

    Raises:
        UsageError: a directory given twice, or one without readable results (exit 2).
    """
    runs = []
    seen: dict[str, Path] = {}
    for path in paths:
        real = os.path.realpath(path)
        if real in seen:
            raise UsageError(f"{path} is given twice (also as {seen[real]}): a model compared with itself inflates "
                             "every rank correlation", fix="pass each results directory once")
        seen[real] = Path(path)
    for path in paths:
        results = store.read_results(path)
        ids, columns = store.read_per_sample(path)
        runs.append(Run(Path(path), results, columns, ids))
    names = [r.path.resolve().name for r in runs]
    for run, name in zip(runs, names):
        run.name = name if names.count(name) == 1 else str(run.path)
    return runs


def pick_run(run_dirs: tuple[Path, ...] | list[Path], which: str) -> tuple[str, dict[str, Any]]:
    """The compared run named by ``which`` (its directory as given, or its directory name), with its results.

    Raises:
        UsageError: ``which`` is not one of the compared runs.
    """
    for path in run_dirs:
        p = Path(path)
        if which in (str(path), p.name) or Path(which).resolve() == p.resolve():
            return p.resolve().name, store.read_results(p)
    raise UsageError(f"--loss-path: '{which}' is not one of the compared runs",
                     fix="name two of the RUN_DIRs given to compare (their paths or directory names)")


def _leaves(node: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every leaf of a summary with its key path; an Estimate is one leaf, list positions are keys "0", "1", ..."""
    if isinstance(node, dict) and "value" in node and "low" in node:
        return [(path, node)]
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, (*path, str(k)))]
    if isinstance(node, list):
        return [leaf for k, v in enumerate(node) for leaf in _leaves(v, (*path, str(k)))]
    return [(path, node)]


def probe_classes(names: set[str], registry: ProbeRegistry | None = None) -> dict[str, type[Probe]]:
    """The registered probe classes behind ``names`` (a probe no longer installed is left out: its
    summary values are then neither indicators nor outcomes)."""
    registry = registry or ProbeRegistry()
    found = {name: registry.get_or_skip(name) for name in sorted(names)}
    return {name: cls for name, cls in found.items() if cls is not None}


def model_metrics(runs: list[Run], registry: ProbeRegistry | None = None) -> list[Metric]:
    """The model-level metrics the cross-model tests use, present in at least one run, in a stable order.

    Only what the probes declare is read: the summary values matching a probe's ``indicator_keys``
    (one indicator per Hessian set: train and audit sets are separate) and ``outcome_keys`` (the
    robustness outcomes), the median over clean-correct samples of every per-sample column whose role is
    ``indicator``, and the clean accuracy. Settings, counts and diagnostics are never correlated.
    """
    found: dict[str, Metric] = {}
    classes = probe_classes({n for r in runs for n in r.results.get("probes", {})}, registry)

    def put(run_index: int, metric_id: str, label: str, kind: str, value: float, **extra: Any) -> None:
        metric = found.setdefault(metric_id, Metric(metric_id, label, kind, [math.nan] * len(runs), **extra))
        metric.values[run_index] = value

    for i, run in enumerate(runs):
        probes = run.results.get("probes", {})
        for name, entry in probes.items():
            if entry.get("status") != "ok":
                continue
            where = lambda path, name=name: ("probes", name, "summary", *path)  # noqa: E731
            cls = classes.get(name)
            indicator_keys = getattr(cls, "indicator_keys", ())
            outcome_keys = getattr(cls, "outcome_keys", ())
            for path, leaf in _leaves(entry.get("summary", {})):
                label = f"{name} {' › '.join(path)}"
                if name == "clean" and path == ("accuracy",):
                    put(i, "clean.accuracy", "clean accuracy", "headline", _num(leaf, run, where(path)))
                elif isinstance(leaf, dict) and any(summary_key_matches(k, path) for k in outcome_keys):
                    put(i, label, label, "robustness", _num(leaf, run, where(path)))
                elif any(summary_key_matches(k, path) for k in indicator_keys) and (
                        _is_number(leaf) or isinstance(leaf, dict)):
                    value = _num(leaf, run, where(path)) if isinstance(leaf, dict) else float(leaf)
                    put(i, label, label, "indicator", value,
                        reparametrisation_invariant=not name.startswith("curvature."))
            columns = entry.get("columns", {})
            if not isinstance(columns, dict) or not all(isinstance(m, dict) for m in columns.values()):
                raise _bad_value(run, ("probes", name, "columns"), columns, "an object of column records")
            for column, meta in columns.items():
                if meta.get("role") == "indicator" and column in run.columns:
                    values = run.columns[column]
                    if "clean/correct" in run.columns:
                        values = values[run.columns["clean/correct"] == 1]
                    values = values[np.isfinite(values)]
                    if len(values):
                        put(i, f"median {column}", f"median {meta['label']}", "indicator", float(np.median(values)),
                            scale_invariant=meta.get("scale_invariant"))
    order = {"headline": 0, "robustness": 1, "indicator": 2}
    return sorted(found.values(), key=lambda m: (order[m.kind], m.id))


def _num(leaf: Any, run: Run, where: tuple[str, ...]) -> float:
    """A summary leaf (a number or an estimate) as a float; ``null`` (how robaudit stores NaN) is NaN.

    Raises:
        UsageError: anything else (a string, a boolean): the file was not written by robaudit as it stands.
    """
    value = leaf.get("value") if isinstance(leaf, dict) else leaf
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad_value(run, where, value, "a number or null")
    return float(value)


def _bad_value(run: Run, where: tuple[Any, ...], value: Any, want: str) -> UsageError:
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "…"
    return UsageError(f"{run.path / store.RESULTS_FILE}: {' › '.join(map(str, where))} is {shown}, not {want}",
                      fix="re-run the audit that wrote it ('robaudit run ... --out DIR') to regenerate it")


def _is_number(leaf: Any) -> bool:
    return isinstance(leaf, (int, float)) and not isinstance(leaf, bool) and math.isfinite(float(leaf))


def robust_curves(runs: list[Run]) -> dict[str, list[dict[str, Any]]]:
    """Per attack probe: for each run, robust accuracy vs ε (from summaries keyed by ε)."""
    curves: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        for name, entry in run.results.get("probes", {}).items():
            summary = entry.get("summary", {}) if entry.get("status") == "ok" else {}
            acc = summary.get("robust_accuracy")
            if not name.startswith(CURVE_PROBE_PREFIX) or not isinstance(acc, dict):
                continue
            points = []
            budgets = summary.get("eps", [])
            if not isinstance(budgets, list) or not all(_is_number(e) for e in budgets):
                raise _bad_value(run, ("probes", name, "summary", "eps"), budgets, "a list of finite numbers")
            for eps in budgets:  # the budgets as numbers; the summary's keys are their eps_key
                est = acc.get(eps_key(eps))
                value = _num(est, run, ("probes", name, "summary", "robust_accuracy", eps_key(eps))) \
                    if isinstance(est, dict) else math.nan
                if not math.isnan(value):
                    points.append({"eps": eps, "value": est["value"], "low": est.get("low"), "high": est.get("high")})
            if points:
                curves.setdefault(name, []).append({"run": run.name, "points": sorted(points, key=lambda p: p["eps"])})
    return curves


def compare(paths: list[Path], seed: int = 0) -> dict[str, Any]:
    """The comparison of the runs in ``paths`` (at least two), as stored in ``compare.json``.

    Raises:
        UsageError: fewer than two runs, or a directory without results.
    """
    if len(paths) < 2:
        raise UsageError("compare needs at least two results directories", fix="pass two or more RUN_DIRs")
    return compare_runs(load_runs(paths), seed)


def compare_runs(runs: list[Run], seed: int = 0, controls: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """The cross-model analysis of loaded runs (``robaudit compare`` and ``robaudit zoo`` both use it).

    Each (indicator, outcome) row has Kendall τ and Spearman ρ with two-sided p (and the method each p came
    from: :mod:`robaudit.analysis.cross_model`), Spearman's paired bootstrap 95 % interval (models resampled),
    and the partial Spearman ρ (with its bootstrap interval) controlling for the clean accuracy and for each of
    ``controls`` (name → one value per run, e.g. the parameter count), where at least four models have the
    control and it varies.
    """
    metrics = model_metrics(runs)
    clean = next((m.values for m in metrics if m.id == "clean.accuracy"), [math.nan] * len(runs))
    all_controls = {name: np.asarray(v, dtype=np.float64) for name, v in {"clean accuracy": clean, **(controls or {})}.items()}
    indicators = [m for m in metrics if m.kind == "indicator"]
    outcomes = [m for m in metrics if m.kind == "robustness"]
    matrix = lambda ms: np.array([m.values for m in ms], dtype=np.float64).reshape(len(ms), len(runs)).T  # noqa: E731
    tests = cross_model.correlate(matrix(indicators), matrix(outcomes), all_controls, np.random.default_rng(seed))
    correlations = [{"indicator": indicator.id, "outcome": outcome.id, **tests[i][o], "caveats": _caveats(indicator)}
                    for i, indicator in enumerate(indicators) for o, outcome in enumerate(outcomes)]
    return {
        "runs": [{"name": r.name, "path": str(r.path), "model": _section(r, "model").get("source"),
                  "sha256": _section(r, "model").get("checkpoint_sha256"), "dataset": _section(r, "data").get("source"),
                  "n_used": _section(r, "data").get("n_used")} for r in runs],
        "metrics": [{"id": m.id, "label": m.label, "kind": m.kind, "values": [None if math.isnan(v) else v for v in m.values],
                     "scale_invariant": m.scale_invariant, "reparametrisation_invariant": m.reparametrisation_invariant}
                    for m in metrics],
        "correlations": correlations,
        "curves": robust_curves(runs),
        "warnings": _warnings(runs),
        "method": cross_model.method_text(),
        "exact_max_models": cross_model.EXACT_MAX_MODELS,
    }


def _section(run: Run, key: str) -> dict[str, Any]:
    """A top-level object of the run's results; ``{}`` when a partial or older file lacks it."""
    value = run.results.get(key)
    return value if isinstance(value, dict) else {}


def _caveats(metric: Metric) -> list[str]:
    out = []
    if metric.scale_invariant is False:
        out.append("changes when logits are rescaled (z → αz) although no decision changes: "
                   "models with different logit scales are not comparable on it")
    if not metric.reparametrisation_invariant:
        out.append("parameter-space curvature is not invariant to reparametrisation (Kamath et al.; Dinh et al.)")
    return out


def _warnings(runs: list[Run]) -> list[str]:
    out = []
    datasets = {str(_section(r, "data").get("source")) for r in runs}
    if len(datasets) > 1:
        out.append(f"the runs audit different datasets ({', '.join(sorted(datasets))}): robust accuracies are not comparable")
    budgets = {json.dumps(_section(r, "threat_model").get("norms"), sort_keys=True, default=str) for r in runs}
    if len(budgets) > 1:
        out.append("the runs have different threat models (ε lists per norm; --eps differs): a robust accuracy at one ε "
                   "also counts samples broken at the smaller ε of its own list, so compare them with care")
    if len({tuple(r.ids) for r in runs}) > 1:
        out.append("the runs audit different samples (split, --n-samples or seed differ): "
                   "differences between models include sampling noise")
    if len(runs) < 4:
        out.append(f"with {len(runs)} models even a perfect rank correlation has a permutation p of at least "
                   f"{2 / math.factorial(len(runs)):.2f}: treat cross-model correlations as descriptive")
    return out
