"""Sanity checks against gradient masking and broken attacks (Carlini et al. 2019; AutoAttack's checks).

Each check is a pure function of per-sample outcomes and returns a :class:`Flag` (or ``None``)
and the numbers behind it; the thresholds are module constants, documented in ``docs/flags.md``.
Robustness arrays are N bools, True where the sample is classified correctly both clean and
after the attack (AutoAttack's convention).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from robaudit.probes.attacks.budgets import eps_key
from robaudit.probes.base import Flag, Severity

GRADIENT_VANISH_FRACTION = 0.10
"""``attack_gradients_vanish`` when more than this fraction of samples has a zero/non-finite gradient."""
RISE_TOLERANCE = 0
"""``accuracy_rises_with_eps`` when robust samples increase by more than this many between budgets."""
SINGLE_STEP_TOLERANCE = 0
"""``iterative_weaker_than_single_step`` when the iterative attack leaves more than this many extra
samples robust than the single-step attack at the same budget."""
LARGE_EPS_MAX_ACCURACY = 0.02
"""``large_eps_not_broken`` when robust accuracy at the box-covering budget exceeds this."""
NOISE_RATIO = 0.5
"""``noise_as_strong_as_attack`` when noise breaks at least this fraction of what the attack breaks …"""
NOISE_MIN_BROKEN = 2
"""… and at least this many samples (or 1 % of them, whichever is larger)."""
BLACK_BOX_TOLERANCE = 0
"""``black_box_beats_white_box`` when Square breaks more than this many samples the white-box
components left robust."""


def gradient_vanish(probe: str, bad: np.ndarray) -> tuple[Flag | None, dict[str, Any]]:
    """Flag a sizeable fraction of samples whose first-step input gradient is zero or non-finite."""
    n, count = len(bad), int(np.sum(bad))
    details = {"count": count, "of": n, "threshold_fraction": GRADIENT_VANISH_FRACTION}
    if n and count > GRADIENT_VANISH_FRACTION * n:
        return Flag(
            "attack_gradients_vanish", Severity.WARNING,
            f"{probe}: {count} of {n} samples have a zero or non-finite input gradient of the loss at the "
            "attack's first step; gradient attacks cannot move them (gradient masking: softmax outputs, "
            "rounding or thresholding layers), so robust accuracy is overstated",
            probe), details
    return None, details


def accuracy_rises(probe: str, eps: Sequence[float], robust: Sequence[np.ndarray]) -> tuple[Flag | None, list[dict[str, Any]]]:
    """Flag robust accuracy rising from one budget to a larger one."""
    rises = []
    for k in range(1, len(eps)):
        before, after = int(np.sum(robust[k - 1])), int(np.sum(robust[k]))
        if after - before > RISE_TOLERANCE:
            rises.append({"from_eps": eps[k - 1], "to_eps": eps[k], "robust_before": before, "robust_after": after})
    if rises:
        worst = max(rises, key=lambda r: r["robust_after"] - r["robust_before"])
        n = len(robust[0])
        return Flag(
            "accuracy_rises_with_eps", Severity.WARNING,
            f"{probe}: robust accuracy rises from {worst['robust_before']}/{n} at eps={eps_key(worst['from_eps'])} "
            f"to {worst['robust_after']}/{n} at eps={eps_key(worst['to_eps'])}; a larger budget contains every smaller "
            "one, so the attack is failing to find examples it found before (too few steps, a step size that does "
            "not scale with eps, or a masked loss surface)",
            probe), rises
    return None, rises


def weaker_than_single_step(probe: str, single: str, eps: Sequence[float], robust_iterative: Sequence[np.ndarray],
                            robust_single: Sequence[np.ndarray]) -> tuple[Flag | None, dict[str, Any]]:
    """Flag an iterative attack leaving more samples robust than a single-step one at the same budget."""
    rows: dict[str, Any] = {}
    worse = []
    for e, it, ss in zip(eps, robust_iterative, robust_single):
        extra = int(np.sum(it)) - int(np.sum(ss))
        rows[eps_key(e)] = {"robust_iterative": int(np.sum(it)), "robust_single_step": int(np.sum(ss)),
                            "broken_only_by_single_step": int(np.sum(it & ~ss))}
        if extra > SINGLE_STEP_TOLERANCE:
            worse.append((e, extra))
    if worse:
        e, extra = max(worse, key=lambda t: t[1])
        return Flag(
            "iterative_weaker_than_single_step", Severity.WARNING,
            f"{probe} leaves {extra} more samples robust than {single} at eps={eps_key(e)}; many small steps "
            "should never do worse than one big one, so the loss surface misleads local steps (gradient masking "
            "or a non-differentiable step) or the step size is wrong",
            probe), rows
    return None, rows


def large_eps_not_broken(probe: str, eps: float, robust: np.ndarray, n: int) -> tuple[Flag | None, dict[str, Any]]:
    """Flag robust accuracy not near 0 at a budget that reaches every image in the box."""
    count = int(np.sum(robust))
    accuracy = count / n if n else math.nan
    details = {"eps": eps, "robust": count, "of": n, "robust_accuracy": accuracy,
               "threshold_accuracy": LARGE_EPS_MAX_ACCURACY}
    if n and accuracy > LARGE_EPS_MAX_ACCURACY:
        return Flag(
            "large_eps_not_broken", Severity.ERROR,
            f"{probe}: {count} of {n} samples stay correctly classified at eps={eps_key(eps)}, a budget that can "
            "turn any image into any other; the attack is not working on this model (gradient masking, wrong "
            "loss, or too few steps), so its robust accuracies are not upper bounds worth trusting",
            probe), details
    return None, details


def noise_as_strong(probe: str, eps: Sequence[float], clean_correct: np.ndarray, robust_attack: Sequence[np.ndarray],
                    robust_noise: Sequence[np.ndarray]) -> tuple[Flag | None, dict[str, Any]]:
    """Flag random noise of the same budget breaking about as many samples as the attack."""
    n = len(clean_correct)
    minimum = max(NOISE_MIN_BROKEN, math.ceil(0.01 * n))
    rows: dict[str, Any] = {}
    hits = []
    for e, att, noi in zip(eps, robust_attack, robust_noise):
        by_attack = int(np.sum(clean_correct & ~att))
        by_noise = int(np.sum(clean_correct & ~noi))
        rows[eps_key(e)] = {"broken_by_attack": by_attack, "broken_by_noise": by_noise}
        if by_noise >= minimum and by_noise >= NOISE_RATIO * by_attack:
            hits.append((e, by_attack, by_noise))
    if hits:
        e, by_attack, by_noise = hits[0]
        return Flag(
            "noise_as_strong_as_attack", Severity.WARNING,
            f"{probe}: at eps={eps_key(e)} uniform random noise breaks {by_noise} samples and the attack {by_attack}; "
            "an attack should do far more harm than noise of the same size, so its gradients are not informative "
            "(gradient masking)",
            probe), rows
    return None, rows


def black_box_beats_white_box(probe: str, eps: Sequence[float], square_only: Sequence[int], n: int) -> tuple[Flag | None, dict[str, Any]]:
    """Flag Square (black box) breaking samples that APGD-CE, APGD-T and FAB-T all left robust."""
    rows = {eps_key(e): int(c) for e, c in zip(eps, square_only)}
    worst = max(zip(square_only, eps), default=(0, 0.0))
    if worst[0] > BLACK_BOX_TOLERANCE:
        return Flag(
            "black_box_beats_white_box", Severity.WARNING,
            f"{probe}: at eps={eps_key(worst[1])} the black-box Square attack broke {worst[0]} of {n} samples that "
            "every white-box component left robust; gradients mislead the white-box attacks (gradient masking)",
            probe), rows
    return None, rows


def attack_output_invalid(probe: str, invalid: dict[str, int]) -> Flag | None:
    """Flag attack outputs that were non-finite, outside [0, 1] or outside the ε-ball (then repaired)."""
    total = sum(invalid.values())
    if total:
        where = ", ".join(f"{k}: {v}" for k, v in invalid.items() if v)
        return Flag(
            "attack_output_invalid", Severity.WARNING,
            f"{probe}: the attack returned {total} candidates that were non-finite, outside [0, 1] or outside the "
            f"budget (eps {where}); they were projected back (non-finite ones replaced by the clean image) before "
            "scoring",
            probe)
    return None
