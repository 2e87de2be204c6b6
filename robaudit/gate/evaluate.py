"""Evaluate gate rules against a results directory (and a baseline): no recomputation.

Each rule ends ``passed``, ``failed``, ``skipped`` (an ``optional`` rule whose metric is
missing) or ``error``: a value the rule reads, in the candidate or the baseline, is not a finite
number (``null`` — how robaudit stores NaN and ±∞ —, a boolean, a string, or a per-sample column
without a finite cell), so the rule cannot be decided. The gate fails closed: it never passes a
rule on a value it cannot compare, and an ``optional`` rule is skipped only when its metric is
absent, never when it is non-finite.

Problems with the rules themselves — an unknown metric path, a path that ends at a table, no
direction for a bound — raise :class:`~robaudit.gate.rules.GateRulesError` (exit 2) before
anything is written. The gate's status: ``error`` when any rule errs (exit 2, written to every
output like any verdict), else ``failed`` when any rule failed (exit 1), ``nothing_to_gate`` when
no rule was checked (exit 5), else ``passed`` (exit 0).
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robaudit import __version__
from robaudit.errors import RobauditError, UsageError, did_you_mean
from robaudit.exitcodes import ExitCode
from robaudit.gate import stats
from robaudit.gate.baseline import Run, check_comparable, describe_baseline
from robaudit.gate.paths import (
    PathError,
    describe_node,
    direction_from_metadata,
    format_path,
    is_estimate,
    resolve,
    stored_budgets,
)
from robaudit.gate.rules import FlagRule, GateRules, GateRulesError, MetricRule, Rule
from robaudit.results import store
from robaudit.results.serialise import to_jsonable

log = logging.getLogger("robaudit.gate")

PROPORTION_METHODS = frozenset({"wilson", "clopper_pearson", "clopper-pearson", "exact", "binomial", "jeffreys",
                                "agresti_coull", "agresti-coull"})
"""Estimate methods that mark a proportion (k of n): the two-proportion and Wilson tests apply."""
SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}


class NothingToGateError(RobauditError):
    """The results directory holds no finished probe: there is nothing to gate (exit 5)."""

    exit_code = ExitCode.NOTHING_RAN


class GateValueError(UsageError):
    """A rule read a value that is not a finite number (exit 2); raised by the CLI after the
    outputs, which record the rule as an error, are written."""


@dataclass
class Metric:
    """One metric read from a run.

    Attributes:
        value: the number compared (an estimate's ``value``, or the statistic of a per-sample column).
        n: samples behind it, when known.
        successes: k of a proportion k/n, when the metric is one.
        samples: the per-sample values (NaN dropped) for per-sample rules.
        ids: their sample ids.
        keys: the keys actually taken below ``probes › NAME › summary`` (for direction lookup).
    """

    value: float
    n: int | None = None
    successes: int | None = None
    samples: np.ndarray | None = None
    ids: list[str] | None = None
    keys: tuple[Any, ...] = ()


class _Missing(Exception):
    """The metric is absent from a run (the rule fails, or is skipped when optional)."""


class _BadValue(Exception):
    """The metric is present but not a finite number (the rule is an error, optional or not)."""


FIX_BAD_VALUE = ("find out why the audit stored a non-number there (re-run it with --debug), or regenerate the file "
                 "with 'robaudit run'; the gate never passes a rule on a value it cannot compare")


@dataclass
class RuleOutcome:
    """The verdict on one rule, with the numbers behind it."""

    rule: Rule
    status: str
    message: str
    verdict: str = ""
    value: float | None = None
    baseline_value: float | None = None
    higher_is_better: bool | None = None
    direction_source: str | None = None
    worse: float | None = None
    noise: stats.NoiseResult | None = None
    matched_flags: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The outcome as stored in ``results.json`` ``gate.rules``."""
        r = self.rule
        out: dict[str, Any] = {
            "id": r.id, "kind": r.kind, "target": r.target, "description": r.description,
            "status": self.status, "verdict": self.verdict, "message": self.message, "optional": r.optional,
        }
        if isinstance(r, MetricRule):
            out.update(metric=list(r.metric) if r.metric is not None else None,
                       per_sample=list(r.per_sample) if r.per_sample is not None else None,
                       statistic=r.statistic if r.per_sample is not None else None,
                       limit=r.limit, value=self.value, baseline_value=self.baseline_value,
                       higher_is_better=self.higher_is_better, direction_source=self.direction_source,
                       worse=self.worse, noise=self.noise.to_json() if self.noise else None)
        else:
            out.update(flags=list(r.flags), min_severity=r.min_severity, sources=list(r.sources),
                       new_only=r.new_only, matched_flags=self.matched_flags)
        return to_jsonable(out)


@dataclass
class GateOutcome:
    """The gate's verdict on one results directory.

    Attributes:
        status: ``passed``, ``failed`` or ``nothing_to_gate``.
        exit_code: the CLI exit code it maps to.
        outcomes: one per rule, in rule order.
        rules: the rules evaluated.
        results_dir: the candidate results directory.
        baseline: the baseline's identity and hashes (see :func:`describe_baseline`), or None.
        mismatches: differences from the baseline that were accepted, by kind.
        evaluated: when (UTC, ISO 8601).
    """

    status: str
    exit_code: ExitCode
    outcomes: list[RuleOutcome]
    rules: GateRules
    results_dir: Path
    baseline: dict[str, Any] | None
    mismatches: dict[str, str]
    evaluated: str

    def counts(self) -> dict[str, int]:
        """Rules by status (``passed``, ``failed``, ``skipped``, ``error``), plus the total."""
        out = {"total": len(self.outcomes), "passed": 0, "failed": 0, "skipped": 0, "error": 0}
        for o in self.outcomes:
            out[o.status] += 1
        return out

    def error(self) -> GateValueError | None:
        """The one-line error of a gate whose status is ``error`` (the first rule in error), else None."""
        errors = [o for o in self.outcomes if o.status == "error"]
        if not errors:
            return None
        more = f" (and {len(errors) - 1} more rule(s) in error; see the table)" if len(errors) > 1 else ""
        return GateValueError(f"gate rule '{errors[0].rule.id}': {errors[0].message}{more}", fix=FIX_BAD_VALUE)

    def record(self) -> dict[str, Any]:
        """The ``gate`` entry of ``results.json``."""
        return to_jsonable({
            "status": self.status,
            "exit_code": int(self.exit_code),
            "evaluated": self.evaluated,
            "robaudit_version": __version__,
            "rules_source": self.rules.source,
            "rules_sha256": self.rules.sha256,
            "level": self.rules.level,
            "baseline": self.baseline,
            "mismatches": self.mismatches,
            "allowed_mismatches": sorted(self.rules.allow_mismatch),
            "counts": self.counts(),
            "rules": [o.to_json() for o in self.outcomes],
        })


def format_value(x: float | None) -> str:
    """A number with 4 significant digits; ``—`` for missing, ``∞`` for infinite."""
    if x is None:
        return "—"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x + 0.0:.4g}"  # + 0.0 turns −0.0 into 0.0


