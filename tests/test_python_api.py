"""The Python API: ``robaudit.audit`` and ``robaudit.AuditConfig`` from the top level."""
from __future__ import annotations

import subprocess
import textwrap
import sys
from pathlib import Path

from demo import DEMO_ARCH, DEMO_CHECKPOINT, THREADS


def test_audit_config_is_importable_from_the_top_level_and_runs_the_same_audit(tmp_path: Path) -> None:
    import robaudit
    from robaudit.config import AuditConfig

    assert robaudit.AuditConfig is AuditConfig
    options = dict(model=str(DEMO_CHECKPOINT), arch=DEMO_ARCH, dataset="digits", n_samples=40, probes=["clean"],
                   threads=THREADS, report=False)
    via_config = robaudit.audit(robaudit.AuditConfig(**options, out=str(tmp_path / "a")))
    via_kwargs = robaudit.audit(**options, out=str(tmp_path / "b"))
    assert via_config.exit_code == via_kwargs.exit_code == 0
    assert via_config.results["probes"]["clean"]["summary"] == via_kwargs.results["probes"]["clean"]["summary"]


def test_importing_robaudit_does_not_import_torch() -> None:
    code = "import sys, robaudit; robaudit.AuditConfig; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --- live objects: robaudit.audit(model=<nn.Module>, data=(x, y) | Dataset | DataLoader) -------------------

import copy  # noqa: E402
import hashlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset, TensorDataset  # noqa: E402

from demo import REPO  # noqa: E402

PROBES = ["clean", "calibration", "attack.fgsm", "attack.pgd_linf"]
TIMING_OR_PROVENANCE = {"created", "command", "config", "environment", "model", "data", "cost_estimate"}


