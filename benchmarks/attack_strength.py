"""Strength against cost of the L∞ attacks on an adversarially trained model (issue #17).

A PGD-trained digits CNN is the case where Madry's PGD with a fixed step fraction overstates
robustness: its loss surface is flat near the data, so the step size matters. This script trains
one (seeded, :func:`pgd_trained_digits`: examples/digits_cnn.py's ``DigitsCNN`` at width 8, PGD-10
adversarial training at ε = 0.2 on the digits train split, about 20 CPU-s), then attacks the 360
test digits at each ε, every attack on the same batches with the same per-sample seeds, through
robaudit's adapter (the functions the probes call):

* ``PGD-20 @0.125ε`` — version 1's default (20 steps of 2.5·ε/20, random start);
* ``PGD-20 @0.25ε`` — the same with the step the issue measured as stronger;
* ``APGD-CE-n`` — torchattacks' APGD on the cross-entropy, n iterations (no step-size knob);

and prints robust accuracy (correct clean and after the attack, out of 360) with the cost in
forward+backward passes per attacked sample (PGD: steps; APGD: steps + 1, plus one forward).

Then the whole ``attack.pgd_linf`` probe over the digits sweep (0.05 … 0.3, sanity checks off),
default (APGD-CE-20, ε-monotone) against ``method = "pgd"`` at step 0.125·ε and 0.25·ε, with
and without ε-monotone skipping: robust samples per ε and the probe's process CPU time.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/attack_strength.py [--eps 0.1 0.15 0.2 0.3]
The table is in docs/attacks.md (§ The default L∞ attack).
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from torch import nn

TRAIN_EPS = 0.2


def pgd_trained_digits(seed: int = 0, epochs: int = 30, eps: float = TRAIN_EPS, width: int = 8) -> nn.Module:
    """A DigitsCNN (pixels in [0, 1] → logits) adversarially trained with PGD-10 (step 0.25·ε, random
    start) at L∞ ``eps`` on the digits train split (1,437 images), Adam, batch 64, ``epochs`` epochs.
    Deterministic for a seed on CPU. Returns the model in eval mode."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from digits_cnn import DigitsCNN

    from robaudit.data.digits import digits_split

    x, y, _ = digits_split("train")
    x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.as_tensor(y, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DigitsCNN(width=width)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss = nn.CrossEntropyLoss()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for start in range(0, len(x), 64):
            xb, yb = x[order[start:start + 64]], y[order[start:start + 64]]
            delta = (torch.rand(xb.shape, generator=g) * 2 - 1) * eps
            for _ in range(10):
                delta.requires_grad_(True)
                grad, = torch.autograd.grad(loss(model((xb + delta).clamp(0, 1)), yb), delta)
                delta = (delta.detach() + 0.25 * eps * grad.sign()).clamp(-eps, eps)
            opt.zero_grad()
            loss(model((xb + delta).clamp(0, 1)), yb).backward()
            opt.step()
    return model.eval()


def digits_test() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The 360 test digits (N×1×8×8 in [0, 1]), labels and sample ids, as the audit loads them."""
    from robaudit.data.digits import digits_split

    x, y, index = digits_split("test")
    return (torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8), torch.as_tensor(y, dtype=torch.long),
            [f"test:{i}" for i in index])


ATTACKS = {
    "PGD-20 @0.125ε (v1 default)": ("pgd", 20, 0.125),
    "PGD-20 @0.25ε": ("pgd", 20, 0.25),
    "APGD-CE-10": ("apgd", 10, None),
    "APGD-CE-20 (default)": ("apgd", 20, None),
    "APGD-CE-50": ("apgd", 50, None),
    "APGD-CE-100": ("apgd", 100, None),
}


def robust_under(model: nn.Module, x: torch.Tensor, y: torch.Tensor, ids: list[str], eps: float, method: str,
                 steps: int, fraction: float | None, seed: int = 0, batch_size: int = 128) -> np.ndarray:
    """N bools: correct clean and on the re-checked output of one attack at ``eps`` (per-sample seeds)."""
    from robaudit.probes.attacks import torchattacks_adapter as ta
    from robaudit.probes.attacks.verify import predicts_correctly, project
    from robaudit.probes.seeding import sample_seeds

    out = []
    with ta.attack_session(model, torch.device("cpu")) as target:
        target.check_gradients = False
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            seeds = sample_seeds(seed, ids[start:start + batch_size], "strength", eps)
            if method == "pgd":
                adv = ta.pgd_linf(target, xb, yb, eps, alpha=fraction * eps, steps=steps, random_start=True,
                                  seed=seeds).adv
            else:
                adv = ta.apgd(target, xb, yb, eps, "linf", steps=steps, seed=seeds).adv
            adv, _ = project(xb, adv, eps, "linf")
            out.append((predicts_correctly(model, xb, yb) & predicts_correctly(model, adv, yb)).numpy())
    return np.concatenate(out)


SWEEP = [0.05, 0.1, 0.15, 0.2, 0.3]
PROBE_VARIANTS = {
    "pgd_linf default (APGD-CE-20, monotone)": {},
    "APGD-CE-20, monotone = false": {"monotone": False},
    "method=pgd @0.125ε, monotone": {"method": "pgd", "step_fraction": 0.125},
    "method=pgd @0.125ε, monotone = false (v1)": {"method": "pgd", "step_fraction": 0.125, "monotone": False},
    "method=pgd @0.25ε, monotone": {"method": "pgd", "step_fraction": 0.25},
}


def probe_sweeps(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """Print the ``attack.pgd_linf`` probe's robust counts per ε and CPU seconds for each variant."""
    from robaudit.config import build_probe_config
    from robaudit.probes.attacks.iterative import PGDLinfProbe
    from robaudit.probes.testing import make_test_context

    print(f"\n{'attack.pgd_linf sweep':<44}" + "".join(f"{f'ε={e:g}':>8}" for e in SWEEP) + f"{'CPU-s':>8}")
    for label, knobs in PROBE_VARIANTS.items():
        ctx = make_test_context(model, x, y, batch_size=128, seed=0)
        probe = PGDLinfProbe(build_probe_config(PGDLinfProbe, {"eps": SWEEP, "sanity_checks": False, **knobs}))
        t0 = time.process_time()
        with torch.enable_grad():
            result = probe.run(ctx)
        cpu = time.process_time() - t0
        counts = [round(result.summary["robust_accuracy"][f"{e:g}"].value * len(y)) for e in SWEEP]
        print(f"{label:<44}" + "".join(f"{c:>8}" for c in counts) + f"{cpu:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.15, 0.2, 0.3])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sweeps-only", action="store_true", help="skip the single-attack table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.process_time()
    model = pgd_trained_digits()
    train_s = time.process_time() - start
    x, y, ids = digits_test()
    with torch.no_grad():
        clean = int((model(x).argmax(1) == y).sum())
    print(f"PGD-trained DigitsCNN (ε = {TRAIN_EPS}, seed 0): trained in {train_s:.1f} CPU-s; clean "
          f"{clean}/{len(y)}; torch threads {args.threads}")
    if args.sweeps_only:
        probe_sweeps(model, x, y)
        return
    header = f"{'attack':<30}{'passes/sample':>14}" + "".join(f"{f'ε={e:g}':>10}" for e in args.eps) + f"{'CPU-s':>8}"
    print(header)
    for label, (method, steps, fraction) in ATTACKS.items():
        t0 = resource.getrusage(resource.RUSAGE_SELF).ru_utime
        row = [int(robust_under(model, x, y, ids, e, method, steps, fraction).sum()) for e in args.eps]
        cpu = resource.getrusage(resource.RUSAGE_SELF).ru_utime - t0
        passes = f"{steps}" if method == "pgd" else f"{steps + 1} + 1 fwd"
        print(f"{label:<30}{passes:>14}" + "".join(f"{r:>10}" for r in row) + f"{cpu:>8.1f}")
    probe_sweeps(model, x, y)


if __name__ == "__main__":
    main()