def evaluate_gate(candidate: Run, rules: GateRules, baseline: Run | None = None,
                  known_probes: Iterable[str] = ()) -> GateOutcome:
    """Evaluate every rule on ``candidate`` (and ``baseline`` for relative rules).

    Args:
        candidate: the results to gate.
        rules: checked rules (see :func:`robaudit.gate.rules.load_rules`).
        baseline: the baseline results, required when any rule is relative.
        known_probes: registered probe names: a rule on one of these that did not run is a
            *missing* metric (rule fails), while an unknown name is a rules error with a suggestion.

    Raises:
        GateRulesError: a rules problem found against the data (exit 2).
        BaselineMismatchError: the baseline is not comparable (exit 2).
        NothingToGateError: no probe finished in ``candidate`` (exit 5).
    """
    probes = candidate.results.get("probes", {})
    if rules.rules and not any(p.get("status") == "ok" for p in probes.values()):
        raise NothingToGateError(f"nothing to gate: no probe finished in {candidate.path}",
                                 fix="run the audit again and check its errors")
    if rules.needs_baseline and baseline is None:
        first = next(r for r in rules.rules if r.relative)
        raise GateRulesError(f"rule '{first.id}' compares with a baseline, but no baseline was given",
                             fix="pass --baseline DIR, or set baseline = \"DIR\" in the rules")
    mismatches: dict[str, str] = {}
    baseline_info = None
    if baseline is not None:
        rel_probes = {p for r in rules.rules if r.relative and (p := r.probe()) is not None}
        mismatches = check_comparable(candidate, baseline, rel_probes, rules.allow_mismatch)
        baseline_info = describe_baseline(baseline)
    paired = baseline is not None and bool(candidate.ids) and set(candidate.ids) == set(baseline.ids)
    known = set(known_probes)
    outcomes = []
    for rule in rules.rules:
        if isinstance(rule, FlagRule):
            outcomes.append(_evaluate_flags(rule, candidate, baseline))
        else:
            outcomes.append(_evaluate_metric(rule, rules, candidate, baseline, known, paired))
    statuses = [o.status for o in outcomes]
    if "error" in statuses:
        status, code = "error", ExitCode.USAGE
    elif "failed" in statuses:
        status, code = "failed", ExitCode.GATE_FAILED
    elif "passed" not in statuses:
        status, code = "nothing_to_gate", ExitCode.NOTHING_RAN
    else:
        status, code = "passed", ExitCode.OK
    return GateOutcome(status, code, outcomes, rules, candidate.path, baseline_info, mismatches,
                       dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))


