"""The public plugin API: everything a probe, built-in or third-party, may use from robaudit.

A plugin imports from this module only (and from the top-level ``robaudit`` package); the rest of
``robaudit`` is internal and may change without notice. ``docs/writing-a-probe.md`` documents it::

    from robaudit.plugin import Probe, ProbeContext, ProbeResult, Column, wilson_interval

    class MeanConfidence(Probe):
        name = "example.mean_confidence"
        ...

Sections:

- **the probe contract** — :class:`Probe` and what ``run`` receives and returns, the error a probe
  raises for bad input or settings (:class:`ProbeError`), and the contract checks a plugin's tests
  can call (:func:`validate_probe_class`, :func:`column_meta`, :func:`undeclared_summary_keys`);
- **the cost model** — :class:`Cost` (per-sample forward, forward+backward and Hessian-vector
  passes) that :meth:`Probe.estimate_cost` returns (or :class:`Unknown` with the reason), and
  :func:`estimate_audit_cost`; :func:`probe_budgets` (a sweep's ε list) and
  :func:`lanczos_hvp_estimate` (the typical product count of :func:`topk`) for estimates;
- **numbers** — the one Wilson interval (:func:`wilson_interval`), the one seed hash
  (:func:`derive_seed`) and the confidence-level check of ``ci_level`` knobs;
- **the audit model** — :class:`AuditModel` (type of ``ctx.model``), :func:`working_model` (a
  private copy in another precision), and the second-derivative helpers;
- **the threat model and the attack-outcome table** — the run's ε budgets per norm
  (``ctx.threat_model``, one owner for every probe) and the one definition of "broken at ε"
  (``ctx.outcomes``), with :class:`Requirement` and :data:`ATTACK_OUTCOMES` to declare what a probe
  reads;
- **attacks** — the ε-sweep base class that puts a plugin attack into the Attacks section and the
  worst case, the re-check of adversarial examples and the adapter around torchattacks;
- **parameter curvature** — the curvature probe base, its knobs, the exact Hessian-vector-product
  operator, sample sets and certified top-k eigenpairs;
- **report** — :func:`render_probe_section` (a probe's ``report_template`` as ``report.html`` embeds
  it) and :func:`svg` (the shared figure writer for ``report_context``);
- **testing** — :func:`make_test_context`, the registry and the JSON form of results.
"""
from __future__ import annotations

from robaudit.errors import ProbeError
from robaudit.models.audit_model import AuditModel, same_state
from robaudit.probes.attacks import torchattacks_adapter
from robaudit.probes.attacks.sweep import SweepAttack, SweepConfig, clean_correct, success_key
from robaudit.probes.attacks.verify import project, score
from robaudit.attack_outcomes import NormOutcomes, OutcomeTable, build_outcome_table, load_outcome_table
from robaudit.probes.base import (
    ATTACK_OUTCOMES,
    Column,
    Estimate,
    Flag,
    Probe,
    ProbeContext,
    ProbeResult,
    Requirement,
    Severity,
    check_level,
    column_meta,
    undeclared_summary_keys,
    validate_probe_class,
    wilson_interval,
)
from robaudit.probes.attacks.budgets import probe_budgets
from robaudit.probes.cost import (
    FORWARD_SHARE,
    HVP_FACTOR,
    AuditCost,
    Cost,
    Unknown,
    class_count_unknown,
    estimate_audit_cost,
    time_fwd_bwd,
)
from robaudit.probes.curvature.audit_net import no_autocast
from robaudit.probes.curvature.eigen import WHICH, EigenPairs, topk
from robaudit.probes.curvature.operator import HessianOperator
from robaudit.probes.curvature.probe_base import (
    KAMATH,
    CurvatureKnobs,
    CurvatureProbe,
    certificate_flag,
    check_sets,
    negative_flag,
)
from robaudit.probes.curvature.samples import SampleSet
from robaudit.probes.curvature.topk_probe import lanczos_hvp_estimate
from robaudit.probes.geometry.common import batch_rows, check_precision, second_order_error, working_model
from robaudit.probes.memory import working_budget
from robaudit.probes.geometry.jacobian import logit_geometry
from robaudit.probes.geometry.spectrum import ce_hessian_factor
from robaudit.probes.registry import ProbeRegistry
from robaudit.probes.seeding import derive_seed
from robaudit.probes.testing import make_test_context
from robaudit.report.figures import svg
from robaudit.report.render import render_probe_section
from robaudit.results.serialise import to_jsonable
from robaudit.threat_model import (
    NormBudget,
    ThreatModel,
    check_eps_list,
    check_norm,
    eps_key,
    resolve_threat_model,
)

__all__ = [
    # the probe contract
    "Column", "Estimate", "Flag", "Probe", "ProbeContext", "ProbeError", "ProbeResult", "Severity",
    "column_meta", "undeclared_summary_keys", "validate_probe_class", "Requirement", "ATTACK_OUTCOMES",
    # the cost model
    "Cost", "Unknown", "AuditCost", "estimate_audit_cost", "time_fwd_bwd", "FORWARD_SHARE", "HVP_FACTOR",
    "class_count_unknown", "probe_budgets", "lanczos_hvp_estimate",
    # numbers
    "check_level", "derive_seed", "wilson_interval",
    # the audit model
    "AuditModel", "batch_rows", "check_precision", "logit_geometry", "ce_hessian_factor", "second_order_error",
    "working_budget", "working_model",
    # attacks
    "SweepAttack", "SweepConfig", "clean_correct", "project", "score", "success_key", "torchattacks_adapter",
    # the threat model and the attack-outcome table
    "NormBudget", "ThreatModel", "check_eps_list", "check_norm", "eps_key", "resolve_threat_model",
    "NormOutcomes", "OutcomeTable", "build_outcome_table", "load_outcome_table",
    # parameter curvature
    "CurvatureKnobs", "CurvatureProbe", "EigenPairs", "HessianOperator", "KAMATH", "SampleSet",
    "WHICH", "certificate_flag", "check_sets", "negative_flag", "no_autocast", "topk",
    # report
    "render_probe_section", "svg",
    # testing
    "ProbeRegistry", "make_test_context", "same_state", "to_jsonable",
]
