"""The standard audit's cost in forward+backward-equivalents: per sample, fixed per run, and per probe.

Definitions (all process CPU time, torch threads pinned, default 1; P(N) is the CPU time of one plain
forward+backward over the same N samples, A(N) of the standard audit, C(N) of a ``--probes clean`` audit):

(a) **total per sample at N** (issue #17's definition, kept)  = (A(N) − C(N)) / P(N);
(b) **marginal per sample**  = Δ(A − C) / ΔP between the sample counts (the least-squares slope of
    A − C against P when more than two counts are given; with two it is the plain difference quotient);
(c) **fixed cost per run**   F = (A − C)(N) − (b)·P(N) CPU-s (the intercept of that line), also given in
    single-sample forward+backward-equivalents, F / (P(N)/N) at the largest N. With two counts the
    split is exact: (a) at N = (b) + F / P(N).

Everything the audit does counts: the probes, the per-sample indicator analysis, the results.json /
per-sample table writes after every probe, the cost estimate. The per-probe rows split the same way.
Each probe's CPU time is measured around the engine's per-probe call
(``robaudit.engine.runner._run_one``, the span whose wall time is the probe's ``duration_s`` in
results.json; wall time is useless on a shared machine), and the rest of the audit is its own row:
**outside the probes** = (A − Σ probe CPU) − (C − Σ probe CPU of the clean-only audit), split further
into the analysis, the writes and the cost estimate where the engine still has those steps. A probe that
also runs in the clean-only audit (``clean``) counts its difference. The rows sum to A − C.

Timing: a warm-up forward+backward and a small warm-up audit first (one-off imports and allocator
growth would otherwise land on whichever run is first). P(N) is timed before and after every audit at
that N (each timing repeats the pass until ``--fb-seconds`` of CPU) and the **median** is used, since it
varied by ±8 % between runs on the ResNet. Each audit runs ``--repeats`` times per size, interleaved
(default :data:`REPEATS`: 3 for the demo, whose few-second audits varied by ±25 %, 1 for the ResNet),
and the median of each entry (total, each probe, each step) is used. The plain forward+backward is the
pass an attack step makes: cross-entropy of the logits, gradient with respect to the input batch
(``torch.autograd.grad``), batch size as in the audit, over the samples loaded as the audit loads them.

Old code paths run side by side behind their knobs: ``before`` is the standard audit with every attack
lever of issue #17 turned back (:data:`OLD_PATHS`): ``attack.min_eps.brackets = false`` (the version-1
minimal-ε search from [0, ε_max]), ``monotone = false`` on the sweeps (every sample attacked at every
ε) and ``attack.pgd_linf.method = "pgd"`` (Madry's PGD-20 instead of APGD-CE-20). ``--no-before``
skips those runs.

Target (issue #17): ≤ 200 forward+backward-equivalents per sample, checked against (b), the marginal
cost: it is what a sample costs whatever N is, while the fixed cost has its own issue-#17 targets (report
rendering, zoo per-model overhead). (a) at every N is printed against the same number too.

Peers (``--peers``; otherwise their commands are printed): the attack work against torchattacks called
directly on the same batches (:func:`attack_peer`: ``benchmarks/attacks_overhead.py --standard``)
and curvature.topk's HVPs against hessian-eigenthings' Lanczos (``benchmarks/curvature_topk_hvps.py``,
about 1.5 CPU-minutes: it needs a dense reference Hessian).

Models:
* ``demo`` — the digits demo CNN (examples/) on the digits test split (360 samples: the default sizes
  are 100 and all 360);
* ``resnet`` — the quarter-width timm ResNet-18 at 32×32: ``timm:resnet18`` with
  ``--arch-kwargs channels=[16,32,64,128] stem_width=16 num_classes=10`` (timm's ``ResNet`` widths
  ÷ 4, random init), on a seeded tensor file of random 32×32 RGB images (no download); sizes 100 and 400.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/passes_per_sample.py [--model demo|resnet|both]
      [--sizes 100 360] [--repeats 3] [--threads 1] [--no-before] [--peers] [--json out.json]
The default (both models, default sizes, before and after) took about 6 CPU-minutes on a loaded machine; see docs/attacks.md.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

TARGET = 200
"""Issue #17: the standard audit's probes in at most this many forward+backward-equivalents per sample."""
OLD_PATHS = {"attack.min_eps": {"brackets": False}, "attack.fgsm": {"monotone": False},
             "attack.pgd_linf": {"monotone": False, "method": "pgd"}}
