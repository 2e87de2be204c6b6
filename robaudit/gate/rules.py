"""Gate rules: read and check them (TOML), before anything is computed.

Rules live in a standalone TOML file, in the ``[gate]`` table of ``robaudit.toml``, or in
``[tool.robaudit.gate]`` of ``pyproject.toml``. Keys may be written with dashes or underscores.
See ``docs/ci-gate.md`` for the full reference; in short::

    level = 0.05                    # one-sided significance level of noise allowances
    baseline = "baselines/main"     # optional; relative to this file; --baseline overrides

    [[rule]]                        # [[gate.rule]] inside robaudit.toml
    metric = ["probes", "clean", "summary", "accuracy"]
    threshold = 0.90                # no worse than 0.90 (direction from the probe's metadata)

    [[rule]]
    metric = ["probes", "clean", "summary", "accuracy"]
    max-regression = 0.02           # at most 2 points worse than the baseline, beyond noise

    [[rule]]
    flags = ["probabilities_not_logits", "zero_*"]
    min-severity = "warning"

Every problem is a :class:`GateRulesError`: one line naming the file, the rule and the key,
with a "did you mean" where one helps (exit code 2).
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robaudit.errors import ConfigError, did_you_mean
from robaudit.gate.paths import Segment, format_path, format_segment
from robaudit.gate.stats import STATISTICS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class GateRulesError(ConfigError):
    """A malformed rules file, an unknown metric path, or a rule that cannot apply (exit 2)."""


KINDS = ("threshold", "max_regression", "max_ratio")
"""Metric rule kinds: the key that sets the bound."""
RELATIVE_KINDS = ("max_regression", "max_ratio")
NOISE_METHODS = ("auto", "none", "two_proportion", "wilson", "bootstrap")
SEVERITIES = ("info", "warning", "error")
MISMATCHES = ("dataset", "samples", "config")
"""Baseline differences that ``allow-mismatch`` can accept (see :mod:`robaudit.gate.baseline`)."""

GATE_KEYS = ("rule", "baseline", "level", "noise", "allow_mismatch", "bootstrap_resamples", "seed")
METRIC_KEYS = ("id", "description", "metric", "per_sample", "statistic", "threshold", "max_regression", "max_ratio",
               "higher_is_better", "noise", "level", "optional")
FLAG_KEYS = ("id", "description", "flags", "min_severity", "sources", "new_only")


@dataclass(frozen=True)
class MetricRule:
    """A bound on one number.

    Attributes:
        id: the rule's name (JUnit test case name); derived from the metric when not given.
        kind: ``threshold`` (absolute), ``max_regression`` or ``max_ratio`` (relative to a baseline).
        limit: the threshold t, the allowed regression δ (metric units, ≥ 0) or the ratio r (≥ 1).
        metric: path into results.json (see :mod:`robaudit.gate.paths`), or None for per-sample rules.
        per_sample: (probe, key) of a per-sample column, or None.
        statistic: ``mean`` or ``median`` of the per-sample column.
        higher_is_better: the direction stated by the rule; None means "from the probe's metadata".
        noise: the noise allowance (``auto`` resolves per metric at evaluation).
        level: one-sided significance level α of the noise allowance.
        optional: a missing metric skips the rule instead of failing it.
    """

    id: str
    kind: str
    limit: float
    metric: tuple[Segment, ...] | None
    per_sample: tuple[str, str] | None
    statistic: str
    higher_is_better: bool | None
    noise: str
    level: float
    optional: bool
    description: str = ""

    @property
    def relative(self) -> bool:
        """Whether the rule compares with a baseline."""
        return self.kind in RELATIVE_KINDS

    @property
    def target(self) -> str:
        """What the rule bounds, for people."""
        if self.per_sample is not None:
            return f"{self.statistic} of per-sample {self.per_sample[0]} › {self.per_sample[1]}"
        return format_path(self.metric or ())

    def probe(self) -> str | None:
        """The probe whose result this rule reads, if any."""
        if self.per_sample is not None:
            return self.per_sample[0]
        m = self.metric or ()
        return m[1] if len(m) >= 2 and m[0] == "probes" and isinstance(m[1], str) else None


@dataclass(frozen=True)
class FlagRule:
    """Fail when a matching flag was raised.

    Attributes:
        flags: flag id patterns (``fnmatch`` globs: ``zero_*``); empty means any id.
        min_severity: only flags at least this severe; None means any severity.
        sources: patterns of the raising probe/stage (``attack.*``); empty means any.
        new_only: only flags the baseline did not raise (same id and source).
    """

    id: str
    flags: tuple[str, ...]
    min_severity: str | None
    sources: tuple[str, ...]
    new_only: bool
    description: str = ""
    kind: str = "flags"
    optional: bool = False

    @property
    def relative(self) -> bool:
        """Whether the rule compares with a baseline."""
        return self.new_only

    @property
    def target(self) -> str:
        """What the rule looks for, for people."""
        parts = [", ".join(self.flags) if self.flags else "any flag"]
        if self.min_severity:
            parts.append(f"severity ≥ {self.min_severity}")
        if self.sources:
            parts.append(f"from {', '.join(self.sources)}")
        if self.new_only:
            parts.append("new since the baseline")
        return "; ".join(parts)

    def probe(self) -> str | None:
        """Flag rules read no single probe."""
        return None


Rule = MetricRule | FlagRule


@dataclass
class GateRules:
    """A checked set of rules plus gate-wide settings.

    Attributes:
        rules: the rules, in file order.
        source: where they came from (``rules.toml`` or ``robaudit.toml [gate]``).
        sha256: SHA-256 of the rules file's bytes (None for rules built in code).
        baseline: the baseline results directory named in the file (resolved against it), or None.
        level: default one-sided α for noise allowances.
        allow_mismatch: baseline differences accepted (subset of :data:`MISMATCHES`).
        bootstrap_resamples: resamples per bootstrap test.
        seed: seed of the bootstrap resampling.
    """

    rules: list[Rule]
    source: str = "<rules>"
    sha256: str | None = None
    baseline: Path | None = None
    level: float = 0.05
    allow_mismatch: frozenset[str] = field(default_factory=frozenset)
    bootstrap_resamples: int = 2000
    seed: int = 0

    @property
    def needs_baseline(self) -> bool:
        """Whether any rule compares with a baseline."""
        return any(r.relative for r in self.rules)


def _norm(key: str) -> str:
    return str(key).replace("-", "_")


def _dash(key: str) -> str:
    return key.replace("_", "-")


def load_rules(path: Path) -> GateRules:
    """Read rules from ``path``: a standalone rules file, ``robaudit.toml`` or ``pyproject.toml``.

    A file with a top-level ``gate`` table (robaudit.toml) or ``[tool.robaudit.gate]``
    (pyproject.toml) is read from that table; any other file is itself the gate table.

    Raises:
        GateRulesError: unreadable file, invalid TOML, or any malformed rule.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise GateRulesError(f"rules file {path} does not exist", fix="check the path given to --rules / --gate") from None
    except OSError as exc:
        raise GateRulesError(f"cannot read rules file {path}: {exc.strerror}", fix="check the path and its permissions") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GateRulesError(f"rules file {path} is not valid TOML: {exc}", fix="fix the TOML syntax") from None
    source = str(path)
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("robaudit", {}).get("gate")
        source += " [tool.robaudit.gate]"
        if table is None:
            raise GateRulesError(f"{path} has no [tool.robaudit.gate] table",
                                 fix="add [[tool.robaudit.gate.rule]] tables, or pass a rules file")
    elif "gate" in data:
        table = data["gate"]
        source += " [gate]"
    else:
        table = data
    if not isinstance(table, dict):
        raise GateRulesError(f"'gate' in {path} must be a table", fix="write [gate] and [[gate.rule]] tables")
    return parse_rules(table, source=source, base_dir=path.parent, sha256=hashlib.sha256(raw).hexdigest())


