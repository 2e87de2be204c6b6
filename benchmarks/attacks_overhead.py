"""robaudit's attack probes vs calling torchattacks directly, on the same batches, in the same process.

What is compared
----------------
For each attack the **bare** baseline is the least a user would write to get robust accuracy
over the same ε sweep: one torchattacks call per (ε, batch), seeded, plus one forward pass of the
adversarial batch to count correct predictions. The **probe** is ``<Probe>.run(ctx)`` exactly as
``robaudit run`` calls it. Both sides attack the same model (eval mode, parameters frozen — the
probes' attack session freezes them anyway), on the same batches (``data.batches``), with the same
ε lists, steps and step sizes, the same thread count, and the same cheap global-RNG seeding
(:func:`~robaudit.probes.attacks.torchattacks_adapter.seed_global`). Each row gets one untimed
warm-up run of each side, then at least ``--repeats`` interleaved timed runs (so drifting machine
load hits both alike; cheap rows repeat until ``--min-seconds`` of timed runs); the table shows the
**median** process CPU time of each side, the **median of the per-pair ratios** (probe / bare; each
pair runs back to back, so slow drifts of machine load cancel) and the number of pairs. Process
CPU time with pinned threads measures this process's work, not other jobs on a shared machine.

The probe context (with the clean logits) is built outside the timings: in an audit the engine
computes the clean logits once and shares them with every probe (the ``clean`` probe runs first),
so they are no part of an attack probe's marginal cost. The row "FGSM standalone" times a fresh
context instead, i.e. including that one clean forward pass over all samples.

What the probe adds, per (ε, batch), and why it is irreducible
---------------------------------------------------------------
* **The re-check** of every returned candidate (finite, inside [0, 1], within ε in the attack's
  norm): three reductions over the batch's pixels and one host synchronisation; nothing is copied
  or repaired unless a candidate is invalid.
* **Our own predictions**: one forward pass of the re-checked batch, which is the *same* forward
  pass the bare baseline needs to count correct predictions (torchattacks returns images, not
  logits, and we never trust its success flags), so it costs nothing extra here; on top of it the
  loss and margin are computed from those logits in float64 (O(N·K)).
* **The gradient-masking recorder**: a hook on the first attack step at the first ε only (one
  |g| max-reduction per sample); no extra forward or backward pass.
* Bookkeeping: Wilson intervals, per-sample arrays, derived seeds.

For FGSM — one forward+backward per batch — the re-scoring forward is about a third of the bare
cost; it is shared with the baseline, so the irreducible wrapping overhead is the re-check, the
float64 scoring and the wrapper torchattacks calls through: about 3–4 % on the digits demo
(1-thread CPU). The logits of each ε's batches stay on the device and are scored in one vectorised
call per ε; clean logits are never recomputed (the probes read the audit's shared ones).

With ``sanity_checks`` on (the default) the probes also draw the **uniform-noise baseline** (one
extra no-grad forward per (ε, batch): about +35 % for FGSM, whose attack is only three forward
passes' worth, and a few % for the iterative attacks),
and the iterative ones run the **single-step comparison** (reused from ``attack.fgsm`` /
``attack.l2grad`` when it ran earlier in the same audit — the "after FGSM/L2GRAD" rows — else one
FGSM/L2GRAD pass) and the **box-covering budget** (only on samples still robust at the largest ε).
These are extra measurements by design, not wrapping overhead.

The minimal-ε bisection is reported in attack-step units (one step = one forward + backward of
one sample): PGD steps spent per attacked (clean-correct) sample, as PGD runs, as a multiple of one
bare PGD run at one ε over all samples, and the CPU time per attack step relative to that bare run.

The standard audit's attack work against torchattacks (``--standard``)
----------------------------------------------------------------------
The standard audit attacks with FGSM and APGD-CE-20 over the run's L∞ ε grid and then bisects the
minimal ε with PGD-10 (``attack.fgsm``, ``attack.pgd_linf``, ``attack.min_eps``, default knobs). With
``--standard`` this runs on the benchmark models of ``benchmarks/passes_per_sample.py`` (``--model
demo|resnet|both``: the digits CNN on its 360 test digits, the quarter-width ResNet-18 on seeded random
32×32 images) and prints, per probe and in total, robaudit's CPU time against torchattacks called
directly on the same batches, in two matchings:

* **every sample at every ε** (no ε-monotone skipping): the bare side calls ``torchattacks.FGSM`` /
  ``torchattacks.APGD`` on every batch at every ε plus one scoring forward; robaudit runs the probes
  with ``monotone = false``, ``sanity_checks = false``;
* **ε-monotone** (the apples-to-apples work of the default audit): the bare side attacks, at each ε,
  exactly the samples the probe attacked (all at the first ε, then those it left standing), in batches
  of the same size; robaudit runs the probes with default knobs except ``sanity_checks = false``.

For the bisection the bare side replays, with ``torchattacks.PGD`` (10 steps, step 0.25·ε, random start),
every batch the probe attacked (the same samples in the same batches, at the batch's mean budget:
torchattacks takes one ε per call) plus a scoring forward: the same passes, not the same outcomes.
The last rows are the default audit's attack probes as they run (sanity checks on: noise baselines and
the box-covering re-attack are extra measurements) and their passes per sample: CPU time over the CPU
time of one plain forward+backward of every sample (batch as in the audit), as in
``benchmarks/passes_per_sample.py``.

Where the CPU goes (``--account``)
----------------------------------
``--account`` runs the three standard attack probes (default knobs, sanity checks on) under a
:class:`PassLedger` and prints, per probe and part (network forwards with and without an input
gradient, backwards, per-sample random draws, torchattacks' APGD loop outside the network, the rest),
the samples each kind of pass carried per audit sample and its CPU time over P; then the clean-check
reuse of the APGD adapter against APGD's own clean check on every call, interleaved in one process.
Run it from an older checkout (``cd OLD && PYTHONPATH=OLD .venv/bin/python .../attacks_overhead.py
--account``) for a before/after; ``benchmarks/attacks_identical.py OLD`` checks the numbers printed are
the same.

Run:  .venv/bin/python benchmarks/attacks_overhead.py [--threads 1] [--repeats 5] [--min-seconds 10]
      [--n-samples 360] [--only fgsm]
      .venv/bin/python benchmarks/attacks_overhead.py --standard [--model demo|resnet|both] [--n-samples N]
      .venv/bin/python benchmarks/attacks_overhead.py --account [--model demo|resnet|both] [--repeats 8]
"""
from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