"""Knobs that restore the attacks' version-1 work in the standard audit."""
SIZES = {"demo": (100, 360), "resnet": (100, 400)}
"""Default sample counts per model (the demo's digits test split has 360 samples)."""
REPEATS = {"demo": 3, "resnet": 1}
"""Default audits per (variant, size): the demo's audits take seconds and their CPU time varied by ±25 %
between runs on a shared machine; the ResNet's take a minute and varied by a few %."""
OUTSIDE = "outside the probes"
"""The row for the audit's CPU time outside every probe (analysis, writes, cost estimate, the rest)."""
ATTACK_PEER = REPO / "benchmarks" / "attacks_overhead.py"
ATTACK_PEER_MODE = "--standard"
"""The attack peer: its mode that times the standard audit's attack work against torchattacks."""
CURVATURE_PEER = REPO / "benchmarks" / "curvature_topk_hvps.py"


def model_options(which: str, tmp: Path, n: int) -> dict[str, Any]:
    """``robaudit.audit`` options for the benchmark model ``which`` (``tmp``: where its data file goes)."""
    if which == "demo":
        return {"model": str(REPO / "examples" / "digits_cnn.safetensors"),
                "arch": f"{REPO / 'examples' / 'digits_cnn.py'}:DigitsCNN", "dataset": "digits"}
    g = np.random.default_rng(0)
    path = tmp / "random32.npz"
    np.savez(path, x=g.random((n, 3, 32, 32), dtype=np.float32), y=g.integers(0, 10, n))
    return {"model": "timm:resnet18", "arch_kwargs": {"channels": [16, 32, 64, 128], "stem_width": 16,
                                                      "num_classes": 10}, "dataset": str(path)}


# --- arithmetic ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Split:
    """A cost y(N) = fixed + marginal · P(N) over the sample counts N.

    ``marginal``: forward+backward-equivalents per sample (CPU-s per CPU-s of plain passes);
    ``fixed``: CPU-s per run.
    """

    marginal: float
    fixed: float

    def per_sample(self, passes: float) -> float:
        """(a) at a size whose plain forward+backward costs ``passes`` CPU-s: marginal + fixed / passes."""
        return self.marginal + self.fixed / passes


def split_fixed(costs: Sequence[float], passes: Sequence[float]) -> Split:
    """Split the CPU-s ``costs`` (one per sample count) into marginal and fixed parts.

    ``passes``: CPU-s of one plain forward+backward over the same samples, one per count. Two counts
    give the difference quotient Δcost/Δpasses and the matching intercept; more give the least-squares
    line. Raises ValueError for fewer than two counts or a zero spread of ``passes``.
    """
    x, y = np.asarray(passes, dtype=np.float64), np.asarray(costs, dtype=np.float64)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"need the same number (≥ 2) of costs and passes, got {y.size} and {x.size}")
    if np.ptp(x) <= 0:
        raise ValueError("the plain forward+backward took the same CPU time at every size: use sizes further apart")
    marginal, fixed = np.polyfit(x, y, 1)
    return Split(float(marginal), float(fixed))


@dataclass
class Audit:
    """One timed audit: process CPU-s in all, per probe, and in the engine's named steps outside them."""

    cpu: float
    probes: dict[str, float]
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def outside(self) -> float:
        """CPU-s outside every probe (loading, analysis, writes, cost estimate, …)."""
        return self.cpu - sum(self.probes.values())

    @classmethod
    def median(cls, audits: Sequence[Audit]) -> Audit:
        """The median of repeated audits, taken per entry (the total, each probe, each step)."""
        def med(values: list[dict[str, float]]) -> dict[str, float]:
            return {k: statistics.median(v.get(k, 0.0) for v in values) for k in dict.fromkeys(k for v in values for k in v)}
        return cls(statistics.median(a.cpu for a in audits), med([a.probes for a in audits]),
                   med([a.steps for a in audits]))


def rows(audit: Audit, clean: Audit) -> dict[str, float]:
    """The rows of ``audit`` − ``clean`` in CPU-s: one per probe of ``audit`` (a probe that also ran in
    ``clean`` counts its difference), then :data:`OUTSIDE` (the difference of the CPU-s outside the
    probes); they sum to ``audit.cpu − clean.cpu``."""
    out = {name: cpu - clean.probes.get(name, 0.0) for name, cpu in audit.probes.items()}
    out[OUTSIDE] = audit.outside - clean.outside - sum(c for n, c in clean.probes.items() if n not in audit.probes)
    return out