# ---- reading a metric ----

def _probe_entry(run: Run, name: str, rule: MetricRule, role: str, known: set[str],
                 other: Run | None) -> dict[str, Any]:
    probes = run.results.get("probes", {})
    if name not in probes:
        elsewhere = other is not None and name in other.results.get("probes", {})
        if role == "candidate" and not elsewhere and name not in known and not rule.optional:
            choices = sorted(set(probes) | known)
            hint = did_you_mean(name, choices)
            raise GateRulesError(
                f"rule '{rule.id}': unknown probe '{name}' in {rule.target}" + (f"; {hint}" if hint else ""),
                fix=f"use a probe that ran ({', '.join(sorted(probes)) or 'none'}) or see 'robaudit probes'")
        ran = ", ".join(sorted(probes)) or "none"
        raise _Missing(f"probe '{name}' did not run in the {role} audit (it ran: {ran})")
    entry = probes[name]
    if entry.get("status") != "ok":
        why = (entry.get("error") or {}).get("message", "")
        raise _Missing(f"probe '{name}' {entry.get('status')} in the {role} audit" + (f": {why}" if why else ""))
    return entry


def _read_metric(run: Run, rule: MetricRule, role: str, known: set[str], other: Run | None) -> Metric:
    if rule.per_sample is not None:
        probe, key = rule.per_sample
        _probe_entry(run, probe, rule, role, known, other)
        column = f"{probe}/{key}"
        recorded = (run.results.get("per_sample") or {}).get("columns") or []
        if column not in run.columns and not run.ids and column in recorded:  # recorded, but the table is gone
            raise UsageError(f"the {role}'s results.json records the per-sample column {column}, but "
                             f"{run.path / store.PER_SAMPLE_FILE} is missing or empty",
                             fix="restore per_sample.csv beside results.json (commit both for a baseline), or "
                                 "re-run the audit")
        if column not in run.columns:
            mine = [c.split("/", 1)[1] for c in run.columns if c.startswith(f"{probe}/")]
            if role == "candidate" and not rule.optional:
                hint = did_you_mean(key, mine)
                raise GateRulesError(
                    f"rule '{rule.id}': probe '{probe}' has no per-sample column '{key}'" + (f"; {hint}" if hint else ""),
                    fix=f"use one of its per-sample keys: {', '.join(mine) or 'none'}")
            raise _Missing(f"the {role} audit has no per-sample column {column}")
        values = run.columns[column]
        keep = np.isfinite(values)
        if not keep.any():
            raise _BadValue(f"the {role}'s per-sample column {column} has no finite value "
                            f"({len(values)} cell(s), all empty, NaN or infinite)")
        samples = values[keep]
        ids = [i for i, k in zip(run.ids, keep) if k]
        value = float(stats.STATISTICS[rule.statistic](samples))
        return Metric(value=value, n=int(keep.sum()), samples=samples, ids=ids, keys=(key,))

    path = rule.metric or ()
    root: Any = run.results
    offset = 0
    if len(path) >= 2 and path[0] == "probes" and isinstance(path[1], str):
        root = _probe_entry(run, path[1], rule, role, known, other)
        offset = 2
    try:
        node, taken = resolve(root, tuple(path[offset:]), stored_budgets(run.results))
    except PathError as exc:
        where = format_path(tuple(path[:offset]) + exc.path[: exc.depth])
        reason = f"{exc.reason} under {where}" + (f"; {exc.suggestion}" if exc.suggestion else "")
        if role == "candidate" and not rule.optional:
            raise GateRulesError(f"rule '{rule.id}': unknown metric path {format_path(path)}: {reason}",
                                 fix=f"use one of: {exc.choices()}") from None
        raise _Missing(f"the {role} audit has no {format_path(path)} ({reason})") from None
    keys = taken[1:] if offset == 2 and taken and taken[0] == "summary" else ()
    if is_estimate(node):
        value = _finite(node.get("value"), role, (*path, "value"))
        n = node.get("n") if isinstance(node.get("n"), int) and not isinstance(node.get("n"), bool) else None
        n = n if n is not None and n > 0 else None
        successes = None
        if n and str(node.get("method", "")).lower() in PROPORTION_METHODS and 0 <= value <= 1:
            k = round(value * n)
            if abs(value * n - k) < 1e-6 * max(1, n):
                successes = int(k)
        return Metric(value=value, n=n, successes=successes, keys=keys)
    if role == "baseline" or not isinstance(node, (dict, list)):  # a path to a table is a rules error
        return Metric(value=_finite(node, role, tuple(path)), keys=keys)
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        extra = ""
        if isinstance(node, dict):
            extra = f"; its keys: {', '.join(list(map(str, node))[:12])}"
        elif isinstance(node, list):
            extra = f"; pick an element with an index or a {{key = value}} selector ({len(node)} elements)"
        raise GateRulesError(f"rule '{rule.id}': {format_path(path)} is {describe_node(node)}, not a number{extra}",
                             fix="extend the metric path down to a number or an estimate")
    return Metric(value=float(node), keys=keys)


