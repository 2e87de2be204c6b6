"""robaudit's attack probes vs calling torchattacks directly, on the same batches, in the same process.

For each attack the "bare" baseline is what a user would write: one torchattacks call per
(ε, batch), seeded, plus one forward pass to count correct predictions. The probe adds the
re-check of every adversarial example, loss/margin bookkeeping, Wilson intervals and — with
``sanity_checks`` on (the default) — the noise baseline, the single-step comparison and the
box-covering budget. Ratios are probe time / bare time (target ≤ 1.10 for the wrapping itself). Times are process CPU
seconds with pinned threads, best of N interleaved runs, so that other jobs on a shared machine
distort them as little as possible.

The minimal-ε bisection is reported in attack-step units: PGD steps spent per attacked sample,
and as a multiple of one PGD run at one ε.

Run:  .venv/bin/python benchmarks/attacks_overhead.py [--threads 1] [--repeats 3] [--n-samples 360]
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

REPO = Path(__file__).resolve().parents[1]


def _load(n_samples: int | None) -> tuple[Any, Any]:
    from robaudit.data import DataRequest, describe_dataset, load_data
    from robaudit.models import ModelRequest, load_model

    request = DataRequest(source="digits", n_samples=n_samples)
    model = load_model(ModelRequest(source=str(REPO / "examples" / "digits_cnn.safetensors"),
                                    arch=f"{REPO / 'examples' / 'digits_cnn.py'}:DigitsCNN"),
                       describe_dataset(request))
    return model, load_data(request, model.in_channels, model.data_config)


def _context(model: Any, data: Any, batch_size: int, previous: dict | None = None) -> Any:
    from robaudit.engine.progress import make_progress
    from robaudit.probes.base import ProbeContext

    ctx = ProbeContext(model=model, data=data, device=torch.device("cpu"), batch_size=batch_size, seed=0,
                       generator=torch.Generator().manual_seed(0), logger=logging.getLogger("bench"),
                       progress=make_progress(True), previous=previous or {}, dataset=data.info.name)
    ctx.clean_logits()  # shared by every probe of an audit: computed once, outside the timings
    return ctx


def _clock() -> float:
    """Process CPU time: with pinned threads it measures our work, not the other jobs on a shared machine."""
    return time.process_time()


def _time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        start = _clock()
        out = fn()
        times.append(_clock() - start)
    return min(times), out


def _paired(bare: Callable[[], Any], ours: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Interleave the two so that drifting machine load hits both alike; best of ``repeats`` each."""
    b, o = [], []
    for _ in range(repeats):
        b.append(_time(bare, 1)[0])
        o.append(_time(ours, 1)[0])
    return min(b), min(o)


