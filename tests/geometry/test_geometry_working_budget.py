"""The geometry probes cut their batches by the one working-memory budget, ``memory.working_budget(device)``."""
from __future__ import annotations

import dataclasses

import pytest

from geometry_helpers import linear_setup, run_probe
from robaudit.probes import memory
from robaudit.probes.geometry.boundary_probe import BoundaryDistance


def test_the_boundary_search_batches_fit_the_devices_working_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the CPU budget set to three samples' working set (1 + r directions × D float32 values, 4 copies),
    every batch of the boundary search holds at most three samples, and the distances along the gradient
    (no random draw) are the same as in one batch."""
    probe = BoundaryDistance(BoundaryDistance.Config(random_directions=2))
    whole = run_probe(probe, linear_setup(n=10, c=4, seed=2)[1])

    per_sample = (1 + 2) * 16 * 4 * 4  # (1 + r) · D · float32 bytes · 4 copies, D = 1·4·4 (the default precision)
    monkeypatch.setattr(memory, "CPU_WORKING_BUDGET", 3 * per_sample)
    batches: list[int] = []
    totals: list[int] = []

    def progress(items, label, total):
        if label == "boundary search":
            totals.append(total)
        for item in items:
            if label == "boundary search":
                batches.append(item.stop - item.start)
            yield item

    cut = run_probe(probe, dataclasses.replace(linear_setup(n=10, c=4, seed=2)[1], progress=progress))
    assert batches == [3, 3, 3, 1] and totals == [4]
    for key in ("l2_gradient", "linf_gradient"):
        assert cut.per_sample[key] == pytest.approx(whole.per_sample[key], rel=1e-6, nan_ok=True), key
