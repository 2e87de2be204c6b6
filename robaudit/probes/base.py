"""The probe contract: one typed interface that every built-in and plugin probe implements.

A probe is a class with declarative metadata (``name``, ``version``, ``description``,
``needs_grad``, ``needs_double_backward``, ``higher_is_better``), a ``Config`` dataclass
of knobs, and one method ``run(ctx) -> ProbeResult``. The engine owns seeding, device
moves, grad mode, timing, progress and persistence; probes only compute.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from robaudit.threat_model import ThreatModel, resolve_threat_model

if TYPE_CHECKING:
    from robaudit.attack_outcomes import OutcomeTable
    from robaudit.probes.cost import Cost
    from robaudit.data.audit_data import AuditData
    from robaudit.models.audit_model import AuditModel

ATTACK_OUTCOMES = "attack outcomes"
"""The capability of a probe whose results feed the attack-outcome table (every ``attack.*`` probe
that reports per-sample successes at budgets, or adversarial distances); see :mod:`robaudit.attack_outcomes`."""


@dataclass(frozen=True)
class Requirement:
    """One input a probe declares in :attr:`Probe.requires`.

    Attributes:
        target: a probe name (``geometry.gradients``) or a capability (:data:`ATTACK_OUTCOMES`),
            meaning every selected probe that lists it in :attr:`Probe.provides`.
        optional: ``False``: the audit refuses to run the probe without it (a usage error before the
            model loads). ``True``: used when selected, and the probe copes without it.
    """

    target: str
    optional: bool = False


class Severity(str, Enum):
    """How serious a flag is. ``error`` flags mean a number in the results is likely wrong."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Flag:
    """A named, stored, gate-able finding.

    Attributes:
        id: stable identifier, ``snake_case`` (e.g. ``probabilities_not_logits``).
        severity: see :class:`Severity`.
        message: one sentence for people, with the numbers that triggered it.
        source: the probe name, or ``preflight`` / ``loader`` / ``data``.
        docs: anchor in ``docs/flags.md`` explaining "raised if / what it means".
    """

    id: str
    severity: Severity
    message: str
    source: str
    docs: str = ""

    def to_json(self) -> dict[str, str]:
        """The flag as a JSON object."""
        return {
            "id": self.id,
            "severity": self.severity.value,
            "message": self.message,
            "source": self.source,
            "docs": self.docs or f"docs/flags.md#{self.id.replace('_', '-')}",
        }


@dataclass(frozen=True)
class Estimate:
    """A number with an optional confidence interval.

    Attributes:
        value: the point estimate.
        low, high: the interval bounds (same units as ``value``), or ``None``.
        level: the interval's coverage, e.g. 0.95.
        method: how the interval was made, e.g. ``wilson`` or ``bootstrap``.
        n: the number of samples behind the estimate.
    """

    value: float
    low: float | None = None
    high: float | None = None
    level: float | None = None
    method: str | None = None
    n: int | None = None


@dataclass(frozen=True)
class Column:
    """What a per-sample column means, for the analysis stage and the report.

    Attributes:
        label: short human name with its symbol, e.g. ``input-gradient norm ‖∇x J‖₂``.
        role: ``indicator`` (a candidate predictor of robustness), ``robustness`` (a
            per-sample robustness outcome where larger means more robust, e.g. the minimal
            adversarial ε), ``attack_success`` (0/1: the attack flipped the decision),
            ``confounder`` (controlled for in partial correlations, e.g. confidence) or
            ``other``.
        unit: the unit of the values (``"L∞ pixels"``, ``"nats"``, ``""`` if unitless).
        scale_invariant: whether the value is unchanged when logits are rescaled z → αz
            (α > 0); ``None`` when not applicable. Cross-model claims flag ``False``.
    """

    label: str
    role: str = "other"
    unit: str = ""
    scale_invariant: bool | None = None

    ROLES = ("indicator", "robustness", "attack_success", "confounder", "other")

    def to_json(self) -> dict[str, Any]:
        """The metadata as a JSON object."""
        return {"label": self.label, "role": self.role, "unit": self.unit, "scale_invariant": self.scale_invariant}


