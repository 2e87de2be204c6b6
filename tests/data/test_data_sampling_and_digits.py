"""The stratified, seeded subsample and the embedded digits dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robaudit.data import DataRequest, describe_dataset, load_data
from robaudit.data.digits import digits_split
from robaudit.data.sampling import select_rows


def test_stratified_subsample_keeps_class_proportions() -> None:
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    np.random.default_rng(0).shuffle(labels)
    selection = select_rows(labels, 100, seed=7)
    assert selection.method == "stratified" and selection.note is None
    assert np.bincount(labels[selection.rows]).tolist() == [60, 30, 10]
    assert np.all(np.diff(selection.rows) > 0)  # ascending, no repeats


def test_subsample_is_deterministic_per_seed() -> None:
    labels = np.arange(500) % 5
    a = select_rows(labels, 50, seed=1).rows
    b = select_rows(labels, 50, seed=1).rows
    c = select_rows(labels, 50, seed=2).rows
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fewer_samples_than_classes_falls_back_to_random() -> None:
    labels = np.arange(100) % 10
    selection = select_rows(labels, 4, seed=3)
    assert selection.method == "random" and "fewer than the 10 classes" in (selection.note or "")
    assert len(selection.rows) == 4 and len(set(selection.rows.tolist())) == 4
    assert np.array_equal(selection.rows, select_rows(labels, 4, seed=3).rows)
    assert np.all(np.diff(selection.rows) > 0)


@pytest.mark.parametrize(
    ("labels", "n", "reason"),
    [
        (np.arange(20) % 10, 15, "leaving out 5 of 20"),
        (np.array([0, 0, 0, 1, 1, 1, 2]), 4, "class 2 has a single sample"),
    ],
)
def test_unstratifiable_requests_fall_back_to_random(labels: np.ndarray, n: int, reason: str) -> None:
    selection = select_rows(labels, n, seed=0)
    assert selection.method == "random" and reason in (selection.note or "") and len(selection.rows) == n


def test_more_samples_than_available_uses_all() -> None:
    selection = select_rows(np.arange(30) % 3, 1000, seed=0)
    assert selection.method == "all" and selection.rows.tolist() == list(range(30))
    assert "1000 samples requested but only 30 available" in (selection.note or "")


def test_digits_split_sizes_and_balance() -> None:
    test = load_data(DataRequest("digits"))
    train = load_data(DataRequest("digits", split="train", n_samples="all"))  # 1,437 > the default 1,000
    assert len(test) == 360 and len(train) == 1437
    assert test.x.shape == (360, 1, 8, 8) and test.x.dtype == torch.float32
    assert float(test.x.min()) == 0.0 and float(test.x.max()) == 1.0
    counts = test.provenance["class_counts"]
    assert sum(counts) == 360 and min(counts) >= 35 and max(counts) <= 37  # stratified: ~36 per class
    # the two splits partition sklearn's 1,797 digits; ids index load_digits()
    test_idx = {int(i.split(":")[1]) for i in test.ids}
    train_idx = {int(i.split(":")[1]) for i in train.ids}
    assert not test_idx & train_idx and len(test_idx | train_idx) == 1797
    x, y, idx = digits_split("test")
    assert test.ids[:3] == [f"test:{i}" for i in idx[:3]] and torch.equal(test.x, torch.from_numpy(x))
    assert test.y.tolist() == y.tolist()


@pytest.mark.parametrize("split", ["test", "train"])
def test_digits_split_is_sklearns(split: str) -> None:
    """The stored split and the file read without scikit-learn give exactly scikit-learn's
    ``load_digits`` + ``train_test_split(test_size=360, stratify=y, random_state=0)``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    train_idx, test_idx = train_test_split(np.arange(1797), test_size=360, stratify=bunch.target, random_state=0)
    want = np.sort(test_idx if split == "test" else train_idx)
    x, y, idx = digits_split(split)
    assert idx.tolist() == want.tolist()
    assert np.array_equal(x, (bunch.images.astype(np.float32) / 16.0)[want, None])
    assert x.dtype == np.float32 and y.dtype == np.int64 and y.tolist() == bunch.target[want].tolist()


def test_digits_subsample_provenance() -> None:
    audit = load_data(DataRequest("digits", n_samples=100, seed=4))
    prov = audit.provenance
    json.dumps(prov)
    assert (prov["n_available"], prov["n_requested"], prov["n_used"]) == (360, 100, 100)
    assert prov["sampling"] == {"method": "stratified", "seed": 4}
    assert all(c in (9, 10, 11) for c in prov["class_counts"]) and sum(prov["class_counts"]) == 100
    again = load_data(DataRequest("digits", n_samples=100, seed=4))
    other = load_data(DataRequest("digits", n_samples=100, seed=5))
    assert again.ids == audit.ids and torch.equal(again.x, audit.x)
    assert other.ids != audit.ids
    full = load_data(DataRequest("digits"))
    rows = [full.ids.index(i) for i in audit.ids]
    assert rows == sorted(rows) and torch.equal(audit.x, full.x[rows])


def test_digits_more_than_available_is_recorded() -> None:
    audit = load_data(DataRequest("digits", n_samples=5000))
    assert len(audit) == 360 and audit.provenance["n_requested"] == 5000
    assert "only 360 available" in audit.provenance["warnings"][0]


def test_describe_digits() -> None:
    info = describe_dataset(DataRequest("digits"))
    assert (info.name, info.num_classes, info.channels, info.image_size) == ("digits", 10, 1, (8, 8))
    assert info.mean == (0.3054,) and info.std == (0.3761,)
    assert info == load_data(DataRequest("digits", n_samples=20)).info