def parse_rules(table: dict[str, Any], *, source: str = "<rules>", base_dir: Path | None = None,
                sha256: str | None = None) -> GateRules:
    """Check a gate table (as read from TOML) and build :class:`GateRules`.

    Args:
        table: the gate table: gate-wide keys plus ``rule``, an array of rule tables.
        source: where the table came from, for messages.
        base_dir: directory that a relative ``baseline`` path is resolved against.
        sha256: hash of the file the table came from, recorded in the gate outcome.

    Raises:
        GateRulesError: an unknown key (with a suggestion), a wrong type or an invalid value.
    """
    where = source
    table = {_norm(k): v for k, v in table.items()}
    for key in table:
        if key not in GATE_KEYS:
            hint = did_you_mean(key, GATE_KEYS)
            raise GateRulesError(f"unknown gate key '{_dash(key)}' in {where}" + (f"; {hint}" if hint else ""),
                                 fix=f"use one of: {', '.join(_dash(k) for k in GATE_KEYS)}")
    level = _level(table.get("level", 0.05), f"'level' in {where}")
    noise = _noise(table.get("noise", "auto"), f"'noise' in {where}")
    allow = table.get("allow_mismatch", [])
    if isinstance(allow, str):
        allow = [allow]
    if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
        raise GateRulesError(f"'allow-mismatch' in {where} must be a list of strings",
                             fix=f"write allow-mismatch = [\"{MISMATCHES[0]}\"] with names from: {', '.join(MISMATCHES)}")
    for name in allow:
        if name not in MISMATCHES:
            hint = did_you_mean(name, MISMATCHES)
            raise GateRulesError(f"unknown mismatch '{name}' in 'allow-mismatch' in {where}" + (f"; {hint}" if hint else ""),
                                 fix=f"use names from: {', '.join(MISMATCHES)}")
    resamples = table.get("bootstrap_resamples", 2000)
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 100:
        raise GateRulesError(f"'bootstrap-resamples' in {where} must be an integer ≥ 100, got {resamples!r}",
                             fix="use the default (2000) or more")
    seed = table.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise GateRulesError(f"'seed' in {where} must be an integer, got {seed!r}", fix="write seed = 0")
    baseline = table.get("baseline")
    if baseline is not None:
        if not isinstance(baseline, str) or not baseline:
            raise GateRulesError(f"'baseline' in {where} must be a directory path string",
                                 fix='write baseline = "path/to/baseline-results"')
        baseline_path = Path(baseline).expanduser()
        if not baseline_path.is_absolute() and base_dir is not None:
            baseline_path = base_dir / baseline_path
    else:
        baseline_path = None

    raw_rules = table.get("rule", [])
    if isinstance(raw_rules, dict):
        raw_rules = [raw_rules]
    if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
        raise GateRulesError(f"'rule' in {where} must be an array of tables",
                             fix="write each rule as a [[rule]] table ([[gate.rule]] in robaudit.toml)")
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_rules, start=1):
        rule = _parse_rule(raw, index, where, default_level=level, default_noise=noise)
        rule_id = rule.id
        if rule_id in seen:
            if "id" in {_norm(k) for k in raw}:
                raise GateRulesError(f"rule {index} in {where} repeats the id '{rule_id}'", fix="give each rule a unique id")
            n = 2
            while f"{rule_id} #{n}" in seen:
                n += 1
            rule = _with_id(rule, f"{rule_id} #{n}")
        seen.add(rule.id)
        rules.append(rule)
    return GateRules(rules=rules, source=source, sha256=sha256, baseline=baseline_path, level=level,
                     allow_mismatch=frozenset(allow), bootstrap_resamples=resamples, seed=seed)


