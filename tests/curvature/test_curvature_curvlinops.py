"""Cross-check against curvlinops (a test-only peer) on the 38k-parameter demo CNN."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from curvlinops import HessianLinearOperator
from scipy.sparse.linalg import eigsh
from torch import nn

from demo import DEMO_ARCH, DEMO_CHECKPOINT
from robaudit.data import DataRequest, describe_dataset, load_data
from robaudit.models import ModelRequest, load_model
from robaudit.probes.curvature.eigen import topk
from robaudit.probes.curvature.operator import HessianOperator
from robaudit.probes.curvature.samples import SampleSet


@pytest.fixture(scope="module")
def demo() -> tuple:
    request = DataRequest("digits", n_samples=64, seed=0)
    model = load_model(ModelRequest(str(DEMO_CHECKPOINT), arch=DEMO_ARCH, second_order=True), describe_dataset(request))
    data = load_data(request, 1)
    peer_model = copy.deepcopy(model).double().eval()
    params = list(peer_model.parameters())
    batches = [(data.x[i:i + 20].double(), data.y[i:i + 20]) for i in range(0, 64, 20)]  # 20, 20, 20, 4
    peer = HessianLinearOperator(peer_model, nn.CrossEntropyLoss(reduction="mean"), params, batches,
                                 check_deterministic=False)
    samples = SampleSet("audit", "audit", None, data.x, data.y, list(data.ids))
    return model, samples, peer


def test_hvps_equal_curvlinops(demo: tuple) -> None:
    model, samples, peer = demo
    ours = HessianOperator(model, samples, dtype=torch.float64, batch_size=7)  # 9 × 7 + 1
    assert ours.size == 38_282
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        v = torch.randn(ours.size, generator=gen, dtype=torch.float64)
        want = peer @ v
        assert float((ours.matvec(v) - want).norm() / want.norm()) < 1e-10


@pytest.mark.slow
def test_top5_eigenvalues_equal_curvlinops(demo: tuple) -> None:
    model, samples, peer = demo
    ours = topk(HessianOperator(model, samples, dtype=torch.float64, batch_size=7), 5, tol=1e-10, seed=0)
    ref, _ = eigsh(peer.to_scipy(), k=5, which="LM", tol=1e-10, v0=np.random.default_rng(1).standard_normal(38_282))
    ref = ref[np.argsort(-np.abs(ref))]
    assert np.allclose(ours.values, ref, rtol=1e-8)
    assert max(ours.residuals) < 1e-8
