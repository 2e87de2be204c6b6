"""The audit's verdict: one plain-text sentence on robustness at the reference budget, from ``results.json``.

:func:`verdict_sentence` is what the report shows at the top (``#verdict``) and what the console
summary prints. It reads only ``results.json``: the threat model's reference budget and its source
(:class:`~robaudit.threat_model.ThreatModel` owns it), ``attack.worst_case`` (the per-sample worst
case and its Wilson interval; without it, the same interval from the outcome table's counts) and the
attack-outcome table (which attacks answered at that budget).
No HTML here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from robaudit.probes.base import wilson_interval
from robaudit.threat_model import eps_key, same_eps

NORM_NAMES = {"linf": "L∞", "l2": "L2"}
FAMILY_NAMES = {"digits": "8×8 digits-like data", "mnist-like": "MNIST-like data", "cifar-like": "CIFAR-like data",
                "imagenet-like": "ImageNet-like data"}
# The field's convention (RobustBench): AutoAttack at the standard L∞ budget on CIFAR and ImageNet.
AUTOATTACK_FAMILIES = ("cifar-like", "imagenet-like")
AUTOATTACK = "attack.autoattack"
ATTACK_NAMES = {"attack.fgsm": "FGSM", "attack.l2grad": "L2 gradient step", "attack.bim": "BIM",
                "attack.min_eps": "minimal-ε PGD bisection", "attack.cw_l2": "C&W L2", "attack.fab": "FAB",
                "attack.autoattack": "AutoAttack", "attack.pgd_l2": "PGD L2"}


@dataclass(frozen=True)
class Verdict:
    """The verdict's facts and its sentence.

    Attributes:
        norm: ``linf`` or ``l2``; None when no attack answered.
        eps: the reference budget (pixel units).
        budget_source: the threat model's source of the budget (``default:<family>`` or ``config``).
        value, low, high: worst-case robust accuracy over all samples and its Wilson interval (fractions).
        n: samples.
        attacks: the attack probes the worst case covers at ``eps``.
        meets_convention: AutoAttack is among them, or the convention does not ask for it.
        sentence: the plain-text sentence.
    """

    norm: str | None
    eps: float | None
    budget_source: str | None
    value: float | None
    low: float | None
    high: float | None
    n: int | None
    attacks: tuple[str, ...]
    meets_convention: bool
    sentence: str


def worst_case_rows(results: dict[str, Any], level: float = 0.95) -> list[dict[str, Any]]:
    """Worst-case robust accuracy per (norm, ε) over every attack that ran at that budget.

    A sample counts as robust at ε when it is clean-correct and no attack broke it within ε
    (``results["attack_outcomes"]``), so the value is ``(n − broken) / n`` with a Wilson interval.

    Returns:
        One dict per (norm, ε) in the order of the outcome table: ``norm``, ``eps`` (pixels in [0, 1]
        images, in that norm), ``estimate`` (value/low/high, fractions in [0, 1]) and ``attacks``.
    """
    table = results.get("attack_outcomes") or {}
    n = int(table.get("n") or 0)
    rows = []
    for norm, block in (table.get("norms") or {}).items():
        for entry in block.get("by_eps", []):
            if n == 0:
                continue
            estimate = wilson_interval(n - int(entry["broken"]), n, level)
            rows.append({"norm": norm, "eps": float(entry["eps"]), "attacks": list(entry.get("attacks", [])),
                         "estimate": {"value": estimate.value, "low": estimate.low, "high": estimate.high}})
    return rows


def format_eps(eps: float, norm: str) -> str:
    """``8/255`` for an L∞ budget that is a whole number of 8-bit levels, else ``0.1``."""
    level = Fraction(eps).limit_denominator(255)
    if norm == "linf" and level.denominator == 255 and abs(float(level) - eps) < 1e-9:
        return f"{level.numerator}/255"
    return f"{eps:.4g}"


def attack_name(probe: str, results: dict[str, Any]) -> str:
    """A reader's name for an attack probe: ``APGD-CE-20`` for ``attack.pgd_linf`` with its default
    method and 20 steps, ``PGD-20`` with ``method = "pgd"``."""
    if probe in ("attack.pgd_linf", "attack.pgd_l2"):
        settings = results.get("probes", {}).get(probe, {}).get("summary", {}).get("settings") or {}
        steps = settings.get("steps")
        name = "APGD-CE" if settings.get("method") == "apgd-ce" else "PGD" + ("" if probe.endswith("linf") else " L2")
        return f"{name}-{steps}" if steps else name
    return ATTACK_NAMES.get(probe, probe.removeprefix("attack."))


def _percent(x: float) -> str:
    return f"{100 * x:.1f}"


def _norm_and_budget(results: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The headline norm (L∞ when attacked, else L2) and its threat-model budget."""
    outcomes = (results.get("attack_outcomes") or {}).get("norms") or {}
    norms = (results.get("threat_model") or {}).get("norms") or {}
    for norm in ("linf", "l2"):
        if norm in outcomes and norm in norms:
            return norm, norms[norm]
    return None


