"""The geometry probes' cost in forward+backward-equivalents per sample, measured in process CPU time.

    passes per sample = CPU time of the probe's ``run`` (best of ``--repeats``)
                        / CPU time of one plain forward+backward over the same samples

on the models and samples of ``benchmarks/passes_per_sample.py`` (``demo``: the digits demo CNN on
its 360-image test split; ``resnet``: the quarter-width timm ResNet-18 at 32×32 on seeded random
images), loaded through the audit's own path, default knobs, torch threads pinned (default 1,
printed). Unlike that script's per-probe breakdown (wall time of each probe inside one audit), this
times each probe alone in CPU time, which a shared machine disturbs far less, and it runs unchanged
against an older checkout, so that code versions compare side by side:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/geometry_passes.py --model both
    PYTHONPATH=<old checkout> OMP_NUM_THREADS=1 .venv/bin/python benchmarks/geometry_passes.py --model both

(alternate the two a few times on a busy machine; the first line names the robaudit it imported).
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from passes_per_sample import model_options, plain_fwd_bwd  # noqa: E402

PROBES = ("geometry.gradients", "geometry.input_hessian", "geometry.surfaces")


def measure(which: str, n: int, threads: int, repeats: int) -> None:
    from robaudit.config import config_from_mapping
    from robaudit.engine.runner import prepare, select_probes
    from robaudit.probes.registry import ProbeRegistry
    from robaudit.probes.testing import make_test_context

    torch.set_num_threads(threads)
    registry = ProbeRegistry()
    with tempfile.TemporaryDirectory() as tmp:
        base = {**model_options(which, Path(tmp), n), "n_samples": n, "threads": threads, "batch_size": 128,
                "seed": 0}
        plain_fwd_bwd(base, n, 128)  # warm-up
        fb, _ = plain_fwd_bwd(base, n, 128)
        config = config_from_mapping({**base, "probes": list(PROBES), "out": "unused"})
        _, _, model, data = prepare(config, select_probes(config, registry))
    print(f"\n== {which}: {len(data)} samples, {torch.get_num_threads()} thread(s); one plain forward+backward: "
          f"{fb:.4f} CPU-s")
    for name in PROBES:
        cls = registry.get(name)
        best = math.inf
        for _ in range(repeats):
            ctx = make_test_context(model, data, batch_size=128)
            start = time.process_time()
            with torch.enable_grad():
                cls(cls.Config()).run(ctx)
            best = min(best, time.process_time() - start)
        print(f"{name:<26} v{cls.version:<3} {best:7.3f} CPU-s = {best / fb:6.1f} fwd+bwd per sample")


def main() -> None:
    import robaudit

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("demo", "resnet", "both"), default="both")
    parser.add_argument("--n-samples", type=int, default=None, help="default: 360 (demo), 100 (resnet)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"robaudit from {Path(robaudit.__file__).parent}")
    for which in (("demo", "resnet") if args.model == "both" else (args.model,)):
        measure(which, args.n_samples or (360 if which == "demo" else 100), args.threads, args.repeats)


if __name__ == "__main__":
    main()