def _bare(make_attack: Callable[[float], Any], model: Any, data: Any, eps_list: tuple[float, ...], batch_size: int) -> float:
    """Robust accuracy at each ε with plain torchattacks calls (seeded, one forward to score)."""
    correct = 0
    for k, eps in enumerate(eps_list):
        attack = make_attack(eps)
        for b, (_rows, x, y) in enumerate(data.batches(batch_size)):
            torch.manual_seed(1000 * k + b)
            adv = attack(x, y)
            with torch.no_grad():
                correct += int((model(adv).argmax(dim=1) == y).sum())
    return correct


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-samples", type=int, default=None, help="digits test samples (default: all 360)")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import torchattacks

    from robaudit.config import build_probe_config
    from robaudit.probes.attacks.budgets import DEFAULT_EPS
    from robaudit.probes.attacks.iterative import BIMProbe, PGDL2Probe, PGDLinfProbe
    from robaudit.probes.attacks.min_eps import MinEpsProbe
    from robaudit.probes.attacks.single_step import FGSMProbe

    model, data = _load(args.n_samples)
    linf, l2 = DEFAULT_EPS["digits"]["linf"], DEFAULT_EPS["digits"]["l2"]
    print(f"robaudit attack overhead on the digits demo: {len(data)} samples, batch {args.batch_size}, "
          f"torch {torch.__version__}, torchattacks {torchattacks.__version__}, "
          f"threads {torch.get_num_threads()} (pinned); process CPU seconds, best of {args.repeats} interleaved runs")
    print(f"{'attack':<34}{'bare torchattacks s':>20}{'robaudit s':>12}{'ratio':>8}")

    def probe_run(cls: type, knobs: dict, previous: dict | None = None) -> Callable[[], Any]:
        probe = cls(build_probe_config(cls, knobs))

        def go() -> Any:
            with torch.enable_grad():
                return probe.run(_context(model, data, args.batch_size, previous))
        return go

    rows: list[tuple[str, Callable[[float], Any], tuple[float, ...], type, dict, dict | None]] = []
    fgsm_result = probe_run(FGSMProbe, {})()
    rows += [
        ("FGSM, sanity off", lambda e: torchattacks.FGSM(model, eps=e), linf, FGSMProbe, {"sanity_checks": False}, None),
        ("FGSM (default)", lambda e: torchattacks.FGSM(model, eps=e), linf, FGSMProbe, {}, None),
        ("BIM-10, sanity off", lambda e: torchattacks.BIM(model, eps=e, alpha=e / 10, steps=10), linf, BIMProbe,
         {"sanity_checks": False}, None),
        ("BIM-10 (default, after FGSM)", lambda e: torchattacks.BIM(model, eps=e, alpha=e / 10, steps=10), linf,
         BIMProbe, {}, {"attack.fgsm": fgsm_result}),
        ("PGD-20 L∞, sanity off", lambda e: torchattacks.PGD(model, eps=e, alpha=e / 8, steps=20), linf, PGDLinfProbe,
         {"sanity_checks": False}, None),
        ("PGD-20 L∞ (default, after FGSM)", lambda e: torchattacks.PGD(model, eps=e, alpha=e / 8, steps=20), linf,
         PGDLinfProbe, {}, {"attack.fgsm": fgsm_result}),
        ("PGD-20 L∞ (default, alone)", lambda e: torchattacks.PGD(model, eps=e, alpha=e / 8, steps=20), linf,
         PGDLinfProbe, {}, None),
        ("PGD-20 L2, sanity off", lambda e: torchattacks.PGDL2(model, eps=e, alpha=e / 8, steps=20), l2, PGDL2Probe,
         {"sanity_checks": False}, None),
    ]
    for label, make, eps_list, cls, knobs, previous in rows:
        bare_s, ours_s = _paired(lambda: _bare(make, model, data, eps_list, args.batch_size),
                                 probe_run(cls, knobs, previous), args.repeats)
        print(f"{label:<34}{bare_s:>20.3f}{ours_s:>12.3f}{ours_s / bare_s:>8.3f}")

    # the bisection, in attack-step units
    one_run_s, _ = _time(lambda: _bare(lambda e: torchattacks.PGD(model, eps=e, alpha=0.25 * e, steps=10), model, data,
                                       (0.1,), args.batch_size), args.repeats)
    bisect_s, result = _time(probe_run(MinEpsProbe, {}), args.repeats)
    cost = result.summary["cost"]
    print()
    print(f"min-ε bisection (PGD L∞, {result.summary['settings']['steps']} steps/run, tolerance "
          f"{result.summary['tolerance']:.5f}, eps_max {result.summary['eps_max']}, {result.summary['rounds']} rounds):")
    print(f"  attack steps per attacked sample: {cost['attack_steps_per_attacked_sample']:.1f} "
          f"= {cost['pgd_runs_per_attacked_sample']:.1f} PGD runs")
    print(f"  CPU: {bisect_s:.3f} s = {bisect_s / one_run_s:.2f}x one bare 10-step PGD run over all samples "
          f"({one_run_s:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
