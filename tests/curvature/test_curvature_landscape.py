"""Loss landscapes: values against direct evaluation, the quadratic fit, filter normalisation, checkpoint paths."""
from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from curvature_oracle import Oracle, make_ctx, top_by_magnitude, trained_oracle_net
from robaudit.config import build_probe_config
from robaudit.data import DataRequest, describe_dataset, load_data
from robaudit.errors import ProbeError
from robaudit.models import ModelRequest, load_model
from robaudit.models.audit_model import AuditModel, same_state
from robaudit.probes.curvature import landscape
from robaudit.probes.curvature.eigen import topk
from robaudit.probes.curvature.operator import HessianOperator
from robaudit.probes.curvature.landscape_probe import CurvatureLandscape


def _shifted_loss(model: AuditModel, direction: torch.Tensor, a: float, x: torch.Tensor, y: torch.Tensor) -> float:
    """Oracle: J(θ + a·d) by writing the shifted parameters into a float64 copy and running it."""
    net = copy.deepcopy(model).double().eval()
    offset = 0
    with torch.no_grad():
        for p in net.parameters():
            p.add_(a * direction[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        return float(F.cross_entropy(net(x.double()), y))


def test_line_and_plane_equal_direct_evaluation(oracle: Oracle) -> None:
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64, batch_size=7)
    surface = landscape.LossSurface(op)
    gen = torch.Generator().manual_seed(0)
    d1, d2 = (torch.randn(op.size, generator=gen, dtype=torch.float64) for _ in range(2))
    alphas = np.array([-0.3, 0.0, 0.5])
    got = surface.line(oracle.set(), d1, alphas, "test")
    want = [_shifted_loss(oracle.model, d1, a, oracle.data.x, oracle.data.y) for a in alphas]
    assert np.allclose(got, want, rtol=1e-12)
    plane = surface.plane(oracle.set(), d1, d2, np.array([0.0, 0.2]), np.array([-0.1]))
    assert plane[0][1] == pytest.approx(_shifted_loss(oracle.model, 0.2 * d1 - 0.1 * d2, 1.0, oracle.data.x,
                                                      oracle.data.y), rel=1e-12)
    assert surface.evaluations == 5


def test_quadratic_fit_recovers_a_known_parabola() -> None:
    a = np.linspace(-1, 1, 7)
    fit = landscape.quadratic_fit(a, 0.5 + 2.0 * a + 0.5 * 3.0 * a * a)
    assert (fit.curvature, fit.slope, fit.intercept) == pytest.approx((3.0, 2.0, 0.5), abs=1e-12)
    assert fit.rms_residual < 1e-12 and fit.radius == 1.0 and fit.points == 7


def test_local_quadratic_fit_along_v1_recovers_lambda1(oracle: Oracle) -> None:
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64, batch_size=7)
    pairs = topk(op, 1, tol=1e-10)
    lam1 = float(top_by_magnitude(oracle.eigenvalues, 1)[0])
    h = landscape.auto_radius(lam1, 1e-4)
    assert 0.5 * lam1 * h * h == pytest.approx(1e-4)
    alphas = np.linspace(-h, h, 11)
    fit = landscape.quadratic_fit(alphas, np.array(landscape.LossSurface(op).line(oracle.set(), pairs.vectors[0],
                                                                                  alphas, "fit")))
    assert fit.curvature == pytest.approx(lam1, rel=2e-3)
    assert fit.slope == pytest.approx(float(op.gradient() @ pairs.vectors[0]), rel=1e-3, abs=1e-9)


def test_filter_normalised_direction(oracle: Oracle) -> None:
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64)
    d = landscape.filter_normalised_direction(op, torch.Generator().manual_seed(0))
    for p, part in zip(op.params, op.split(d)):
        if p.dim() <= 1:
            assert torch.all(part == 0)  # biases and BatchNorm scales/shifts are not perturbed
        else:
            assert torch.allclose(part.flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1), rtol=1e-12)


ARCH = textwrap.dedent('''
    import torch
    from torch import nn


    class OracleArch(nn.Module):
        def __init__(self, num_classes: int = 10):
            super().__init__()
            self.fc1 = nn.Linear(64, 20)
            self.bn = nn.BatchNorm1d(20)
            self.fc2 = nn.Linear(20, num_classes)

        def forward(self, x):
            return self.fc2(torch.tanh(self.bn(self.fc1(x.flatten(1)))))
''')


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("ckpt")
    arch = root / "oracle_arch.py"
    arch.write_text(ARCH)
    paths = []
    for seed, steps in ((0, 60), (1, 20)):
        path = root / f"net{seed}.safetensors"
        save_file({k: v.contiguous() for k, v in trained_oracle_net(seed, steps).state_dict().items()}, str(path))
        paths.append(path)
    return paths[0], paths[1], f"{arch}:OracleArch"


def test_checkpoint_path_through_the_loader(two_checkpoints: tuple[Path, Path, str]) -> None:
    first, second, arch = two_checkpoints
    request = DataRequest("digits", n_samples=40, seed=0)
    info = describe_dataset(request)
    model = load_model(ModelRequest(str(first), arch=arch, second_order=True), info)
    other = load_model(ModelRequest(str(second), arch=arch), info)
    data = load_data(request, 1)
    before = model.state_fingerprint()
    cfg = build_probe_config(CurvatureLandscape, {
        "interpolate_to": str(second), "interpolation_range": [0.0, 1.0], "points": 5, "curve_sets": ["audit"],
        "plane": False, "random_direction": False, "dtype": "float64"})
    result = CurvatureLandscape(cfg).run(make_ctx(model, data))
    assert same_state(before, model.state_fingerprint())
    path = result.artifacts["interpolation"]
    assert path["t"] == [0.0, 0.25, 0.5, 0.75, 1.0]

    def loss(m: AuditModel) -> float:
        with torch.no_grad():
            return float(F.cross_entropy(m.double()(data.x.double()), data.y))

    losses = path["losses"]["audit"]
    assert losses[0] == pytest.approx(loss(copy.deepcopy(model)), rel=1e-10)
    assert losses[-1] == pytest.approx(loss(copy.deepcopy(other)), rel=1e-10)
    # the midpoint: parameters and BatchNorm statistics averaged
    mid, other64 = copy.deepcopy(model).double(), copy.deepcopy(other).double().state_dict()
    mid.load_state_dict({k: (v + other64[k]) / 2 if v.is_floating_point() else v for k, v in mid.state_dict().items()})
    assert losses[2] == pytest.approx(loss(mid), rel=1e-10)
    info_out = result.summary["interpolation"]
    assert info_out["other_sha256"] == other.provenance.checkpoint_sha256
    assert info_out["endpoint_losses"]["audit"]["other"] == pytest.approx(losses[-1], rel=1e-12)


def test_checkpoint_of_another_architecture_is_refused(two_checkpoints: tuple[Path, Path, str], tmp_path: Path) -> None:
    first, _, arch = two_checkpoints
    wrong = tmp_path / "wrong.safetensors"
    save_file({"fc1.weight": torch.zeros(3, 64)}, str(wrong))
    request = DataRequest("digits", n_samples=20, seed=0)
    model = load_model(ModelRequest(str(first), arch=arch, second_order=True), describe_dataset(request))
    cfg = build_probe_config(CurvatureLandscape, {"interpolate_to": str(wrong), "plane": False,
                                                  "random_direction": False, "curve_sets": ["audit"]})
    with pytest.raises(ProbeError, match="interpolate_to"):
        CurvatureLandscape(cfg).run(make_ctx(model, load_data(request, 1)))
