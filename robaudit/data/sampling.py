"""Choosing which samples of a split to audit: a stratified, seeded subsample."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """The rows of a split chosen for the audit.

    Attributes:
        rows: sorted ascending int64 positions into the split.
        method: ``all``, ``stratified`` (scikit-learn ``train_test_split`` with
            ``stratify``) or ``random`` (a seeded uniform sample without replacement).
        seed: the seed used (recorded even for ``all``).
        note: why the method was chosen when it is not the one asked for, else ``None``.
    """

    rows: np.ndarray
    method: str
    seed: int
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"method", "seed"}`` plus ``"note"`` when there is one."""
        out: dict[str, Any] = {"method": self.method, "seed": self.seed}
        if self.note:
            out["note"] = self.note
        return out


def select_rows(labels: np.ndarray, n_samples: int | None, seed: int) -> Selection:
    """Choose ``n_samples`` rows of a split with labels ``labels`` (N,), stratified by label.

    Stratification uses ``train_test_split(rows, train_size=n, stratify=labels,
    random_state=seed)``, so class proportions are kept to within one sample per class.
    scikit-learn cannot stratify when ``n`` is below the number of classes present, when
    fewer than that many samples would be left out, or when a class has a single sample;
    then a seeded uniform random sample is taken instead and the reason recorded.
    ``n_samples`` of ``None`` or ≥ N selects every row.
    """
    n_total = len(labels)
    if n_samples is None:
        return Selection(np.arange(n_total, dtype=np.int64), "all", seed)
    if n_samples >= n_total:
        note = None
        if n_samples > n_total:
            note = f"{n_samples} samples requested but only {n_total} available; using all"
            logger.warning("%s", note)
        return Selection(np.arange(n_total, dtype=np.int64), "all", seed, note)

    classes, counts = np.unique(labels, return_counts=True)
    n_classes = len(classes)
    reason = None
    if n_samples < n_classes:
        reason = f"{n_samples} samples are fewer than the {n_classes} classes present, so not stratified"
    elif n_total - n_samples < n_classes:
        reason = (
            f"leaving out {n_total - n_samples} of {n_total} samples is fewer than the {n_classes} classes "
            "present, so not stratified"
        )
    elif counts.min() < 2:
        reason = f"class {int(classes[counts.argmin()])} has a single sample, so not stratified"
    if reason is None:
        from sklearn.model_selection import train_test_split

        rows, _ = train_test_split(
            np.arange(n_total, dtype=np.int64), train_size=n_samples, stratify=labels, random_state=seed
        )
        return Selection(np.sort(np.asarray(rows, dtype=np.int64)), "stratified", seed)
    logger.info("sampling: %s", reason)
    rng = np.random.default_rng(seed)
    rows = rng.choice(n_total, size=n_samples, replace=False)
    return Selection(np.sort(rows.astype(np.int64)), "random", seed, reason)