def verdict(results: dict[str, Any]) -> Verdict:
    """The verdict of ``results`` (a ``results.json`` dict); see the module docstring."""
    picked = _norm_and_budget(results)
    if picked is None:
        return Verdict(None, None, None, None, None, None, None, (), False,
                       "No attack ran, so this audit says nothing about adversarial robustness; "
                       "add attack probes (e.g. --probes clean,attack.pgd_linf) to get a verdict.")
    norm, budget = picked
    eps, source = float(budget["reference"]), str(budget["source"])
    family = (results.get("threat_model") or {}).get("family", "")
    where = (f"the reference budget for {FAMILY_NAMES.get(family, family)}" if source.startswith("default")
             else "the largest budget you configured with --eps")
    head = f"Under {NORM_NAMES[norm]} ε = {format_eps(eps, norm)} ({where})"
    entry = next((e for e in results["attack_outcomes"]["norms"][norm]["by_eps"] if same_eps(e["eps"], eps)), None)
    worst = ((results.get("probes", {}).get("attack.worst_case", {}).get("summary") or {}).get(norm) or {})
    est = (worst.get("robust_accuracy") or {}).get(eps_key(eps))
    if entry is not None and (not est or est.get("value") is None):  # no attack.worst_case: from the table's counts
        n = int(results["attack_outcomes"]["n"])
        est = dataclasses.asdict(wilson_interval(n - int(entry["broken"]), n)) if n else None
    if entry is None or not est or est.get("value") is None:
        return Verdict(norm, eps, source, None, None, None, None, (), False,
                       f"{head}, no attack ran at this budget, so the audit gives no verdict there; "
                       f"add it to the sweep (--eps {norm}=…).")
    attacks = tuple(entry["attacks"])
    names = " + ".join(attack_name(a, results) for a in attacks)
    needs_aa = norm == "linf" and family in AUTOATTACK_FAMILIES
    meets = AUTOATTACK in attacks or not needs_aa
    if AUTOATTACK in attacks:
        tail = "this meets the field's convention (AutoAttack), and is still an upper bound on the true robust accuracy"
    elif needs_aa:
        tail = ("AutoAttack, the field's convention for L∞ on CIFAR/ImageNet, was not run, so this is an upper bound "
                "that may overstate robustness")
    else:
        tail = "AutoAttack was not run, so this is an upper bound"
    sentence = (f"{head}, worst-case robust accuracy is {_percent(est['value'])} % "
                f"[{_percent(est['low'])}, {_percent(est['high'])}] over {names}; {tail}.")
    return Verdict(norm, eps, source, float(est["value"]), float(est["low"]), float(est["high"]), int(est["n"]),
                   attacks, meets, sentence)


def verdict_sentence(results: dict[str, Any]) -> str:
    """The verdict sentence of ``results`` (plain text): see :func:`verdict`."""
    return verdict(results).sentence
