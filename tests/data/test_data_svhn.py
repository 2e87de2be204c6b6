"""SVHN read through torchvision from MATLAB files laid out like the official ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_writers import balanced_labels, random_images, write_svhn

from robaudit.data import DataRequest, load_data
from robaudit.errors import DataError


def test_svhn_round_trips_and_maps_label_10_to_digit_0(tmp_path: Path, rng: np.random.Generator) -> None:
    x = random_images(rng, 25, 3, 32, 32)
    digits = balanced_labels(rng, 25, 10)
    path = write_svhn(tmp_path, "test", x, digits)

    audit = load_data(DataRequest("svhn", data_dir=tmp_path))
    assert torch.equal(audit.x, torch.from_numpy(x).float() / 255)
    assert audit.y.tolist() == digits.tolist() and 0 in audit.y.tolist()
    assert audit.ids == [f"test:{i}" for i in range(25)]
    assert audit.info.mean == (0.4377, 0.4438, 0.4728) and audit.info.std == (0.1980, 0.2010, 0.1970)
    assert [f["path"] for f in audit.provenance["files"]] == [str(path)]
    assert audit.provenance["checksum_match"] is False


def test_svhn_train_split_and_missing_file(tmp_path: Path, rng: np.random.Generator) -> None:
    write_svhn(tmp_path, "train", random_images(rng, 12, 3, 32, 32), balanced_labels(rng, 12, 10))
    assert load_data(DataRequest("svhn", data_dir=tmp_path, split="train")).ids[-1] == "train:11"
    with pytest.raises(DataError) as err:
        load_data(DataRequest("svhn", data_dir=tmp_path, split="test"))
    assert str(tmp_path / "test_32x32.mat") in err.value.message


def test_svhn_extra_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_data(DataRequest("svhn", data_dir=tmp_path, split="extra"))
    assert "unknown split 'extra'" in err.value.message and "--split test or --split train" in err.value.one_line()


def test_rgb_to_gray_uses_itu_601_luma(tmp_path: Path, rng: np.random.Generator) -> None:
    x = random_images(rng, 10, 3, 32, 32)
    write_svhn(tmp_path, "test", x, balanced_labels(rng, 10, 10))
    with pytest.raises(DataError) as err:
        load_data(DataRequest("svhn", data_dir=tmp_path), model_channels=1)
    assert (
        "has 3 channels but the model expects 1" in err.value.message
        and "--convert-channels gray" in err.value.one_line()
    )

    audit = load_data(DataRequest("svhn", data_dir=tmp_path, convert_channels="gray"), model_channels=1)
    rgb = x.astype(np.float64) / 255
    luma = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    assert audit.x.shape == (10, 1, 32, 32)
    assert np.allclose(audit.x[:, 0].numpy(), luma, atol=1e-6)
    assert audit.provenance["conversions"][0].startswith("rgb→gray (ITU-R 601 luma")
    assert audit.info.mean is None and audit.info.std is None  # no conventional values for gray SVHN


def test_corrupt_mat_file_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, but not really")
    with pytest.raises(DataError, match="could not read the SVHN test files"):
        load_data(DataRequest("svhn", data_dir=tmp_path))