SummaryValue = float | int | bool | str | None | Estimate | Mapping[str, "SummaryValue"]


@dataclass
class ProbeResult:
    """What a probe returns.

    Attributes:
        summary: nested mapping of headline numbers; leaves are numbers, strings,
            booleans or :class:`Estimate` (numbers with CIs). Keys are plain names,
            never compound strings: nest instead.
        per_sample: per-sample 1-D arrays of length N, aligned to ``ctx.data.ids``.
            Keys are column names (unit in the probe's docs).
        flags: findings raised by the probe.
        artifacts: JSON-serialisable plot data the report can redraw.
        notes: free-form, human-readable remarks shown in the report.
    """

    summary: dict[str, Any] = field(default_factory=dict)
    per_sample: dict[str, np.ndarray] = field(default_factory=dict)
    flags: list[Flag] = field(default_factory=list)
    artifacts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


ProgressFactory = Callable[[Iterable[Any], str, int | None], Iterator[Any]]


@dataclass
class ProbeContext:
    """Everything a probe may use. Probes must not touch anything else.

    Attributes:
        model: the audit model: takes N×C×H×W float pixels in [0, 1] on ``device``,
            returns logits N×K. Eval mode. Probes must not change its parameters or mode;
            use :meth:`AuditModel.audit_copy` when a probe needs a private copy.
        data: the audit samples (N, with stable ids); ``data.batches(batch_size)``.
        device: where the model lives.
        batch_size: the run's batch size (samples per forward pass).
        seed: the probe's seed (derived from the run seed and the probe name).
        generator: a ``torch.Generator`` on CPU seeded with ``seed``.
        logger: the probe's logger.
        progress: wraps an iterable in a progress bar: ``progress(it, label, total)``.
        previous: the results of the probes this one requires (:attr:`Probe.requires`), by name,
            whether computed in this run or read back on ``--resume``, always in their persisted
            form: summaries and artifacts as in ``results.json`` (an :class:`Estimate` is a dict
            there), per-sample arrays as float64 as in ``per_sample.csv`` (booleans are 1.0 / 0.0).
        dataset: the canonical dataset name (``digits``, ``cifar10``, ``imagefolder`` …).
        threat_model: the run's ε budgets per norm (:class:`~robaudit.threat_model.ThreatModel`); every
            probe reads ε from it. Resolved from ``dataset`` and the image size when not given.
        outcomes: the attack-outcome table built from every attack in ``previous``
            (:class:`~robaudit.attack_outcomes.OutcomeTable`): the one definition of "broken at ε".
    """

    model: "AuditModel"
    data: "AuditData"
    device: torch.device
    batch_size: int
    seed: int
    generator: torch.Generator
    logger: logging.Logger
    progress: ProgressFactory
    previous: Mapping[str, ProbeResult]
    dataset: str
    threat_model: ThreatModel | None = None
    outcomes: "OutcomeTable | None" = None
    _clean_logits: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.threat_model is None:
            self.threat_model = resolve_threat_model(self.dataset, tuple(self.data.x.shape[1:]))
        if self.outcomes is None:
            from robaudit.attack_outcomes import build_outcome_table

            self.outcomes = build_outcome_table(self.previous, len(self.data))

    def clean_logits(self) -> torch.Tensor:
        """Logits N×K of the unperturbed audit samples (float32, CPU), computed once per audit."""
        if self._clean_logits is None:
            chunks = []
            with torch.no_grad():
                batches = self.data.batches(self.batch_size)
                total = -(-len(self.data) // self.batch_size)
                for _rows, x, _y in self.progress(batches, "clean forward", total):
                    chunks.append(self.model(x.to(self.device)).float().cpu())
            self._clean_logits = torch.cat(chunks) if chunks else torch.empty(0, self.model.num_classes)
        return self._clean_logits


class Probe:
    """Base class of every probe. Subclasses set the class attributes and implement ``run``.

    Class attributes:
        name: registry key, e.g. ``clean`` or ``attack.pgd``.
        version: bump when the meaning of a number changes.
        description: one line for ``robaudit probes``.
        needs_grad: whether ``run`` needs autograd (the engine enables it).
        needs_double_backward: whether the model must support second derivatives; the
            loader then builds timm models with fused attention off.
        needs_input_grad: whether ``run`` differentiates with respect to the input pixels
            (attacks, input geometry); ``None`` (the default) means the same as ``needs_grad``.
            Probes that only need parameter gradients (curvature) set ``False``. The engine
            skips such probes when preflight finds the model's input gradient disconnected.
        higher_is_better: for each summary path (tuple of keys), whether higher is better.
            The gate reads this to orient relative rules.
        summary_keys: every key path the probe may write into its ``summary``, each a tuple of
            keys from the top of the summary (see :func:`summary_key_matches`): ``"*"`` stands for
            any one key (an ε, a norm, a class, a list position) and a final ``"**"`` for any
            subtree (diagnostic records). The gate refuses a rule whose path the probe does not
            declare. ``None`` means undeclared, and the gate cannot check rules on this probe.
        indicator_keys: the summary paths (patterns as in ``summary_keys``; a list position is a
            key such as ``"0"``) whose values are *model-level indicators*: numbers that might
            predict robustness across models (λ1 of each Hessian set, its trace). Settings, counts
            and diagnostics are not. Only these (and the medians of per-sample columns whose role
            is ``indicator``) are tested by ``robaudit compare`` and ``robaudit zoo``.
        outcome_keys: the summary paths whose values are robustness *outcomes* (Estimates, higher is
            better: robust accuracy per ε) that the indicators are correlated with.
        standard: whether the probe is in the default audit set.
        requires: the results this probe reads (:class:`Requirement`: probe names or capabilities).
            The engine runs them first (a topological order; the listed order breaks ties), hands
            their results over in ``ctx.previous`` and ``ctx.outcomes``, and on ``--resume`` reuses
            this probe's saved result only if those inputs are unchanged.
        provides: capabilities this probe supplies to others, e.g. :data:`ATTACK_OUTCOMES`.
        columns: metadata of the per-sample keys the probe returns (see :class:`Column`).
            A key ending in ``*`` covers every key with that prefix (``success_eps_*``).
        report_template: a jinja2 template shipped with the probe's package, as
            ``"package:relative/path.html.j2"``; robaudit's report renders it (autoescaped) as
            the probe's own section. It sees ``entry`` (the probe's results.json entry),
            ``results`` (the whole file) and ``ctx`` (from :meth:`report_context`).
        report_title: the heading of that section (default: the probe name).
        Config: a dataclass of the probe's knobs, all with defaults.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    description: ClassVar[str]
    needs_grad: ClassVar[bool] = False
    needs_double_backward: ClassVar[bool] = False
    needs_input_grad: ClassVar[bool | None] = None
    higher_is_better: ClassVar[Mapping[tuple[str, ...], bool]] = {}
    summary_keys: ClassVar[tuple[tuple[str, ...], ...] | None] = None
    indicator_keys: ClassVar[tuple[tuple[str, ...], ...]] = ()
    outcome_keys: ClassVar[tuple[tuple[str, ...], ...]] = ()
    standard: ClassVar[bool] = False
    requires: ClassVar[tuple[Requirement, ...]] = ()
    provides: ClassVar[tuple[str, ...]] = ()
    columns: ClassVar[Mapping[str, Column]] = {}
    report_template: ClassVar[str | None] = None
    report_title: ClassVar[str | None] = None

    @dataclass
    class Config:
        """No knobs."""

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    def run(self, ctx: ProbeContext) -> ProbeResult:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset()) -> "Cost | None":
        """The model passes ``run`` will make, in per-sample units (:class:`~robaudit.probes.cost.Cost`:
        forward-only passes, forward+backward passes, Hessian-vector products), from the probe's
        ``config``, the sample count and the run's threat model, before anything runs.

        ``selected`` names every probe of the audit (a probe that reuses another's result costs less
        when that one runs too). A probe whose passes scale with the class count K may also take a
        keyword ``num_classes`` (the audit passes the model's K to every ``estimate_cost`` that
        accepts it). Count the shared clean forward (``ctx.clean_logits()``) nowhere: the audit
        counts it once. Where the work depends on the data or an adaptive loop (a tolerance, early
        stopping, bisection), return the upper bound (every sample clean-correct, none broken early,
        every loop at its cap) and say so in the docstring. Return
        :class:`~robaudit.probes.cost.Unknown` with the reason where the cost cannot be known before
        the run. The default, ``None``, means "not declared": the estimate lists the probe as
        unknown, leaves it out of the total and says "estimate omits" it.
        """
        return None

    @classmethod
    def report_context(cls, entry: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, Any]:
        """Extra template variables for :attr:`report_template` (figures, tables), from saved results only."""
        return {}


def needs_input_gradients(probe_cls: type[Probe]) -> bool:
    """Whether a probe differentiates with respect to the input pixels (see ``Probe.needs_input_grad``)."""
    declared = getattr(probe_cls, "needs_input_grad", None)
    return bool(probe_cls.needs_grad if declared is None else declared)


def validate_probe_class(obj: object) -> list[str]:
    """Check ``obj`` against the probe contract; return the list of problems (empty if fine)."""
    problems: list[str] = []
    if not isinstance(obj, type) or not issubclass(obj, Probe):
        return [f"{obj!r} is not a subclass of robaudit.probes.base.Probe"]
    for attr, kind in (("name", str), ("version", str), ("description", str)):
        value = getattr(obj, attr, None)
        if not isinstance(value, kind) or not value:
            problems.append(f"class attribute '{attr}' must be a non-empty {kind.__name__}")
    if getattr(obj, "name", None) == "standard":
        problems.append("the name 'standard' is reserved: '--probes standard,...' means the default audit set")
    if not dataclasses.is_dataclass(getattr(obj, "Config", None)):
        problems.append("'Config' must be a dataclass")
    else:
        for f in dataclasses.fields(obj.Config):
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(f"Config field '{f.name}' needs a default")
    hib = getattr(obj, "higher_is_better", {})
    if not isinstance(hib, Mapping) or not all(
        isinstance(k, tuple) and all(isinstance(p, str) for p in k) and isinstance(v, bool)
        for k, v in hib.items()
    ):
        problems.append("'higher_is_better' must map tuples of summary keys to bools")
    reqs = getattr(obj, "requires", ())
    if not isinstance(reqs, tuple) or not all(isinstance(r, Requirement) and r.target for r in reqs):
        problems.append("'requires' must be a tuple of Requirement(target, optional)")
    provides = getattr(obj, "provides", ())
    if not isinstance(provides, tuple) or not all(isinstance(p, str) and p for p in provides):
        problems.append("'provides' must be a tuple of capability names")
    if hasattr(obj, "order"):
        problems.append("'order' is gone: declare the results the probe reads in 'requires' instead")
    problems.extend(_summary_key_problems(obj))
    cols = getattr(obj, "columns", {})
    if not isinstance(cols, Mapping) or not all(isinstance(c, Column) and c.role in Column.ROLES for c in cols.values()):
        problems.append(f"'columns' must map per-sample keys to Column with a role in {Column.ROLES}")
    if getattr(obj, "run", None) is Probe.run:
        problems.append("'run' is not implemented")
    return problems


ANY_KEY = "*"
"""In a declared summary key path: any one key."""
ANY_SUBTREE = "**"
"""At the end of a declared summary key path: any keys below (zero or more)."""
ESTIMATE_FIELDS = ("value", "low", "high", "level", "method", "n")
"""The fields of a serialised :class:`Estimate`, which a path may name after a declared leaf."""


def summary_key_matches(pattern: tuple[str, ...], path: tuple[object, ...]) -> bool:
    """Whether a summary ``path`` (keys read from the top of a probe's summary) is covered by ``pattern``.

    A literal key matches only the same string; ``"*"`` matches any one step (a key, a number, a
    list index or a record selector); a final ``"**"`` matches any remaining steps. After the whole
    pattern, the path may add one :data:`ESTIMATE_FIELDS` name (``["accuracy", "low"]``).
    """
    for depth, want in enumerate(pattern):
        if want == ANY_SUBTREE:
            return True
        if depth >= len(path):
            return False
        if want != ANY_KEY and path[depth] != want:
            return False
    rest = path[len(pattern):]
    return not rest or (len(rest) == 1 and rest[0] in ESTIMATE_FIELDS)


def declares_summary_key(probe_cls: type[Probe], path: tuple[object, ...]) -> bool | None:
    """Whether ``probe_cls`` declares the summary key ``path``; None when it declares none at all."""
    declared = getattr(probe_cls, "summary_keys", None)
    if declared is None:
        return None
    return any(summary_key_matches(pattern, path) for pattern in declared)


def undeclared_summary_keys(probe_cls: type[Probe], summary: Mapping[str, Any]) -> list[tuple[object, ...]]:
    """The leaf paths of a JSON ``summary`` (as saved in results.json) that ``probe_cls`` does not declare.

    Leaves are numbers, strings, booleans, nulls and estimates (``{value, low, high, ...}``); lists
    are walked by position. An empty list means the declaration covers the summary. For a probe's
    contract tests: ``assert not undeclared_summary_keys(MyProbe, to_jsonable(result.summary))``.
    """
    out: list[tuple[object, ...]] = []

    def walk(node: Any, path: tuple[object, ...]) -> None:
        if isinstance(node, Mapping) and not set(ESTIMATE_FIELDS) <= set(node):
            for key, value in node.items():
                walk(value, (*path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, (*path, index))
        elif not declares_summary_key(probe_cls, path):
            out.append(path)

    walk(summary, ())
    return out


def _summary_key_problems(obj: type) -> list[str]:
    declared = getattr(obj, "summary_keys", None)
    if declared is None:
        return []
    if not isinstance(declared, tuple) or not all(
        isinstance(k, tuple) and k and all(isinstance(p, str) and p for p in k) for k in declared
    ):
        return ["'summary_keys' must be a tuple of non-empty tuples of summary keys"]
    problems = [f"'summary_keys' uses '{ANY_SUBTREE}' before the end of {list(k)}"
                for k in declared if ANY_SUBTREE in k[:-1]]
    for path in getattr(obj, "higher_is_better", {}) or {}:
        # a direction may sit above the leaves (("robust_accuracy",) covers every ε below it)
        if isinstance(path, tuple) and not any(
            summary_key_matches(k[:len(path)], path) or summary_key_matches(k, path) for k in declared
        ):
            problems.append(f"'higher_is_better' names {list(path)}, which 'summary_keys' does not declare")
    return problems


def column_meta(probe_cls: type[Probe], key: str) -> Column | None:
    """The :class:`Column` declared for per-sample ``key`` (exact match, else longest ``prefix*``)."""
    cols = getattr(probe_cls, "columns", {})
    if key in cols:
        return cols[key]
    prefixes = [k for k in cols if k.endswith("*") and key.startswith(k[:-1])]
    return cols[max(prefixes, key=len)] if prefixes else None


def check_level(level: float, name: str = "level") -> None:
    """Validate a confidence level knob (coverage strictly between 0 and 1).

    Raises:
        ValueError: naming the knob and the value.
    """
    if not 0 < level < 1:
        raise ValueError(f"{name} must be in (0, 1), got {level}")


def wilson_interval(successes: int, n: int, level: float = 0.95) -> Estimate:
    """A proportion with its Wilson score interval (``scipy.stats.binomtest``).

    Args:
        successes: count of successes (0 ≤ successes ≤ n).
        n: number of trials; for n = 0 the value is NaN and the interval is absent.
        level: two-sided coverage.
    """
    from scipy.stats import binomtest

    if n == 0:
        return Estimate(value=math.nan, level=level, method="wilson", n=0)
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return Estimate(
        value=successes / n, low=float(ci.low), high=float(ci.high),
        level=level, method="wilson", n=int(n),
    )
