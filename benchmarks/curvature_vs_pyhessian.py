"""robaudit's parameter-curvature solvers against PyHessian, on the same model and data, in one run.

Model: the digits demo CNN (examples/digits_cnn.safetensors, 38,282 parameters); data: 120 samples
of the digits test split (--n-samples). Printed side by side:

1. accuracy of the top-20 eigenvalues — reference: robaudit's restarted Lanczos in float64 at
   tol 1e-12 (certified by residuals) — for PyHessian's power iteration at Yao's tolerance 1e-4,
   robaudit's Yao-compatible power iteration at 1e-4, and robaudit's Lanczos (curvature.topk);
2. HVPs needed to reach 1e-5 relative error on all top-20 eigenvalues (solver HVPs; robaudit's k
   certificate HVPs are listed separately);
3. wall time per HVP (float32, median of repeats) of a bare ``torch.func`` HVP (forward-over-reverse,
   whole set in one batch), robaudit's operator (graph reused; batches streamed) and PyHessian
   (one-batch "data" mode; dataloader mode);
4. PyHessian's side effects: the caller's model left in eval mode; ``density()`` of the PyPI release.

The accuracy and HVP-count comparisons run in float64 for both libraries (PyHessian under
``torch.set_default_dtype(torch.float64)``), so they measure the algorithms, not float32 rounding.

PyHessian (``pip install pyhessian``, GPL-3) is NOT a robaudit dependency; install it for this script.

Usage:
    .venv/bin/python benchmarks/curvature_vs_pyhessian.py [--threads 2] [--n-samples 120] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
K = 20
TARGET = 1e-5


def load(n_samples: int | None) -> tuple[Any, Any]:
    from robaudit.data import DataRequest, describe_dataset, load_data
    from robaudit.models import ModelRequest, load_model

    request = DataRequest("digits", n_samples=n_samples, seed=0)
    model = load_model(ModelRequest(str(REPO / "examples" / "digits_cnn.safetensors"),
                                    arch=f"{REPO / 'examples' / 'digits_cnn.py'}:DigitsCNN", second_order=True),
                       describe_dataset(request))
    return model, load_data(request, 1)


def log(text: str) -> None:
    print(f"  … {text}", file=sys.stderr, flush=True)


def errors(values: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """Errors on the top-5 and top-20, and how many leading pairs are right to 1e-3 (relative)."""
    rel = np.abs(np.asarray(values) - ref) / np.abs(ref)
    bad = np.nonzero(rel > 1e-3)[0]
    return {"error": float(rel.max()), "error_top5": float(rel[:5].max()),
            "leading_within_1e-3": int(bad[0]) if len(bad) else len(ref), "values": [float(v) for v in values]}


def by_magnitude(values: Any) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return v[np.argsort(-np.abs(v), kind="stable")]


def pyhessian_module() -> Any:
    """The module ``pyhessian.hessian`` (the package re-exports a class of the same name over it)."""
    import importlib

    return importlib.import_module("pyhessian.hessian")


class CountingPyHessian:
    """PyHessian's ``hessian`` in one-batch mode, counting its Hessian-vector products."""

    def __init__(self, model: Any, x: torch.Tensor, y: torch.Tensor) -> None:
        ph = pyhessian_module()

        self.module = ph
        self.count = 0
        original = ph.hessian_vector_product

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        ph.hessian_vector_product = counted
        self.h = ph.hessian(model, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=False)

    def top(self, k: int, tol: float, max_iter: int, seed: int = 0) -> tuple[np.ndarray, int, float]:
        torch.manual_seed(seed)
        self.count = 0
        start = time.perf_counter()
        values, _ = self.h.eigenvalues(maxIter=max_iter, tol=tol, top_n=k)
        return by_magnitude(values), self.count, time.perf_counter() - start


