"""CUDA variants of the Foolbox cross-check: FGSM and PGD run on a CUDA device against Foolbox on the same
device, sample by sample, with matched settings (float64 logits, no random start).

Marked ``gpu``: skipped where no CUDA device is present (``benchmarks/gpu_check.sh`` runs them).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attack_models import demo, subset
from robaudit.config import build_probe_config
from robaudit.probes.attacks.iterative import PGDLinfProbe
from robaudit.probes.attacks.single_step import FGSMProbe
from robaudit.probes.testing import make_test_context
from robaudit.results.environment import make_cuda_reproducible

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_cnn64() -> tuple:
    make_cuda_reproducible()
    model, data = demo()
    return model.to(torch.device("cuda")), subset(data, 64)


def _ours(cls: type, model, data, **knobs: object):  # noqa: ANN001
    ctx = make_test_context(model, data, batch_size=64, device="cuda")
    torch.manual_seed(0)
    with torch.enable_grad():
        return cls(build_probe_config(cls, knobs)).run(ctx)


def _foolbox_success(model, data, attack, eps: list[float]) -> np.ndarray:  # noqa: ANN001
    import foolbox as fb

    class Float64Logits(torch.nn.Module):  # matched settings: robaudit's attacks see float64 logits
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x).double()

    fmodel = fb.PyTorchModel(Float64Logits(model).eval(), bounds=(0.0, 1.0), device="cuda")
    x, y = data.x.cuda(), data.y.cuda()
    _, clipped, _ = attack(fmodel, x, y, epsilons=eps)
    out = []
    for adv in clipped:
        assert adv.is_cuda
        with torch.no_grad():
            out.append((model(adv).argmax(dim=1) != y).cpu().numpy())
    return np.stack(out)


def test_cuda_fgsm_matches_foolbox_sample_by_sample(cuda_cnn64: tuple) -> None:
    import foolbox as fb

    model, data = cuda_cnn64
    eps = [0.05, 0.1, 0.2]
    ours = _ours(FGSMProbe, model, data, eps=eps, sanity_checks=False)
    theirs = _foolbox_success(model, data, fb.attacks.FGSM(random_start=False), eps)
    for k, e in enumerate(eps):
        np.testing.assert_array_equal(ours.per_sample[f"success_eps_{e:g}"], theirs[k], err_msg=f"eps={e}")
    assert 0 < theirs.mean() < 1


def test_cuda_pgd_matches_foolbox_sample_by_sample(cuda_cnn64: tuple) -> None:
    import foolbox as fb

    model, data = cuda_cnn64
    for eps in (0.05, 0.1):
        ours = _ours(PGDLinfProbe, model, data, eps=[eps], steps=10, step_fraction=0.25, random_start=False,
                     sanity_checks=False)
        theirs = _foolbox_success(model, data, fb.attacks.LinfPGD(abs_stepsize=0.25 * eps, steps=10, random_start=False),
                                  [eps])
        np.testing.assert_array_equal(ours.per_sample[f"success_eps_{eps:g}"], theirs[0], err_msg=f"eps={eps}")
