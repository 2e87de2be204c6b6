"""Probe classes used by the registry and engine tests (loaded through real EntryPoint objects)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from robaudit.probes.base import Column, Probe, ProbeContext, ProbeResult, Requirement


class CountingProbe(Probe):
    """Counts how often it runs; returns the mean of the first pixel and per-sample labels."""

    name = "test.counting"
    version = "1"
    description = "test probe that counts its runs"
    runs = 0

    @dataclass
    class Config:
        scale: float = 1.0
        offset: int = 0

    def run(self, ctx: ProbeContext) -> ProbeResult:
        type(self).runs += 1
        noise = float(np.random.default_rng(ctx.seed).normal())
        return ProbeResult(summary={"scaled": self.config.scale * float(ctx.data.x[:, 0, 0, 0].mean()), "noise": noise},
                           per_sample={"label_twice": 2 * ctx.data.y.numpy() + self.config.offset})


class InterruptingProbe(Probe):
    """Raises KeyboardInterrupt, as Ctrl-C would mid-probe."""

    name = "test.interrupt"
    version = "1"
    description = "test probe that simulates Ctrl-C"

    def run(self, ctx: ProbeContext) -> ProbeResult:
        raise KeyboardInterrupt


class CrashingProbe(Probe):
    """Has a bug."""

    name = "test.crash"
    version = "1"
    description = "test probe with a bug"

    def run(self, ctx: ProbeContext) -> ProbeResult:
        return {}["missing"]


class NoRunProbe(Probe):
    """Breaks the contract: no run(), no description."""

    name = "test.norun"
    version = "1"
    description = ""


class NotAProbe:
    """Not a Probe subclass at all."""


class SleepingProbe(Probe):
    """Sleeps up to a minute (long enough to be interrupted by a real SIGINT)."""

    name = "test.sleep"
    version = "1"
    description = "test probe that sleeps"

    def run(self, ctx: ProbeContext) -> ProbeResult:
        import time

        for _ in range(600):
            time.sleep(0.1)
        return ProbeResult(summary={"slept": True})


class DistanceProbe(Probe):
    """A stand-in robustness outcome: the exact L2 distance of each sample to the decision boundary of
    the model's linearisation, d(x)/‖∇x d‖₂ (so the analysis has something real to test)."""

    name = "test.distance"
    version = "1"
    description = "test probe with a per-sample robustness outcome"
    needs_grad = True
    columns = {"distance": Column("linearised L2 distance to the boundary", "robustness", "L2 pixels", True)}

    def run(self, ctx: ProbeContext) -> ProbeResult:
        import torch

        out = []
        for _rows, x, y in ctx.data.batches(ctx.batch_size):
            x = x.clone().requires_grad_(True)
            z = ctx.model(x)
            top2 = z.scatter(1, y[:, None], float("-inf")).max(1).values
            d = z.gather(1, y[:, None]).squeeze(1) - top2
            (g,) = torch.autograd.grad(d.sum(), x)
            out.append((d / g.flatten(1).norm(dim=1).clamp_min(1e-12)).detach())
        return ProbeResult(per_sample={"distance": torch.cat(out).numpy()})


class FillingProbe(Probe):
    """Fills the file system holding ``path`` (as another process might), so the next write meets ENOSPC."""

    name = "test.fill"
    version = "1"
    description = "test probe that fills a file system"

    @dataclass
    class Config:
        path: str = ""

    def run(self, ctx: ProbeContext) -> ProbeResult:
        chunk = b"\0" * 65536
        with open(self.config.path, "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(chunk)
            except OSError:  # ENOSPC: the file system is full now
                pass
        return ProbeResult(summary={"filled": True})


class MutatingProbe(Probe):
    """Breaks the contract at run time: writes into the audit model's weights in place."""

    name = "test.mutate"
    version = "1"
    description = "test probe that changes the audit model"

    def run(self, ctx: ProbeContext) -> ProbeResult:
        with torch.no_grad():
            next(ctx.model.parameters()).mul_(1.0)  # an in-place write, even of the same values
        return ProbeResult(summary={"done": True})


class ModeSwitchingProbe(Probe):
    """Breaks the contract at run time: leaves the audit model in training mode."""

    name = "test.train_mode"
    version = "1"
    description = "test probe that switches the model to training mode"

    def run(self, ctx: ProbeContext) -> ProbeResult:
        ctx.model.train()
        return ProbeResult(summary={"done": True})


class CycleA(Probe):
    """Requires test.cycle_b, which requires it back."""

    name = "test.cycle_a"
    version = "1"
    description = "test probe in a requirement cycle"
    requires = (Requirement("test.cycle_b", optional=True),)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        return ProbeResult()


class CycleB(Probe):
    """Requires test.cycle_a."""

    name = "test.cycle_b"
    version = "1"
    description = "test probe in a requirement cycle"
    requires = (Requirement("test.cycle_a"),)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        return ProbeResult()


class ReadsCounting(Probe):
    """Requires test.counting and echoes what it read (its inputs reach the context on --resume too)."""

    name = "test.reads_counting"
    version = "1"
    description = "test probe that reads test.counting"
    requires = (Requirement("test.counting"),)
    runs = 0

    def run(self, ctx: ProbeContext) -> ProbeResult:
        type(self).runs += 1
        upstream = ctx.previous["test.counting"]
        return ProbeResult(summary={"noise_read": upstream.summary["noise"],
                                    "label_sum": float(np.sum(upstream.per_sample["label_twice"]))})