# --- measurement ----------------------------------------------------------------------------------------

@contextlib.contextmanager
def cpu_meter() -> Iterator[dict[str, float]]:
    """Accumulate process CPU-s per probe (``probe:<name>``) and per named engine step outside the probes
    (``analysis``, ``writes``, ``cost estimate``) while the block runs, by wrapping the engine's calls."""
    from robaudit.engine import runner

    spent: dict[str, float] = {}

    def timed(fn: Callable[..., Any], key: Callable[[tuple[Any, ...]], str]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                name = key(args)
                spent[name] = spent.get(name, 0.0) + time.process_time() - start
        return wrapper

    if not callable(getattr(runner, "_run_one", None)):
        raise SystemExit("robaudit.engine.runner._run_one (the engine's per-probe call) is gone: "
                         "update cpu_meter() in benchmarks/passes_per_sample.py")
    targets = [(runner, "_run_one", lambda a: f"probe:{a[0].name}"), (runner, "analyse", lambda a: "analysis"),
               (getattr(runner, "_RunState", None), "write", lambda a: "writes"),
               (runner, "audit_cost_estimate", lambda a: "cost estimate")]
    with contextlib.ExitStack() as stack:
        for owner, attr, key in targets:
            if owner is not None and callable(getattr(owner, attr, None)):
                stack.enter_context(mock.patch.object(owner, attr, timed(getattr(owner, attr), key)))
        yield spent


def cpu_audit(options: dict[str, Any]) -> tuple[Audit, dict[str, Any]]:
    """One quiet audit without a report: its :class:`Audit` CPU times and its results.json."""
    import robaudit

    with cpu_meter() as spent:
        start = time.process_time()
        outcome = robaudit.audit(**options, report=False, overwrite=True, quiet=True)
        cpu = time.process_time() - start
    probes = {k.removeprefix("probe:"): v for k, v in spent.items() if k.startswith("probe:")}
    return Audit(cpu, probes, {k: v for k, v in spent.items() if not k.startswith("probe:")}), outcome.results


def load_model_and_data(options: dict[str, Any]) -> tuple[Any, Any]:
    """The audit model and data exactly as the audit loads them for ``options``."""
    from robaudit.config import config_from_mapping
    from robaudit.engine.runner import prepare, select_probes
    from robaudit.probes.registry import ProbeRegistry

    config = config_from_mapping({**options, "probes": ["clean"], "out": "unused"})
    _, _, model, data = prepare(config, select_probes(config, ProbeRegistry()))
    return model, data


def time_fwd_bwd(model: Any, data: Any, batch_size: int, min_cpu: float) -> float:
    """CPU-s of one plain forward+backward over all of ``data`` (input gradient of the cross-entropy),
    averaged over repeats until ``min_cpu`` CPU-s have passed (at least 3)."""
    repeats, start = 0, time.process_time()
    while repeats < 3 or time.process_time() - start < min_cpu:
        for _rows, x, y in data.batches(batch_size):
            xi = x.clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(xi).float(), y)
            torch.autograd.grad(loss, xi)
        repeats += 1
    return (time.process_time() - start) / repeats


def plain_fwd_bwd(options: dict[str, Any], n: int, batch_size: int) -> tuple[float, float]:
    """(CPU s, wall s) of one forward+backward over the audit's samples, loaded as the audit loads them."""
    model, data = load_model_and_data(options)
    wall = time.perf_counter()
    cpu = time_fwd_bwd(model, data, batch_size, 2.0)
    return cpu, time.perf_counter() - wall


@dataclass
class Size:
    """The measurements at one sample count: P(N) timings, the clean-only audit, the standard audits."""

    n: int
    fb: list[float]
    clean: Audit
    audits: dict[str, Audit]
    estimates: dict[str, dict[str, Any]]
    """Each variant's ``results.json › cost_estimate``."""
    repeats: int = 1
    """Audits per variant behind each :class:`Audit` (their median)."""

    @property
    def passes(self) -> float:
        """P(N): the median of the interleaved plain forward+backward timings, CPU-s."""
        return statistics.median(self.fb)


