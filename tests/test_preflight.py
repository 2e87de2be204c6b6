"""Preflight flags, each on a model built to trigger it, and silent on a normal model."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import audit_data, audit_model
from robaudit.errors import PreflightError
from robaudit.preflight import run_preflight

CPU = torch.device("cpu")


class Plain(nn.Module):
    def __init__(self, k: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Softmaxed(Plain):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).softmax(dim=1)


class AlwaysDropout(Plain):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.body(x), p=0.5, training=True)


class Rounded(Plain):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(torch.round(x * 4) / 4)


class HardSigmoidNet(Plain):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(F.hardsigmoid(x * 6 - 3))


class NaNNet(Plain):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out / (x.flatten(1)[:, :1] > 0.5).float() * 0  # 0/0 → NaN where the first pixel ≤ 0.5


def _data(n: int = 40, k: int = 4):
    g = torch.Generator().manual_seed(1)
    return audit_data(torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, k, (n,), generator=g), k)


def _flags(net: nn.Module, second_order: bool = False) -> list[str]:
    report = run_preflight(audit_model(net, 4), _data(), CPU, second_order)
    return [f.id for f in report.flags]


def test_normal_model_raises_no_flag() -> None:
    report = run_preflight(audit_model(Plain(), 4), _data(), CPU, check_double_backward=True)
    assert report.flags == [] and report.double_backward is True
    assert report.stats["network_input"]["matches_normalised_pixels"] is True


def test_probabilities_flag() -> None:
    assert _flags(Softmaxed()) == ["probabilities_not_logits"]


def test_nondeterminism_flag() -> None:
    assert "nondeterministic_eval" in _flags(AlwaysDropout())


class HalfRounded(Plain):
    """Rounds the samples whose first pixel is above 0.5: zero input gradient there only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rounded = (x[:, :1, :1, :1] > 0.5).float()
        return self.body(rounded * (torch.round(x * 4) / 4) + (1 - rounded) * x)


class Detached(Plain):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.detach())


