"""scikit-learn's bundled 8×8 handwritten digits: robaudit's embedded default dataset.

The split is fixed and documented: ``sklearn.model_selection.train_test_split`` of all
1,797 samples with ``test_size=360``, ``stratify=y`` and ``random_state=0``, stored as its test
positions (:mod:`robaudit.data.digits_test_index`) so that loading it imports no scikit-learn. Pixel values
0–16 are divided by 16, giving 1×8×8 float images in [0, 1]. Sample ids are
``"<split>:<index into sklearn's load_digits() arrays>"``, so they are stable across
releases of robaudit.
"""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from robaudit.data.digits_test_index import TEST_INDEX

DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0
DIGITS_MEAN = (0.3054,)
DIGITS_STD = (0.3761,)


def digits_split(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(x, y, index)`` for the ``train`` or ``test`` split.

    Returns:
        x: N×1×8×8 float32 in [0, 1]; y: N int64 labels 0–9; index: N int64 positions
        in ``sklearn.datasets.load_digits()`` (sorted ascending).
    """
    data = _load_digits_table()
    images = (data[:, :-1].astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    labels = data[:, -1].astype(np.int64)
    test = np.zeros(len(labels), dtype=bool)
    test[np.asarray(TEST_INDEX)] = True
    idx = np.flatnonzero(test if split == "test" else ~test)
    return images[idx], labels[idx], idx


def _load_digits_table() -> np.ndarray:
    """scikit-learn's ``digits.csv.gz`` (1,797 rows: 64 pixel values 0–16, then the label), read as
    ``load_digits`` reads it but without importing scikit-learn, which imports scipy.sparse;
    ``load_digits`` itself where the file is not at its usual place."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return np.column_stack([bunch.data, bunch.target])
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return np.loadtxt(f, delimiter=",")
