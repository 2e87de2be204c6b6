"""CUDA variants of the Foolbox cross-check: FGSM and PGD run on a CUDA device against Foolbox on the same
device, sample by sample, with matched settings (float64 logits, no random start).

Marked ``gpu``: skipped where no CUDA device is present (``benchmarks/gpu_check.sh`` runs them).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attack_models import demo, foolbox_success, subset
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


def test_cuda_fgsm_matches_foolbox_sample_by_sample(cuda_cnn64: tuple) -> None:
    import foolbox as fb

    model, data = cuda_cnn64
    eps = [0.05, 0.1, 0.2]
    ours = _ours(FGSMProbe, model, data, eps=eps, sanity_checks=False)
    theirs = foolbox_success(model, data, fb.attacks.FGSM(random_start=False), eps, device="cuda")
    for k, e in enumerate(eps):
        np.testing.assert_array_equal(ours.per_sample[f"success_eps_{e:g}"], theirs[k], err_msg=f"eps={e}")
    assert 0 < theirs.mean() < 1


def test_cuda_pgd_matches_foolbox_sample_by_sample(cuda_cnn64: tuple) -> None:
    import foolbox as fb

    model, data = cuda_cnn64
    for eps in (0.05, 0.1):
        ours = _ours(PGDLinfProbe, model, data, eps=[eps], steps=10, step_fraction=0.25, random_start=False, method="pgd",
                     sanity_checks=False)
        theirs = foolbox_success(model, data, fb.attacks.LinfPGD(abs_stepsize=0.25 * eps, steps=10, random_start=False),
                                 [eps], device="cuda")
        np.testing.assert_array_equal(ours.per_sample[f"success_eps_{eps:g}"], theirs[0], err_msg=f"eps={eps}")
