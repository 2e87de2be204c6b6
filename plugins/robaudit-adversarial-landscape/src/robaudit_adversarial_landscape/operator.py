"""The adversarial loss L_ε(θ), its Hessian-vector products, and PGD at shifted parameters.

For a sample set S of N samples,

    L_ε(θ) = (1/N) Σ_i CE(f_θ(x_i + δ_i*(θ)), y_i),    δ_i*(θ) ≈ argmax_{‖δ‖ ≤ ε, x_i + δ ∈ [0, 1]} CE(f_θ(x_i + δ), y_i)

with δ* found by PGD (robaudit's torchattacks adapter: random start, step = a fraction of ε,
projection onto the ε-ball and the pixel box; every output re-projected by robaudit's verifier).

**Danskin's approximation.** The Hessian computed here is ∇²_θ of L(θ, x + δ*) with δ* *held
fixed* at the value PGD found at θ: the dependence of δ* on θ is ignored in the second
derivative. Danskin's theorem makes this exact for the *gradient* (∇_θ L_ε = ∇_θ L at δ*, when the
maximiser is unique); for the second derivative the total derivative adds the term
H_θδ·dδ*/dθ. Coordinates of δ* pinned at a constraint (the faces of the L∞ ball or of the pixel box,
where PGD's signed steps put most of them) do not move under a small change of θ, so they
contribute nothing to that term; for coordinates at an interior strict local maximum the implicit
function theorem gives dδ*/dθ = −H_δδ⁻¹H_δθ, so the omitted term is H_θδ(−H_δδ)⁻¹H_δθ, positive
semi-definite. Under those assumptions the eigenvalues reported here are lower bounds of those of
the total second derivative (Weyl). PGD finds an approximate maximiser, so this is a statement
about the exact maximiser, not a certificate.

**Why δ* is computed once per θ, not once per HVP.** Liu et al. recompute adversarial examples at
θ inside each loss evaluation. Every HVP of one Lanczos run is taken at the same θ, and PGD is a
deterministic function of (θ, x, y, seed) once its random start is seeded; so recomputing δ*(θ)
inside every HVP returns the same δ* bit for bit and the same H·v. :class:`AdversarialHessianOperator`
therefore finds δ* once; ``recompute_per_hvp=True`` recomputes it in every product (the literal
protocol, used by the tests to show the two agree), and :meth:`AdversarialHessianOperator.recompute_difference`
re-runs PGD once to check the determinism this relies on (GPU kernels can break it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robaudit.plugin import AuditModel, HessianOperator, SampleSet, derive_seed, no_autocast, project
from robaudit.plugin import torchattacks_adapter as ta


@dataclass(frozen=True)
class PGD:
    """PGD (L∞ or L2) with robaudit's conventions, as a deterministic function of (net, x, y).

    Attributes:
        norm: ``linf`` or ``l2``.
        eps: the budget, in [0, 1] pixel units (ε = 0 returns x unchanged).
        steps: PGD steps.
        step_fraction: the step size as a fraction of ε.
        random_start: start from a uniformly random point of the ε-ball.
        seed: the seed of the random starts; batch b uses ``derive_seed(seed, "pgd", b)``.
        batch_size: samples per attack call (the seeds depend on it, the update does not).
    """

    norm: str
    eps: float
    steps: int
    step_fraction: float
    random_start: bool
    seed: int
    batch_size: int

    def __call__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x + δ*: the PGD candidates of ``net`` (at its current parameters), projected and verified.

        ``x`` must already be on the net's device and in its dtype; the result is too.
        """
        if self.eps == 0:
            return x.clone()
        run = ta.pgd_linf if self.norm == "linf" else ta.pgd_l2
        out = []
        with torch.enable_grad(), no_autocast(x.device), ta.attack_session(net, x.device) as target:
            for b, start in enumerate(range(0, len(x), self.batch_size)):
                xb, yb = x[start:start + self.batch_size], y[start:start + self.batch_size]
                raw = run(target, xb, yb, self.eps, alpha=self.step_fraction * self.eps, steps=self.steps,
                          random_start=self.random_start, seed=derive_seed(self.seed, "pgd", b))
                adv, _invalid = project(xb, raw.adv.to(xb.dtype), self.eps, self.norm)
                out.append(adv.detach())
        return torch.cat(out) if out else x.clone()

    def describe(self) -> dict[str, Any]:
        """JSON description (seed included: the same seed gives the same δ*)."""
        return {"attack": f"PGD {self.norm}", "eps": self.eps, "steps": self.steps,
                "step_fraction": self.step_fraction, "random_start": self.random_start, "seed": self.seed,
                "batch_size": self.batch_size}


