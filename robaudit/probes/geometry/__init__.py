"""Input-space geometry probes (Yao et al. Theorem 1 / Proposition 2; Yu et al.).

Probes (registered through entry points in ``pyproject.toml``):

- ``geometry.gradients`` (:mod:`.gradient_probe`): loss-gradient norms, logit-Jacobian norms,
  Yu's decision function d(x) and its gradient, linearised margins, Jacobian sparsity.
- ``geometry.input_hessian`` (:mod:`.hessian_probe`): the input-Hessian spectrum of the
  cross-entropy loss (exact c×c method, checked at run time, Lanczos fallback), PSD/rank
  verdict on Yao's Theorem 1, and Yu's second-order robustness indicator.
- ``geometry.boundary`` (:mod:`.boundary_probe`): distance to the decision boundary along the
  gradient direction against random directions of the same norm.
- ``geometry.surfaces`` (:mod:`.surface_probe`): decision- and loss-surface grids and Jacobian
  heat-maps of a few samples, stored for the report.

The maths lives in small modules the probes share: :mod:`.jacobian` (batched logit Jacobians),
:mod:`.spectrum` (the c×c eigenproblem), :mod:`.curvature` (Hessian-vector products and the
piecewise-linearity check), :mod:`.lanczos` (batched Lanczos), :mod:`.line_search`,
:mod:`.grids`, :mod:`.groups` (correct / robust splits) and :mod:`.stats` (summaries).
See ``docs/geometry.md``.
"""