def _with_id(rule: Rule, new_id: str) -> Rule:
    from dataclasses import replace

    return replace(rule, id=new_id)


def _level(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 0.5:
        raise GateRulesError(f"{what} must be a number in (0, 0.5), got {value!r}",
                             fix="use a one-sided significance level such as 0.05")
    return float(value)


def _noise(value: Any, what: str) -> str:
    if not isinstance(value, str) or _norm(value) not in NOISE_METHODS:
        hint = did_you_mean(_norm(str(value)), NOISE_METHODS)
        raise GateRulesError(f"{what} must be one of {', '.join(_dash(m) for m in NOISE_METHODS)}, got {value!r}"
                             + (f"; {hint.replace('_', '-')}" if hint else ""),
                             fix="pick a noise allowance from the list")
    return _norm(value)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GateRulesError(f"{what} must be a finite number, got {value!r}", fix="write a number, e.g. 0.4")
    return float(value)


def _parse_segment(seg: Any, what: str) -> Segment:
    if isinstance(seg, bool):
        raise GateRulesError(f"{what}: a path segment cannot be a boolean", fix="use a key string, an index or a {key = value} selector")
    if isinstance(seg, str):
        if not seg:
            raise GateRulesError(f"{what}: empty key in the path", fix="remove the empty string")
        return seg
    if isinstance(seg, (int, float)):
        return seg
    if isinstance(seg, dict):
        if not seg or not all(isinstance(v, (str, int, float)) for v in seg.values()):
            raise GateRulesError(f"{what}: a selector must be a non-empty inline table of plain values",
                                 fix="write e.g. {eps = 0.1} to pick the record whose eps is 0.1")
        return dict(seg)
    raise GateRulesError(f"{what}: cannot use {seg!r} as a path segment",
                         fix="use key strings, integer indices or {key = value} selectors")


def _parse_metric(value: Any, what: str) -> tuple[Segment, ...]:
    if isinstance(value, str):
        guess = json.dumps(value.split("."))
        raise GateRulesError(f"{what} is the string {value!r}; metric paths are arrays of keys, not dotted strings",
                             fix=f"write metric = {guess} (keep dotted probe names such as \"attack.pgd\" as one key)")
    if not isinstance(value, list) or not value:
        raise GateRulesError(f"{what} must be a non-empty array of keys",
                             fix='write e.g. metric = ["probes", "clean", "summary", "accuracy"]')
    return tuple(_parse_segment(s, what) for s in value)


def _patterns(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise GateRulesError(f"{what} must be a list of strings", fix='write e.g. flags = ["zero_input_gradients"]')
    return tuple(value)


def _parse_rule(raw: dict[str, Any], index: int, where: str, *, default_level: float, default_noise: str) -> Rule:
    rule = {_norm(k): v for k, v in raw.items()}
    label = f"rule {index}" + (f" ('{rule['id']}')" if isinstance(rule.get("id"), str) else "")
    at = f"{label} in {where}"
    is_flag = "flags" in rule or "min_severity" in rule or "sources" in rule or "new_only" in rule
    allowed = FLAG_KEYS if is_flag else METRIC_KEYS
    for key in rule:
        if key not in allowed:
            other = METRIC_KEYS if is_flag else FLAG_KEYS
            if key in other:
                raise GateRulesError(f"{at} mixes a flag rule and a metric rule ('{_dash(key)}')",
                                     fix="write flag rules and metric rules as separate [[rule]] tables")
            hint = did_you_mean(key, allowed)
            raise GateRulesError(f"unknown key '{_dash(key)}' in {at}" + (f"; {hint.replace('_', '-')}" if hint else ""),
                                 fix=f"use keys from: {', '.join(_dash(k) for k in allowed)}")
    rule_id = rule.get("id")
    if rule_id is not None and (not isinstance(rule_id, str) or not rule_id.strip()):
        raise GateRulesError(f"'id' of {at} must be a non-empty string", fix='write id = "clean-accuracy-floor"')
    description = rule.get("description", "")
    if not isinstance(description, str):
        raise GateRulesError(f"'description' of {at} must be a string", fix="quote the description")

    if is_flag:
        flags = _patterns(rule.get("flags", []), f"'flags' of {at}")
        sources = _patterns(rule.get("sources", []), f"'sources' of {at}")
        severity = rule.get("min_severity")
        if severity is not None and severity not in SEVERITIES:
            hint = did_you_mean(str(severity), SEVERITIES)
            raise GateRulesError(f"'min-severity' of {at} must be one of {', '.join(SEVERITIES)}, got {severity!r}"
                                 + (f"; {hint}" if hint else ""), fix="pick a severity from the list")
        if not flags and severity is None:
            raise GateRulesError(f"{at} names no flag and no severity, so it would fail on any flag",
                                 fix='add flags = ["id", ...] or min-severity = "warning"')
        new_only = rule.get("new_only", False)
        if not isinstance(new_only, bool):
            raise GateRulesError(f"'new-only' of {at} must be true or false", fix="write new-only = true")
        auto_id = "flags: " + (", ".join(flags) if flags else f"severity ≥ {severity}")
        return FlagRule(id=rule_id or auto_id, flags=flags, min_severity=severity, sources=sources, new_only=new_only,
                        description=description)

    kinds = [k for k in KINDS if k in rule]
    if len(kinds) != 1:
        what = "no bound" if not kinds else f"{len(kinds)} bounds ({', '.join(_dash(k) for k in kinds)})"
        raise GateRulesError(f"{at} has {what}",
                             fix="give exactly one of threshold, max-regression or max-ratio (one check per rule)")
    kind = kinds[0]
    limit = _number(rule[kind], f"'{_dash(kind)}' of {at}")
    if kind == "max_regression" and limit < 0:
        raise GateRulesError(f"'max-regression' of {at} must be ≥ 0, got {limit}",
                             fix="write the allowed regression as a positive amount in the metric's units")
    if kind == "max_ratio" and limit < 1:
        raise GateRulesError(f"'max-ratio' of {at} must be ≥ 1, got {limit}",
                             fix="write how many times worse than the baseline is allowed (1 = no worse)")
    if ("metric" in rule) == ("per_sample" in rule):
        raise GateRulesError(f"{at} must name exactly one of 'metric' or 'per-sample'",
                             fix='write metric = ["probes", "clean", "summary", "accuracy"] or per-sample = ["clean", "loss"]')
    metric = per_sample = None
    if "metric" in rule:
        metric = _parse_metric(rule["metric"], f"'metric' of {at}")
        if "statistic" in rule:
            raise GateRulesError(f"'statistic' of {at} applies only to per-sample rules",
                                 fix="remove 'statistic', or use per-sample = [PROBE, KEY]")
    else:
        ps = rule["per_sample"]
        if not (isinstance(ps, list) and len(ps) == 2 and all(isinstance(p, str) and p and "/" not in p for p in ps)):
            raise GateRulesError(f"'per-sample' of {at} must be [PROBE, KEY], got {ps!r}",
                                 fix='write e.g. per-sample = ["clean", "loss"] for the column clean/loss')
        per_sample = (ps[0], ps[1])
    statistic = rule.get("statistic", "mean")
    if statistic not in STATISTICS:
        hint = did_you_mean(str(statistic), STATISTICS)
        raise GateRulesError(f"'statistic' of {at} must be one of {', '.join(STATISTICS)}, got {statistic!r}"
                             + (f"; {hint}" if hint else ""), fix="pick a statistic from the list")
    hib = rule.get("higher_is_better")
    if hib is not None and not isinstance(hib, bool):
        raise GateRulesError(f"'higher-is-better' of {at} must be true or false", fix="write higher-is-better = false")
    noise = _noise(rule.get("noise", default_noise), f"'noise' of {at}")
    if noise in ("two_proportion", "wilson") and kind == "max_ratio":
        raise GateRulesError(f"{at}: noise = {_dash(noise)} bounds differences of accuracies, not ratios",
                             fix="use max-regression for accuracies, or noise = bootstrap with a per-sample rule")
    if noise == "two_proportion" and kind == "threshold":
        raise GateRulesError(f"{at}: noise = two-proportion compares two runs; an absolute threshold has one",
                             fix='use noise = "wilson" for an absolute bound on an accuracy')
    if noise == "bootstrap" and per_sample is None:
        raise GateRulesError(f"{at}: noise = bootstrap needs per-sample values",
                             fix='bound a per-sample statistic instead: per-sample = [PROBE, KEY], statistic = "mean"')
    level = _level(rule.get("level", default_level), f"'level' of {at}")
    optional = rule.get("optional", False)
    if not isinstance(optional, bool):
        raise GateRulesError(f"'optional' of {at} must be true or false", fix="write optional = true")
    if per_sample is not None:
        target = f"{statistic} of {per_sample[0]} › {per_sample[1]}"
    elif metric and len(metric) > 3 and metric[0] == "probes" and metric[2] == "summary":
        target = f"{metric[1]} › {format_path(metric[3:])}"
    else:
        target = format_path(metric or ())
    auto_id = {"threshold": f"{target} threshold {limit:g}", "max_regression": f"{target} regression ≤ {limit:g}",
               "max_ratio": f"{target} ≤ {limit:g}× baseline"}[kind]
    return MetricRule(id=rule_id or auto_id, kind=kind, limit=limit, metric=metric, per_sample=per_sample,
                      statistic=statistic, higher_is_better=hib, noise=noise, level=level, optional=optional,
                      description=description)


def check_rule_paths(rules: GateRules, probes: Mapping[str, type]) -> None:
    """Refuse a rule whose path names a summary key that its probe does not declare.

    A rule on ``["probes", NAME, "summary", KEY, ...]`` is checked against ``NAME``'s
    ``summary_keys`` (see :func:`robaudit.probes.base.summary_key_matches`), ``optional`` or not:
    ``optional`` covers a probe that did not run or a value absent at run time, never a key that
    the probe cannot write. Probes missing from ``probes`` (not installed) or that declare no keys
    are not checked; the evaluation reports them.

    Args:
        rules: checked rules (:func:`parse_rules`).
        probes: the registered probe classes by name.

    Raises:
        GateRulesError: naming the rule, the path, the closest declared keys and the keys declared
            at the level where the path leaves the declaration (exit 2).
    """
    from robaudit.probes.base import declares_summary_key

    for rule in rules.rules:
        metric = rule.metric if isinstance(rule, MetricRule) else None
        if not metric or len(metric) < 4 or metric[0] != "probes" or metric[2] != "summary":
            continue
        name, keys = metric[1], tuple(metric[3:])
        cls = probes.get(name) if isinstance(name, str) else None
        if cls is None or declares_summary_key(cls, keys) is not False:
            continue
        depth, choices = _declared_choices(cls.summary_keys, keys)
        where = format_path(("probes", name, "summary", *keys[:depth]))
        if depth < len(keys):
            hint = did_you_mean(str(keys[depth]), choices)
            reason = f"{name} declares no summary key {format_segment(keys[depth])!r} under {where}"
        else:
            hint = ""
            reason = f"{where} is not a number but a table of {name}'s summary; continue the path"
        listed = ", ".join(choices[:12]) + (" …" if len(choices) > 12 else "")
        raise GateRulesError(
            f"rule '{rule.id}': unknown metric path {format_path(metric)}: {reason}" + (f"; {hint}" if hint else "")
            + (" (optional = true does not cover a key the probe never writes)" if rule.optional else ""),
            fix=(f"use one of: {listed}" if depth < len(keys) else f"add a key below it: {listed}")
            .replace("<any key>", "any key (an ε, a norm, an index)"))


def _declared_choices(declared: tuple[tuple[str, ...], ...], keys: tuple[Segment, ...]) -> tuple[int, list[str]]:
    """How many leading ``keys`` some declared path matches, and the declared keys at the next level
    (``*`` shown as ``<any key>``)."""
    def prefix(pattern: tuple[str, ...]) -> int:
        depth = 0
        while depth < min(len(pattern), len(keys)) and pattern[depth] != "**" and \
                pattern[depth] in ("*", keys[depth]):
            depth += 1
        return depth

    depth = max(prefix(p) for p in declared) if declared else 0
    choices: list[str] = []
    for pattern in declared:
        if prefix(pattern) == depth and len(pattern) > depth:
            step = {"*": "<any key>", "**": "<any keys>"}.get(pattern[depth], pattern[depth])
            if step not in choices:
                choices.append(step)
    return depth, choices