class NoGradInside(Plain):
    """The first layer runs under no_grad: no input gradient, but the last layer's parameters train."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            h = self.body[:3](x)
        return self.body[3](h)


class Step(Plain):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x > 0.5).float())


def test_zero_gradient_on_some_samples_is_a_warning() -> None:
    report = run_preflight(audit_model(HalfRounded(), 4), _data(), CPU, False)
    (flag,) = report.flags
    assert (flag.id, flag.severity.value) == ("zero_input_gradients", "warning")
    assert report.input_gradient_error is None
    assert 0 < report.stats["zero_or_nonfinite_input_gradients"]["count"] < 40


@pytest.mark.parametrize("net", [Rounded(), Detached(), NoGradInside(), Step()], ids=lambda n: type(n).__name__)
def test_masked_input_gradient_is_an_error_and_skips_input_gradient_probes(net: nn.Module) -> None:
    from robaudit.probes.registry import ProbeRegistry

    report = run_preflight(audit_model(net, 4), _data(), CPU, check_double_backward=True)
    assert [(f.id, f.severity.value) for f in report.flags] == [
        ("zero_input_gradients", "error"), ("attack_gradients_vanish", "error")]
    disconnected = not isinstance(net, Rounded)
    assert report.stats["zero_or_nonfinite_input_gradients"] == {"count": 40, "of": 40, "disconnected": disconnected}
    assert report.double_backward is True  # parameter curvature still has its second derivatives
    registry = ProbeRegistry(autoload_plugins=False)
    skipped = {name for name in registry.names() if report.skip_reason(registry.get(name)) is not None}
    assert {"attack.fgsm", "attack.pgd_linf", "attack.min_eps", "geometry.gradients", "geometry.input_hessian",
            "geometry.surfaces"} <= skipped
    assert not skipped & {"clean", "calibration", "attack.worst_case", "curvature.topk", "curvature.trace"}
    kind, message = report.skip_reason(registry.get("attack.fgsm"))
    assert kind == "NoInputGradient" and "needs input gradients" in message


def test_a_forward_that_raises_is_bad_input() -> None:
    class Raises(Plain):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError("no model here")

    with pytest.raises(PreflightError, match=r"the model's forward raised ValueError: no model here"):
        run_preflight(audit_model(Raises(), 4), _data(), CPU, False)


def test_a_size_mismatch_names_the_size_that_works() -> None:
    class EightByEight(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(64, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1))

    with pytest.raises(PreflightError) as err:
        run_preflight(audit_model(EightByEight(), 4), _data(), CPU, False)  # 4×4 images
    assert "the images are 4×4 and the model needs 8×8" in err.value.message
    assert err.value.fix.startswith("pass --resize 8 ")


def test_missing_double_backward_is_flagged_only_when_asked() -> None:
    assert _flags(HardSigmoidNet(), second_order=False) == []
    report = run_preflight(audit_model(HardSigmoidNet(), 4), _data(), CPU, True)
    assert report.double_backward is False and "hardsigmoid" in report.double_backward_error.lower()
    assert [f.id for f in report.flags] == ["no_double_backward"]


def test_nan_logits_stop_the_audit() -> None:
    with pytest.raises(PreflightError, match="NaN or Inf logits on"):
        run_preflight(audit_model(NaNNet(), 4), _data(), CPU, False)


def test_pixels_outside_unit_range_stop_the_audit() -> None:
    data = _data()
    data.x = data.x * 255
    with pytest.raises(PreflightError, match=r"pixels in \[0, 1\]"):
        run_preflight(audit_model(Plain(), 4), data, CPU, False)


def test_wrong_logit_shape_stops_the_audit() -> None:
    with pytest.raises(PreflightError, match=r"expected \(40, 5\) logits"):
        run_preflight(audit_model(Plain(k=4), 5), _data(), CPU, False)


def test_double_normalisation_is_suspected() -> None:
    model = audit_model(Plain(), 4)
    model.mean.fill_(-40.0)  # as if the data were already normalised and normalised again
    report = run_preflight(model, _data(), CPU, False)
    assert "normalisation_suspect" in [f.id for f in report.flags]


def test_flags_are_documented() -> None:
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    ids = set()
    for path in (repo / "robaudit").rglob("*.py"):
        ids |= set(re.findall(r'Flag\(\s*"([a-z_]+)"', path.read_text()))
    doc = (repo / "docs" / "flags.md").read_text()
    missing = [i for i in sorted(ids) if f"## `{i}`" not in doc]
    assert ids and not missing, missing


@pytest.mark.parametrize("diff", [[0.3, -0.1, 0.5, 0.2, 0.05], [-0.2, 0.1, -0.4, 0.0], [1.0, 1.5, 0.5]],
                         ids=["favours", "against", "three"])
def test_the_likelihood_ratio_test_is_vuongs_one_sided_z_test(diff: list[float]) -> None:
    """Oracle: the closed form p = 1 − Φ(√n · mean / sd), sd with n − 1 (scipy.stats)."""
    import numpy as np
    from scipy import stats

    from robaudit.preflight import _vuong_p

    d = np.asarray(diff)
    z = np.sqrt(len(d)) * d.mean() / d.std(ddof=1)
    assert _vuong_p(torch.tensor(diff, dtype=torch.float64)) == pytest.approx(stats.norm.sf(z), rel=1e-12)


@pytest.mark.parametrize("diff", [[2.5], [0.7, 0.7, 0.7], [0.0, 0.0]], ids=["one-sample", "constant", "zero"])
def test_no_spread_in_the_likelihood_differences_is_no_evidence(diff: list[float]) -> None:
    """z = √n · mean / sd is undefined for n < 2 or sd = 0: p = 1, not the 0 that read it as infinite."""
    from robaudit.preflight import _vuong_p

    assert _vuong_p(torch.tensor(diff)) == 1.0


# ---- batch dependence: logits of a sample in a batch vs alone ----

class BatchStatNet(Plain):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(F.batch_norm(x, None, None, training=True))


class BatchMeanNet(Plain):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x - x.mean(dim=0, keepdim=True))


class EvalBatchNorm(Plain):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(1)
        self.bn.running_mean.fill_(0.4)
        self.bn.running_var.fill_(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.bn(x))


class NoiseDefence(Plain):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x + 0.1 * torch.randn_like(x))


@pytest.mark.parametrize("net", [BatchStatNet, BatchMeanNet])
def test_batch_statistics_in_forward_are_flagged(net):
    report = run_preflight(audit_model(net(), 4), _data(), CPU, False)
    flags = {f.id: f for f in report.flags}
    assert "batch_dependent_outputs" in flags and "nondeterministic_eval" not in flags
    assert "--batch-size" in flags["batch_dependent_outputs"].message
    # oracle: the gap recorded is the one between a 2-sample batch and each sample alone
    x = _data().x[:2]
    with torch.no_grad():
        model = audit_model(net(), 4)
        expected = float((model(x) - torch.cat([model(x[:1]), model(x[1:])])).abs().max())
    assert expected > 0 and report.stats["batch_dependence"]["relative_gap"] > 1e-2


@pytest.mark.parametrize("net", [Plain, EvalBatchNorm])
def test_batch_independent_models_are_not_flagged(net):
    model = audit_model(net(), 4)
    report = run_preflight(model, _data(), CPU, False)
    assert "batch_dependent_outputs" not in [f.id for f in report.flags]
    assert report.stats["batch_dependence"]["ran"] is True


def test_noise_defence_is_nondeterministic_not_batch_dependent():
    torch.manual_seed(0)
    flags = _flags(NoiseDefence())
    assert "nondeterministic_eval" in flags and "batch_dependent_outputs" not in flags


class SingleValueBatchNorm(Plain):
    """Batch statistics over a 1×1 map: a single sample has one value per channel, and batch_norm raises."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x + F.batch_norm(x.mean(dim=(2, 3), keepdim=True), None, None, training=True))


def test_model_that_fails_on_a_single_sample_is_flagged():
    report = run_preflight(audit_model(SingleValueBatchNorm(), 4), _data(), CPU, False)
    flag = next(f for f in report.flags if f.id == "batch_dependent_outputs")
    assert "raises on a single sample" in flag.message and "more than 1 value per channel" in flag.message


@pytest.mark.parametrize("batch_size", [1, 8])
def test_batch_dependence_found_at_any_batch_size(batch_size):
    report = run_preflight(audit_model(BatchMeanNet(), 4), _data(), CPU, False, batch_size=batch_size)
    assert "batch_dependent_outputs" in [f.id for f in report.flags]