def _demo_module() -> nn.Module:
    """The demo CNN built from its own file and loaded from its safetensors checkpoint (no robaudit code)."""
    from safetensors.torch import load_file

    spec = importlib.util.spec_from_file_location("digits_cnn_for_api_tests", REPO / "examples" / "digits_cnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.DigitsCNN()
    net.load_state_dict(load_file(DEMO_CHECKPOINT))
    return net


def _demo_normalisation() -> tuple[list[float], list[float]]:
    from safetensors import safe_open

    with safe_open(DEMO_CHECKPOINT, "pt") as f:
        meta = f.metadata()
    return json.loads(meta["mean"]), json.loads(meta["std"])


def _digits(n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    _, x_test, _, y_test = train_test_split(x, digits.target, test_size=360, stratify=digits.target, random_state=0)
    x_t, y_t = torch.from_numpy(np.ascontiguousarray(x_test)), torch.from_numpy(y_test.astype(np.int64))
    return (x_t, y_t) if n is None else (x_t[:n], y_t[:n])


def _comparable(results: dict) -> dict:
    """results.json without what may differ between two audits of the same model and samples: timings
    and the provenance of the model and data (where they came from), config echo included."""
    out = {k: v for k, v in copy.deepcopy(results).items() if k not in TIMING_OR_PROVENANCE}
    for entry in out["probes"].values():
        entry.pop("started"), entry.pop("duration_s")
    return out


def _per_sample(out: Path) -> tuple[list[str], list[list[str]]]:
    lines = (out / "per_sample.csv").read_text().splitlines()
    rows = [line.split(",") for line in lines[1:]]
    return [r[0] for r in rows], [lines[0].split(",")[1:]] + [r[1:] for r in rows]


def test_live_module_and_tensors_give_the_results_of_the_cli_on_the_checkpoint_and_a_tensor_file(tmp_path: Path) -> None:
    """Oracle: `robaudit run CHECKPOINT --arch FILE:Class --dataset FILE.npz` on the same weights and pixels."""
    import robaudit
    from robaudit.cli.main import main

    x, y = _digits()
    np.savez(tmp_path / "digits.npz", x=x.numpy(), y=y.numpy())
    code = main(["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--dataset", str(tmp_path / "digits.npz"),
                 "--n-samples", "80", "--probes", ",".join(PROBES), "--set", "attack.pgd_linf.steps=5",
                 "--threads", str(THREADS),
                 "--out", str(tmp_path / "cli"), "--no-report", "-q"])
    assert code == 0
    mean, std = _demo_normalisation()
    outcome = robaudit.audit(model=_demo_module(), data=(x, y), mean=mean, std=std, n_samples=80, probes=PROBES,
                             probe_config={"attack.pgd_linf": {"steps": 5}}, threads=THREADS, out=tmp_path / "api",
                             report=False)
    assert outcome.exit_code == 0
    cli = json.loads((tmp_path / "cli" / "results.json").read_text())
    api = json.loads((tmp_path / "api" / "results.json").read_text())
    assert outcome.results == api
    assert [p["status"] for p in api["probes"].values()] == ["ok"] * len(PROBES)
    assert _comparable(api) == _comparable(cli)

    # the same rows, their ids index the given data; every per-sample value equal
    cli_ids, cli_cells = _per_sample(tmp_path / "cli")
    api_ids, api_cells = _per_sample(tmp_path / "api")
    assert api_ids == [i.replace("test:", "memory:") for i in cli_ids] and api_cells == cli_cells
    assert api["data"]["split"] == "memory" and api["data"]["sampling"]["method"] == "stratified"

    # provenance: the module's class, its state-dict hash, the sha256 of the audited samples
    model = api["model"]
    assert model["arch"] == "digits_cnn_for_api_tests:DigitsCNN"
    assert model["source"] == "memory:digits_cnn_for_api_tests:DigitsCNN" and model["checkpoint_sha256"] is None
    assert model["normalisation"]["source"] == "cli" and model["num_classes"] == 10
    from robaudit.models.live import state_dict_sha256

    assert model["state_sha256"] == state_dict_sha256(_demo_module())
    rows = [int(i.split(":")[1]) for i in api_ids]
    expected = hashlib.sha256(x[rows].numpy().astype("<f4").tobytes() + y[rows].numpy().astype("<i8").tobytes())
    assert api["data"]["samples_sha256"] == expected.hexdigest()
    assert api["config"]["model"] == model["source"] and api["config"]["dataset"] == "memory:tensors"

    import jsonschema

    from robaudit.results import schema_text

    jsonschema.validate(api, json.loads(schema_text()))


class _CountingDataset(Dataset):
    """A map-style Dataset over (x, y) that counts the items read."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.reads = x, y, 0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.reads += 1
        return self.x[i], int(self.y[i])


def test_dataset_and_dataloader_give_the_results_of_the_same_tensors(tmp_path: Path) -> None:
    import robaudit

    x, y = _digits(90)
    mean, std = _demo_normalisation()
    common = dict(mean=mean, std=std, probes=["clean", "attack.fgsm"], threads=THREADS, report=False)
    runs = {
        "tensors": robaudit.audit(model=_demo_module(), data=(x, y), out=tmp_path / "t", **common),
        "dataset": robaudit.audit(model=_demo_module(), data=_CountingDataset(x, y), out=tmp_path / "d", **common),
        "loader": robaudit.audit(model=_demo_module(), data=DataLoader(TensorDataset(x, y), batch_size=16),
                                 out=tmp_path / "l", **common),
    }
    reference = _comparable(runs["tensors"].results)
    for name, outcome in runs.items():
        assert outcome.exit_code == 0, name
        assert _comparable(outcome.results) == reference, name
        assert _per_sample(tmp_path / name[0]) == _per_sample(tmp_path / "t"), name
        assert outcome.results["data"]["n_used"] == outcome.results["data"]["n_available"] == 90
    assert _per_sample(tmp_path / "t")[0] == [f"memory:{i}" for i in range(90)]
    assert runs["loader"].results["data"]["source"] == "memory:DataLoader(torch.utils.data.dataset:TensorDataset)"


def test_a_dataset_is_read_only_up_to_the_sample_budget(tmp_path: Path) -> None:
    import robaudit

    x, y = _digits(200)
    data = _CountingDataset(x, y)
    mean, std = _demo_normalisation()
    outcome = robaudit.audit(model=_demo_module(), data=data, n_samples=30, mean=mean, std=std, probes=["clean"],
                             threads=THREADS, out=tmp_path / "a", report=False)
    assert data.reads == 30
    prov = outcome.results["data"]
    assert prov["n_used"] == 30 and prov["n_available"] == 200 and prov["sampling"]["method"] == "first"
    assert _per_sample(tmp_path / "a")[0] == [f"memory:{i}" for i in range(30)]


class _Modes(nn.Module):
    """Batch norm (running statistics), dropout (train-mode randomness) and Hardswish (swapped on the
    audit copy for double backward): what an audit could change in the caller's module."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.Hardswish()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.act(self.bn(self.conv(x)))).flatten(1))


def test_the_callers_module_is_left_as_it_was(tmp_path: Path) -> None:
    import robaudit

    torch.manual_seed(0)
    net = _Modes()
    net.train()
    net.bn.eval()  # mixed modes, as in fine-tuning
    net.conv.weight.requires_grad_(False)
    net.fc.weight.grad = torch.ones_like(net.fc.weight)
    modes = {name: m.training for name, m in net.named_modules()}
    flags = {name: p.requires_grad for name, p in net.named_parameters()}
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = _digits(40)
    outcome = robaudit.audit(model=net, data=(x, y), probes=["clean", "attack.fgsm", "curvature.trace"],
                             probe_config={"curvature.trace": {"num_matvecs": 6}}, threads=THREADS,
                             out=tmp_path / "a", report=False)
    assert outcome.exit_code == 0
    assert outcome.results["model"]["module_swaps"]  # the copy's Hardswish was swapped, not the caller's
    assert isinstance(net.act, nn.Hardswish)
    assert {name: m.training for name, m in net.named_modules()} == modes
    assert {name: p.requires_grad for name, p in net.named_parameters()} == flags
    assert net.state_dict().keys() == state.keys()
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    assert torch.equal(net.fc.weight.grad, torch.ones_like(net.fc.weight))
    assert all(p.device.type == "cpu" for p in net.parameters())


def test_the_guard_reports_a_changed_caller_module() -> None:
    from robaudit.errors import InternalError
    from robaudit.live_inputs import LiveInputs

    net = _Modes()
    with pytest.raises(InternalError, match=r"the audit changed your model's training mode: root"):
        with LiveInputs(model=net).guard():
            net.eval()
    with pytest.raises(InternalError, match=r"the audit changed your model's state: fc\.bias"):
        with LiveInputs(model=net).guard():
            with torch.no_grad():
                net.fc.bias.add_(1.0)


def test_a_live_module_gets_no_guessed_normalisation_and_preflight_checks_it(tmp_path: Path) -> None:
    """The demo CNN was trained on normalised pixels: assumed to take [0, 1] pixels, it loses to the
    audit samples' own statistics, so the audit stops (exit 2) naming mean/std; ``normalisation="auto"``
    takes them."""
    import robaudit
    from robaudit.errors import PreflightError

    x, y = _digits(200)
    with pytest.raises(PreflightError, match=r"the normalisation was guessed \(identity .*--mean") as caught:
        robaudit.audit(model=_demo_module(), data=(x, y), probes=["clean"], threads=THREADS, out=tmp_path / "a",
                       report=False)
    assert caught.value.exit_code == 2 and not (tmp_path / "a" / "results.json").exists()
    outcome = robaudit.audit(model=_demo_module(), data=(x, y), probes=["clean"], normalisation="auto",
                             threads=THREADS, out=tmp_path / "b", report=False)
    norm = outcome.results["model"]["normalisation"]
    assert norm["source"] == "auto:dataset"
    assert norm["mean"] == pytest.approx([float(x.double().mean())], abs=1e-6)


def _image_batch() -> tuple[torch.Tensor, torch.Tensor]:
    return _digits(12)


class _Ragged(Dataset):
    """The digits, with item 5 padded to 9×10 (as an image folder without a Resize transform yields)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.nn.functional.pad(self.x[i], (1, 1, 0, 1)) if i == 5 else self.x[i]
        return x, self.y[i]


@pytest.mark.parametrize(("data", "message"), [
    (lambda x, y: (x[:, 0], y), r"x has shape \(12, 8, 8\); robaudit takes N×C×H×W images. Fix: add a channel axis"),
    (lambda x, y: (x.permute(0, 2, 3, 1).expand(12, 8, 8, 3).contiguous(), y), r"looks channels-last.*x\.permute"),
    (lambda x, y: (x * 255, y), r"x has values in \[0, 255\]; robaudit takes pixels in \[0, 1\]. Fix: divide by 255"),
    (lambda x, y: (x - 0.5, y), r"values in \[-0\.5, 0\.5\].*give the model's normalisation with mean= and std="),
    (lambda x, y: ((x * 255).to(torch.uint8), y), r"x has dtype uint8; robaudit takes float pixels.*x\.float\(\) / 255"),
    (lambda x, y: (x, y[:-1]), r"y has 11 labels for 12 images"),
    (lambda x, y: (x, y.float()), r"y has dtype float32; labels are integer class indices"),
    (lambda x, y: (x, torch.nn.functional.one_hot(y, 10)), r"y has shape \(12, 10\); labels are one class index"),
    (lambda x, y: (x, y + 10), r"label 1\d of sample memory:\d+ is outside the model's 10 classes \[0, 10\)"),
    (lambda x, y: [(xi, yi, 0) for xi, yi in zip(x, y)], r"data= got a list of 12"),
    (lambda x, y: TensorDataset(x, y, y), r"item 0 of the Dataset is a tuple of 3, not an \(x, y\) pair"),
    (lambda x, y: DataLoader(TensorDataset(x[:, 0], y), batch_size=4),
     r"x of batch 0 of the DataLoader has shape \(4, 8, 8\)"),
    (lambda x, y: _Ragged(x, y),
     r"item 5 of the Dataset has shape \(1, 9, 10\), item 0 has \(1, 8, 8\).*Fix: add a Resize/CenterCrop transform"),
    (lambda x, y: DataLoader(_Ragged(x, y), batch_size=1),
     r"batch 5 of the DataLoader holds images of shape \(1, 9, 10\), batch 0's are \(1, 8, 8\).*Resize/CenterCrop"),
], ids=["no-channel-axis", "channels-last", "0-255", "normalised", "uint8", "label-count", "float-labels", "one-hot",
        "label-range", "not-a-form", "triples", "loader-shape", "ragged-dataset", "ragged-loader"])
def test_bad_live_data_is_one_clear_line_and_nothing_is_written(tmp_path: Path, data, message: str) -> None:
    import robaudit
    from robaudit.errors import UsageError

    x, y = _image_batch()
    mean, std = _demo_normalisation()
    with pytest.raises(UsageError, match=message) as caught:
        robaudit.audit(model=_demo_module(), data=data(x, y), mean=mean, std=std, probes=["clean"], threads=THREADS,
                       out=tmp_path / "a", report=False)
    assert caught.value.exit_code == 2 and "\n" not in caught.value.one_line()
    assert not (tmp_path / "a" / "results.json").exists()


def test_options_that_cannot_apply_to_live_objects_are_refused(tmp_path: Path) -> None:
    import robaudit
    from robaudit.config import AuditConfig
    from robaudit.errors import ConfigError

    x, y = _image_batch()
    with pytest.raises(ConfigError, match=r"arch= does not apply to a live nn.Module"):
        robaudit.audit(model=_demo_module(), data=(x, y), arch=DEMO_ARCH, out=tmp_path / "a")
    with pytest.raises(ConfigError, match=r"split= does not apply to in-memory data"):
        robaudit.audit(model=_demo_module(), data=(x, y), split="train", out=tmp_path / "a")
    with pytest.raises(ConfigError, match=r"data= and dataset= name the same thing"):
        robaudit.audit(model=_demo_module(), data=(x, y), dataset="digits", out=tmp_path / "a")
    with pytest.raises(ConfigError, match=r"AuditConfig.model takes a source string, not a DigitsCNN.*robaudit.audit"):
        AuditConfig(model=_demo_module())
    assert not (tmp_path / "a").exists()


def test_a_live_module_audits_named_data_and_a_checkpoint_audits_live_data(tmp_path: Path) -> None:
    import robaudit

    mean, std = _demo_normalisation()
    named = robaudit.audit(model=_demo_module(), data="digits", n_samples=40, mean=mean, std=std, probes=["clean"],
                           threads=THREADS, out=tmp_path / "a", report=False)
    by_path = robaudit.audit(model=DEMO_CHECKPOINT, arch=DEMO_ARCH, dataset="digits", n_samples=40, probes=["clean"],
                             threads=THREADS, out=tmp_path / "b", report=False)
    assert named.results["probes"]["clean"]["summary"] == by_path.results["probes"]["clean"]["summary"]
    x, y = _digits()
    live_data = robaudit.audit(model=DEMO_CHECKPOINT, arch=DEMO_ARCH, data=(x, y), n_samples=40, probes=["clean"],
                               threads=THREADS, out=tmp_path / "c", report=False)
    assert live_data.exit_code == 0 and live_data.results["data"]["n_used"] == 40


def test_state_dict_sha256_is_defined_by_names_dtypes_shapes_and_values() -> None:
    from robaudit.models.live import state_dict_sha256

    a, b = _demo_module(), _demo_module()
    assert state_dict_sha256(a) == state_dict_sha256(b)
    with torch.no_grad():  # a non-contiguous view of the same values hashes the same
        w = b.classifier[3].weight
        b.classifier[3].weight = nn.Parameter(w.detach().t().contiguous().t())
    assert not b.classifier[3].weight.is_contiguous()
    assert state_dict_sha256(a) == state_dict_sha256(b)
    with torch.no_grad():
        flat = b.classifier[3].bias.view(torch.int32)
        flat[0] ^= 1  # one bit
    assert state_dict_sha256(a) != state_dict_sha256(b)
    assert state_dict_sha256(a) != state_dict_sha256(_demo_module().double())

    # the definition, spelled out for one tensor
    one = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        one.weight.copy_(torch.tensor([[1.0, -2.0]]))
    expected = hashlib.sha256(b"weight\0float32\x001,2\0" + np.array([1.0, -2.0], dtype="<f4").tobytes())
    assert state_dict_sha256(one) == expected.hexdigest()


def test_the_outcome_renders_its_verdict_and_summary_table_in_jupyter(tmp_path: Path) -> None:
    import robaudit
    from robaudit.report.verdict import verdict_sentence

    x, y = _digits(60)
    mean, std = _demo_normalisation()
    outcome = robaudit.audit(model=_demo_module(), data=(x, y), mean=mean, std=std, probes=["clean", "attack.fgsm"],
                             threads=THREADS, out=tmp_path / "a", report=False)
    html = outcome._repr_html_()
    from html import escape

    assert '<p id="verdict">' in html and escape(verdict_sentence(outcome.results)) in html
    assert "<td>clean</td><td>ok</td>" in html and "<td>attack.fgsm</td><td>ok</td>" in html


def test_resume_reuses_results_of_the_same_module_and_samples_only(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import robaudit
    from robaudit.errors import UsageError
    from robaudit.probes.clean import CleanAccuracy

    x, y = _digits(40)
    mean, std = _demo_normalisation()
    common = dict(mean=mean, std=std, probes=["clean"], threads=THREADS, out=tmp_path / "a", report=False)
    first = robaudit.audit(model=_demo_module(), data=(x, y), **common)

    def not_again(self, ctx):
        raise AssertionError("the saved result should have been reused")

    monkeypatch.setattr(CleanAccuracy, "run", not_again)
    again = robaudit.audit(model=_demo_module(), data=(x, y), resume=True, **common)
    assert again.results["probes"]["clean"] == first.results["probes"]["clean"]
    other = _demo_module()
    with torch.no_grad():
        other.classifier[3].bias.add_(0.1)
    with pytest.raises(UsageError, match=r"those results were made with a different model"):
        robaudit.audit(model=other, data=(x, y), resume=True, **common)
    with pytest.raises(UsageError, match=r"those results cover different samples"):
        robaudit.audit(model=_demo_module(), data=(x.flip(-1), y), resume=True, **common)


def test_in_memory_data_has_no_train_split_for_the_curvature_sets(tmp_path: Path) -> None:
    import robaudit

    x, y = _digits(30)
    mean, std = _demo_normalisation()
    outcome = robaudit.audit(model=_demo_module(), data=(x, y), mean=mean, std=std, probes=["curvature.trace"],
                             probe_config={"curvature.trace": {"sets": ["train"], "num_matvecs": 6}},
                             threads=THREADS, out=tmp_path / "a", report=False)
    entry = outcome.results["probes"]["curvature.trace"]
    assert entry["status"] == "failed" and outcome.exit_code == 2
    assert "the memory source holds one set of samples; it has no separate train split" in entry["error"]["message"]


def test_a_one_sample_audit_is_not_stopped_by_the_normalisation_check(tmp_path: Path) -> None:
    """One sample cannot show that another normalisation is clearly better: the demo CNN guessed to take
    [0, 1] pixels on one digit runs (the one-sample likelihood test has p = 1), with the guess flagged."""
    import robaudit

    x, y = _digits(1)
    outcome = robaudit.audit(model=_demo_module(), data=(x, y), probes=["clean"], threads=THREADS,
                             out=tmp_path / "a", report=False)
    assert outcome.exit_code == 0
    check = outcome.results["preflight"]["stats"]["normalisation_check"]
    assert check["samples"] == 1 and check["decision"] == "kept"
    assert [c["likelihood_p_value"] for c in check["candidates"]] == [1.0, 1.0]
    assert "normalisation_guessed" in [f["id"] for f in outcome.results["flags"]]


class _FourAtATime(nn.Module):
    """The demo CNN, out of memory on batches of more than four images (as a large model on a small GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _demo_module()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) > 4:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate a batch of {len(x)}")
        return self.net(x)


def test_a_live_module_only_ever_sees_batches_of_the_batch_size(tmp_path: Path) -> None:
    """Loading, preflight, the cost estimate and the probes all keep to batch_size=4: the audit runs, and its
    numbers are those of the same module without the limit."""
    import robaudit

    x, y = _digits(12)
    mean, std = _demo_normalisation()
    options = dict(data=(x, y), mean=mean, std=std, probes=["clean", "attack.fgsm"], batch_size=4,
                   threads=THREADS, report=False)
    limited = robaudit.audit(model=_FourAtATime(), out=tmp_path / "limited", **options)
    assert limited.exit_code == 0, limited.results["probes"]
    free = robaudit.audit(model=_demo_module(), out=tmp_path / "free", **options)
    assert _comparable(limited.results) == _comparable(free.results)


from collections.abc import Iterator  # noqa: E402


def _torch_settings() -> dict:
    """The process-wide settings an audit may change, read straight from torch and os.environ."""
    import os

    return {"threads": torch.get_num_threads(), "deterministic": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic, "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "matmul_precision": torch.get_float32_matmul_precision(),
            "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG"), "rng": torch.get_rng_state()}


def _same_settings(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k != "rng"} == {k: v for k, v in b.items() if k != "rng"} and \
        torch.equal(a["rng"], b["rng"])


@pytest.fixture
def notebook_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A notebook's own torch settings, unlike the audit's (3 threads, cuDNN benchmark on, TF32 on, no
    CUBLAS_WORKSPACE_CONFIG, a seeded generator); the test's original settings come back afterwards."""
    original = _torch_settings()
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.set_num_threads(3)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(1234)
    yield
    torch.set_num_threads(original["threads"])
    torch.use_deterministic_algorithms(original["deterministic"], warn_only=original["warn_only"])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = (original["cudnn_deterministic"],
                                                                          original["cudnn_benchmark"])
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = (original["tf32_matmul"],
                                                                              original["tf32_cudnn"])
    torch.set_float32_matmul_precision(original["matmul_precision"])
    torch.set_rng_state(original["rng"])


def test_an_audit_from_python_leaves_the_processs_torch_settings_as_they_were(tmp_path: Path, notebook_settings) -> None:
    import robaudit

    x, y = _digits(20)
    mean, std = _demo_normalisation()
    net = _demo_module()  # building it draws from the global generator
    before = _torch_settings()
    outcome = robaudit.audit(model=net, data=(x, y), mean=mean, std=std, probes=["clean", "attack.fgsm"],
                             threads=1, out=tmp_path / "a", report=False)
    assert outcome.exit_code == 0 and outcome.results["environment"]["threads"] == 1  # the audit ran on 1 thread
    assert _same_settings(_torch_settings(), before)


def test_the_cuda_reproducibility_settings_are_put_back_too(notebook_settings) -> None:
    """make_cuda_reproducible runs only on CUDA devices; its settings are process-wide on any machine."""
    from robaudit.results.environment import make_cuda_reproducible, process_settings_restored

    before = _torch_settings()
    with process_settings_restored():
        make_cuda_reproducible()
        inside = _torch_settings()
    assert inside["deterministic"] and inside["warn_only"] and inside["cudnn_deterministic"]
    assert not (inside["cudnn_benchmark"] or inside["tf32_matmul"] or inside["tf32_cudnn"])
    assert inside["cublas"] == ":4096:8"
    assert _same_settings(_torch_settings(), before)


def test_tf32_set_through_the_fp32_precision_api_is_put_back_in_that_api() -> None:
    """torch refuses to read the allow_tf32 flags once TF32 was set through ``fp32_precision``: the
    settings come back through that API (in a child process, so this one keeps a single API)."""
    code = textwrap.dedent("""
        import torch
        from robaudit.results.environment import make_cuda_reproducible, process_settings_restored

        b = torch.backends
        backends = [b, b.cuda.matmul, b.cudnn, b.cudnn.conv, b.cudnn.rnn, b.mkldnn, b.mkldnn.matmul, b.mkldnn.conv,
                    b.mkldnn.rnn]
        b.cuda.matmul.fp32_precision = "tf32"
        before = [x.fp32_precision for x in backends]
        with process_settings_restored():
            make_cuda_reproducible()
            changed = [x.fp32_precision for x in backends] != before
        print(changed, [x.fp32_precision for x in backends] == before)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]
