"""CIFAR-10 / CIFAR-100 read through torchvision from tiny files in the official pickle format."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as tv_cifar
from dataset_writers import balanced_labels, random_images, write_cifar10, write_cifar100

from robaudit.data import DataRequest, describe_dataset, load_data
from robaudit.errors import DataError

CIFAR10_BATCHES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]


def _rows(rng: np.random.Generator, n: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    return random_images(rng, n, 3, 32, 32).reshape(n, 3072), balanced_labels(rng, n, k)


def _expected(data: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(data.reshape(-1, 3, 32, 32)).to(torch.float32) / 255


def test_cifar10_test_split_round_trips_pixels_labels_and_ids(tmp_path: Path, rng: np.random.Generator) -> None:
    data, labels = _rows(rng, 30)
    folder = write_cifar10(tmp_path, (data, labels))

    audit = load_data(DataRequest("cifar10", data_dir=tmp_path))

    assert audit.x.dtype == torch.float32 and audit.x.shape == (30, 3, 32, 32)
    assert torch.equal(audit.x, _expected(data))
    # channel planes: the first 1024 bytes of a row are the red channel of the image
    assert torch.equal(audit.x[4, 0].flatten(), torch.from_numpy(data[4, :1024]).float() / 255)
    assert audit.y.dtype == torch.int64 and audit.y.tolist() == labels.tolist()
    assert audit.ids == [f"test:{i}" for i in range(30)]
    assert audit.info.num_classes == 10 and audit.info.channels == 3 and audit.info.image_size == (32, 32)
    assert audit.info.mean == (0.4914, 0.4822, 0.4465) and audit.info.std == (0.2470, 0.2435, 0.2616)
    assert audit.info.class_names[0] == "airplane"

    prov = audit.provenance
    json.dumps(prov)
    assert prov["name"] == "cifar10" and prov["split"] == "test" and prov["path"] == str(folder)
    assert (prov["n_available"], prov["n_requested"], prov["n_used"]) == (30, None, 30)
    assert prov["class_counts"] == [3] * 10
    assert prov["sampling"] == {"method": "all", "seed": 0}
    files = {Path(f["path"]).name: f for f in prov["files"]}
    assert set(files) == {"test_batch", "batches.meta"}
    # a tiny test_batch is not the official file: recorded, not refused
    assert prov["checksum_match"] is False and files["test_batch"]["match"] is False
    # the metadata file written like Python 2 cPickle is byte-identical to the official one
    assert files["batches.meta"]["md5"] == files["batches.meta"]["official_md5"]


def test_cifar10_train_split_concatenates_the_five_batches_in_order(tmp_path: Path, rng: np.random.Generator) -> None:
    sizes = [12, 7, 15, 10, 11]
    train = [_rows(rng, n) for n in sizes]
    write_cifar10(tmp_path, _rows(rng, 10), train)
    all_data = np.concatenate([d for d, _ in train])
    all_labels = np.concatenate([y for _, y in train])

    full = load_data(DataRequest("cifar10", data_dir=tmp_path, split="train"))
    assert full.provenance["n_available"] == sum(sizes)
    assert torch.equal(full.x, _expected(all_data))
    assert full.y.tolist() == all_labels.tolist()
    assert {Path(f["path"]).name for f in full.provenance["files"]} == {*CIFAR10_BATCHES, "batches.meta"}

    sub = load_data(DataRequest("cifar10", data_dir=tmp_path, split="train", n_samples=20, seed=3))
    rows = [int(i.split(":")[1]) for i in sub.ids]
    assert rows == sorted(rows) and len(rows) == 20 and all(i.startswith("train:") for i in sub.ids)
    assert torch.equal(sub.x, _expected(all_data)[rows])  # each id points at its own row
    assert sub.y.tolist() == all_labels[rows].tolist()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_batches_pickled_by_python3_are_read(tmp_path: Path, rng: np.random.Generator, protocol: int) -> None:
    data, labels = _rows(rng, 20)
    write_cifar10(tmp_path, (data, labels), protocol=protocol)
    audit = load_data(DataRequest("cifar10", data_dir=tmp_path))
    assert torch.equal(audit.x, _expected(data))
    assert audit.y.tolist() == labels.tolist()


def test_cifar100_reads_fine_labels(tmp_path: Path, rng: np.random.Generator) -> None:
    test = _rows(rng, 200, k=100)
    train = _rows(rng, 300, k=100)
    write_cifar100(tmp_path, test, train)

    audit = load_data(DataRequest("cifar100", data_dir=tmp_path))
    assert torch.equal(audit.x, _expected(test[0]))
    assert audit.y.tolist() == test[1].tolist() and int(audit.y.max()) == 99
    assert audit.info.num_classes == 100 and len(audit.info.class_names) == 100
    assert audit.info.mean == (0.5071, 0.4865, 0.4409) and audit.info.std == (0.2673, 0.2564, 0.2762)
    assert {Path(f["path"]).name for f in audit.provenance["files"]} == {"test", "meta"}

    train_audit = load_data(DataRequest("cifar100", data_dir=tmp_path, split="train", n_samples=100))
    assert train_audit.provenance["class_counts"] == [1] * 100  # 3 per class available, 1 per class stratified


def test_missing_cifar10_names_expected_files_and_fixes(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_data(DataRequest("cifar10", data_dir=tmp_path))
    text = err.value.one_line()
    assert str(tmp_path / "cifar-10-batches-py" / "test_batch") in text
    assert str(tmp_path / "cifar-10-batches-py" / "batches.meta") in text
    assert "--data-dir" in text and "--download" in text


def test_missing_train_batches_are_each_named(tmp_path: Path, rng: np.random.Generator) -> None:
    write_cifar10(tmp_path, _rows(rng, 10))  # test split only
    with pytest.raises(DataError) as err:
        load_data(DataRequest("cifar10", data_dir=tmp_path, split="train"))
    message = err.value.message
    for name in CIFAR10_BATCHES:
        assert str(tmp_path / "cifar-10-batches-py" / name) in message
    assert "batches.meta" not in message  # present, so not reported missing
    # the test split is still readable without the train files
    assert len(load_data(DataRequest("cifar10", data_dir=tmp_path))) == 10


def test_default_data_dir_comes_from_environment(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, labels = _rows(rng, 10)
    write_cifar10(tmp_path / "cache", (data, labels))
    monkeypatch.setenv("ROBAUDIT_DATA_DIR", str(tmp_path / "cache"))
    audit = load_data(DataRequest("cifar10"))
    assert audit.provenance["data_dir"] == str((tmp_path / "cache").resolve())
    assert torch.equal(audit.x, _expected(data))


def test_label_outside_range_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    data, labels = _rows(rng, 10)
    labels[7] = 10
    write_cifar10(tmp_path, (data, labels))
    with pytest.raises(DataError) as err:
        load_data(DataRequest("cifar10", data_dir=tmp_path))
    assert "outside [0, 10)" in err.value.message and "10 at index 7" in err.value.message


def test_empty_batch_is_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path, (np.zeros((0, 3072), np.uint8), np.zeros(0, np.int64)))
    with pytest.raises(DataError, match="CIFAR-10 test split has no samples"):
        load_data(DataRequest("cifar10", data_dir=tmp_path))


def test_unreadable_batches_are_data_errors(tmp_path: Path, rng: np.random.Generator) -> None:
    folder = write_cifar10(tmp_path, _rows(rng, 10))
    (folder / "test_batch").write_bytes(b"\x00garbage, not a pickle")
    with pytest.raises(DataError, match="test_batch is not a readable pickle"):
        load_data(DataRequest("cifar10", data_dir=tmp_path))

    # a Python 3 pickle with bytes keys has no "data" key when torchvision reads it
    import pickle

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match="could not read the CIFAR-10 test files"):
        load_data(DataRequest("cifar10", data_dir=tmp_path))

    # rows that are not 3072 bytes long are not 32×32×3 images
    write_cifar10(tmp_path, (np.zeros((2, 100), np.uint8), np.array([0, 1])))
    with pytest.raises(DataError, match="CIFAR-10 test files"):
        load_data(DataRequest("cifar10", data_dir=tmp_path))


class _FakeDownload:
    """Stands in for torchvision's download: records calls, optionally writes the files."""

    def __init__(self, rng: np.random.Generator, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.rng = rng
        self.fail = fail

    def __call__(self, url: str, download_root: str, **kwargs: object) -> None:
        self.calls.append(url)
        if self.fail:
            raise URLError("no route to host")
        write_cifar10(Path(download_root), _rows(self.rng, 10))


def test_download_is_passed_only_when_asked_and_needed(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _FakeDownload(rng)
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", fake)

    with pytest.raises(DataError):
        load_data(DataRequest("cifar10", data_dir=tmp_path, download=False))
    assert fake.calls == []

    audit = load_data(DataRequest("cifar10", data_dir=tmp_path, download=True))
    assert fake.calls == [tv_cifar.CIFAR10.url]
    assert audit.provenance["downloaded"] is True and len(audit) == 10

    again = load_data(DataRequest("cifar10", data_dir=tmp_path, download=True))
    assert fake.calls == [tv_cifar.CIFAR10.url]  # files present: nothing fetched
    assert again.provenance["downloaded"] is False


def test_failed_download_is_a_data_error(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", _FakeDownload(rng, fail=True))
    with pytest.raises(DataError) as err:
        load_data(DataRequest("cifar10", data_dir=tmp_path, download=True))
    assert "downloading CIFAR-10" in err.value.message and "no route to host" in err.value.message


def test_describe_named_dataset_reads_no_files(tmp_path: Path) -> None:
    info = describe_dataset(DataRequest("cifar100", data_dir=tmp_path / "absent"))
    assert (info.name, info.num_classes, info.channels, info.image_size) == ("cifar100", 100, 3, (32, 32))
    assert info.class_names[:3] == ["apple", "aquarium_fish", "baby"] and len(set(info.class_names)) == 100
