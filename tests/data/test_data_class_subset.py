"""The 200-class restriction of ImageNet-A / ImageNet-R: logits cut to the subset, labels re-indexed.

Oracles: timm's own ``imagenet_a_indices.txt`` / ``imagenet_r_indices.txt`` (the benchmarks'
``indices_in_1k``) for the columns, and the closed form "arg-max over the subset's columns
equals the true class" for the accuracy.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import pkgutil
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from helpers import context, fixed_logits_setup
from imagenet_writers import PIXEL_READOUT_ARCH, write_pixel_readout, write_spike_png
from timm.data import ImageNetInfo

from robaudit.cli.main import main
from robaudit.data import DataRequest, load_data
from robaudit.data.class_subset import RestrictedAuditModel, restrict_classes
from robaudit.data.imagenet import variant_subset
from robaudit.errors import DataError
from robaudit.exitcodes import ExitCode
from robaudit.models.audit_model import same_state
from robaudit.probes.clean import CleanAccuracy
from robaudit.results import schema_text

SYNSETS = ImageNetInfo().label_names()


def _timm_indices(variant: str) -> list[int]:
    raw = pkgutil.get_data("timm.data", f"_info/{variant.replace('-', '_')}_indices.txt")
    return [int(v) for v in raw.decode().split()]


@pytest.mark.parametrize("variant", ["imagenet-a", "imagenet-r"])
def test_the_columns_are_the_benchmarks_indices_in_1k(variant: str) -> None:
    subset = variant_subset(variant)
    assert list(subset.columns) == sorted(_timm_indices(variant)) and len(subset.columns) == 200
    assert list(subset.synsets) == [SYNSETS[c] for c in subset.columns]


def test_accuracy_is_the_arg_max_within_the_subset() -> None:
    subset = variant_subset("imagenet-a")
    columns = np.asarray(subset.columns)
    outside = np.setdiff1d(np.arange(1000), columns)
    gen = torch.Generator().manual_seed(0)
    n = 60
    logits = torch.randn(n, 1000, generator=gen)
    y = torch.from_numpy(columns[torch.randint(0, 200, (n,), generator=gen).numpy()])
    # the first 20: the top logit overall is outside the subset, the top logit inside it is the true class
    for i in range(20):
        logits[i, int(y[i])] = 10.0
        logits[i, int(outside[i])] = 20.0
    model, data = fixed_logits_setup(logits, y)
    data.class_subset = subset
    before = model.state_fingerprint()

    restricted_model, restricted_data = restrict_classes(model, data)

    assert isinstance(restricted_model, RestrictedAuditModel) and restricted_model.num_classes == 200
    assert same_state(before, model.state_fingerprint())  # the caller's model is untouched
    assert restricted_model.state_dict().keys() == model.state_dict().keys()
    expected_correct = columns[logits[:, columns].argmax(1).numpy()] == y.numpy()  # the closed form
    assert expected_correct[:20].all() and not (logits.argmax(1)[:20] == y[:20]).any()
    assert restricted_data.y.tolist() == [int(np.flatnonzero(columns == v)[0]) for v in y.tolist()]
    assert restricted_data.info.num_classes == 200 and restricted_data.class_subset is None
    assert restricted_data.provenance["class_restriction"]["columns"] == list(subset.columns)

    result = CleanAccuracy(CleanAccuracy.Config()).run(context(restricted_model, restricted_data))
    assert result.summary["accuracy"].value == pytest.approx(expected_correct.mean(), abs=0)
    assert np.array_equal(result.per_sample["correct"], expected_correct)


def test_no_subset_leaves_model_and_data_alone() -> None:
    model, data = fixed_logits_setup(torch.randn(4, 10), torch.tensor([0, 1, 2, 3]))
    assert restrict_classes(model, data) == (model, data)


def _a_tree(root: Path) -> None:
    """Two ImageNet-A classes (indices 6 and 11); 2 of 4 right within the subset, 1 of 4 over all 1,000."""
    write_spike_png(root / "n01498041" / "0.png", {0: 255, 6: 200})    # top overall: tench (not in A); in A: 6 ✓
    write_spike_png(root / "n01498041" / "1.png", {6: 100, 11: 200})   # 11 ✗
    write_spike_png(root / "n01531178" / "0.png", {11: 50})            # 11 ✓
    write_spike_png(root / "n01531178" / "1.png", {1: 255, 13: 100, 11: 90})  # in A: 13 ✗


def test_imagenet_a_through_the_cli_scores_within_the_200(tmp_path: Path) -> None:
    root = tmp_path / "imagenet-a"
    _a_tree(root)
    assert [SYNSETS.index(s) for s in ("n01498041", "n01531178")] == [6, 11] and 13 in variant_subset("imagenet-a").columns
    unrestricted = load_data(DataRequest(f"imagenet:{root}"), model_channels=3)
    assert unrestricted.class_subset is None  # two classes are not ImageNet-A's exact 200: no restriction
    model = write_pixel_readout(tmp_path / "readout.safetensors")
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["run", str(model), "--arch", PIXEL_READOUT_ARCH, "--dataset", f"imagenet-a:{root}",
                     "--probes", "clean", "--mean", "0,0,0", "--std", "1,1,1", "--out", str(tmp_path / "out"),
                     "--no-report", "--threads", "1"])
    assert code == ExitCode.OK, err.getvalue()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    jsonschema.validate(results, json.loads(schema_text()))
    assert results["probes"]["clean"]["summary"]["accuracy"]["value"] == 0.5
    assert results["model"]["num_classes"] == 200
    restriction = results["data"]["class_restriction"]
    assert restriction["applied"] and restriction["subset"] == "imagenet-a" and restriction["model_classes"] == 1000
    assert restriction["columns"] == sorted(_timm_indices("imagenet-a"))
    columns = restriction["columns"]
    with (tmp_path / "out" / "per_sample.csv").open(newline="") as handle:
        preds = [int(float(row["clean/pred"])) for row in csv.DictReader(handle)]
    assert [columns[p] for p in preds] == [6, 11, 11, 13]  # predictions are positions in the 200


def test_the_exact_200_synsets_are_recognised_without_the_spelling(tmp_path: Path) -> None:
    root = tmp_path / "imagenet-r"
    for synset in variant_subset("imagenet-r").synsets:
        write_spike_png(root / synset / "0.png", {0: 1})
    audit = load_data(DataRequest(f"imagenet:{root}", n_samples=5), model_channels=3)
    assert audit.class_subset is not None and audit.class_subset.name == "imagenet-r"


def test_a_folder_outside_the_variant_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "a"
    _a_tree(root)
    write_spike_png(root / "n01440764" / "0.png", {0: 1})  # tench is not an ImageNet-A class
    with pytest.raises(DataError, match="not among imagenet-a's 200 classes") as caught:
        load_data(DataRequest(f"imagenet-a:{root}"), model_channels=3)
    assert "n01440764" in caught.value.message and "imagenet:" in (caught.value.fix or "")
