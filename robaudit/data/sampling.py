"""Choosing which samples of a split to audit: a stratified, seeded subsample.

The number asked for is ``n_samples``: an integer, ``"all"`` (every sample), or ``None``
(the default budget: every sample of a split of at most :data:`DEFAULT_N_SAMPLES`, else a
stratified, seeded :data:`DEFAULT_N_SAMPLES` of them, the common budget of fast
AutoAttack evaluations, announced by one INFO line).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, Union

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_N_SAMPLES = 1000
ALL = "all"
NSamples = Union[int, Literal["all"], None]


@dataclass(frozen=True)
class Selection:
    """The rows of a split chosen for the audit.

    Attributes:
        rows: sorted ascending int64 positions into the split.
        method: ``all``, ``stratified`` (scikit-learn ``train_test_split`` with
            ``stratify``) or ``random`` (a seeded uniform sample without replacement).
        seed: the seed used (recorded even for ``all``).
        note: why the method was chosen when it is not the one asked for, else ``None``.
        default_budget: the default budget when it cut the split down (no ``n_samples``
            given and more than :data:`DEFAULT_N_SAMPLES` samples), else ``None``.
    """

    rows: np.ndarray
    method: str
    seed: int
    note: str | None = None
    default_budget: int | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"method", "seed"}`` plus ``"note"`` and ``"default_budget"`` when set."""
        out: dict[str, Any] = {"method": self.method, "seed": self.seed}
        if self.note:
            out["note"] = self.note
        if self.default_budget is not None:
            out["default_budget"] = self.default_budget
        return out


def select_rows(labels: np.ndarray, n_samples: NSamples, seed: int) -> Selection:
    """Choose ``n_samples`` rows of a split with labels ``labels`` (N,), stratified by label.

    Stratification uses ``train_test_split(rows, train_size=n, stratify=labels,
    random_state=seed)``, so class proportions are kept to within one sample per class.
    scikit-learn cannot stratify when ``n`` is below the number of classes present, when
    fewer than that many samples would be left out, or when a class has a single sample;
    then a seeded uniform random sample is taken instead and the reason recorded.
    ``n_samples`` of ``"all"`` or ≥ N selects every row; ``None`` selects every row of a
    split of at most :data:`DEFAULT_N_SAMPLES`, else :data:`DEFAULT_N_SAMPLES` of them.
    """
    n_total = len(labels)
    if n_samples is None:
        if n_total <= DEFAULT_N_SAMPLES:
            return Selection(np.arange(n_total, dtype=np.int64), "all", seed)
        chosen = _subsample(labels, DEFAULT_N_SAMPLES, seed)
        logger.info("auditing a %s %s of %s samples; --n-samples all for every sample",
                    chosen.method, f"{DEFAULT_N_SAMPLES:,}", f"{n_total:,}")
        return Selection(chosen.rows, chosen.method, seed, chosen.note, default_budget=DEFAULT_N_SAMPLES)
    if n_samples == ALL:
        return Selection(np.arange(n_total, dtype=np.int64), "all", seed)
    if n_samples >= n_total:
        note = None
        if n_samples > n_total:
            note = f"{n_samples} samples requested but only {n_total} available; using all"
            logger.warning("%s", note)
        return Selection(np.arange(n_total, dtype=np.int64), "all", seed, note)
    return _subsample(labels, n_samples, seed)


def _subsample(labels: np.ndarray, n_samples: int, seed: int) -> Selection:
    """``n_samples`` < N rows, stratified when scikit-learn can, else seeded uniform."""
    n_total = len(labels)
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
