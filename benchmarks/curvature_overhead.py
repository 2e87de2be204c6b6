"""``curvature.topk``'s CPU time outside its Hessian-vector products, old code against new, side by side.

For each benchmark model of ``benchmarks/passes_per_sample.py`` (``demo``: the digits CNN on its test
split; ``resnet``: the quarter-width timm ResNet-18 at 32×32 on seeded random images) it runs the
standard ``curvature.topk`` probe the way the audit runs it (``robaudit.audit(probes=["curvature.topk"])``,
one thread, process CPU time) once per source tree, each in its own process, and splits the probe's
CPU time into

* ``hvp``: the operator's products (``HessianOperator.matvec``), count and CPU-s;
* ``graph``: the gradient graph that reused products differentiate (``_build_graph``);
* ``solver``: :func:`~robaudit.probes.curvature.eigen.topk` minus the products it made — the Lanczos
  bookkeeping (basis, reorthogonalisation, restarts, Ritz vectors) and the completeness/consistency
  arithmetic; the goal of issue #17 is ``solver`` ≤ 10 % of ``hvp``;
* ``per_sample``: ``v1_curvature`` (:func:`~robaudit.probes.curvature.per_sample.directional_curvature`);
* ``rest``: the probe (``CurvatureTopK.run``) minus all of the above (the model copy, the operator
  checks' arithmetic, sample sets, summaries).

It then checks that both trees printed the same numbers: the probe's summary (eigenvalues, residuals,
certificates, HVP counts) and the ``v1_curvature`` column, bitwise.

With ``--hvp-variants`` it also times one HVP of the operator (reused graph, float32, as the probe
runs it) against variants that could be cheaper, with the relative change of the product
(``‖Hv − H'v‖/‖Hv‖``) next to float32's own error (the same product in float64):

* ``constant inputs``: inputs that do not require grad (the operator sets ``requires_grad`` on them
  to find reentrant checkpointing; autograd prunes the input-gradient paths either way);
* ``BN as affine``: eval-mode ``BatchNorm2d`` written as its per-channel affine map in elementwise ops
  (autograd's batch-norm double backward is a composite of many multiplies).

The old tree is a pinned checkout of the code before this work:

    git worktree add /tmp/lz-old a719e77
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/curvature_overhead.py --old /tmp/lz-old [--model demo|resnet|both] \
        [--hvp-variants]
    git worktree remove /tmp/lz-old
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PARTS = ("hvp", "graph", "solver", "per_sample", "rest")


def child(tree: Path, which: str, n: int, out: Path) -> None:
    """Run the probe with robaudit imported from ``tree``; write timings and outputs to ``out`` (JSON)."""
    sys.path[:0] = [str(tree), str(REPO / "benchmarks")]
    import torch

    torch.set_num_threads(1)
    import robaudit
    from passes_per_sample import model_options
    from robaudit.probes.curvature import eigen, operator, per_sample, topk_probe

    assert Path(robaudit.__file__).resolve().is_relative_to(tree.resolve()), robaudit.__file__
    cpu = dict.fromkeys(("probe", "hvp", "graph", "topk", "topk_hvp", "per_sample"), 0.0)
    count = {"hvp": 0}
    inside_topk = [False]

    def timed(fn: Any, key: str) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start, graph = time.process_time(), cpu["graph"]
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.process_time() - start
                if key == "hvp":  # the first reused product builds the graph: that is counted as graph
                    spent -= cpu["graph"] - graph
                    count["hvp"] += 1
                    if inside_topk[0]:
                        cpu["topk_hvp"] += spent + cpu["graph"] - graph
                cpu[key] += spent
        return wrapper

    def topk_wrapper(fn: Any) -> Any:
        inner = timed(fn, "topk")

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            inside_topk[0] = True
            try:
                return inner(*args, **kwargs)
            finally:
                inside_topk[0] = False
        return wrapper

    operator.HessianOperator.matvec = timed(operator.HessianOperator.matvec, "hvp")
    operator.HessianOperator._build_graph = timed(operator.HessianOperator._build_graph, "graph")
    topk_probe.topk = topk_wrapper(eigen.topk)
    topk_probe.CurvatureTopK.run = timed(topk_probe.CurvatureTopK.run, "probe")
    topk_probe.directional_curvature = timed(per_sample.directional_curvature, "per_sample")
    with tempfile.TemporaryDirectory() as tmp:
        base = {**model_options(which, Path(tmp), n), "n_samples": n, "threads": 1, "batch_size": 128, "seed": 0}
        robaudit.audit(**base, probes=["clean"], out=str(Path(tmp) / "warm"), report=False, overwrite=True,
                       quiet=True)  # one-off imports and model load outside the measurement
        for key in cpu:
            cpu[key] = 0.0
        count["hvp"] = 0
        start = time.process_time()
        outcome = robaudit.audit(**base, probes=["curvature.topk"], out=str(Path(tmp) / "run"), report=False,
                                 overwrite=True, quiet=True)
        total = time.process_time() - start
        probe = outcome.results["probes"]["curvature.topk"]
        table = (Path(tmp) / "run" / "per_sample.csv").read_text().splitlines()
    header = table[0].split(",")
    at = header.index("curvature.topk/v1_curvature")  # raises when the column is missing
    column = [row.split(",")[at] for row in table[1:]]
    out.write_text(json.dumps({
        "audit_cpu": total, "probe": cpu["probe"], "hvps": count["hvp"],
        "hvp": cpu["hvp"], "graph": cpu["graph"], "solver": cpu["topk"] - cpu["topk_hvp"],
        "per_sample": cpu["per_sample"], "summary": probe["summary"], "v1_curvature": column,
        "threads": torch.get_num_threads(),
    }))


def hvp_variants(which: str, n: int) -> None:
    """Print the CPU ms of one HVP, native and in each variant, and how much each changes the product."""
    import types

    import torch
    from torch import nn

    sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]
    torch.set_num_threads(1)
    from passes_per_sample import model_options
    from robaudit.config import config_from_mapping
    from robaudit.engine.runner import prepare, select_probes
    from robaudit.probes.curvature.operator import HessianOperator
    from robaudit.probes.curvature.samples import SampleSet
    from robaudit.probes.registry import ProbeRegistry

    with tempfile.TemporaryDirectory() as tmp:
        options = {**model_options(which, Path(tmp), n), "n_samples": n, "threads": 1, "batch_size": 128,
                   "seed": 0}
        config = config_from_mapping({**options, "probes": ["clean"], "out": "unused"})
        _, _, model, data = prepare(config, select_probes(config, ProbeRegistry()))
    samples = SampleSet("audit", "audit", None, data.x, data.y, list(data.ids))
    vectors = [torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64,
                           generator=torch.Generator().manual_seed(i)) for i in range(6)]

    def timed(op: HessianOperator) -> tuple[float, list[torch.Tensor]]:
        """CPU ms per product: the least of 3 rounds of 5 (the machine is shared), and the products."""
        op.matvec(vectors[0])  # builds the graph
        best, products = float("inf"), []
        for _ in range(3):
            start = time.process_time()
            products = [op.matvec(v).double() for v in vectors[1:]]
            best = min(best, 1000 * (time.process_time() - start) / len(products))
        return best, products

    def operator(dtype: torch.dtype = torch.float32) -> HessianOperator:
        return HessianOperator(model, samples, dtype=dtype, batch_size=128, reuse_graph=True)

    native_ms, native = timed(operator())
    reference = [operator(torch.float64).matvec(v) for v in vectors[1:2]]

    def change(products: list[torch.Tensor]) -> float:
        return max(float((a - b).norm() / b.norm()) for a, b in zip(products, native))

    float32_error = float((native[0] - reference[0]).norm() / reference[0].norm())
    print(f"\n{which}, {n} samples: one HVP, CPU ms, least of 3 rounds (torch threads {torch.get_num_threads()}); float32's own "
          f"error (vs float64) {float32_error:.1e}")
    print(f"  native                 {native_ms:7.1f}")
    original = HessianOperator._batches

    def constant_inputs(self: HessianOperator, label: str | None = None) -> Any:
        for x, y in original(self, label):
            yield x.detach(), y

    HessianOperator._batches = constant_inputs  # type: ignore[method-assign]
    ms, products = timed(operator())
    HessianOperator._batches = original  # type: ignore[method-assign]
    print(f"  constant inputs        {ms:7.1f}   change {change(products):.1e}")

    def affine(self: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        return x * scale[:, None, None] + (self.bias - self.running_mean * scale)[:, None, None]

    op = operator()
    norms = [m for m in op.net.modules() if type(m) is nn.BatchNorm2d and m.affine and m.track_running_stats]
    for m in norms:
        m.forward = types.MethodType(affine, m)
    if norms:
        ms, products = timed(op)
        print(f"  BN as affine ({len(norms)} BN)   {ms:7.1f}   change {change(products):.1e}")
    else:
        print("  BN as affine           (no eval-mode BatchNorm2d)")
    again_ms, _ = timed(operator())  # the order of the runs matters on a shared machine: native once more
    print(f"  native, again          {again_ms:7.1f}")


def run_tree(tree: Path, which: str, n: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([sys.executable, __file__, "--child", str(tree), "--model", which, "--n-samples", str(n),
                        "--child-out", f.name], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return json.loads(Path(f.name).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=False, help="a checkout of the old code (git worktree add)")
    parser.add_argument("--model", choices=("demo", "resnet", "both"), default="both")
    parser.add_argument("--n-samples", type=int, default=None, help="default: 360 (demo), 100 (resnet)")
    parser.add_argument("--hvp-variants", action="store_true", help="also time cheaper HVP variants")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-variants", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_variants:
        hvp_variants(args.model, args.n_samples)
        return
    if args.child is not None:
        child(args.child, args.model, args.n_samples, args.child_out)
        return
    trees = {"new": REPO} if args.old is None else {"old": args.old, "new": REPO}
    for which in (("demo", "resnet") if args.model == "both" else (args.model,)):
        n = args.n_samples or (360 if which == "demo" else 100)
        got = {name: run_tree(tree, which, n) for name, tree in trees.items()}
        print(f"\n{which}, {n} samples, curvature.topk (standard), CPU seconds, "
              f"torch threads {got['new']['threads']}")
        print(f"{'tree':5s} {'HVPs':>5s} {'hvp':>7s} {'graph':>7s} {'solver':>7s} {'per_sample':>10s} "
              f"{'rest':>7s} {'probe':>7s} {'solver/hvp':>10s}")
        for name, r in got.items():
            probe = r["probe"]
            rest = probe - sum(r[p] for p in PARTS[:-1])
            print(f"{name:5s} {r['hvps']:5d} {r['hvp']:7.2f} {r['graph']:7.2f} {r['solver']:7.2f} "
                  f"{r['per_sample']:10.2f} {rest:7.2f} {probe:7.2f} {r['solver'] / r['hvp']:10.1%}")
        if "old" in got:
            same = got["old"]["summary"] == got["new"]["summary"]
            same_col = got["old"]["v1_curvature"] == got["new"]["v1_curvature"]
            print(f"same summary (eigenvalues, residuals, certificates, HVP counts) bitwise: {same}; "
                  f"same v1_curvature column: {same_col}")
            if not (same and same_col):
                for key in ("sets",):
                    print("old:", json.dumps(got["old"]["summary"].get(key))[:2000])
                    print("new:", json.dumps(got["new"]["summary"].get(key))[:2000])
        if args.hvp_variants:
            subprocess.run([sys.executable, __file__, "--child-variants", "--model", which, "--n-samples", str(n)],
                           check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


if __name__ == "__main__":
    main()
