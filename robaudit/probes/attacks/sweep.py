"""The ε sweep shared by the fixed-budget attack probes (FGSM, BIM, PGD L∞/L2, L2GRAD).

For each budget ε and each batch the probe calls its attack through the torchattacks adapter,
re-checks the output (:mod:`verify`), recomputes predictions, loss and margin, and draws a
uniform-noise baseline of the same size. Then the sanity checks of :mod:`sanity` run.

Result layout (documented in ``docs/attacks.md``):

* summary ``robust_accuracy`` / ``robust_accuracy_clean_correct``: dicts keyed by
  :func:`~robaudit.probes.attacks.budgets.eps_key` → Wilson estimates. The first counts every
  sample (AutoAttack's convention: a sample is robust when it is correct clean *and* after the
  attack); the second divides by the clean-correct samples.
* per sample ``success_eps_<key>`` (True when the sample is *not* robust at that ε: misclassified
  clean or after the attack), ``loss_eps_<key>`` (cross-entropy in nats after the attack),
  ``margin_eps_<key>`` (z_y − max_{j≠y} z_j after the attack), and ``gradient_vanished``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from robaudit.attack_outcomes import success_key
from robaudit.probes.attacks import sanity
from robaudit.probes.attacks import torchattacks_adapter as ta
from robaudit.probes.attacks.budgets import Budgets, eps_key, known_eps_keys, probe_budgets, sanity_eps
from robaudit.probes.seeding import derive_seed, generator, sample_seeds
from robaudit.probes.attacks.verify import forward_logits, predicts_correctly, project, score_logits
from robaudit.probes.cost import Cost
from robaudit.threat_model import ThreatModel
from robaudit.probes.base import (
    ATTACK_OUTCOMES,
    Column,
    Flag,
    Probe,
    ProbeContext,
    ProbeResult,
    check_level,
    wilson_interval,
)


def eps_columns(prefix: str, label: str, role: str, unit: str, norms: Sequence[str],
                scale_invariant: bool | None = None) -> dict[str, Column]:
    """Column metadata of the per-ε columns ``<prefix><eps key>``: ``<prefix>*`` labelled "… at ε"
    covers any budget, and each default or standard budget of ``norms``
    (:func:`~robaudit.probes.attacks.budgets.known_eps_keys`) gets its own "… at ε = <key>" label,
    so that the analysis stage's verdicts name the budget."""
    columns = {f"{prefix}*": Column(f"{label} at ε", role, unit, scale_invariant)}
    for key in known_eps_keys(norms):
        columns[f"{prefix}{key}"] = Column(f"{label} at ε = {key}", role, unit, scale_invariant)
    return columns


def outcome_columns(attack: str, norms: Sequence[str]) -> dict[str, Column]:
    """Column metadata of the per-sample outcomes every budgeted attack probe writes
    (``success_eps_<key>``, ``loss_eps_<key>``, ``margin_eps_<key>``); ``attack`` is its display name."""
    return {
        **eps_columns("success_eps_", f"{attack} success", "attack_success", "", norms),
        **eps_columns("loss_eps_", f"{attack} cross-entropy after the attack", "other", "nats", norms, False),
        **eps_columns("margin_eps_", f"{attack} logit margin z_y − max z_j after the attack", "other", "logits",
                      norms, False),
    }


def sweep_columns(attack: str, norm: str) -> dict[str, Column]:
    """Column metadata of a sweep probe: :func:`outcome_columns` and ``gradient_vanished``."""
    return {
        **outcome_columns(attack, (norm,)),
        "gradient_vanished": Column(f"{attack} first-step input gradient zero or non-finite (1/0)", "other", ""),
    }


def clean_correct(ctx: ProbeContext) -> np.ndarray:
    """N bools: the model is right on the clean sample (from the audit's shared clean logits)."""
    return (ctx.clean_logits().argmax(dim=1) == ctx.data.y).numpy()


def accuracy_by_eps(eps: Sequence[float], robust: np.ndarray, correct: np.ndarray, level: float) -> dict[str, Any]:
    """``robust_accuracy`` (all samples) and ``robust_accuracy_clean_correct`` keyed by ε."""
    n_correct = int(correct.sum())
    return {
        "robust_accuracy": {eps_key(e): wilson_interval(int(r.sum()), len(r), level) for e, r in zip(eps, robust)},
        "robust_accuracy_clean_correct": {eps_key(e): wilson_interval(int(r.sum()), n_correct, level)
                                          for e, r in zip(eps, robust)},
    }


