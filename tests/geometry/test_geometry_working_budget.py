"""The boundary search cuts its batches at a fixed working set (``BATCH_CUT_BYTES``), not at the device's
working budget: where the batches are cut decides which random directions each sample draws."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from geometry_helpers import linear_setup, run_probe
from robaudit.probes import memory
from robaudit.probes.geometry import boundary_probe
from robaudit.probes.geometry.boundary_probe import BoundaryDistance


def _batches(probe: BoundaryDistance) -> tuple[list[int], dict]:
    sizes: list[int] = []

    def progress(items, label, total):
        for item in items:
            if label == "boundary search":
                sizes.append(item.stop - item.start)
            yield item

    result = run_probe(probe, dataclasses.replace(linear_setup(n=10, c=4, seed=2)[1], progress=progress))
    return sizes, result.per_sample


def test_the_boundary_search_cuts_batches_at_its_fixed_working_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the cut set to three samples' working set (1 + r directions × D float32 values, 4 copies), every
    batch holds at most three samples and the distances along the gradient (no random draw) equal those of
    one batch."""
    probe = BoundaryDistance(BoundaryDistance.Config(random_directions=2))
    whole_sizes, whole = _batches(probe)
    per_sample = (1 + 2) * 16 * 4 * 4  # (1 + r) · D · float32 bytes · 4 copies, D = 1·4·4
    monkeypatch.setattr(boundary_probe, "BATCH_CUT_BYTES", 3 * per_sample)
    sizes, cut = _batches(probe)
    assert whole_sizes == [10] and sizes == [3, 3, 3, 1]
    for key in ("l2_gradient", "linf_gradient"):
        assert cut[key] == pytest.approx(whole[key], rel=1e-6, nan_ok=True), key


def test_the_random_directions_do_not_depend_on_the_devices_working_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A device with less memory (a smaller working budget) gets the same batches, so the same random
    directions and bitwise the same columns; a budget-dependent cut gave other samples other directions."""
    probe = BoundaryDistance(BoundaryDistance.Config(random_directions=2))
    sizes, before = _batches(probe)
    monkeypatch.setattr(memory, "CPU_WORKING_BUDGET", 3 * (1 + 2) * 16 * 4 * 4)
    small_sizes, after = _batches(probe)
    assert small_sizes == sizes
    for key in before:
        np.testing.assert_array_equal(np.asarray(after[key]), np.asarray(before[key]), err_msg=key)