class ShiftedNet(nn.Module):
    """``net`` evaluated at parameters θ' (one tensor per parameter) through ``torch.func.functional_call``.

    The wrapped network's own parameters and buffers are never written; buffers (BatchNorm running
    statistics, normalisation) are the network's.
    """

    def __init__(self, net: nn.Module, names: list[str], params: list[torch.Tensor]) -> None:
        super().__init__()
        self.net = net
        self._params = {name: p.detach() for name, p in zip(names, params)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self.net, self._params, (x,))


class AdversarialHessianOperator(HessianOperator):
    """H·v of the adversarial loss L_ε at θ, with δ*(θ) found by ``attack`` and then held fixed.

    It is robaudit's :class:`HessianOperator` (exact sample-weighted mean, batch streaming or graph
    reuse, operator checks) over the sample set with each x_i replaced by x_i + δ_i*(θ). PGD runs on
    the operator's own eval-mode copy, in the operator's dtype, so the attacked function and the
    differentiated one are the same.

    Args:
        model: the audit model (left unchanged).
        samples: the clean sample set S.
        attack: finds x + δ* for a net; ``None`` (or ε = 0) gives the clean loss.
        adversarial_x: use these N adversarial inputs instead of running ``attack`` (e.g. to redo a
            float32 operator in float64 on the same δ*).
        recompute_per_hvp: rerun ``attack`` at θ before every product (the literal per-HVP protocol;
            equal to the default when PGD is deterministic, see the module docstring).
        **kwargs: :class:`HessianOperator`'s keyword arguments (dtype, batch_size, device, reuse_graph …).
    """

    def __init__(self, model: AuditModel, samples: SampleSet, attack: PGD | None, *,
                 adversarial_x: torch.Tensor | None = None, recompute_per_hvp: bool = False, **kwargs: Any) -> None:
        super().__init__(model, samples, **kwargs)
        self.clean_samples = samples
        self.attack = attack
        self.recompute_per_hvp = recompute_per_hvp
        self.attack_runs = 0
        if adversarial_x is None:
            adversarial_x = self.find_adversarial()
        self._use(adversarial_x.to(self.device, self.dtype))

    # -- the adversarial inputs ---------------------------------------------------------------

    def _clean(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.clean_samples.x.to(self.device, self.dtype), self.clean_samples.y.to(self.device))

    def find_adversarial(self, net: nn.Module | None = None) -> torch.Tensor:
        """x + δ* at the copy's θ (or at ``net``), N×C×H×W in the operator's dtype; x itself for ε = 0."""
        x, y = self._clean()
        if self.attack is None or self.attack.eps == 0:
            return x.clone()
        self.attack_runs += 1
        return self.attack(self.net if net is None else net, x, y)

    def _use(self, x_adv: torch.Tensor) -> None:
        self.adversarial_x = x_adv.detach()
        self.replace_inputs(self.adversarial_x)

    @property
    def delta(self) -> torch.Tensor:
        """δ* = x_adv − x, N×C×H×W (operator dtype and device)."""
        return self.adversarial_x - self._clean()[0]

    def recompute_difference(self) -> float:
        """Rerun the attack at θ with the same seed; the largest |Δ(x + δ*)| against the stored one (0 = bitwise equal)."""
        if self.attack is None or self.attack.eps == 0:
            return 0.0
        again = self.find_adversarial()
        return float((again - self.adversarial_x).abs().max()) if again.numel() else 0.0

    @torch.no_grad()
    def adversarial_error(self) -> float:
        """Fraction of samples misclassified at x + δ*(θ) (the adversarial error at θ)."""
        wrong = 0
        y = self.clean_samples.y.to(self.device)
        for start in range(0, len(y), self.batch_size):
            logits = self.net(self.adversarial_x[start:start + self.batch_size])
            wrong += int((logits.argmax(dim=1) != y[start:start + self.batch_size]).sum())
        return wrong / len(y)

    # -- products -----------------------------------------------------------------------------

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H·v of L(θ, x + δ*) with δ* fixed (recomputed first with ``recompute_per_hvp``)."""
        if self.recompute_per_hvp:
            self._use(self.find_adversarial())
        return super().matvec(v)

    __call__ = matvec

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["loss"] = ("mean cross-entropy over the set at x + δ*(θ), δ* found by PGD at θ and held fixed "
                       "(Danskin); eval mode; no autocast")
        out["attack"] = self.attack.describe() if self.attack is not None else None
        return out