def _finite(value: Any, role: str, where: tuple[Any, ...]) -> float:
    """``value`` as a float, or :class:`_BadValue` naming the run, the path and what is there."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise _BadValue(f"the {role}'s {format_path(where)} is {describe_value(value)}, not a finite number")


def describe_value(value: Any) -> str:
    """A value that should have been a finite number, for messages: ``NaN``, ``null (…)``, ``the string '0.9'``."""
    if value is None:
        return "null (robaudit stores NaN and ±∞ as null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, (int, float)) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, str):
        return f"the string {(value if len(value) <= 40 else value[:37] + '…')!r}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return f"a table (keys: {', '.join(list(map(str, value))[:8])})"
    return describe_node(value)


def _direction(rule: MetricRule, run: Run, metric: Metric) -> tuple[bool, str]:
    if rule.higher_is_better is not None:
        return rule.higher_is_better, "rule"
    probe = rule.probe()
    path = rule.metric or ()
    entry = run.results.get("probes", {}).get(probe or "", {})
    in_summary = rule.per_sample is not None or (len(path) > 2 and path[0] == "probes" and path[2] == "summary")
    found = direction_from_metadata(entry.get("higher_is_better", {}), metric.keys) if probe and in_summary else None
    declared = _declared_direction(probe, entry.get("version"), metric.keys) if probe and in_summary else None
    if declared is not None and found is not None and declared != found:  # the mirror was edited: never trust it
        word = {True: "higher", False: "lower"}
        raise UsageError(f"rule '{rule.id}': the candidate's results.json says {word[found]} is better for "
                         f"{rule.target}, but probe '{probe}' declares {word[declared]} is better: the file's "
                         "higher_is_better was edited", fix="regenerate the results with 'robaudit run', or state "
                                                           "the direction in the rule (higher-is-better = true/false)")
    if found is None and declared is not None:
        return declared, f"{probe}'s declaration"
    if found is None:
        whose = f"probe '{probe}' declares no higher-is-better for it" if probe else "it is not a probe summary value"
        raise GateRulesError(f"rule '{rule.id}': no direction for {rule.target}: {whose}",
                             fix="add higher-is-better = true (or false) to the rule")
    return found, f"{probe}'s metadata"


def _declared_direction(probe: str, version: Any, keys: tuple[Any, ...]) -> bool | None:
    """Higher-is-better for ``keys`` as the registered probe class declares it (None: not registered, silent, or
    registered at another version than the one that wrote the results: a version is bumped when the meaning of
    a number changes, so another version's declaration says nothing about these numbers)."""
    from robaudit.probes.registry import ProbeRegistry

    try:
        cls = ProbeRegistry().get_or_skip(probe)
    except Exception as exc:  # a broken plugin must not stop the gate; the results' mirror is used then
        log.debug("probe registry unavailable to the gate: %s", exc)
        return None
    if cls is None or str(getattr(cls, "version", "")) != str(version):
        return None
    nested: dict[str, Any] = {}
    for path, better in (getattr(cls, "higher_is_better", None) or {}).items():
        node = nested
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = better
    return direction_from_metadata(nested, keys)


# ---- evaluating ----

def _evaluate_metric(rule: MetricRule, rules: GateRules, candidate: Run, baseline: Run | None, known: set[str],
                     paired: bool) -> RuleOutcome:
    errors: list[str] = []
    missing: list[str] = []
    metrics: dict[str, Metric] = {}
    reads = [("candidate", candidate, baseline)] + ([("baseline", baseline, candidate)] if rule.relative and baseline else [])
    for role, run, other in reads:  # read both, so that a bad value in either is never hidden by a missing one
        try:
            metrics[role] = _read_metric(run, rule, role, known, other)
        except _BadValue as exc:
            errors.append(str(exc))
        except _Missing as exc:
            missing.append(str(exc))
    if errors:
        return RuleOutcome(rule, "error", "; ".join(errors), verdict="not a finite number")
    if missing:
        status = "skipped" if rule.optional else "failed"
        suffix = " (optional rule: skipped)" if rule.optional else " (mark the rule optional = true to allow this)"
        return RuleOutcome(rule, status, f"missing metric: {missing[0]}{suffix}", verdict="missing metric")
    cand, base = metrics["candidate"], metrics.get("baseline")
    hib, source = _direction(rule, candidate, cand)
    s = 1.0 if hib else -1.0
    better = "higher" if hib else "lower"
    v = cand.value
    vb = base.value if base is not None else None

    if rule.kind == "threshold":
        worse = s * (rule.limit - v)
        limit = 0.0
        op = "≥" if hib else "≤"
        describe = f"{format_value(v)} vs bound {op} {rule.limit:g}"
    elif rule.kind == "max_regression":
        assert vb is not None  # relative rules always read the baseline (checked in evaluate_gate)
        worse = s * (vb - v)
        limit = rule.limit
        describe = (f"{format_value(v)} vs baseline {format_value(vb)}: " + (f"{format_value(worse)} worse" if worse > 0 else "no worse")
                    + f", allowed {rule.limit:g}")
    else:
        assert vb is not None
        if vb <= 0 or v < 0:
            raise GateRulesError(f"rule '{rule.id}': max-ratio needs positive values, got {format_value(v)} "
                                 f"(baseline {format_value(vb)}) for {rule.target}",
                                 fix="use max-regression for metrics that can be zero or negative")
        worse = v / vb if not hib else (vb / v if v > 0 else math.inf)
        limit = rule.limit
        describe = f"{format_value(v)} vs baseline {format_value(vb)}: ratio {format_value(worse)} (worse direction), allowed {rule.limit:g}×"
    if math.isnan(worse):  # cannot happen with finite inputs; never let a NaN comparison pass
        return RuleOutcome(rule, "error", f"{describe}: the comparison is not a number", verdict="not a finite number",
                           value=v, baseline_value=vb, higher_is_better=hib, direction_source=source)
    point_fail = worse > limit + 1e-12 * max(1.0, abs(limit))

    noise = _noise_test(rule, rules, cand, base, s, worse, limit, paired)
    direction_note = f"{better} is better, from {source}"
    if not point_fail:
        status, short, verdict = "passed", "within the bound", "within the bound"
    elif noise is None:
        status, short, verdict = "failed", "beyond the bound", "beyond the bound"
    elif noise.significant:
        status, short = "failed", "beyond the bound, significantly"
        verdict = f"beyond the bound, significantly ({describe_noise(rule, noise, hib)})"
    else:
        status, short = "passed", "beyond the bound but within noise"
        verdict = f"beyond the bound but within sampling noise ({describe_noise(rule, noise, hib)})"
    message = f"{describe}; {verdict} ({direction_note})"
    return RuleOutcome(rule, status, message, verdict=short, value=v, baseline_value=vb, higher_is_better=hib,
                       direction_source=source, worse=worse, noise=noise)


def describe_noise(rule: MetricRule, noise: stats.NoiseResult, higher_is_better: bool | None, *,
                   short: bool = False) -> str:
    """The noise test in the rule's own terms: a p-value, or a one-sided bound of the value,
    the regression or the ratio (``short``: a table cell)."""
    if noise.method == "two-proportion":
        if short:
            return f"two-proportion p = {format_value(noise.p_value)}"
        return (f"two-proportion score test z = {format_value(noise.statistic)}, p = {format_value(noise.p_value)}, "
                f"α = {noise.level:g}")
    conf = f"{round(100 * (1 - noise.level), 1):g} %"
    bound = noise.bound if noise.bound is not None else math.nan
    if rule.kind == "threshold":
        if higher_is_better:
            what, value = "upper bound", rule.limit - bound
        else:
            what, value = "lower bound", rule.limit + bound
        text = f"{conf} {what} {format_value(value)}"
    elif rule.kind == "max_regression":
        text = f"regression ≥ {format_value(bound)} at {conf}"
    else:
        text = f"ratio ≥ {format_value(bound)} at {conf}"
    return f"{noise.method}: {text}" if short else f"{noise.method}, one-sided: {text}"


def _noise_test(rule: MetricRule, rules: GateRules, cand: Metric, base: Metric | None, s: float, worse: float,
                limit: float, paired: bool) -> stats.NoiseResult | None:
    method = rule.noise
    proportions = cand.successes is not None and (base is None or base.successes is not None)
    if method == "auto":
        if not rule.relative:
            return None
        if rule.per_sample is not None:
            method = "bootstrap"
        elif proportions and rule.kind == "max_regression":
            method = "two_proportion"
        else:
            return None
    if method == "none":
        return None
    if method in ("two_proportion", "wilson"):
        if not proportions:
            raise GateRulesError(
                f"rule '{rule.id}': noise = {method.replace('_', '-')} needs an accuracy-like estimate (k of n, "
                f"with a Wilson interval) but {rule.target} is not one",
                fix="remove 'noise' from the rule, or use noise = \"bootstrap\" with a per-sample rule")
        assert cand.successes is not None and cand.n is not None
        k_c, n_c = cand.successes, cand.n
        if s < 0:  # lower is better: test the complement, for which higher is better
            k_c = n_c - k_c
        if rule.kind == "threshold":
            threshold = rule.limit if s > 0 else 1 - rule.limit
            return stats.wilson_threshold_test(k_c, n_c, threshold, rule.level)
        assert base is not None and base.successes is not None and base.n is not None
        k_b, n_b = base.successes, base.n
        if s < 0:
            k_b = n_b - k_b
        test = stats.two_proportion_test if method == "two_proportion" else stats.wilson_regression_test
        return test(k_b, n_b, k_c, n_c, rule.limit, rule.level)
    # bootstrap over per-sample values
    assert cand.samples is not None
    stat = stats.STATISTICS[rule.statistic]
    if rule.kind == "threshold":
        t = rule.limit

        def worse_fn(c: np.ndarray, axis: int = -1) -> np.ndarray:
            return s * (t - stat(c, axis=axis))

        return stats.bootstrap_test((cand.samples,), worse_fn, limit, paired=False, level=rule.level,
                                    n_resamples=rules.bootstrap_resamples, seed=rules.seed)
    assert base is not None and base.samples is not None
    c_vals, b_vals = cand.samples, base.samples
    use_pairs = paired and cand.ids is not None and base.ids is not None
    if use_pairs:
        index = {sid: i for i, sid in enumerate(base.ids or [])}
        rows = [(i, index[sid]) for i, sid in enumerate(cand.ids or []) if sid in index]
        c_vals = cand.samples[[i for i, _ in rows]]
        b_vals = base.samples[[j for _, j in rows]]
    worse_fn = _relative_worse(rule.kind, stat, s)
    return stats.bootstrap_test((c_vals, b_vals), worse_fn, limit, paired=use_pairs, level=rule.level,
                                n_resamples=rules.bootstrap_resamples, seed=rules.seed)


def _relative_worse(kind: str, stat: Callable[..., np.ndarray], s: float) -> Callable[..., np.ndarray]:
    def regression(c: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return s * (stat(b, axis=axis) - stat(c, axis=axis))

    def ratio(c: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            sc, sb = stat(c, axis=axis), stat(b, axis=axis)
            return sc / sb if s < 0 else sb / sc

    return regression if kind == "max_regression" else ratio


# ---- flags ----

def _documented_flag_ids() -> set[str] | None:
    """Flag ids documented in ``docs/flags.md`` of a source checkout; None when it is not there."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "flags.md"
    if not doc.is_file():
        return None
    return set(re.findall(r"^## `([a-z0-9_]+)`", doc.read_text(encoding="utf-8"), flags=re.M))


def _unfinished_probes(run: Run, sources: tuple[str, ...]) -> list[str]:
    """The probes of ``run`` (those matching ``sources``, when given) that failed, were interrupted or never
    started (listed in ``probe_order`` but absent): each as ``"probe 'X' failed in the candidate audit"``.
    A probe ``skipped`` for a stated reason counts as finished, as it does for the exit code."""
    probes = run.results.get("probes", {})
    order = run.results.get("probe_order")
    names = list(probes) + [n for n in (order if isinstance(order, list) else []) if isinstance(n, str) and n not in probes]
    out = []
    for name in names:
        if sources and not any(fnmatch.fnmatchcase(name, p) for p in sources):
            continue
        status = probes[name].get("status") if name in probes else "never started"
        if status not in ("ok", "skipped"):
            out.append(f"probe '{name}' {status} in the candidate audit")
    return out


def _evaluate_flags(rule: FlagRule, candidate: Run, baseline: Run | None) -> RuleOutcome:
    def matches(flag: dict[str, Any]) -> bool:
        if rule.flags and not any(fnmatch.fnmatchcase(str(flag.get("id", "")), p) for p in rule.flags):
            return False
        if rule.sources and not any(fnmatch.fnmatchcase(str(flag.get("source", "")), p) for p in rule.sources):
            return False
        if rule.min_severity is not None:
            return SEVERITY_RANK.get(str(flag.get("severity")), -1) >= SEVERITY_RANK[rule.min_severity]
        return True

    raised = list(candidate.results.get("flags", []))
    found = [f for f in raised if matches(f)]
    unfinished = _unfinished_probes(candidate, rule.sources)
    if rule.new_only and baseline is not None:
        old = {(f.get("id"), f.get("source")) for f in baseline.results.get("flags", [])}
        found = [f for f in found if (f.get("id"), f.get("source")) not in old]
    note = ""
    documented = _documented_flag_ids()
    if documented is not None:
        unknown = [p for p in rule.flags if not any(ch in p for ch in "*?[") and p not in documented]
        if unknown:
            hint = did_you_mean(unknown[0], documented)
            note = f" Note: '{unknown[0]}' is not a documented flag id" + (f"; {hint}" if hint else "") + "."
            log.warning("gate rule '%s': %s", rule.id, note.strip())
    if found:
        shown = "; ".join(f"{f.get('id')} ({f.get('severity')}, from {f.get('source')})" for f in found[:5])
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        return RuleOutcome(rule, "failed", f"{len(found)} matching flag(s): {shown}{more}.{note}",
                           verdict=f"{len(found)} matching flag(s)", matched_flags=found)
    new = " new" if rule.new_only else ""
    if unfinished:  # a probe that did not finish raised none of the flags it checks for: no pass on silence
        shown = "; ".join(unfinished[:3]) + (f" and {len(unfinished) - 3} more" if len(unfinished) > 3 else "")
        return RuleOutcome(rule, "failed", f"no{new} matching flag among the {len(raised)} raised, but the rule cannot "
                           f"pass: {shown}, so the flags it would have raised are unknown (re-run the audit, or "
                           f"narrow the rule with sources = [...]).{note}", verdict="probe did not finish")
    return RuleOutcome(rule, "passed", f"no{new} matching flag among the {len(raised)} raised.{note}",
                       verdict=f"no{new} matching flag")