def noise_like(x: torch.Tensor, eps: float, norm: str, gen: torch.Generator) -> torch.Tensor:
    """x plus random noise of size ε, clipped to [0, 1]: uniform in [−ε, ε] per pixel (L∞), or a
    uniformly random direction of length ε (L2)."""
    if norm == "linf":
        delta = (torch.rand(x.shape, generator=gen, dtype=x.dtype) * 2 - 1) * eps
    else:
        delta = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        delta = delta * (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).view(-1, *[1] * (x.dim() - 1))
    return (x + delta.to(x.device)).clamp(0.0, 1.0)



def sweep_outcomes(eps_list: list[float], robust: np.ndarray, loss: np.ndarray,
                   margin: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample columns of an ε sweep: ``success_eps_<key>`` (not robust), and the loss (nats) and
    margin (logits) after the attack, from (n_eps, N) arrays."""
    out: dict[str, np.ndarray] = {}
    for k, e in enumerate(eps_list):
        out[success_key(e)] = ~robust[k]
        out[f"loss_eps_{eps_key(e)}"] = loss[k]
        out[f"margin_eps_{eps_key(e)}"] = margin[k]
    return out

@dataclass
class SweepConfig:
    """Knobs shared by the fixed-budget attack probes."""

    eps: list[float] | None = field(default=None, metadata={"unit": "pixel units ([0, 1])"})
    """Budgets in pixel units; ``None`` takes the run's threat model (--eps); a list replaces it for this probe (see docs/attacks.md)."""
    sanity_checks: bool = True
    """Run the extra passes behind the sanity flags: the noise baseline, the single-step
    comparison (iterative attacks) and the box-covering budget (iterative attacks)."""
    ci_level: float = field(default=0.95, metadata={"unit": "probability (two-sided coverage)"})
    """Coverage of the Wilson intervals."""
    monotone: bool = True
    """ε-monotone sweep: a sample not robust at a budget counts as broken at every larger one with
    the same verified example (it lies inside the larger ball), and only the samples still standing
    are attacked at the next budget (as AutoAttack attacks only survivors). ``False`` attacks every
    sample at every budget (version 1's work)."""

    def __post_init__(self) -> None:
        check_level(self.ci_level, "ci_level")


class SweepAttack(Probe):
    """Base class: run one attack at every ε of the sweep; subclasses implement :meth:`attack`."""

    norm: ClassVar[str] = "linf"
    iterative: ClassVar[bool] = False
    single_step_peer: ClassVar[str | None] = None
    """The single-step attack compared against (declare it in ``requires`` too, optional)."""
    needs_grad = True
    provides = (ATTACK_OUTCOMES,)
    higher_is_better: ClassVar = {("robust_accuracy",): True, ("robust_accuracy_clean_correct",): True,
                                  ("noise_accuracy",): True}
    outcome_keys: ClassVar = (("robust_accuracy", "*"),)
    summary_keys: ClassVar = (
        ("clean_accuracy",), ("n",), ("norm",), ("eps", "*"), ("eps_source",), ("robust_accuracy", "*"),
        ("robust_accuracy_clean_correct", "*"), ("noise_accuracy", "*"), ("mean_loss", "*"),
        ("invalid_adversarials", "*"), ("sanity", "**"), ("settings", "**"),
    )

    def attack(self, target: ta.AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: float,
               seed: ta.Seeds) -> ta.AttackOutput:
        """Adversarial candidates for one batch at budget ``eps`` (through the adapter); ``seed`` is one
        seed per sample of the batch (its own random stream) or one for the batch."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The effective attack settings, echoed in the summary."""
        return {}

    @classmethod
    def attack_cost(cls, config: Any) -> Cost | None:
        """Passes per sample of one :meth:`attack` call at one ε (an upper bound where restarts
        attack only survivors); ``None``: not declared, and :meth:`estimate_cost` declares none."""
        return None

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset()) -> Cost | None:
        """Per ε: the attack and one re-check forward of its output; with ``sanity_checks``, one
        noise-baseline forward, and for iterative attacks the single-step comparison (free when the
        peer probe is selected: its result is reused) and the box-covering re-attack of the
        survivors at the largest ε (counted for every sample: an upper bound)."""
        step = cls.attack_cost(config)
        if step is None:
            return None
        n_eps = len(probe_budgets(config.eps, cls.norm, threat_model).eps)
        per_sample = n_eps * (step + Cost(forward=1))
        if config.sanity_checks:
            per_sample = per_sample + Cost(forward=n_eps)
            if cls.iterative:
                if cls.single_step_peer is not None and cls.single_step_peer not in selected:
                    per_sample = per_sample + n_eps * Cost(forward=1, backward=1)
                per_sample = per_sample + step + Cost(forward=1)
        return per_sample * n_samples

    def run(self, ctx: ProbeContext) -> ProbeResult:
        cfg = self.config
        budgets = probe_budgets(cfg.eps, self.norm, ctx.threat_model)
        correct = clean_correct(ctx)
        n, eps_list = len(correct), budgets.eps
        robust = np.zeros((len(eps_list), n), dtype=bool)
        noise_robust = np.zeros((len(eps_list), n), dtype=bool)
        loss = np.full((len(eps_list), n), math.nan)
        margin = np.full((len(eps_list), n), math.nan)
        invalid = {eps_key(e): 0 for e in eps_list}
        grad_bad = np.zeros(n, dtype=bool)
        grad_seen = False
        keys = ctx.data.content_keys()  # per-sample random streams: pixels, not ids or batch mates

        n_batches = max(1, math.ceil(n / ctx.batch_size))
        slots = [(k, b) for k in range(len(eps_list)) for b in range(n_batches)]
        standing = np.arange(n)
        logits: list[torch.Tensor] = []  # an ε's re-check logits stay on the device until it is done
        n_bad = 0

        with ta.attack_session(ctx.model, ctx.device) as target:
            # progress counts batch slots; a slot whose samples were all broken at a smaller ε is free
            for k, b in ctx.progress(slots, self.name, len(slots)):
                eps = eps_list[k]
                if b == 0 and k > 0 and cfg.monotone:
                    # ε-monotone: a sample not robust at ε_{k−1} keeps that verified example (inside the
                    # larger ball) and its loss and margin; only the samples still standing are attacked
                    standing = np.flatnonzero(robust[k - 1])
                    carried = ~robust[k - 1]
                    loss[k, carried], margin[k, carried] = loss[k - 1, carried], margin[k - 1, carried]
                target.check_gradients = k == 0  # the gradient-masking check reads the first budget only
                part = standing[b * ctx.batch_size:(b + 1) * ctx.batch_size]
                if len(part):
                    rows = torch.as_tensor(part)
                    xb, yb = ctx.data.x[rows].to(ctx.device), ctx.data.y[rows].to(ctx.device)
                    seeds = sample_seeds(ctx.seed, [keys[i] for i in part], "attack", eps_key(eps))
                    with target.known_clean(torch.from_numpy(correct[part]), xb, yb):
                        out = self.attack(target, xb, yb, eps, seeds)
                    adv, invalid_rows = project(xb, out.adv, eps, self.norm)
                    logits.append(forward_logits(ctx.model, adv))
                    n_bad += int(invalid_rows.sum())
                    if k == 0 and out.first_grad_bad is not None:
                        grad_bad[part] = out.first_grad_bad.numpy()
                        grad_seen = True
                if b == n_batches - 1:
                    if len(standing):
                        scored = score_logits(torch.cat(logits), ctx.data.y[torch.as_tensor(standing)])
                        robust[k, standing] = correct[standing] & scored.correct.numpy()
                        loss[k, standing], margin[k, standing] = scored.loss.numpy(), scored.margin.numpy()
                    invalid[eps_key(eps)] = n_bad
                    if cfg.sanity_checks:
                        noise_robust[k] = correct & self._noise_correct(ctx, eps, k)
                    logits, n_bad = [], 0
            single = large = None
            target.check_gradients = False
            if cfg.sanity_checks and self.iterative:
                single = self._single_step(ctx, target, budgets, correct)
                large = self._large_eps(ctx, target, robust[-1])

        flags: list[Flag | None] = []
        summary: dict[str, Any] = {
            "norm": self.norm, "eps": list(eps_list), "eps_source": budgets.source, "n": n,
            "settings": self.settings(),
            "clean_accuracy": wilson_interval(int(correct.sum()), n, cfg.ci_level),
            **accuracy_by_eps(eps_list, robust, correct, cfg.ci_level),
            "mean_loss": {eps_key(e): float(np.mean(loss[k])) for k, e in enumerate(eps_list)},
            "invalid_adversarials": invalid,
        }
        checks: dict[str, Any] = {}
        if grad_seen:
            flag, checks["gradient_vanished"] = sanity.gradient_vanish(self.name, grad_bad)
            flags.append(flag)
        flag, checks["accuracy_rises"] = sanity.accuracy_rises(self.name, eps_list, list(robust))
        flags.append(flag)
        if cfg.sanity_checks:
            summary["noise_accuracy"] = {eps_key(e): wilson_interval(int(r.sum()), n, cfg.ci_level)
                                         for e, r in zip(eps_list, noise_robust)}
            flag, checks["noise"] = sanity.noise_as_strong(self.name, eps_list, correct, list(robust), list(noise_robust))
            flags.append(flag)
        if single is not None:
            peer, source, robust_single = single
            flag, rows = sanity.weaker_than_single_step(self.name, peer, eps_list, list(robust), list(robust_single))
            checks["single_step"] = {"peer": peer, "source": source, "by_eps": rows}
            flags.append(flag)
        if large is not None:
            flag, checks["large_eps"] = large
            flags.append(flag)
        flags.append(sanity.attack_output_invalid(self.name, invalid))
        summary["sanity"] = checks

        per_sample = sweep_outcomes(eps_list, robust, loss, margin)
        if grad_seen:
            per_sample["gradient_vanished"] = grad_bad
        return ProbeResult(summary=summary, per_sample=per_sample, flags=[f for f in flags if f is not None])

    # -- sanity passes -------------------------------------------------------------------------

    def _noise_correct(self, ctx: ProbeContext, eps: float, k: int) -> np.ndarray:
        """N bools: the model is right on every sample plus uniform noise of size ``eps`` (all samples,
        whatever the attack skipped; one forward pass per batch)."""
        ok = []
        for b, (_rows, xb, yb) in enumerate(ctx.data.batches(ctx.batch_size)):
            xb, yb = xb.to(ctx.device), yb.to(ctx.device)
            noisy = noise_like(xb, eps, self.norm, generator(ctx.seed, "noise", k, b))
            ok.append(predicts_correctly(ctx.model, noisy, yb))
        return torch.cat(ok).cpu().numpy()

    def _single_step(self, ctx: ProbeContext, target: ta.AttackTarget, budgets: Budgets,
                     correct: np.ndarray) -> tuple[str, str, np.ndarray] | None:
        """Robustness under the single-step peer at each ε: reused from an earlier probe of this
        audit when it ran at every one of these budgets, else computed here."""
        peer = self.single_step_peer
        if peer is None:
            return None
        previous = ctx.previous.get(peer)
        if previous is not None and all(success_key(e) in previous.per_sample for e in budgets.eps):
            robust = np.stack([~np.asarray(previous.per_sample[success_key(e)], dtype=bool) for e in budgets.eps])
            return peer, "previous", robust & correct
        robust = np.zeros((len(budgets.eps), len(correct)), dtype=bool)
        step = ta.fgsm if self.norm == "linf" else ta.l2grad
        batches = list(enumerate(ctx.data.batches(ctx.batch_size)))
        jobs = [(k, b, rows, xb, yb) for k in range(len(budgets.eps)) for b, (rows, xb, yb) in batches]
        for k, b, rows, xb, yb in ctx.progress(jobs, f"{self.name}: single-step check", len(jobs)):
            eps = budgets.eps[k]
            xb, yb = xb.to(ctx.device), yb.to(ctx.device)
            out = step(target, xb, yb, eps, derive_seed(ctx.seed, "single-step", k, b))
            adv, _ = project(xb, out.adv, eps, self.norm)
            robust[k, rows] = correct[rows] & predicts_correctly(ctx.model, adv, yb).cpu().numpy()
        return peer, "computed", robust

    def _large_eps(self, ctx: ProbeContext, target: ta.AttackTarget,
                   robust_at_max: np.ndarray) -> tuple[Flag | None, dict[str, Any]]:
        """Attack the samples still robust at the largest ε again at a box-covering budget.

        Samples broken at a smaller budget are broken at this one too (their adversarial example
        lies inside the larger ball), so only the survivors need the extra attack.
        """
        big = sanity_eps(self.norm, tuple(ctx.data.x.shape[1:]))
        idx = np.flatnonzero(robust_at_max)
        keys = ctx.data.content_keys()
        correct = clean_correct(ctx)
        robust = np.zeros(len(robust_at_max), dtype=bool)
        starts = list(enumerate(range(0, len(idx), ctx.batch_size)))
        for b, start in ctx.progress(starts, f"{self.name}: large-eps check", len(starts)):
            part = idx[start:start + ctx.batch_size]
            rows = torch.as_tensor(part)
            xb, yb = ctx.data.x[rows].to(ctx.device), ctx.data.y[rows].to(ctx.device)
            with target.known_clean(torch.from_numpy(correct[part]), xb, yb):
                out = self.attack(target, xb, yb, big, sample_seeds(ctx.seed, [keys[i] for i in part], "large-eps"))
            adv, _ = project(xb, out.adv, big, self.norm)
            robust[rows.numpy()] = predicts_correctly(ctx.model, adv, yb).cpu().numpy()
        flag, details = sanity.large_eps_not_broken(self.name, big, robust, len(robust))
        details["attacked"] = int(len(idx))
        return flag, details

