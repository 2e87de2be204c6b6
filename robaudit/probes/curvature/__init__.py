"""Parameter-space curvature: the Hessian of the loss with respect to the model's parameters.

Yao et al. (2018) measure the top eigenvalues of H_θ = ∇²_θ (1/N) Σ_i CE(f_θ(x_i), y_i) on a
named sample set (train, test, sub-samples of size B_H), the loss landscape along the top
eigenvectors, and the path between two checkpoints. This package computes all of it from exact
Hessian-vector products (H is never formed):

* :mod:`~robaudit.probes.curvature.audit_net` — the private, eval-mode, fp32/fp64 copy of the
  audit model the HVPs run on, the checks that reject models whose second derivatives would fail
  or lie, and the guard proving the caller's model is unchanged;
* :mod:`~robaudit.probes.curvature.samples` — named sample sets (``audit``, ``train``,
  ``train:320`` …);
* :mod:`~robaudit.probes.curvature.operator` — the exact, sample-weighted HVP operator, optionally
  accumulated across ``torch.distributed`` ranks;
* :mod:`~robaudit.probes.curvature.eigen` — certified top-k eigenpairs by restarted Lanczos
  (``scipy.sparse.linalg.eigsh``) with residuals;
* :mod:`~robaudit.probes.curvature.power` — Yao-compatible deflated power iteration (paper
  reproduction);
* :mod:`~robaudit.probes.curvature.eigenthings` — the one adapter around hessian-eigenthings
  (trace by Hutchinson / Hutch++, spectral density by stochastic Lanczos quadrature);
* :mod:`~robaudit.probes.curvature.landscape` — 1-D / 2-D loss landscapes, filter-normalised random
  cuts, checkpoint interpolation and the quadratic fit along v1;
* :mod:`~robaudit.probes.curvature.probe_base` — what the probes share (knobs, sets, checks, flags);
* the registered probes, one module each: ``curvature.topk`` (:mod:`.topk_probe`), ``curvature.power``
  (:mod:`.power_probe`), ``curvature.trace`` (:mod:`.trace_probe`), ``curvature.density``
  (:mod:`.density_probe`) and ``curvature.landscape`` (:mod:`.landscape_probe`);
* :mod:`~robaudit.probes.curvature.checkpoints` and :mod:`~robaudit.probes.curvature.per_sample` —
  loading a second checkpoint for the path, and per-sample curvature along v1.
"""
from __future__ import annotations

from robaudit.probes.curvature.operator import HessianOperator
from robaudit.probes.curvature.samples import SampleSet

__all__ = ["HessianOperator", "SampleSet"]