def measure_size(which: str, n: int, batch_size: int, threads: int, fb_seconds: float,
                 variants: dict[str, dict[str, Any]], warm_up: bool, repeats: int = 1) -> Size:
    """Time the plain pass, the clean-only audit and each variant's standard audit at ``n`` samples,
    ``repeats`` rounds of them interleaved (the audits' medians per entry, see :meth:`Audit.median`)."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base = {**model_options(which, tmp, n), "n_samples": n, "threads": threads, "batch_size": batch_size,
                "seed": 0}
        model, data = load_model_and_data(base)
        if len(data) != n:
            raise SystemExit(f"{which}: asked for {n} samples, the dataset gave {len(data)}; use --sizes ≤ {len(data)}")
        torch.set_num_threads(threads)  # prepare() pins them too; the plain pass must run as the audits do
        fb = lambda: time_fwd_bwd(model, data, batch_size, fb_seconds)  # noqa: E731
        if warm_up:
            fb()
            cpu_audit({**base, "n_samples": min(n, 16), "out": str(tmp / "warm-up")})
        times = [fb()]
        runs: dict[str, list[Audit]] = {label: [] for label in ("clean", *variants)}
        estimates = {}
        for _ in range(repeats):
            runs["clean"].append(cpu_audit({**base, "probes": ["clean"], "out": str(tmp / "clean")})[0])
            times.append(fb())
            for label, knobs in variants.items():
                audit, results = cpu_audit({**base, "out": str(tmp / label), "probe_config": knobs})
                runs[label].append(audit)
                estimates[label] = results["cost_estimate"]
                times.append(fb())
    clean = Audit.median(runs.pop("clean"))
    return Size(n, times, clean, {label: Audit.median(a) for label, a in runs.items()}, estimates, repeats)


# --- report -------------------------------------------------------------------------------------------

def report(which: str, sizes: list[Size], threads: int, batch_size: int) -> dict[str, Any]:
    """Print the tables for one model; return the numbers for ``--json``."""
    ns = [s.n for s in sizes]
    passes = [s.passes for s in sizes]
    labels = list(sizes[0].audits)
    big = sizes[-1]
    per_pass_sample = big.passes / big.n  # one sample's share of a plain forward+backward at the largest N
    print(f"\n== {which}: N = {', '.join(map(str, ns))} samples; torch threads {torch.get_num_threads()} "
          f"(asked {threads}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); batch {batch_size}; "
          f"torch {torch.__version__}")
    print("P(N), one plain forward+backward over all N samples, CPU-s (median of the timings before and after "
          "each audit; min–max):")
    for s in sizes:
        print(f"  N={s.n:<5} {s.passes:.4f}  ({min(s.fb):.4f}–{max(s.fb):.4f}, {len(s.fb)} timings)")
    print(f"audit CPU-s (median of {sizes[0].repeats} per variant and size):  " + "; ".join(
        f"N={s.n}: clean-only {s.clean.cpu:.2f}, " + ", ".join(f"{k} {a.cpu:.2f}" for k, a in s.audits.items())
        for s in sizes))

    table = {label: [rows(s.audits[label], s.clean) for s in sizes] for label in labels}
    names = list(dict.fromkeys(n for label in labels for r in table[label] for n in r if n != OUTSIDE))
    names.append(OUTSIDE)
    cols = [f"N={n}" for n in ns] + ["marginal", "fixed s", "estimate"]
    width = 9 * len(cols)
    print("\nforward+backward-equivalents per sample (CPU): (a) at each N, (b) marginal; (c) fixed CPU-s per run; "
          f"the cost model's estimate at N={big.n} (results.json › cost_estimate: upper bounds where work depends "
          "on the data, declared passes only)")
    print(f"{'':34}" + "".join(f"{label:^{width}}" for label in labels))
    print(f"{'probe':34}" + "".join(f"{c:>9}" for _ in labels for c in cols))
    out: dict[str, Any] = {"sizes": ns, "passes_cpu_s": passes, "fb_timings_cpu_s": [s.fb for s in sizes],
                           "threads": torch.get_num_threads(), "batch_size": batch_size,
                           "repeats": sizes[0].repeats, "variants": {}}

    def line(title: str, costs: dict[str, list[float]], estimates: dict[str, float | None] | None = None) -> dict[str, Any]:
        cells, rec = "", {}
        for label in labels:
            split = split_fixed(costs[label], passes)
            estimate = (estimates or {}).get(label)
            cells += "".join(f"{c / p:>9.1f}" for c, p in zip(costs[label], passes))
            cells += f"{split.marginal:>9.1f}{split.fixed:>9.2f}" + (f"{estimate:>9.0f}" if estimate is not None else f"{'—':>9}")
            rec[label] = {"cpu_s": costs[label], "marginal": split.marginal, "fixed_cpu_s": split.fixed,
                          "estimate": estimate}
        print(f"{title:34}{cells}")
        return rec

    def estimate(label: str, name: str | None) -> float | None:
        """The cost model's forward+backward-equivalents per sample for probe ``name`` (None: the total)."""
        record = big.estimates[label]
        if name is None:
            return record["total"]["per_sample_fwd_bwd_equivalents"]
        cost = record["probes"].get(name)
        return cost["fwd_bwd_equivalents"] / big.n if cost else None

    rec_rows = {}
    for name in names:
        rec_rows[name] = line(name, {label: [r.get(name, 0.0) for r in table[label]] for label in labels},
                              {label: estimate(label, name) for label in labels} if name != OUTSIDE else None)
    steps = sorted({k for s in sizes for a in (s.clean, *s.audits.values()) for k in a.steps})
    for step in steps:
        rec_rows[f"{OUTSIDE}: {step}"] = line(
            f"  of which {step}",
            {label: [s.audits[label].steps.get(step, 0.0) - s.clean.steps.get(step, 0.0) for s in sizes]
             for label in labels})
    totals = {label: [s.audits[label].cpu - s.clean.cpu for s in sizes] for label in labels}
    line("total (standard − clean-only)", totals, {label: estimate(label, None) for label in labels})

    print(f"\ntarget ≤ {TARGET} forward+backward-equivalents per sample, checked against (b) the marginal cost "
          "per sample (the fixed cost has its own issue-#17 targets); (a) printed against it too:")
    for label in labels:
        split = split_fixed(totals[label], passes)
        fixed_eq = split.fixed / per_pass_sample
        verdict = lambda v: "met" if v <= TARGET else "NOT met"  # noqa: E731
        totals_at = ", ".join(f"N={n} {c / p:.0f} ({verdict(c / p)})" for n, c, p in zip(ns, totals[label], passes))
        print(f"  {label:>6}: (b) marginal {split.marginal:.0f} per sample → {verdict(split.marginal)}; "
              f"(a) total {totals_at}; (c) fixed {split.fixed:.1f} CPU-s = {fixed_eq:.0f} single-sample "
              f"forward+backward-equivalents (+{split.fixed / big.passes:.0f} per sample at N={big.n})")
        out["variants"][label] = {"marginal": split.marginal, "fixed_cpu_s": split.fixed, "fixed_fwd_bwd": fixed_eq,
                                  "total_per_sample": [c / p for c, p in zip(totals[label], passes)],
                                  "rows": {k: v[label] for k, v in rec_rows.items()},
                                  "audit_cpu_s": [s.audits[label].cpu for s in sizes]}
    if "before" in labels and "after" in labels:
        b, a = (split_fixed(totals[k], passes) for k in ("before", "after"))
        print(f"  before/after: marginal {b.marginal / a.marginal:.2f}×, fixed {b.fixed / a.fixed:.2f}×, "
              f"total at N={big.n} {totals['before'][-1] / totals['after'][-1]:.2f}×")
    out["clean_cpu_s"] = [s.clean.cpu for s in sizes]
    return out


