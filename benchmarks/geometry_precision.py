"""Input geometry in ``mixed`` precision (float32 Jacobian, float64 logits and c×c solve) against ``float64``.

For ``geometry.gradients`` and ``geometry.input_hessian`` on the same samples, in one process: the
process CPU time of each probe's ``run`` with each precision (best of ``--repeats``, torch threads
pinned, default 1, printed) and, per per-sample column, the largest relative deviation of ``mixed``
from ``float64`` (|a − b| / max(|b|, tiny); NaN in both counts as equal). For the eigenvalue columns
it also prints the deviation relative to the sample's λ1, the scale that matters for a spectrum.

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


def _run(cls: type, precision: str, model: Any, data: Any, repeats: int) -> tuple[float, Any]:
    from robaudit.probes.testing import make_test_context

    best, out = math.inf, None
    for _ in range(repeats):
        ctx = make_test_context(model, data, batch_size=128)
        start = time.process_time()
        with torch.enable_grad():
            out = cls(cls.Config(precision=precision)).run(ctx)
        best = min(best, time.process_time() - start)
    return best, out


def _deviation(a: np.ndarray, b: np.ndarray) -> float:
    both_nan = np.isnan(a) & np.isnan(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(a - b) / np.maximum(np.abs(b), np.finfo(np.float64).tiny)
    rel = np.where(both_nan, 0.0, rel)
    return float(np.nanmax(np.where(np.isnan(rel), np.inf, rel))) if rel.size else 0.0


def compare(name: str, model: Any, data: Any, repeats: int) -> None:
    from robaudit.probes.geometry.gradient_probe import InputGradients
    from robaudit.probes.geometry.hessian_probe import InputHessian

    print(f"\n== {name}: n = {len(data)}, D = {int(np.prod(data.x.shape[1:]))}")
    for cls in (InputGradients, InputHessian):
        t64, r64 = _run(cls, "float64", model, data, repeats)
        tmx, rmx = _run(cls, "mixed", model, data, repeats)
        print(f"{cls.name}: float64 {t64:.2f} CPU-s, mixed {tmx:.2f} CPU-s → speed-up {t64 / tmx:.2f}×")
        lam1 = r64.per_sample.get("lambda_1")
        for key in r64.per_sample:
            a, b = rmx.per_sample[key], r64.per_sample[key]
            line = f"    {key:<28} max rel deviation {_deviation(a, b):.2e}"
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
