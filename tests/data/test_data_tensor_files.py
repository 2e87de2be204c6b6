"""Samples stored as arrays in .npz and .pt files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from robaudit.data import DataRequest, describe_dataset, load_data
from robaudit.errors import DataError


def _save(path: Path, **arrays: object) -> Path:
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    else:
        torch.save(arrays, path)
    return path


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_uint8_tensors_are_divided_by_255(tmp_path: Path, rng: np.random.Generator, suffix: str) -> None:
    x = rng.integers(0, 256, size=(12, 3, 5, 7), dtype=np.uint8)
    y = np.arange(12) % 4
    if suffix == ".pt":
        path = _save(tmp_path / f"d{suffix}", x=torch.from_numpy(x), y=torch.from_numpy(y))
    else:
        path = _save(tmp_path / f"d{suffix}", x=x, y=y)

    audit = load_data(DataRequest(str(path)))
    assert torch.equal(audit.x, torch.from_numpy(x).float() / 255)
    assert audit.y.tolist() == y.tolist() and audit.y.dtype == torch.int64
    assert audit.ids == [f"test:{i}" for i in range(12)]
    assert audit.info.name == "tensors" and audit.info.num_classes == 4 and audit.info.image_size == (5, 7)
    assert audit.info.mean is None
    record = audit.provenance["files"][0]
    assert record["path"] == str(path.resolve()) and len(record["sha256"]) == 64
    assert audit.provenance["checksum_match"] is None


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_float_tensors_are_kept_and_rows_map_to_ids(tmp_path: Path, rng: np.random.Generator, suffix: str) -> None:
    x = rng.random(size=(40, 1, 4, 4), dtype=np.float32)
    y = np.repeat(np.arange(4), 10)
    path = (
        _save(tmp_path / f"d{suffix}", x=x, y=y)
        if suffix == ".npz"
        else _save(tmp_path / f"d{suffix}", x=torch.from_numpy(x), y=torch.from_numpy(y))
    )
    audit = load_data(DataRequest(str(path), split="train", n_samples=8, seed=5))
    rows = [int(i.split(":")[1]) for i in audit.ids]
    assert all(i.startswith("train:") for i in audit.ids) and rows == sorted(rows)
    assert torch.equal(audit.x, torch.from_numpy(x[rows]))
    assert audit.y.tolist() == y[rows].tolist() and audit.provenance["class_counts"] == [2, 2, 2, 2]


def test_float64_pixels_become_float32(tmp_path: Path) -> None:
    x = np.linspace(0, 1, 2 * 3 * 2 * 2).reshape(2, 3, 2, 2)
    audit = load_data(DataRequest(str(_save(tmp_path / "d.npz", x=x, y=np.array([0, 1])))))
    assert audit.x.dtype == torch.float32 and torch.equal(audit.x, torch.from_numpy(x).float())


def test_optional_class_metadata(tmp_path: Path) -> None:
    x = np.zeros((2, 1, 2, 2), np.uint8)
    path = _save(tmp_path / "d.npz", x=x, y=np.array([0, 1]), num_classes=5, class_names=np.array(list("abcde")))
    request = DataRequest(str(path))
    info = describe_dataset(request)
    assert info.num_classes == 5 and info.class_names == list("abcde") and info.channels == 1
    audit = load_data(request)
    assert audit.provenance["class_counts"] == [1, 1, 0, 0, 0]


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_floats_outside_unit_range_are_refused(tmp_path: Path, suffix: str) -> None:
    x = np.full((3, 3, 2, 2), 0.5, np.float32)
    x[1, 0, 0, 0] = -0.42
    x[2, 1, 1, 1] = 2.5
    if suffix == ".pt":
        path = _save(tmp_path / f"d{suffix}", x=torch.from_numpy(x), y=torch.arange(3))
    else:
        path = _save(tmp_path / f"d{suffix}", x=x, y=np.arange(3))
    with pytest.raises(DataError) as err:
        load_data(DataRequest(str(path)))
    text = err.value.one_line()
    assert "[-0.42, 2.5], outside [0, 1]" in text and "mean/std" in text


def test_non_finite_pixels_are_refused(tmp_path: Path) -> None:
    x = np.zeros((2, 1, 2, 2), np.float32)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="1 NaN or infinite values"):
        load_data(DataRequest(str(_save(tmp_path / "d.npz", x=x, y=np.arange(2)))))


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_missing_keys_list_the_keys_present(tmp_path: Path, suffix: str) -> None:
    arrays = {"images": np.zeros((2, 1, 2, 2), np.float32), "y": np.arange(2)}
    if suffix == ".pt":
        arrays = {k: torch.from_numpy(v) for k, v in arrays.items()}
    path = _save(tmp_path / f"d{suffix}", **arrays)
    for call in (load_data, describe_dataset):
        with pytest.raises(DataError) as err:
            call(DataRequest(str(path)))
        assert "has no 'x'" in err.value.message and "keys present: 'images', 'y'" in err.value.message


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = _save(tmp_path / "d.npz", x=np.zeros((0, 3, 4, 4), np.uint8), y=np.zeros(0, np.int64))
    with pytest.raises(DataError, match="has no samples"):
        load_data(DataRequest(str(path)))


def test_negative_or_too_large_labels_are_refused(tmp_path: Path) -> None:
    x = np.zeros((3, 1, 2, 2), np.uint8)
    with pytest.raises(DataError, match=r"has 1 negative label\(s\): -1 at index 1"):
        load_data(DataRequest(str(_save(tmp_path / "a.npz", x=x, y=np.array([0, -1, 1])))))
    with pytest.raises(DataError, match=r"outside \[0, 3\): e\.g\. 3 at index 2"):
        load_data(DataRequest(str(_save(tmp_path / "b.npz", x=x, y=np.array([0, 1, 3]), num_classes=3))))


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.arange(2)}, "add a channel axis"),
        ({"x": np.zeros((2, 8, 8, 3), np.uint8), "y": np.arange(2)}, "looks like N×H×W×C"),
        ({"x": np.zeros((2, 1, 4, 4), np.int32), "y": np.arange(2)}, "is torch.int32"),
        ({"x": np.zeros((2, 1, 4, 4), np.uint8), "y": np.arange(3)}, "2 images in x but 3 labels"),
        ({"x": np.zeros((2, 1, 4, 4), np.uint8), "y": np.zeros((2, 1), np.int64)}, "one label per sample"),
        ({"x": np.zeros((2, 1, 4, 4), np.uint8), "y": np.array([0.0, 1.0])}, "expected integer class indices"),
    ],
)
def test_malformed_arrays_are_explained(tmp_path: Path, arrays: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_data(DataRequest(str(_save(tmp_path / "d.npz", **arrays))))


def test_pt_with_code_is_not_unpickled(tmp_path: Path) -> None:
    target = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.mkdir, (str(target),)

    path = tmp_path / "d.pt"
    torch.save({"x": torch.zeros(1, 1, 2, 2), "y": torch.zeros(1, dtype=torch.long), "extra": Payload()}, path)
    with pytest.raises(DataError, match=rf"holds a {os.mkdir.__module__}\.mkdir object"):
        load_data(DataRequest(str(path)))
    assert not target.exists()


def test_pt_with_numpy_arrays_asks_for_tensors(tmp_path: Path) -> None:
    path = tmp_path / "d.pt"
    torch.save({"x": np.zeros((1, 1, 2, 2), np.float32), "y": np.zeros(1, np.int64)}, path)
    with pytest.raises(DataError) as err:
        load_data(DataRequest(str(path)))
    assert "_reconstruct object" in err.value.message and "torch.from_numpy" in err.value.one_line()


def test_pt_holding_a_tensor_not_a_dict(tmp_path: Path) -> None:
    path = tmp_path / "d.pt"
    torch.save(torch.zeros(2, 1, 2, 2), path)
    with pytest.raises(DataError, match="holds a Tensor, not a dict"):
        load_data(DataRequest(str(path)))


def test_object_arrays_in_npz_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((1, 1, 2, 2), np.uint8), y=np.array([0, None], dtype=object))
    with pytest.raises(DataError, match="'y' in .* is an object array, which numpy can only read by unpickling"):
        load_data(DataRequest(str(path)))


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_data(DataRequest(str(tmp_path / "absent.npz")))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="could not read"):
        load_data(DataRequest(str(tmp_path / "bad.npz")))
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="could not read"):
        load_data(DataRequest(str(tmp_path / "bad.pt")))


def test_describe_reads_the_header_not_the_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(tmp_path / "d.npz", x=np.zeros((6, 3, 9, 11), np.uint8), y=np.array([0, 1, 2, 0, 1, 2]))
    monkeypatch.setattr(np.lib.format, "read_array", _refuse_x(np.lib.format.read_array))
    info = describe_dataset(DataRequest(str(path)))
    assert (info.channels, info.image_size, info.num_classes) == (3, (9, 11), 3)


def _refuse_x(read_array: object) -> object:
    """``numpy.lib.format.read_array`` that fails the test when asked for x's data (6×3×9×11 uint8)."""

    def spy(fp: object, *args: object, **kwargs: object) -> object:
        array = read_array(fp, *args, **kwargs)  # type: ignore[operator]
        assert array.shape != (6, 3, 9, 11), "describe read the pixels"
        return array

    return spy
