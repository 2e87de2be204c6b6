"""imagenet:PATH in its three layouts, scored by a 1,000-class model whose logits are known.

The oracle is timm's own synset list (``ImageNetInfo().label_names()``) for the labels, and
the closed form of :mod:`pixel_readout` (logit j = input value j) for the predictions.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from imagenet_writers import PIXEL_READOUT_ARCH, write_meta_mat, write_pixel_readout, write_spike_png
from timm.data import ImageNetInfo

from robaudit.cli.main import main
from robaudit.data import DataRequest, describe_dataset, load_data
from robaudit.exitcodes import ExitCode

SYNSETS = ImageNetInfo().label_names()
# three classes far apart in the 1,000 (tench, a mid-range class, toilet tissue)
CHOSEN = ["n01440764", "n03000134", "n15075141"]


def _run(model: Path, dataset: str, out: Path, *extra: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["run", str(model), "--arch", PIXEL_READOUT_ARCH, "--dataset", dataset, "--probes", "clean",
                     "--mean", "0,0,0", "--std", "1,1,1", "--out", str(out), "--no-report", "--threads", "1",
                     *extra])
    text = err.getvalue()
    assert "Traceback" not in text, text
    return code, text


def _per_sample(out: Path) -> dict[str, dict[str, str]]:
    with (out / "per_sample.csv").open(newline="") as handle:
        return {row["sample_id"] if "sample_id" in row else row["id"]: row for row in csv.DictReader(handle)}


def _synset_tree(root: Path) -> tuple[list[int], int]:
    """Per class: 2 images predicted right (spike at its own index), 1 predicted wrong (spike at
    the next class's index). Returns (labels in sample order, number right)."""
    labels, right = [], 0
    for c, synset in enumerate(CHOSEN):
        own = SYNSETS.index(synset)
        other = SYNSETS.index(CHOSEN[(c + 1) % len(CHOSEN)])
        for i, spike in enumerate([own, own, other]):
            write_spike_png(root / synset / f"img_{i}.png", {spike: 255})
            labels.append(own)
            right += spike == own
    return labels, right


def test_synset_folders_keep_their_imagenet_indices(tmp_path: Path) -> None:
    root = tmp_path / "val"
    labels, _ = _synset_tree(root)

    info = describe_dataset(DataRequest(f"imagenet:{root}"))
    audit = load_data(DataRequest(f"imagenet:{root}"), model_channels=3)

    assert info.num_classes == 1000 and info.name == "imagenet"
    assert audit.y.tolist() == labels == [SYNSETS.index(s) for s in CHOSEN for _ in range(3)]
    assert audit.y.tolist()[0] == 0 and audit.y.tolist()[-1] == 999  # tench and toilet tissue
    assert audit.info.class_names == [ImageNetInfo().index_to_description(i) for i in range(1000)]
    assert audit.provenance["layout"] == "synset_folders" and audit.class_subset is None


def test_a_known_model_scores_exactly_through_the_cli(tmp_path: Path) -> None:
    root = tmp_path / "val"
    labels, right = _synset_tree(root)
    model = write_pixel_readout(tmp_path / "readout.safetensors")

    code, _ = _run(model, f"imagenet:{root}", tmp_path / "out")

    assert code == ExitCode.OK
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    accuracy = results["probes"]["clean"]["summary"]["accuracy"]
    assert right == 6 and accuracy["value"] == pytest.approx(right / len(labels), abs=0)
    assert results["model"]["num_classes"] == 1000 and results["data"]["n_used"] == 9
    assert "class_restriction" not in results["data"]


def _flat_images(folder: Path) -> dict[int, tuple[str, int]]:
    """ILSVRC2012_val_0000000N.JPEG-named PNGs; returns {val number: (true synset, predicted index)}."""
    truth = {1: "n15075141", 2: "n01440764", 3: "n03000134", 5: "n01440764"}  # number 4 absent: a subset
    predicted = {1: SYNSETS.index("n15075141"), 2: SYNSETS.index("n03000134"), 3: SYNSETS.index("n03000134"),
                 5: SYNSETS.index("n01440764")}
    for number, index in predicted.items():
        write_spike_png(folder / f"ILSVRC2012_val_{number:08d}.JPEG", {index: 255})
    return {n: (truth[n], predicted[n]) for n in truth}


def test_flat_folder_with_the_devkit(tmp_path: Path) -> None:
    folder = tmp_path / "val"
    images = _flat_images(folder)
    # ILSVRC2012_IDs are not the class index: here ID 1 is toilet tissue, ID 3 tench
    ids = {"n15075141": 1, "n03000134": 2, "n01440764": 3, "n01443537": 4}
    data = tmp_path / "ILSVRC2012_devkit_t12" / "data"
    write_meta_mat(data / "meta.mat", [(i, w) for w, i in ids.items()], [(1001, "n00001740"), (1002, "n00002137")])
    truth = [ids[images[n][0]] if n in images else ids["n01443537"] for n in range(1, 6)]
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{t}\n" for t in truth))

    audit = load_data(DataRequest(f"imagenet:{folder}"), model_channels=3)
    assert audit.ids == ["test:1", "test:2", "test:3", "test:5"]
    assert audit.y.tolist() == [SYNSETS.index(images[n][0]) for n in (1, 2, 3, 5)]
    assert audit.provenance["layout"] == "devkit"

    model = write_pixel_readout(tmp_path / "readout.safetensors")
    code, _ = _run(model, f"imagenet:{folder}", tmp_path / "out")
    assert code == ExitCode.OK
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    expected = np.mean([SYNSETS.index(t) == p for t, p in images.values()])
    assert expected == 0.75
    assert results["probes"]["clean"]["summary"]["accuracy"]["value"] == pytest.approx(expected, abs=0)


def test_kaggle_layout_with_loc_val_solution(tmp_path: Path) -> None:
    folder = tmp_path / "kaggle" / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    images = _flat_images(folder)
    rows = [f"ILSVRC2012_val_{n:08d},{s} 10 20 30 40 {s} 1 2 3 4" for n, (s, _) in images.items()]
    (tmp_path / "kaggle" / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")

    audit = load_data(DataRequest(f"imagenet:{tmp_path / 'kaggle'}"), model_channels=3)
    assert audit.provenance["layout"] == "loc_val_solution"
    assert audit.y.tolist() == [SYNSETS.index(images[n][0]) for n in (1, 2, 3, 5)]

    model = write_pixel_readout(tmp_path / "readout.safetensors")
    code, _ = _run(model, f"imagenet:{folder}", tmp_path / "out")
    assert code == ExitCode.OK
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["probes"]["clean"]["summary"]["accuracy"]["value"] == pytest.approx(0.75, abs=0)


@pytest.mark.parametrize(
    ("build", "in_message"),
    [
        (lambda root: (root / "n99999999").mkdir(parents=True), "not ImageNet-1k classes"),
        (lambda root: ((root / "n01440764").mkdir(parents=True), (root / "cats").mkdir()), "mixes synset folders"),
        (lambda root: root.mkdir(), "neither synset folders nor ILSVRC2012_val_*.JPEG files"),
        (lambda root: write_spike_png(root / "ILSVRC2012_val_00000001.JPEG", {0: 1}), "but no ground truth"),
    ],
)
def test_bad_layouts_get_one_line_and_exit_2(tmp_path: Path, build, in_message: str) -> None:
    root = tmp_path / "val"
    build(root)
    code, text = _run(write_pixel_readout(tmp_path / "m.safetensors"), f"imagenet:{root}", tmp_path / "out")
    lines = [line for line in text.splitlines() if line.startswith("robaudit: error")]
    assert code == ExitCode.USAGE and len(lines) == 1 and in_message in lines[0], text
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.parametrize("name", ["imagenet", "imagenet-a", "imagenet-r"])
def test_an_imagenet_set_has_no_train_split_for_curvature(name: str) -> None:
    import torch
    from helpers import context, fixed_logits_setup

    from robaudit.errors import ProbeError
    from robaudit.probes.curvature.samples import load_train_set

    model, data = fixed_logits_setup(torch.randn(2, 3), torch.tensor([0, 1]))
    data.provenance = {"source": f"{name}:/data/val", "name": name, "split": "test"}
    with pytest.raises(ProbeError, match="one set of samples"):
        load_train_set(context(model, data), None)