def _context(model: Any, data: Any, batch_size: int, previous: dict | None = None, clean: bool = True) -> Any:
    """A probe context as the engine builds it; with ``clean`` its shared clean logits are computed now."""
    from robaudit.plugin import make_test_context

    ctx = make_test_context(model, data, batch_size=batch_size, seed=0, previous=previous)
    if clean:
        ctx.clean_logits()
    return ctx


def _clock() -> float:
    """Process CPU time: with pinned threads it measures our work, not the other jobs on a shared machine."""
    return time.process_time()


def _once(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = _clock()
    out = fn()
    return _clock() - start, out


def _paired(bare: Callable[[], Any], ours: Callable[[], Any], repeats: int, min_seconds: float) -> tuple[float, float, float, int]:
    """One warm-up run of each, then interleaved timed (bare, probe) pairs — at least ``repeats``, and
    more for cheap rows until about ``min_seconds`` of timed runs (at most 50).

    Returns the median time of each side, the median of the per-pair ratios (each pair ran back to
    back, so slow drifts of machine load cancel in it), and the number of pairs.
    """
    warm = _once(bare)[0] + _once(ours)[0]
    runs = max(repeats, min(50, math.ceil(min_seconds / max(warm, 1e-9))))
    b, o = [], []
    for _ in range(runs):
        b.append(_once(bare)[0])
        o.append(_once(ours)[0])
    return statistics.median(b), statistics.median(o), statistics.median(x / y for x, y in zip(o, b)), runs


def _bare(make_attack: Callable[[float], Any], model: Any, data: Any, eps_list: tuple[float, ...],
          batch_size: int) -> int:
    """Robust count at each ε with plain torchattacks calls (seeded, one forward to score)."""
    from robaudit.probes.seeding import derive_seed
    from robaudit.probes.attacks.torchattacks_adapter import seed_global

    correct = 0
    for k, eps in enumerate(eps_list):
        attack = make_attack(eps)
        for b, (_rows, x, y) in enumerate(data.batches(batch_size)):
            seed_global(derive_seed(0, "bare", k, b), x.device)
            adv = attack(x, y)
            with torch.no_grad():
                correct += int((model(adv).argmax(dim=1) == y).sum())
    return correct


def _plain_fwd_bwd(model: Any, data: Any, batch_size: int) -> float:
    """CPU seconds of one forward+backward (cross-entropy, gradient w.r.t. the input) over every sample."""
    repeats, start = 0, _clock()
    while repeats < 3 or _clock() - start < 2.0:
        for _rows, x, y in data.batches(batch_size):
            xi = x.clone().requires_grad_(True)
            torch.autograd.grad(torch.nn.functional.cross_entropy(model(xi).float(), y), xi)
        repeats += 1
    return (_clock() - start) / repeats


def _standing(result: Any, eps_list: tuple[float, ...], n: int) -> list[Any]:
    """The sample indices an ε-monotone sweep attacked at each ε: all at the first, then those robust at the one before."""
    import numpy as np

    from robaudit.attack_outcomes import success_key

    sets = [np.arange(n)]
    for e in eps_list[:-1]:
        sets.append(np.flatnonzero(~np.asarray(result.per_sample[success_key(e)], dtype=bool)))
    return sets


def _bare_sets(make_attack: Callable[[float], Any], model: Any, data: Any, eps_list: tuple[float, ...],
               sets: list[Any], batch_size: int) -> int:
    """:func:`_bare` on the given samples at each ε (``sets[k]``: indices), in batches of ``batch_size``."""
    from robaudit.probes.attacks.torchattacks_adapter import seed_global
    from robaudit.probes.seeding import derive_seed

    correct = 0
    for k, (eps, idx) in enumerate(zip(eps_list, sets)):
        attack = make_attack(eps)
        for b, start in enumerate(range(0, len(idx), batch_size)):
            rows = torch.as_tensor(idx[start:start + batch_size])
            x, y = data.x[rows], data.y[rows]
            seed_global(derive_seed(0, "bare", k, b), x.device)
            adv = attack(x, y)
            with torch.no_grad():
                correct += int((model(adv).argmax(dim=1) == y).sum())
    return correct


def _benchmark_model(which: str, args: argparse.Namespace) -> tuple[Any, Any, float]:
    """(the audit model with frozen parameters, its audit data, the CPU-s of one plain forward+backward over
    them at ``--batch-size``, fastest of 3) for ``which`` (``demo`` or ``resnet``), loaded as the audit loads them."""
    import tempfile

    sys.path.insert(0, str(REPO / "benchmarks"))
    from passes_per_sample import model_options

    from robaudit.config import config_from_mapping
    from robaudit.engine.runner import prepare, select_probes
    from robaudit.probes.registry import ProbeRegistry

    n = args.n_samples or (360 if which == "demo" else 100)
    with tempfile.TemporaryDirectory() as tmp:
        options = {**model_options(which, Path(tmp), n), "n_samples": n, "threads": args.threads, "seed": 0,
                   "probes": ["clean"], "out": "unused"}
        config = config_from_mapping(options)
        _, _, model, data = prepare(config, select_probes(config, ProbeRegistry()))
    for p in model.parameters():
        p.requires_grad_(False)
    return model, data, min(_plain_fwd_bwd(model, data, args.batch_size) for _ in range(3))


def standard_work(which: str, args: argparse.Namespace) -> None:
    """The standard audit's attack probes against torchattacks on the same batches (see the module docstring)."""
    import torchattacks

    from robaudit.config import build_probe_config
    from robaudit.probes.attacks import torchattacks_adapter as ta
    from robaudit.probes.attacks.iterative import PGDLinfProbe
    from robaudit.probes.attacks.min_eps import MinEpsProbe
    from robaudit.probes.attacks.single_step import FGSMProbe
    from robaudit.probes.seeding import derive_seed

    model, data, plain = _benchmark_model(which, args)
    bs = args.batch_size
    clean_logits: list[Any] = []

    def probe_run(cls: type, knobs: dict, previous: dict | None = None) -> Callable[[], Any]:
        from robaudit.plugin import make_test_context

        probe = cls(build_probe_config(cls, knobs))

        def go() -> Any:
            ctx = make_test_context(model, data, batch_size=bs, seed=derive_seed(0, cls.name), previous=previous)
            if not clean_logits:  # the engine computes the clean logits once per audit, outside every probe
                clean_logits.append(ctx.clean_logits())
            ctx._clean_logits = clean_logits[0]
            with torch.enable_grad():
                return probe.run(ctx)
        return go

    eps_list = tuple(probe_run(FGSMProbe, {"sanity_checks": False})().summary["eps"])
    fgsm = lambda e: torchattacks.FGSM(model, eps=e)  # noqa: E731
    apgd = lambda e: torchattacks.APGD(model, norm="Linf", eps=e, steps=20, n_restarts=1, loss="ce",  # noqa: E731
                                       eot_iter=1, rho=0.75)
    full, quiet = {"sanity_checks": False, "monotone": False}, {"sanity_checks": False}
    fgsm_default = probe_run(FGSMProbe, quiet)()
    pgd_default = probe_run(PGDLinfProbe, quiet, {"attack.fgsm": fgsm_default})()
    previous = {"attack.fgsm": fgsm_default, "attack.pgd_linf": pgd_default}

    batches: list[tuple[torch.Tensor, torch.Tensor, float]] = []  # the bisection's batches, recorded once
    real = ta.pgd_per_sample

    def record(target: Any, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, *rest: Any, **kw: Any) -> Any:
        batches.append((x, y, float(eps.mean())))
        return real(target, x, y, eps, *rest, **kw)

    ta.pgd_per_sample = record
    try:
        min_eps_result = probe_run(MinEpsProbe, {}, previous)()
    finally:
        ta.pgd_per_sample = real
    fraction = min_eps_result.summary["settings"]["step_fraction"]

    def bare_bisection() -> int:
        correct = 0
        for b, (x, y, eps) in enumerate(batches):
            ta.seed_global(derive_seed(0, "bare-bisection", b), x.device)
            adv = torchattacks.PGD(model, eps=eps, alpha=fraction * eps, steps=10, random_start=True)(x, y)
            with torch.no_grad():
                correct += int((model(adv).argmax(dim=1) == y).sum())
        return correct

    every = lambda make: lambda: _bare(make, model, data, eps_list, bs)  # noqa: E731
    fgsm_sets, pgd_sets = _standing(fgsm_default, eps_list, len(data)), _standing(pgd_default, eps_list, len(data))
    rows: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        ("FGSM, every sample at every ε", every(fgsm), probe_run(FGSMProbe, full)),
        ("APGD-CE-20, every sample at every ε", every(apgd), probe_run(PGDLinfProbe, full)),
        ("FGSM, ε-monotone", lambda: _bare_sets(fgsm, model, data, eps_list, fgsm_sets, bs),
         probe_run(FGSMProbe, quiet)),
        ("APGD-CE-20, ε-monotone", lambda: _bare_sets(apgd, model, data, eps_list, pgd_sets, bs),
         probe_run(PGDLinfProbe, quiet, {"attack.fgsm": fgsm_default})),
        ("min-ε bisection (PGD-10, the same batches)", bare_bisection, probe_run(MinEpsProbe, {}, previous)),
    ]
    print(f"\n== the standard audit's attack work on {which}: {len(data)} samples, batch {bs}, L∞ ε {list(eps_list)}, "
          f"threads {torch.get_num_threads()} (pinned); one plain forward+backward over all samples {plain:.4f} CPU-s; "
          f"process CPU seconds, median of ≥ {args.repeats} interleaved pairs")
    print(f"{'work':<46}{'torchattacks s':>15}{'robaudit s':>12}{'ratio':>8}{'pairs':>6}"
          f"{'passes/sample: torchattacks':>29}{'robaudit':>10}")
    totals = {"every sample at every ε": [0.0, 0.0], "ε-monotone": [0.0, 0.0]}
    for label, bare, ours in rows:
        bare_s, ours_s, ratio, runs = _paired(bare, ours, args.repeats, args.min_seconds)
        for key in totals:
            if key in label or (label.startswith("min-ε") and key == "ε-monotone"):
                totals[key][0] += bare_s
                totals[key][1] += ours_s
        print(f"{label:<46}{bare_s:>15.3f}{ours_s:>12.3f}{ratio:>8.3f}{runs:>6}"
              f"{bare_s / plain:>29.1f}{ours_s / plain:>10.1f}", flush=True)
    for key, (bare_s, ours_s) in totals.items():
        extra = " + the bisection" if key == "ε-monotone" else ""
        print(f"{'total, ' + key + extra:<46}{bare_s:>15.3f}{ours_s:>12.3f}{ours_s / bare_s:>8.3f}{'':>6}"
              f"{bare_s / plain:>29.1f}{ours_s / plain:>10.1f}")
    print("the standard audit's attack probes as they run (default knobs, sanity checks on), passes per sample:")
    fgsm_on = probe_run(FGSMProbe, {})
    fgsm_result = fgsm_on()
    pgd_on = probe_run(PGDLinfProbe, {}, {"attack.fgsm": fgsm_result})
    min_eps_on = probe_run(MinEpsProbe, {}, {"attack.fgsm": fgsm_result, "attack.pgd_linf": pgd_on()})
    total = 0.0
    for name, fn in (("attack.fgsm", fgsm_on), ("attack.pgd_linf", pgd_on), ("attack.min_eps", min_eps_on)):
        fn()  # warm-up
        cpu = min(_once(fn)[0] for _ in range(args.repeats))
        total += cpu
        print(f"  {name:<20}{cpu:>8.3f} CPU-s (fastest of {args.repeats}) = {cpu / plain:6.1f} passes per sample")
    print(f"  {'total':<20}{total:>8.3f} CPU-s = {total / plain:6.1f} passes per sample")