def accuracy_and_counts(model: Any, data: Any) -> dict[str, Any]:
    from robaudit.probes.curvature.eigen import topk
    from robaudit.probes.curvature.operator import HessianOperator
    from robaudit.probes.curvature.power import deflated_power
    from robaudit.probes.curvature.samples import SampleSet

    samples = SampleSet("audit", "audit", None, data.x, data.y, list(data.ids))
    ref_op = HessianOperator(model, samples, dtype=torch.float64, batch_size=len(samples))
    ref = topk(ref_op, K, tol=1e-12, seed=123)
    reference = ref.values
    out: dict[str, Any] = {"reference": {"eigenvalues": reference.tolist(), "max_residual": float(ref.residuals.max()),
                                         "hvps": ref.hvps_solver}}

    # robaudit Lanczos: smallest solver HVP count reaching the target
    sweep = []
    for tol in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-8):
        op = HessianOperator(model, samples, dtype=torch.float64, batch_size=len(samples))
        pairs = topk(op, K, tol=tol, seed=0)
        sweep.append({"tol": tol, "hvps": pairs.hvps_solver, "certificate_hvps": pairs.hvps_certificate,
                      **errors(pairs.values, reference), "max_residual": float(pairs.residuals.max()),
                      "seconds": pairs.seconds})
        log(f"robaudit eigsh tol {tol:g}: {pairs.hvps_solver} HVPs, error {sweep[-1]['error']:.2e}")
    out["robaudit_lanczos"] = sweep

    # robaudit Yao-compatible power iteration at 1e-4
    op = HessianOperator(model, samples, dtype=torch.float64, batch_size=len(samples))
    power = deflated_power(op, K, tol=1e-4, max_iter=100, seed=0)
    out["robaudit_power_1e-4"] = {"hvps": power.hvps_solver, **errors(power.values, reference),
                                  "max_residual": float(power.residuals.max()), "seconds": power.seconds}

    # PyHessian power iteration, float64, one-batch mode
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        net = model.audit_copy().double().eval()
        ph = CountingPyHessian(net, data.x.double(), data.y)
        runs = []
        for tol, max_iter in ((1e-3, 100), (1e-4, 100), (1e-6, 200)):
            values, hvps, seconds = ph.top(K, tol, max_iter)
            runs.append({"tol": tol, "max_iter": max_iter, "hvps": hvps, **errors(values, reference),
                         "seconds": seconds})
            log(f"PyHessian tol {tol:g}: {hvps} HVPs, error {runs[-1]['error']:.2e}")
        out["pyhessian"] = runs
    finally:
        torch.set_default_dtype(default)
    return out


