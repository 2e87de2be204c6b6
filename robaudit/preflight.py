"""Preflight checks on the audit model and data, run once before any probe.

Checks that make every number meaningless raise :class:`PreflightError` (NaN/Inf logits,
a wrong logit shape, pixels outside [0, 1]). The rest become stored flags:
probabilities instead of logits, non-determinism in eval mode, zero input gradients,
suspicious normalisation, and missing double backward (needed by second-order probes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from robaudit.data.audit_data import AuditData
from robaudit.errors import PreflightError
from robaudit.models.audit_model import AuditModel
from robaudit.probes.base import Flag, Severity

PREFLIGHT_SAMPLES = 64
SOURCE = "preflight"


@dataclass
class PreflightReport:
    """Outcome of the preflight checks.

    Attributes:
        flags: stored findings.
        stats: numbers recorded in ``results.json`` under ``preflight``.
        double_backward: ``True``/``False`` when tested (a probe needed it), else ``None``.
        double_backward_error: the error message when it failed.
    """

    flags: list[Flag] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    double_backward: bool | None = None
    double_backward_error: str | None = None


def run_preflight(model: AuditModel, data: AuditData, device: torch.device, check_double_backward: bool) -> PreflightReport:
    """Check the model on up to 64 audit samples.

    Args:
        model: the audit model (eval mode, on ``device``); left unchanged.
        data: the audit data; its pixels must lie in [0, 1].
        device: where to run.
        check_double_backward: test second derivatives (a selected probe needs them).

    Raises:
        PreflightError: pixels outside [0, 1], logits of the wrong shape, or NaN/Inf logits.
    """
    report = PreflightReport()
    lo, hi = float(data.x.min()), float(data.x.max())
    report.stats["pixel_range"] = [lo, hi]
    if lo < 0.0 or hi > 1.0:
        raise PreflightError(
            f"audit inputs must be pixels in [0, 1] but range over [{lo:.4g}, {hi:.4g}]",
            fix="pass unnormalised data; the model applies mean/std itself (see --mean/--std)",
        )
    x = data.x[:PREFLIGHT_SAMPLES].to(device)
    y = data.y[:PREFLIGHT_SAMPLES].to(device)

    seen: dict[str, torch.Tensor] = {}
    hook = model.net.register_forward_pre_hook(lambda _m, args: seen.setdefault("input", args[0].detach()))
    try:
        with torch.no_grad():
            logits = model(x)
            again = model(x)
    finally:
        hook.remove()
    _check_logits(logits, model.num_classes, len(x))
    _check_network_input(seen.get("input"), model, x, report)

    rows = logits.double()
    if bool((rows >= 0).all()) and bool(torch.allclose(rows.sum(dim=1), torch.ones_like(rows[:, 0]), atol=1e-4)):
        report.flags.append(Flag(
            "probabilities_not_logits", Severity.ERROR,
            "the model's outputs are non-negative and every row sums to 1: it returns probabilities, not logits; "
            "gradient attacks on softmax outputs are masked and the loss is computed twice through softmax",
            SOURCE,
        ))
    if not torch.equal(logits, again):
        diff = float((logits - again).abs().max())
        report.flags.append(Flag(
            "nondeterministic_eval", Severity.WARNING,
            f"two identical forward passes in eval mode differ (max |Δlogit| = {diff:.3g}); "
            "per-sample results will not reproduce exactly",
            SOURCE,
        ))

    grad = _input_gradient(model, x, y)
    per_sample = grad.flatten(1).abs().sum(dim=1)
    bad = int(((per_sample == 0) | ~torch.isfinite(per_sample)).sum())
    report.stats["zero_or_nonfinite_input_gradients"] = {"count": bad, "of": len(x)}
    if bad > 0.1 * len(x):
        report.flags.append(Flag(
            "zero_input_gradients", Severity.WARNING,
            f"{bad} of {len(x)} preflight samples have a zero or non-finite input gradient of the loss; "
            "gradient-based attacks and indicators will understate vulnerability (gradient masking)",
            SOURCE,
        ))

    if check_double_backward:
        try:
            _double_backward(model, x[:4], y[:4])
            report.double_backward = True
        except RuntimeError as exc:
            report.double_backward = False
            report.double_backward_error = str(exc).splitlines()[0]
            report.flags.append(Flag(
                "no_double_backward", Severity.ERROR,
                f"the model does not support second derivatives ({report.double_backward_error}); "
                "second-order probes cannot run on it",
                SOURCE,
            ))
    report.stats["samples_checked"] = len(x)
    return report


def _check_logits(logits: torch.Tensor, num_classes: int, n: int) -> None:
    if logits.ndim != 2 or logits.shape != (n, num_classes):
        raise PreflightError(
            f"the model returned shape {tuple(logits.shape)} for {n} inputs; expected ({n}, {num_classes}) logits",
            fix="check --arch and that the model ends in a classifier over the dataset's classes",
        )
    finite = torch.isfinite(logits).all(dim=1)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise PreflightError(
            f"the model returns NaN or Inf logits on {bad} of {n} preflight samples",
            fix="check the checkpoint (it may be corrupt or diverged) and the normalisation (--mean/--std)",
        )


def _check_network_input(seen: torch.Tensor | None, model: AuditModel, x: torch.Tensor, report: PreflightReport) -> None:
    """Record what the network sees, and confirm it is ``(x − mean)/std`` of the probe's pixels."""
    if seen is None:
        return
    expected = model.normalise(x)
    report.stats["network_input"] = {
        "matches_normalised_pixels": bool(torch.allclose(seen, expected)),
        "channel_mean": seen.double().mean(dim=(0, 2, 3)).tolist(),
        "channel_std": seen.double().std(dim=(0, 2, 3)).tolist(),
    }
    means = seen.double().mean(dim=(0, 2, 3)).abs()
    if bool((means > 3).any()):
        report.flags.append(Flag(
            "normalisation_suspect", Severity.WARNING,
            f"the network's normalised inputs have channel means {[round(float(m), 2) for m in means]}; "
            f"expected values near 0 (normalisation from '{model.provenance.normalisation.source}')",
            SOURCE,
        ))


def _input_gradient(model: AuditModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad.detach()


def _double_backward(model: AuditModel, x: torch.Tensor, y: torch.Tensor) -> None:
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y)
        (grad,) = torch.autograd.grad(loss, x, create_graph=True)
        v = torch.ones_like(x)
        torch.autograd.grad((grad * v).sum(), x)
