"""scikit-learn's bundled 8×8 handwritten digits: robaudit's embedded default dataset.

The split is fixed and documented: ``sklearn.model_selection.train_test_split`` of all
1,797 samples with ``test_size=360``, ``stratify=y`` and ``random_state=0``. Pixel values
0–16 are divided by 16, giving 1×8×8 float images in [0, 1]. Sample ids are
``"<split>:<index into sklearn's load_digits() arrays>"``, so they are stable across
releases of robaudit.
"""
from __future__ import annotations

import numpy as np

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
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    all_idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        all_idx, test_size=DIGITS_TEST_SIZE, stratify=labels, random_state=DIGITS_SPLIT_SEED
    )
    idx = np.sort(test_idx if split == "test" else train_idx)
    return images[idx], labels[idx], idx