class PassLedger:
    """Per-call CPU accounting of an attack probe's run: the network's forward passes (with and without
    an input gradient), the backward passes (``torch.autograd.grad``), torchattacks' APGD bookkeeping
    (its ``attack_single_run`` minus the network passes and random draws inside it), the per-sample
    random draws (the random functions through :class:`~robaudit.probes.attacks.torchattacks_adapter.PerSampleDraws`,
    samples = rows drawn) and the rest, with the samples each pass carried. Installed by :meth:`watch`
    (hooks on the model, wrappers on ``torch.autograd.grad``, ``torchattacks.APGD.attack_single_run``
    and the mode's ``__torch_function__``), removed on exit."""

    PARTS = ("forward, input gradient", "forward, no gradient", "backward", "per-sample random draws",
             "APGD bookkeeping")

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(self.PARTS, 0.0)
        self.samples = dict.fromkeys(self.PARTS, 0)
        self.calls = dict.fromkeys(self.PARTS, 0)
        self._network = 0.0  # network CPU so far (forwards and backwards), to subtract from APGD's body

    def _add(self, part: str, seconds: float, samples: int) -> None:
        self.seconds[part] += seconds
        self.samples[part] += samples
        self.calls[part] += 1

    @contextlib.contextmanager
    def watch(self, model: Any) -> Iterator["PassLedger"]:
        import torchattacks

        started: list[float] = []

        def pre(_m: Any, inputs: tuple) -> None:
            started.append(_clock())

        def post(_m: Any, inputs: tuple, _out: Any) -> None:
            dt = _clock() - started.pop()
            self._network += dt
            self._add(self.PARTS[0] if inputs[0].requires_grad else self.PARTS[1], dt, len(inputs[0]))

        real_grad, real_run = torch.autograd.grad, torchattacks.APGD.attack_single_run

        def grad(outputs: Any, inputs: Any, *a: Any, **k: Any) -> Any:
            start = _clock()
            out = real_grad(outputs, inputs, *a, **k)
            dt = _clock() - start
            self._network += dt
            self._add(self.PARTS[2], dt, len(inputs[0] if isinstance(inputs, (list, tuple)) else inputs))
            return out

        def single_run(attack: Any, x: torch.Tensor, y: torch.Tensor) -> Any:
            start, network = _clock(), self._network
            out = real_run(attack, x, y)
            self._add(self.PARTS[4], (_clock() - start) - (self._network - network), len(x))
            return out

        from robaudit.probes.attacks.torchattacks_adapter import PerSampleDraws

        mode = PerSampleDraws
        real_tf = mode.__torch_function__
        random = frozenset((*mode._FACTORIES, *mode._LIKE, *mode._IN_PLACE))

        def torch_function(draws: Any, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
            if func not in random:
                return real_tf(draws, func, types, args, kwargs)
            start = _clock()
            out = real_tf(draws, func, types, args, kwargs)
            dt = _clock() - start
            self._network += dt  # not APGD's own work
            self._add(self.PARTS[3], dt, len(out) if isinstance(out, torch.Tensor) and out.dim() else 0)
            return out

        handles = [model.register_forward_pre_hook(pre), model.register_forward_hook(post)]
        torch.autograd.grad, torchattacks.APGD.attack_single_run = grad, single_run
        mode.__torch_function__ = torch_function
        try:
            yield self
        finally:
            torch.autograd.grad, torchattacks.APGD.attack_single_run = real_grad, real_run
            mode.__torch_function__ = real_tf
            for h in handles:
                h.remove()


def account(which: str, args: argparse.Namespace) -> None:
    """Where each standard attack probe's CPU time goes, in passes per sample (``--account``).

    Per probe (default knobs, sanity checks on, after FGSM and APGD-CE as in the audit): the samples
    each kind of network pass carried per audit sample (what the pass count *is*), and the CPU time of
    each part over P, the CPU time of one plain forward+backward of every sample (what it *costs*);
    fastest of ``--repeats`` runs. Run it from another checkout (``PYTHONPATH=OLD cd OLD``) for a
    before/after.
    """
    import robaudit

    from robaudit.config import build_probe_config
    from robaudit.plugin import make_test_context
    from robaudit.probes.attacks.iterative import PGDLinfProbe
    from robaudit.probes.attacks.min_eps import MinEpsProbe
    from robaudit.probes.attacks.single_step import FGSMProbe
    from robaudit.probes.seeding import derive_seed

    model, data, plain = _benchmark_model(which, args)
    bs = args.batch_size
    clean_logits: list[Any] = []

    def run(cls: type, previous: dict | None = None) -> Any:
        ctx = make_test_context(model, data, batch_size=bs, seed=derive_seed(0, cls.name), previous=previous)
        if not clean_logits:
            clean_logits.append(ctx.clean_logits())
        ctx._clean_logits = clean_logits[0]
        with torch.enable_grad():
            return cls(build_probe_config(cls, {})).run(ctx)

    fgsm = run(FGSMProbe)
    pgd = run(PGDLinfProbe, {"attack.fgsm": fgsm})
    probes = (("attack.fgsm", FGSMProbe, None), ("attack.pgd_linf", PGDLinfProbe, {"attack.fgsm": fgsm}),
              ("attack.min_eps", MinEpsProbe, {"attack.fgsm": fgsm, "attack.pgd_linf": pgd}))
    print(f"\n== where the attack probes' CPU goes on {which}: {len(data)} samples, batch {bs}, threads "
          f"{torch.get_num_threads()} (pinned), robaudit from {Path(robaudit.__file__).parents[1]}; P = one plain "
          f"forward+backward of every sample = {plain:.4f} CPU-s; fastest of {args.repeats} runs")
    print(f"{'probe':<17}{'part':<26}{'samples/sample':>15}{'calls':>7}{'CPU-s':>9}{'passes (CPU/P)':>16}")
    for name, cls, previous in probes:
        run(cls, previous)  # warm-up
        best: tuple[float, PassLedger] | None = None
        for _ in range(args.repeats):
            ledger = PassLedger()
            with ledger.watch(model):
                cpu, _ = _once(lambda cls=cls, previous=previous: run(cls, previous))
            if best is None or cpu < best[0]:
                best = (cpu, ledger)
        cpu, ledger = best
        for part in PassLedger.PARTS:
            if ledger.calls[part]:
                print(f"{name:<17}{part:<26}{ledger.samples[part] / len(data):>15.2f}{ledger.calls[part]:>7}"
                      f"{ledger.seconds[part]:>9.3f}{ledger.seconds[part] / plain:>16.1f}")
        rest = cpu - sum(ledger.seconds.values())
        print(f"{name:<17}{'rest (robaudit, Python)':<26}{'':>15}{'':>7}{rest:>9.3f}{rest / plain:>16.1f}")
        print(f"{name:<17}{'total':<26}{'':>15}{'':>7}{cpu:>9.3f}{cpu / plain:>16.1f}", flush=True)
    from robaudit.probes.attacks import torchattacks_adapter as ta

    if not hasattr(ta.AttackTarget, "known_clean"):
        return  # a checkout from before the clean-check reuse
    # the lever, in one process: APGD's clean check reused vs made on every call (known_clean a no-op)
    pgd_previous = {"attack.fgsm": fgsm}
    reused = lambda: run(PGDLinfProbe, pgd_previous)  # noqa: E731
    real = ta.AttackTarget.known_clean

    def every_call() -> Any:
        ta.AttackTarget.known_clean = lambda self, *args: contextlib.nullcontext()
        try:
            return run(PGDLinfProbe, pgd_previous)
        finally:
            ta.AttackTarget.known_clean = real

    old_s, new_s, ratio, pairs = _paired(every_call, reused, args.repeats, args.min_seconds)
    print(f"attack.pgd_linf, APGD's clean check made on every call → reused: {old_s / plain:.1f} → "
          f"{new_s / plain:.1f} passes per sample (CPU/P; medians), paired ratio {ratio:.3f}, "
          f"{pairs} interleaved pairs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-samples", type=int, default=None, help="digits test samples (default: all 360)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--min-seconds", type=float, default=10.0,
                        help="cheap rows repeat until about this much timed CPU time (median of more runs)")
    parser.add_argument("--standard", action="store_true",
                        help="the standard audit's attack work (FGSM, APGD-CE-20, min-ε) vs torchattacks on --model")
    parser.add_argument("--account", action="store_true",
                        help="per-part CPU accounting of the standard attack probes on --model (PassLedger)")
    parser.add_argument("--model", choices=("demo", "resnet", "both"), default="both",
                        help="with --standard: the benchmark model(s) of benchmarks/passes_per_sample.py")
    parser.add_argument("--only", default=None, metavar="TEXT",
                        help="run only the rows whose label contains TEXT (case-insensitive); 'bisection' for that one")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    if args.standard or args.account:
        for which in (("demo", "resnet") if args.model == "both" else (args.model,)):
            (account if args.account else standard_work)(which, args)
        return 0

    import torchattacks

    from robaudit.config import build_probe_config
    from robaudit.threat_model import resolve_threat_model
    from robaudit.probes.attacks.iterative import BIMProbe, PGDL2Probe, PGDLinfProbe
    from robaudit.probes.attacks.min_eps import MinEpsProbe
    from robaudit.probes.attacks.single_step import FGSMProbe, L2GradProbe
    from robaudit.probes.attacks.torchattacks_adapter import L2_DIVISION_FLOOR

    model, data = _load(args.n_samples)
    for p in model.parameters():  # the probes' attack session does this; the baseline gets the same model
        p.requires_grad_(False)
    threat_model = resolve_threat_model("digits", (1, 8, 8))
    linf, l2 = threat_model.eps("linf"), threat_model.eps("l2")
    print(f"robaudit attack overhead on the digits demo: {len(data)} samples, batch {args.batch_size}, "
          f"torch {torch.__version__}, torchattacks {torchattacks.__version__}, threads {torch.get_num_threads()} "
          f"(pinned); process CPU seconds, median of ≥ {args.repeats} interleaved runs after one warm-up each")
    print(f"L∞ ε {list(linf)}, L2 ε {list(l2)}")
    print(f"{'attack':<40}{'bare torchattacks s':>20}{'robaudit s':>12}{'ratio':>8}{'pairs':>6}")

    def probe_run(cls: type, knobs: dict, previous: dict | None = None, clean: bool = True) -> Callable[[], Any]:
        probe = cls(build_probe_config(cls, knobs))
        ctx = _context(model, data, args.batch_size, previous) if clean else None

        def go() -> Any:
            with torch.enable_grad():
                return probe.run(ctx if ctx is not None else _context(model, data, args.batch_size, previous, False))
        return go

    fgsm_result = probe_run(FGSMProbe, {})()
    l2grad_result = probe_run(L2GradProbe, {})()
    fgsm = lambda e: torchattacks.FGSM(model, eps=e)  # noqa: E731
    bim = lambda e: torchattacks.BIM(model, eps=e, alpha=e / 10, steps=10)  # noqa: E731
    pgd = lambda e: torchattacks.PGD(model, eps=e, alpha=e / 8, steps=20, random_start=True)  # noqa: E731
    pgd2 = lambda e: torchattacks.PGDL2(model, eps=e, alpha=e / 8, steps=20, random_start=True,  # noqa: E731
                                        eps_for_division=L2_DIVISION_FLOOR)
    apgd = lambda e: torchattacks.APGD(model, norm="Linf", eps=e, steps=20, n_restarts=1, loss="ce",  # noqa: E731
                                       eot_iter=1, rho=0.75)
    # matched work: the bare baseline attacks every sample at every ε, so the probes run with
    # monotone = false (and PGD L∞ with method = "pgd"); the last L∞ rows show the default's skipping
    off, on = {"sanity_checks": False, "monotone": False}, {"monotone": False}
    pgd_off, pgd_on = {**off, "method": "pgd", "step_fraction": 0.125}, {**on, "method": "pgd", "step_fraction": 0.125}
    rows: list[tuple[str, Callable[[float], Any], tuple[float, ...], type, dict, dict | None, bool]] = [
        ("FGSM, sanity off", fgsm, linf, FGSMProbe, off, None, True),
        ("FGSM, sanity on", fgsm, linf, FGSMProbe, on, None, True),
        ("FGSM standalone (+clean fwd), sanity off", fgsm, linf, FGSMProbe, off, None, False),
        ("BIM-10, sanity off", bim, linf, BIMProbe, off, None, True),
        ("BIM-10, sanity on (after FGSM)", bim, linf, BIMProbe, on, {"attack.fgsm": fgsm_result}, True),
        ("PGD-20 L∞, sanity off", pgd, linf, PGDLinfProbe, pgd_off, None, True),
        ("PGD-20 L∞, sanity on (after FGSM)", pgd, linf, PGDLinfProbe, pgd_on, {"attack.fgsm": fgsm_result}, True),
        ("PGD-20 L∞, sanity on (alone)", pgd, linf, PGDLinfProbe, pgd_on, None, True),
        ("APGD-CE-20 L∞, sanity off", apgd, linf, PGDLinfProbe, off, None, True),
        ("APGD-CE-20 L∞ ε-monotone (default), sanity off", apgd, linf, PGDLinfProbe, {"sanity_checks": False}, None,
         True),
        ("PGD-20 L2, sanity off", pgd2, l2, PGDL2Probe, off, None, True),
        ("PGD-20 L2, sanity on (after L2GRAD)", pgd2, l2, PGDL2Probe, on, {"attack.l2grad": l2grad_result}, True),
    ]
    only = args.only.lower() if args.only else None
    for label, make, eps_list, cls, knobs, previous, clean in rows:
        if only is not None and only not in label.lower():
            continue
        bare_s, ours_s, ratio, runs = _paired(lambda make=make, eps_list=eps_list: _bare(make, model, data, eps_list,
                                                                                         args.batch_size),
                                              probe_run(cls, knobs, previous, clean), args.repeats, args.min_seconds)
        print(f"{label:<40}{bare_s:>20.3f}{ours_s:>12.3f}{ratio:>8.3f}{runs:>6}", flush=True)

    if only is not None and only not in "min-ε bisection":
        return 0
    # the bisection, in attack-step units
    bisect = probe_run(MinEpsProbe, {})
    result = bisect()
    steps = result.summary["settings"]["steps"]
    fraction = result.summary["settings"]["step_fraction"]
    one_run = lambda: _bare(lambda e: torchattacks.PGD(model, eps=e, alpha=fraction * e, steps=steps), model,  # noqa: E731
                            data, (0.1,), args.batch_size)
    one_run_s, bisect_s, _, _ = _paired(one_run, bisect, args.repeats, args.min_seconds)
    cost = result.summary["cost"]
    per_step_bare = one_run_s / (steps * len(data))
    per_step_ours = bisect_s / cost["attack_steps"]
    print()
    print(f"min-ε bisection (PGD L∞, {steps} steps/run, step {fraction:g}·ε, tolerance {result.summary['tolerance']:.5f}, "
          f"eps_max {result.summary['eps_max']}, {result.summary['rounds']} bisection rounds, "
          f"{result.summary['clean_correct']} of {result.summary['n']} samples attacked):")
    print(f"  attack steps per attacked sample: {cost['attack_steps_per_attacked_sample']:.1f} "
          f"= {cost['pgd_runs_per_attacked_sample']:.1f} PGD runs of {steps} steps")
    print(f"  CPU: {bisect_s:.3f} s = {bisect_s / one_run_s:.2f}x one bare {steps}-step PGD run over all samples "
          f"({one_run_s:.3f} s); per attack step {per_step_ours / per_step_bare:.3f}x the bare run's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
