"""Confident samples (1 − p_top ≈ 1e-7): a float32 model gives float64's eigenvalues to 1e-5.

The float64 c×c step (with 1 − p_top summed from the other classes) is what makes this hold: the
same step done naively in float32 loses λ1 entirely, as science.md §2 measured.
"""
from __future__ import annotations

import numpy as np
import torch

from geometry_helpers import digits_context, digits_model, run_probe
from robaudit.probes.geometry.common import working_model
from robaudit.probes.geometry.hessian_probe import InputHessian
from robaudit.probes.geometry.jacobian import logit_geometry


def _confident_setup(count: int = 6):
    """The demo CNN with its last layer scaled so that some samples have 1 − p_top ≈ 1e-7; those samples."""
    model = digits_model()
    with torch.no_grad():
        last = model.net.classifier[-1]
        last.weight.mul_(2.5)
        last.bias.mul_(2.5)
    ctx = digits_context(model, 360)
    with torch.no_grad():
        p = working_model(model, "float64")(ctx.data.x.double()).softmax(1)
    gap = (1 - p.max(1).values).numpy()
    order = np.argsort(np.abs(np.log10(np.maximum(gap, 1e-300)) + 7))[:count]
    assert np.all((gap[order] > 1e-8) & (gap[order] < 1e-6)), gap[order]
    x, y = ctx.data.x[order], ctx.data.y[order]
    ctx.data.x, ctx.data.y, ctx.data.ids = x, y, [ctx.data.ids[i] for i in order]
    return model, ctx


def test_float32_model_matches_float64_on_confident_samples():
    model, ctx = _confident_setup()
    r64 = run_probe(InputHessian(InputHessian.Config(precision="float64", top_k=3)), ctx)
    r32 = run_probe(InputHessian(InputHessian.Config(precision="mixed", top_k=3)), ctx)
    assert (r64.per_sample["method_exact"] == 1).all() and (r32.per_sample["method_exact"] == 1).all()
    for k in (1, 2, 3):
        np.testing.assert_allclose(r32.per_sample[f"lambda_{k}"], r64.per_sample[f"lambda_{k}"], rtol=1e-5)
    assert (r32.per_sample["psd"] == 1).all()


def test_naive_float32_cxc_step_fails_on_the_same_samples():
    """The control: diag(p) − ppᵀ formed in float32 from float32 logits loses the eigenvalues."""
    model, ctx = _confident_setup()
    geo64 = logit_geometry(working_model(model, "float64"), ctx.data.x, ctx.data.y, 10)
    work32 = working_model(model, "float32")
    geo32 = logit_geometry(work32, ctx.data.x, ctx.data.y, 10)
    j = geo32.jacobian.float()
    with torch.no_grad():
        p = work32(ctx.data.x).softmax(1)  # float32 probabilities
    p = p.gather(1, geo32.classes)
    h_l = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    naive = torch.linalg.eigvalsh(j.transpose(1, 2) @ h_l @ j).flip(-1)[:, 0].double()
    p64 = geo64.selected_probs()
    h64 = torch.diag_embed(p64) - p64[:, :, None] * p64[:, None, :]
    ref = torch.linalg.eigvalsh(geo64.jacobian.transpose(1, 2) @ h64 @ geo64.jacobian).flip(-1)[:, 0]
    rel = ((naive - ref).abs() / ref).numpy()
    assert rel.max() > 1e-2, rel


def test_float32_precision_knob_is_refused_with_a_pointer_to_mixed(tmp_path, capsys):
    """The Jacobian probes' precisions are mixed / float64; float32 gets one line and exit 2 through the CLI."""
    from demo import DEMO_ARCH, DEMO_CHECKPOINT
    from robaudit.cli.main import main

    code = main(["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--dataset", "digits", "--probes",
                 "geometry.gradients", "--set", "geometry.gradients.precision=float32", "--out", str(tmp_path / "out"),
                 "-q"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert "Traceback" not in err and any("precision" in ln and "'mixed'" in ln for ln in lines), err
    assert not (tmp_path / "out" / "results.json").exists()
