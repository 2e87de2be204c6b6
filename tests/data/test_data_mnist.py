"""MNIST and Fashion-MNIST read through torchvision from IDX files, plus channel/size conversions."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dataset_writers import balanced_labels, write_mnist
from demo import DEMO_ARCH, DEMO_CHECKPOINT

from robaudit.cli.main import main
from robaudit.data import DataRequest, describe_dataset, load_data
from robaudit.errors import DataError
from robaudit.exitcodes import ExitCode
from robaudit.models.audit_model import DataConfig


def _digits(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), balanced_labels(rng, n, 10)


def test_mnist_test_split_round_trips(tmp_path: Path, rng: np.random.Generator) -> None:
    x, y = _digits(rng, 40)
    raw = write_mnist(tmp_path, "MNIST", test=(x, y), train=_digits(rng, 50))

    audit = load_data(DataRequest("mnist", data_dir=tmp_path))
    assert audit.x.shape == (40, 1, 28, 28)
    assert torch.equal(audit.x[:, 0], torch.from_numpy(x).float() / 255)
    assert audit.y.tolist() == y.tolist() and audit.ids[-1] == "test:39"
    assert audit.info.mean == (0.1307,) and audit.info.std == (0.3081,) and audit.info.channels == 1
    assert {Path(f["path"]) for f in audit.provenance["files"]} == {
        raw / "t10k-images-idx3-ubyte",
        raw / "t10k-labels-idx1-ubyte",
    }
    # no .gz archives next to the IDX files: no reference checksum to compare with
    assert audit.provenance["checksum_match"] is None and "checksum_note" in audit.provenance
    json.dumps(audit.provenance)


def test_mnist_train_split_and_checksum_through_archives(tmp_path: Path, rng: np.random.Generator) -> None:
    x, y = _digits(rng, 50)
    write_mnist(tmp_path, "MNIST", test=_digits(rng, 10), train=(x, y), gz=True)
    audit = load_data(DataRequest("mnist", data_dir=tmp_path, split="train"))
    assert torch.equal(audit.x[:, 0], torch.from_numpy(x).float() / 255)
    assert audit.ids[0] == "train:0"
    # the archives are present but not the official ones
    assert audit.provenance["checksum_match"] is False
    assert all(f["archive"]["official_md5"] for f in audit.provenance["files"])


def test_fashion_mnist_reads_its_own_folder(tmp_path: Path, rng: np.random.Generator) -> None:
    x, y = _digits(rng, 30)
    write_mnist(tmp_path, "FashionMNIST", test=(x, y))
    audit = load_data(DataRequest("fashion-mnist", data_dir=tmp_path))
    assert torch.equal(audit.x[:, 0], torch.from_numpy(x).float() / 255)
    assert audit.info.class_names[0] == "T-shirt/top"
    assert audit.info.mean == (0.2860,) and audit.info.std == (0.3530,)
    with pytest.raises(DataError) as err:  # MNIST files are not Fashion-MNIST files
        load_data(DataRequest("mnist", data_dir=tmp_path))
    assert str(tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte") in err.value.message


def test_missing_mnist_names_expected_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_data(DataRequest("mnist", data_dir=tmp_path, split="train"))
    text = err.value.one_line()
    raw = tmp_path / "MNIST" / "raw"
    assert str(raw / "train-images-idx3-ubyte") in text and str(raw / "train-labels-idx1-ubyte") in text
    assert "--download" in text and "--data-dir" in text


def test_truncated_idx_file_is_a_data_error(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = write_mnist(tmp_path, "MNIST", test=_digits(rng, 10))
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError, match="holds only 3 byte"):
        load_data(DataRequest("mnist", data_dir=tmp_path))
    (raw / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, 10, 28, 28) + bytes(100))
    with pytest.raises(DataError, match="could not read the MNIST test files"):
        load_data(DataRequest("mnist", data_dir=tmp_path))


@pytest.mark.parametrize(("dataset", "folder", "swap"),
                         [("mnist", "MNIST", "labels"), ("fashion-mnist", "FashionMNIST", "images")])
def test_wrong_idx_magic_is_one_line_naming_the_file_and_both_numbers(
    tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture[str], dataset: str, folder: str, swap: str
) -> None:
    """torchvision meets a wrong magic number with a bare assert (an empty 'AssertionError: ')."""
    raw = write_mnist(tmp_path, folder, test=_digits(rng, 10))
    images, labels = raw / "t10k-images-idx3-ubyte", raw / "t10k-labels-idx1-ubyte"
    bad, found, expected = (labels, 0x803, 0x801) if swap == "labels" else (images, 0x801, 0x803)
    bad.write_bytes((images if swap == "labels" else labels).read_bytes())  # each holds the other's magic
    code = main(["validate", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--dataset", dataset,
                 "--data-dir", str(tmp_path), "--n-samples", "4", "--probes", "clean", "--threads", "1"])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("robaudit: INFO:")]
    assert code == ExitCode.USAGE and "Traceback" not in err and len(lines) == 1, err
    assert lines[0] == (
        f"robaudit: error: {bad} is not an IDX file of this kind: it holds magic number 0x{found:08x}; "
        f"expected magic number 0x{expected:08x}. Fix: replace it with the official file, e.g. delete it "
        "and pass --download."
    )


def test_label_outside_range_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    x, y = _digits(rng, 10)
    y[3] = 12
    write_mnist(tmp_path, "MNIST", test=(x, y))
    with pytest.raises(DataError, match=r"outside \[0, 10\): e\.g\. 12 at index 3"):
        load_data(DataRequest("mnist", data_dir=tmp_path))


def test_gray_data_for_rgb_model_needs_conversion(tmp_path: Path, rng: np.random.Generator) -> None:
    write_mnist(tmp_path, "MNIST", test=_digits(rng, 10))
    with pytest.raises(DataError) as err:
        load_data(DataRequest("mnist", data_dir=tmp_path), model_channels=3)
    text = err.value.one_line()
    assert "has 1 channel but the model expects 3" in text and "--convert-channels rgb" in text


def test_gray_to_rgb_repeats_the_channel(tmp_path: Path, rng: np.random.Generator) -> None:
    x, _ = _digits(rng, 10)
    write_mnist(tmp_path, "MNIST", test=(x, balanced_labels(rng, 10, 10)))
    request = DataRequest("mnist", data_dir=tmp_path, convert_channels="rgb")
    audit = load_data(request, model_channels=3)
    expected = torch.from_numpy(x).float() / 255
    assert audit.x.shape == (10, 3, 28, 28)
    for c in range(3):
        assert torch.equal(audit.x[:, c], expected)
    assert audit.provenance["conversions"] == ["gray→rgb (repeat channel)"]
    assert audit.info.channels == 3 and audit.info.stored_channels == 1
    assert audit.info.mean == (0.1307,) * 3
    assert describe_dataset(request) == audit.info


def test_wrong_conversion_is_explained(tmp_path: Path, rng: np.random.Generator) -> None:
    write_mnist(tmp_path, "MNIST", test=_digits(rng, 10))
    with pytest.raises(DataError, match="after --convert-channels rgb the data has 3 channels but the model expects 1"):
        load_data(DataRequest("mnist", data_dir=tmp_path, convert_channels="rgb"), model_channels=1)


def test_resize_is_bilinear_antialiased_and_recorded(tmp_path: Path, rng: np.random.Generator) -> None:
    x, _ = _digits(rng, 10)
    write_mnist(tmp_path, "MNIST", test=(x, balanced_labels(rng, 10, 10)))
    request = DataRequest("mnist", data_dir=tmp_path, convert_channels="rgb", resize=(32, 32))
    audit = load_data(request, model_channels=3, data_config=DataConfig(input_size=(3, 32, 32)))
    expected = F.interpolate(torch.from_numpy(x).float()[:, None] / 255, size=(32, 32), mode="bilinear", antialias=True)
    assert audit.x.shape == (10, 3, 32, 32)
    assert torch.allclose(audit.x[:, 1:2], expected.clamp(0, 1), atol=1e-6)
    assert 0.0 <= float(audit.x.min()) and float(audit.x.max()) <= 1.0
    assert audit.provenance["conversions"] == ["resize 28×28→32×32 bilinear (antialias)", "gray→rgb (repeat channel)"]
    assert audit.provenance["warnings"] == []
    assert audit.info.image_size == (32, 32) and audit.info.stored_image_size == (28, 28)
    assert describe_dataset(request).image_size == (32, 32)


def test_size_differing_from_model_is_recorded(tmp_path: Path, rng: np.random.Generator) -> None:
    write_mnist(tmp_path, "MNIST", test=_digits(rng, 10))
    pretrained = DataConfig((1, 32, 32), source="pretrained")
    audit = load_data(DataRequest("mnist", data_dir=tmp_path), model_channels=1, data_config=pretrained)
    assert audit.x.shape[-2:] == (28, 28)
    assert "--resize 32 to match" in audit.provenance["warnings"][0]
    # an architecture's registered size says nothing about the size its weights were trained at
    audit = load_data(DataRequest("mnist", data_dir=tmp_path), model_channels=1, data_config=DataConfig((1, 32, 32)))
    assert audit.provenance["warnings"] == []
