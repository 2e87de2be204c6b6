"""Scoring a model on a subset of its classes (ImageNet-A / ImageNet-R: 200 of 1,000 logits).

Those benchmarks define accuracy on the logits of their 200 classes only: the model's
K logits are cut to the columns of the subset and the labels re-indexed into it, so the
prediction is the arg-max *within* the subset. :func:`restrict_classes` applies this once,
where the engine builds the audit model and data, so every probe and attack sees a
200-class model, and an attack succeeds only when it moves the prediction to another of
those 200 classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from robaudit.data.audit_data import AuditData
from robaudit.errors import InternalError
from robaudit.models.audit_model import AuditModel


@dataclass(frozen=True)
class ClassSubset:
    """The classes a model is scored on.

    Attributes:
        name: what defines the subset (``imagenet-a``, ``imagenet-r``).
        columns: the model's logit columns kept, ascending (ImageNet-1k indices).
        synsets: the synset of each kept column.
        class_names: the description of each kept column.
    """

    name: str
    columns: tuple[int, ...]
    synsets: tuple[str, ...]
    class_names: tuple[str, ...]

    def to_json(self, model_classes: int) -> dict[str, Any]:
        """The record written to ``results.json`` under ``data.class_restriction``."""
        return {"applied": True, "subset": self.name, "model_classes": model_classes,
                "num_classes": len(self.columns), "columns": list(self.columns), "synsets": list(self.synsets)}


class RestrictedAuditModel(AuditModel):
    """An :class:`AuditModel` whose logits are cut to ``columns`` (N×K → N×len(columns)).

    It shares the wrapped model's network (same parameter names and state dict); the
    column index is a plain attribute, not a buffer, so the state dict is unchanged.
    """

    def __init__(self, model: AuditModel, columns: tuple[int, ...], source: str) -> None:
        provenance = dataclasses.replace(model.provenance, num_classes=len(columns), num_classes_source=source)
        super().__init__(model.net, provenance.normalisation, model.data_config, provenance, model.in_channels,
                         math_attention=model.math_attention)
        self.mean, self.std = model.mean, model.std  # keep the wrapped model's device and dtype
        self.columns = torch.tensor(columns, dtype=torch.long)
        self.full_num_classes = model.num_classes
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits N×len(columns) for pixels ``x`` in [0, 1], shape N×C×H×W."""
        logits = super().forward(x)
        return logits.index_select(1, self.columns.to(logits.device))


def restrict_classes(model: AuditModel, data: AuditData) -> tuple[AuditModel, AuditData]:
    """Restrict ``model`` and ``data`` to ``data.class_subset``; both unchanged when it is ``None``.

    Returns:
        (a :class:`RestrictedAuditModel`, the data with labels re-indexed into the subset,
        its class names and counts cut to the subset, and ``class_restriction`` in its
        provenance).

    Raises:
        InternalError: a label lies outside the subset, or the model has too few logits
            (the data loader guarantees both).
    """
    subset = data.class_subset
    if subset is None:
        return model, data
    columns = np.asarray(subset.columns, dtype=np.int64)
    if columns.max() >= model.num_classes:
        raise InternalError(f"the {subset.name} subset needs logit {int(columns.max())} but the model has "
                            f"{model.num_classes}")
    position = np.full(model.num_classes, -1, dtype=np.int64)
    position[columns] = np.arange(len(columns))
    y = position[data.y.numpy()]
    if (y < 0).any():
        raise InternalError(f"labels outside the {subset.name} subset reached restrict_classes")
    restricted = RestrictedAuditModel(model, subset.columns, f"{subset.name} subset of {model.num_classes}")
    provenance = dict(data.provenance)
    provenance["class_restriction"] = subset.to_json(model.num_classes)
    if "class_counts" in provenance:
        provenance["class_counts"] = np.bincount(y, minlength=len(columns)).tolist()
    info = dataclasses.replace(data.info, num_classes=len(columns), class_names=list(subset.class_names))
    restricted_data = dataclasses.replace(data, y=torch.from_numpy(y), info=info, provenance=provenance,
                                          class_subset=None)
    return restricted, restricted_data
