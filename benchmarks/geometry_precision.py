"""Input geometry in ``mixed`` precision (float32 Jacobian, float64 logits and c×c solve) against ``float64``,
and ``geometry.input_hessian`` with its float32 R·v screen (``screen_check``, version 4) against the float64
H·v check on every sample (version 3's path), side by side.

For ``geometry.gradients`` and ``geometry.input_hessian`` on the same samples, in one process: the
process CPU time of each probe's ``run`` per variant (best of ``--repeats``, torch threads pinned,
default 1, printed), the same in forward+backward-equivalents per sample (divided by one plain
float32 forward+backward over the same samples, the pass of ``benchmarks/passes_per_sample.py``,
timed in the same run) and, per per-sample column, the largest relative deviation from the
reference variant (``float64``; for the input Hessian, version 3's default: ``float64`` without the
screen): |a − b| / max(|b|, tiny), NaN in both counting as equal. For the eigenvalue columns it also
prints the deviation relative to the sample's λ1, the scale that matters for a spectrum.

First, per model and dtype, the Jacobian rows themselves: ``torch.func.vmap`` over the VJP function
(the path before issue #17, still used off the CPU) against
:func:`~robaudit.probes.geometry.jacobian.batched_vjp` (one VJP per row on the CPU), timed side by side,
with whether the rows are bitwise equal.

Models: the digits demo CNN (D = 64) and the quarter-width timm ResNet-18 at 32×32 (D = 3072, random
init, seeded random images labelled by their prediction), as in ``benchmarks/passes_per_sample.py``.

Run:  .venv/bin/python benchmarks/geometry_precision.py [--n 64] [--threads 1] [--repeats 2] [--models demo,resnet]
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def _demo(n: int) -> Any:
    from robaudit.data import DataRequest, describe_dataset, load_data
    from robaudit.models import ModelRequest, load_model

    request = DataRequest(source="digits", n_samples=n)
    model = load_model(ModelRequest(source=str(REPO / "examples" / "digits_cnn.safetensors"),
                                    arch=f"{REPO / 'examples' / 'digits_cnn.py'}:DigitsCNN", second_order=True),
                       describe_dataset(request))
    return model, load_data(request, model.in_channels, model.data_config)


def _resnet(n: int) -> Any:
    from robaudit.data.audit_data import AuditData, DatasetInfo
    from robaudit.models import ModelRequest, load_model

    torch.manual_seed(0)
    info = DatasetInfo(name="tensors", num_classes=10, channels=3, image_size=(32, 32))
    model = load_model(ModelRequest(source="timm:resnet18", arch_kwargs={"channels": [16, 32, 64, 128],
                                                                          "stem_width": 16, "num_classes": 10},
                                    second_order=True), info)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 32, 32, generator=g)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    return model, AuditData(x, y, [f"test:{i}" for i in range(n)], info, {"source": "benchmark"})


def _run(cls: type, knobs: dict[str, Any], model: Any, data: Any, repeats: int) -> tuple[float, Any]:
    from robaudit.probes.testing import make_test_context

    best, out = math.inf, None
    for _ in range(repeats):
        ctx = make_test_context(model, data, batch_size=128)
        start = time.process_time()
        with torch.enable_grad():
            out = cls(cls.Config(**knobs)).run(ctx)
        best = min(best, time.process_time() - start)
    return best, out


def _plain_fwd_bwd(model: Any, data: Any, batch_size: int = 128) -> float:
    """CPU seconds of one float32 forward+backward (CE, gradient w.r.t. the input) over all samples."""
    repeats, start = 0, time.process_time()
    while repeats < 3 or time.process_time() - start < 1.0:
        for lo in range(0, len(data), batch_size):
            x = data.x[lo:lo + batch_size].clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(x).float(), data.y[lo:lo + batch_size])
            torch.autograd.grad(loss, x)
        repeats += 1
    return (time.process_time() - start) / repeats


def _deviation(a: np.ndarray, b: np.ndarray) -> float:
    both_nan = np.isnan(a) & np.isnan(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(a - b) / np.maximum(np.abs(b), np.finfo(np.float64).tiny)
    rel = np.where(both_nan, 0.0, rel)
    return float(np.nanmax(np.where(np.isnan(rel), np.inf, rel))) if rel.size else 0.0


VARIANTS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "geometry.gradients": [("float64", {"precision": "float64"}), ("mixed (default)", {"precision": "mixed"})],
    "geometry.input_hessian": [
        ("float64, no screen (v3 default)", {"precision": "float64", "screen_check": False}),
        ("float64, screen (default)", {"precision": "float64"}),
        ("mixed, no screen (v3)", {"precision": "mixed", "screen_check": False}),
        ("mixed, screen", {"precision": "mixed"}),
    ],
}
"""Per probe: (label, knobs); the first is the reference the deviations are measured from."""


def compare_vjp_rows(model: Any, data: Any, fb: float, repeats: int) -> None:
    """Jacobian rows (all c one-hot cotangents) by vmap and by :func:`batched_vjp`, side by side."""
    from robaudit.probes.geometry.common import working_model
    from robaudit.probes.geometry.jacobian import batched_vjp

    c = model.num_classes
    for precision in ("float64", "float32"):
        work = working_model(model, precision)
        times: dict[str, float] = {}
        rows: dict[str, torch.Tensor] = {}
        for label in ("vmap (before)", "batched_vjp (now)"):
            best = math.inf
            for _ in range(repeats):
                start = time.process_time()
                out = []
                with torch.enable_grad():
                    for lo in range(0, len(data), 128):
                        x = data.x[lo:lo + 128].to(getattr(torch, precision))
                        _, vjp_fn = torch.func.vjp(work, x)
                        cot = torch.eye(c, dtype=x.dtype)[:, None, :].expand(c, len(x), c).contiguous()
                        out.append(torch.func.vmap(vjp_fn)(cot)[0] if label.startswith("vmap")
                                   else batched_vjp(vjp_fn, cot))
                best = min(best, time.process_time() - start)
            times[label], rows[label] = best, torch.cat(out, dim=1)
        (a, ta), (b, tb) = times.items()
        print(f"Jacobian rows, {precision}: {a} {ta:.2f} CPU-s = {ta / fb:.1f} fwd+bwd per sample, {b} {tb:.2f} "
              f"CPU-s = {tb / fb:.1f}; speed-up {ta / tb:.2f}×; bitwise equal: {torch.equal(*rows.values())}")


def compare(name: str, model: Any, data: Any, repeats: int) -> None:
    from robaudit.probes.geometry.gradient_probe import InputGradients
    from robaudit.probes.geometry.hessian_probe import InputHessian

    n = len(data)
    _plain_fwd_bwd(model, data)  # warm-up
    fb = _plain_fwd_bwd(model, data)
    print(f"\n== {name}: n = {n}, D = {int(np.prod(data.x.shape[1:]))}; one plain float32 forward+backward over "
          f"all samples: {fb:.4f} CPU-s")
    compare_vjp_rows(model, data, fb, repeats)
    for cls in (InputGradients, InputHessian):
        variants = VARIANTS[cls.name]
        runs = [(label, *_run(cls, knobs, model, data, repeats)) for label, knobs in variants]
        ref_label, t_ref, ref = runs[0]
        for label, t, res in runs:
            print(f"{cls.name} [{label}]: {t:.2f} CPU-s = {t / fb:.1f} fwd+bwd per sample, "
                  f"speed-up {t_ref / t:.2f}× against [{ref_label}]")
            if res is ref:
                continue
            lam1 = ref.per_sample.get("lambda_1")
            for key in ref.per_sample:
                a, b = res.per_sample[key], ref.per_sample[key]
                line = f"    {key:<28} max rel deviation {_deviation(a, b):.2e}"
                if key == "ggn_residual":
                    line += f"   (max {np.nanmax(a):.2e} against {np.nanmax(b):.2e})"
                if lam1 is not None and (key.startswith("lambda_") or key == "trace"):
                    with np.errstate(divide="ignore", invalid="ignore"):
                        scaled = np.nanmax(np.abs(a - b) / np.abs(lam1))
                    line += f"   (relative to λ1: {scaled:.2e})"
                print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", default="demo,resnet")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}; process CPU seconds, best of {args.repeats}")
    for which in args.models.split(","):
        model, data = (_demo if which == "demo" else _resnet)(args.n)
        compare(which, model, data, args.repeats)


if __name__ == "__main__":
    main()