# --- peers --------------------------------------------------------------------------------------------

def attack_peer_ready() -> bool:
    """Whether this checkout's attack peer has its :data:`ATTACK_PEER_MODE`."""
    return ATTACK_PEER.exists() and f'"{ATTACK_PEER_MODE}"' in ATTACK_PEER.read_text(encoding="utf-8")


def attack_peer(which: str, threads: int, batch_size: int) -> None:
    """The attack peer: the standard audit's attack work (FGSM, the APGD-CE L∞ sweep, the minimal ε)
    against torchattacks called directly on the same batches, both matchings (every sample at every ε;
    ε-monotone), on the peer's default samples of ``which`` (demo: all 360; resnet: 100).

    It runs ``benchmarks/attacks_overhead.py --standard --model WHICH --threads T --batch-size B`` in a child
    process (its CPU time is not this process's), and says so where this checkout's script lacks that mode.
    """
    command = [sys.executable, str(ATTACK_PEER.relative_to(REPO)), ATTACK_PEER_MODE, "--model", which,
               "--threads", str(threads), "--batch-size", str(batch_size)]
    print(f"\n-- peer, attacks vs torchattacks called directly ({which}): {' '.join(command[1:])}")
    if not attack_peer_ready():
        print(f"   {ATTACK_PEER.relative_to(REPO)} has no {ATTACK_PEER_MODE} mode in this checkout: no ratio measured")
        return
    _child(command)