def per_hvp_cost(model: Any, data: Any, repeats: int) -> dict[str, Any]:
    """Median seconds per float32 HVP on the whole set."""
    from robaudit.probes.curvature.operator import HessianOperator
    from robaudit.probes.curvature.samples import SampleSet

    samples = SampleSet("audit", "audit", None, data.x, data.y, list(data.ids))
    x, y = data.x, data.y
    net = model.audit_copy().float().eval()
    params = {k: p.detach() for k, p in net.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    v = {k: torch.randn(p.shape, generator=gen) for k, p in params.items()}
    flat_v = torch.cat([t.reshape(-1) for t in v.values()])

    def loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(torch.func.functional_call(net, p, (x,)), y)

    def bare() -> Any:
        return torch.func.jvp(torch.func.grad(loss), (params,), (v,))[1]

    def timed(fn: Any) -> float:
        fn()  # warm-up (and graph building where there is one)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    reuse = HessianOperator(model, samples, dtype=torch.float32, batch_size=len(samples), reuse_graph=True)
    stream = HessianOperator(model, samples, dtype=torch.float32, batch_size=128, reuse_graph=False)
    out = {"bare_torch_func": timed(bare),
           "robaudit_graph_reused": timed(lambda: reuse.matvec(flat_v)),
           "robaudit_streamed_batches_of_128": timed(lambda: stream.matvec(flat_v))}
    try:
        ph = pyhessian_module()
        from pyhessian.utils import hessian_vector_product

        one = ph.hessian(model.audit_copy().float(), torch.nn.CrossEntropyLoss(), data=(x, y), cuda=False)
        v_list = [t.clone() for t in v.values()]
        out["pyhessian_data_mode"] = timed(lambda: hessian_vector_product(one.gradsH, one.params, v_list))
        loader = [(x[i:i + 128], y[i:i + 128]) for i in range(0, len(y), 128)]
        many = ph.hessian(model.audit_copy().float(), torch.nn.CrossEntropyLoss(), dataloader=loader, cuda=False)
        out["pyhessian_dataloader_batches_of_128"] = timed(lambda: many.dataloader_hv_product(v_list))
    except ImportError:
        out["pyhessian"] = "not installed"
    return out


def pyhessian_side_effects(model: Any, data: Any) -> dict[str, Any]:
    ph = pyhessian_module()

    net = model.audit_copy().float().train()
    h = ph.hessian(net, torch.nn.CrossEntropyLoss(), data=(data.x[:32], data.y[:32]), cuda=False)
    out: dict[str, Any] = {"model_training_flag_after_construction": net.training}
    try:
        h.density(iter=5, n_v=1)
        out["density"] = "ran"
    except Exception as exc:  # noqa: BLE001 - recording whatever the release raises
        out["density"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-samples", type=int, default=120,
                        help="digits test samples (stratified, seed 0; default 120 — PyHessian's float64 sweep takes "
                             "thousands of HVPs)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import pyhessian  # noqa: F401
    except ImportError:
        print("PyHessian is not installed: .venv/bin/pip install pyhessian (benchmark only)", file=sys.stderr)
        return 2

    model, data = load(args.n_samples)
    results: dict[str, Any] = {
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
                        "machine": platform.machine(), "processor": platform.processor() or platform.platform()},
        "model": {"parameters": sum(p.numel() for p in model.parameters()), "samples": len(data)},
    }
    results["accuracy"] = accuracy_and_counts(model, data)
    results["per_hvp_seconds"] = per_hvp_cost(model, data, args.repeats)
    results["pyhessian_side_effects"] = pyhessian_side_effects(model, data)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def report(r: dict[str, Any]) -> None:
    env, acc, cost = r["environment"], r["accuracy"], r["per_hvp_seconds"]
    print(f"# robaudit curvature vs PyHessian — torch {env['torch']}, {env['threads']} threads, {env['processor']}")
    print(f"model: digits demo CNN, {r['model']['parameters']} parameters, {r['model']['samples']} samples; "
          f"float64 reference top-{K}: λ1 = {acc['reference']['eigenvalues'][0]:.6g}, "
          f"max residual {acc['reference']['max_residual']:.1e}")
    print(f"\n## top-{K} eigenvalues by |λ| (float64): solver HVPs, max relative error on the top-5 and top-{K}, "
          "and how many leading pairs are right to 1e-3")
    print(f"{'method':52s} {'HVPs':>6s} {'top-5':>9s} {'top-20':>9s} {'ok':>3s}")

    def row(label: str, run: dict[str, Any], extra: str = "") -> None:
        print(f"{label:52s} {run['hvps']:6d} {run['error_top5']:9.1e} {run['error']:9.1e} "
              f"{run['leading_within_1e-3']:3d}{extra}")

    for run in acc["pyhessian"]:
        row(f"PyHessian power iteration, tol {run['tol']:g}, maxIter {run['max_iter']}", run)
    row("robaudit curvature.power (Yao), tol 1e-4, max_iter 100", acc["robaudit_power_1e-4"])
    for run in acc["robaudit_lanczos"]:
        row(f"robaudit curvature.topk (eigsh), tol {run['tol']:g}", run,
            f"   +{run['certificate_hvps']} certificate HVPs, max residual {run['max_residual']:.1e}")
    ours = [x for x in acc["robaudit_lanczos"] if x["error"] <= TARGET]
    theirs = [x for x in acc["pyhessian"] if x["error"] <= TARGET]
    best_ours = min(ours, key=lambda x: x["hvps"]) if ours else None
    best_theirs = min(theirs, key=lambda x: x["hvps"]) if theirs else None
    most = max(x["hvps"] for x in acc["pyhessian"])
    ours_text = best_ours["hvps"] if best_ours else "not reached"
    theirs_text = best_theirs["hvps"] if best_theirs else f"not reached in {most} HVPs"
    print(f"\nHVPs to reach {TARGET:g} on all top-{K}: robaudit {ours_text} (+{K} certificates); PyHessian {theirs_text}")
    print("\n## seconds per float32 HVP (median of repeats), ratio to a bare torch.func HVP")
    bare = cost["bare_torch_func"]
    for name, seconds in cost.items():
        if isinstance(seconds, float):
            print(f"{name:40s} {1000 * seconds:9.2f} ms   {seconds / bare:6.2f}× bare")
    print(f"\n## PyHessian side effects: {r['pyhessian_side_effects']}")


if __name__ == "__main__":
    sys.exit(main())
