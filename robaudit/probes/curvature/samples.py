"""Named sample sets over which the loss — and so its Hessian — is averaged.

A set is written ``NAME`` or ``NAME:B_H``:

* ``audit`` — the audit samples (``ctx.data``, the test split unless ``--split train``);
* ``train`` — the same dataset's train split, re-read through :func:`robaudit.data.load_data`
  with the audit data's conversions (Yao et al. report the Hessian on the training set);
* ``NAME:B_H`` — a seeded uniform random subset of B_H samples of that set (Yao's sub-sampled
  Hessians use B_H = 1 and 320); ``NAME:full`` is the same as ``NAME``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from robaudit.errors import ProbeError
from robaudit.probes.base import ProbeContext

BASE_SETS = ("audit", "train")
_SINGLE_SET_SOURCES = ("imagefolder", "imagenet", "imagenet-a", "imagenet-r", "tensors", "memory")


@dataclass
class SampleSet:
    """A fixed set of labelled samples.

    Attributes:
        name: the spec it was made from (``audit``, ``train:320`` …).
        base: ``audit`` or ``train``.
        b_h: the subset size B_H, or ``None`` for the whole base set.
        x: N×C×H×W float32 pixels in [0, 1] (CPU).
        y: N int64 labels.
        ids: the N sample ids (``"<split>:<index>"``).
        note: how the set was made, for the report.
    """

    name: str
    base: str
    b_h: int | None
    x: torch.Tensor
    y: torch.Tensor
    ids: list[str]
    note: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def describe(self) -> dict[str, Any]:
        """JSON description: name, base set, B_H, sample count, and the ids when there are at most 32."""
        out: dict[str, Any] = {"name": self.name, "base": self.base, "b_h": self.b_h, "n": len(self)}
        if len(self) <= 32:
            out["ids"] = list(self.ids)
        if self.note:
            out["note"] = self.note
        return out


def parse_set(spec: str) -> tuple[str, int | None]:
    """``"train:320"`` → ``("train", 320)``; ``"audit"`` / ``"audit:full"`` → ``("audit", None)``.

    Raises:
        ValueError: an unknown base set or a B_H that is not a positive integer or ``full``.
    """
    base, _, size = spec.strip().partition(":")
    if base not in BASE_SETS:
        raise ValueError(f"sample set {spec!r}: the set must be one of {', '.join(BASE_SETS)} (optionally ':B_H')")
    if size in ("", "full"):
        return base, None
    if not size.isdigit() or int(size) < 1:
        raise ValueError(f"sample set {spec!r}: B_H must be a positive integer or 'full'")
    return base, int(size)


def resolve_sets(ctx: ProbeContext, specs: list[str], train_samples: int | None) -> list[SampleSet]:
    """Build the sample sets named by ``specs`` (the train split is read at most once).

    Subsets are drawn with ``numpy.random.default_rng(ctx.seed + B_H)`` without replacement, so
    ``train:1`` and ``train:320`` are reproducible and independent of each other.

    Raises:
        ProbeError: ``train`` was asked for but the audit data has no re-readable train split.
    """
    bases: dict[str, SampleSet] = {}
    out = []
    for spec in specs:
        base, b_h = parse_set(spec)
        if base not in bases:
            bases[base] = _audit_set(ctx) if base == "audit" else load_train_set(ctx, train_samples)
        out.append(subset(bases[base], b_h, ctx.seed, spec))
    return out


def subset(full: SampleSet, b_h: int | None, seed: int, name: str) -> SampleSet:
    """A seeded uniform random subset of ``b_h`` samples of ``full`` (all of it for ``None`` or B_H ≥ N)."""
    if b_h is None:
        return SampleSet(name, full.base, None, full.x, full.y, full.ids, full.note, full.provenance)
    n = len(full)
    if b_h >= n:
        note = f"B_H = {b_h} asked for but the {full.base} set has {n} samples; using all of them"
        return SampleSet(name, full.base, n, full.x, full.y, full.ids, note, full.provenance)
    rows = np.sort(np.random.default_rng(seed + b_h).choice(n, size=b_h, replace=False))
    idx = torch.from_numpy(rows)
    note = f"{b_h} of the {n} {full.base} samples, uniform without replacement (numpy seed {seed + b_h})"
    return SampleSet(name, full.base, b_h, full.x[idx], full.y[idx], [full.ids[i] for i in rows], note,
                     full.provenance)


def _audit_set(ctx: ProbeContext) -> SampleSet:
    split = ctx.data.provenance.get("split", "test")
    return SampleSet("audit", "audit", None, ctx.data.x, ctx.data.y, list(ctx.data.ids),
                     f"the audit samples ({split} split)", dict(ctx.data.provenance))


def load_train_set(ctx: ProbeContext, n_samples: int | None) -> SampleSet:
    """The train split of the audit data's dataset, with the same conversions, as a sample set.

    Args:
        ctx: the probe context (its data provenance names the source).
        n_samples: how many train samples (stratified, seeded by ``ctx.seed``); ``None``: all.

    Raises:
        ProbeError: the source holds a single set of samples (image folders, tensor files) or
            its provenance does not name a dataset.
    """
    from robaudit.data import DataRequest, load_data
    from robaudit.errors import DataError

    prov = ctx.data.provenance
    source, name = prov.get("source"), prov.get("name")
    if not source or name is None:
        raise ProbeError("the audit data does not name a dataset, so its train split cannot be read",
                         fix="use the sample set 'audit' (e.g. --set curvature.topk.sets=audit)")
    if name in _SINGLE_SET_SOURCES:
        raise ProbeError(f"the {name} source holds one set of samples; it has no separate train split",
                         fix="use the sample set 'audit', or audit a named dataset")
    if prov.get("split") == "train" and prov.get("n_requested") in (None, n_samples):
        return SampleSet("train", "train", None, ctx.data.x, ctx.data.y, list(ctx.data.ids),
                         "the audit samples (train split)", dict(prov))
    request = DataRequest(
        source=source, data_dir=prov.get("path") if name not in ("digits",) else None, split="train",
        n_samples="all" if n_samples is None else n_samples, seed=ctx.seed, convert_channels=_conversion(ctx),
        resize=_resize(ctx),
    )
    try:
        data = load_data(request, ctx.model.in_channels, ctx.model.data_config)
    except DataError as exc:
        raise ProbeError(f"cannot read the train split for the 'train' sample set: {exc.message}",
                         fix=exc.fix or "use the sample set 'audit'") from None
    how = "all" if n_samples is None else f"{len(data)} (stratified, seed {ctx.seed})"
    return SampleSet("train", "train", None, data.x, data.y, list(data.ids),
                     f"the {name} train split: {how} of {data.provenance.get('n_available')} samples",
                     dict(data.provenance))


def _conversion(ctx: ProbeContext) -> str | None:
    stored = (ctx.data.provenance.get("stored") or {}).get("channels")
    have = int(ctx.data.x.shape[1])
    if stored is None or stored == have:
        return None
    return "rgb" if have == 3 else "gray"


def _resize(ctx: ProbeContext) -> tuple[int, int] | None:
    stored = (ctx.data.provenance.get("stored") or {}).get("image_size")
    have = (int(ctx.data.x.shape[-2]), int(ctx.data.x.shape[-1]))
    if stored is None or tuple(stored) == have:
        return None
    return have