def curvature_peer() -> None:
    """curvature.topk's HVPs to 1e-5 on a clustered spectrum against hessian-eigenthings' Lanczos
    (``benchmarks/curvature_topk_hvps.py``, run in a child process): its summary lines and their ratio."""
    command = [sys.executable, str(CURVATURE_PEER.relative_to(REPO))]
    print(f"\n-- peer, curvature.topk vs hessian-eigenthings' Lanczos: {' '.join(command[1:])}")
    out = _child(command, echo=False)
    if out is None:
        return
    lines = out.splitlines()
    summary = lines[next((i for i, t in enumerate(lines) if t.startswith("fewest HVPs")), len(lines)):]
    print("\n".join(f"   {t}" for t in summary) or out)
    hvps = {}
    for text in summary:
        for name in ("robaudit lanczos", "hessian-eigenthings lanczos"):
            if text.strip().startswith(name) and "HVPs" in text:
                hvps[name] = int(text.split()[len(name.split())])
    if len(hvps) == 2:
        print(f"   HVPs robaudit / hessian-eigenthings: {hvps['robaudit lanczos'] / hvps['hessian-eigenthings lanczos']:.2f}×")


def _child(command: list[str], echo: bool = True) -> str | None:
    """Run a peer benchmark from the repository root with the same threads; its stdout, or None if it failed."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"   ({cpu:.0f} CPU-s in the child process)")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        print(f"   failed (exit {done.returncode}): {last}")
        return None
    if echo:
        print("\n".join(f"   {t}" for t in done.stdout.splitlines()))
    return done.stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("demo", "resnet", "both"), default="both")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="two or more sample counts (default: demo 100 360, resnet 100 400)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--fb-seconds", type=float, default=1.0,
                        help="CPU-s each timing of the plain forward+backward repeats for (default 1)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="audits per variant and size, their median used (default: demo 3, resnet 1)")
    parser.add_argument("--no-before", action="store_true", help="skip the old-path (OLD_PATHS) audits")
    parser.add_argument("--peers", action="store_true",
                        help="also run the peer benchmarks (torchattacks; hessian-eigenthings: ~1.5 CPU-minutes)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.sizes is not None and (len(set(args.sizes)) < 2 or min(args.sizes) < 1):
        parser.error("--sizes needs two or more different positive sample counts, e.g. --sizes 100 360")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats needs a positive count, e.g. --repeats 3")
    torch.set_num_threads(args.threads)
    variants = {"after": {}} if args.no_before else {"after": {}, "before": OLD_PATHS}
    record = {}
    for which in (("demo", "resnet") if args.model == "both" else (args.model,)):
        sizes = sorted(set(args.sizes or SIZES[which]))
        repeats = args.repeats or REPEATS[which]
        measured = [measure_size(which, n, args.batch_size, args.threads, args.fb_seconds, variants, warm_up=i == 0,
                                 repeats=repeats) for i, n in enumerate(sizes)]
        record[which] = report(which, measured, args.threads, args.batch_size)
        if args.peers:
            attack_peer(which, args.threads, args.batch_size)
        else:
            print(f"\n-- peer, attacks vs torchattacks called directly: OMP_NUM_THREADS=1 .venv/bin/python "
                  f"{ATTACK_PEER.relative_to(REPO)} {ATTACK_PEER_MODE} --model {which} (or --peers)"
                  + ("" if attack_peer_ready() else f"; this checkout's script has no {ATTACK_PEER_MODE} yet"))
    if args.peers:
        curvature_peer()
    else:
        print(f"-- peer, curvature.topk vs hessian-eigenthings' Lanczos (HVPs to 1e-5 on a clustered spectrum): "
              f"OMP_NUM_THREADS=1 .venv/bin/python {CURVATURE_PEER.relative_to(REPO)} (or --peers)")
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
