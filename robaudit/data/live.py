"""In-memory audit data for the Python API: ``(x, y)`` tensors, a torch ``Dataset`` or a ``DataLoader``.

``x`` holds float pixels in [0, 1] (the model applies any mean/std itself), N×C×H×W; a ``Dataset``
item is one ``(x, y)`` pair with ``x`` C×H×W; a ``DataLoader`` yields ``(x, y)`` batches. ``y`` holds
integer class indices ≥ 0. Sample ids are ``memory:<i>``, ``i`` the position in the given data (for
a ``DataLoader``, in its iteration order).

The sample budget is that of a tensor file (:mod:`robaudit.data.sampling`): ``(x, y)`` tensors are
already in memory, so ``n_samples`` takes the same stratified, seeded subsample as
``robaudit run --dataset FILE.npz`` would; a ``Dataset`` or ``DataLoader`` is read in order and only
up to the budget (its labels are not known before its items are read), so a cut one holds its first
``n`` samples, recorded as sampling method ``first``.
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler

from robaudit.data import conversions
from robaudit.data.audit_data import AuditData, DatasetInfo, samples_sha256
from robaudit.data.sampling import ALL, DEFAULT_N_SAMPLES, NSamples, Selection, select_rows
from robaudit.errors import DataError

logger = logging.getLogger(__name__)

MEMORY = "memory"
"""The dataset name, split and id prefix of in-memory data."""


def is_live_data(data: Any) -> bool:
    """Whether ``data`` is an in-memory form this module reads (not a dataset name or path)."""
    if isinstance(data, (DataLoader, Dataset)):
        return True
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(
        isinstance(v, (torch.Tensor, np.ndarray)) for v in data)


def describe_live_data(data: Any) -> str:
    """``memory:tensors``, ``memory:DataLoader`` or ``memory:Dataset(pkg.module:Class)``: the
    ``dataset`` echoed in ``results.json``'s config."""
    if isinstance(data, DataLoader):
        return f"{MEMORY}:DataLoader({_qualname(data.dataset)})"
    if isinstance(data, Dataset):
        return f"{MEMORY}:Dataset({_qualname(data)})"
    return f"{MEMORY}:tensors"


@dataclass
class LiveSamples:
    """The audit samples read from in-memory data, before any conversion.

    Attributes:
        x: N×C×H×W float32 pixels in [0, 1] (CPU).
        y: N int64 labels ≥ 0.
        index: N positions in the given data (the ``i`` of ``memory:<i>``), ascending.
        n_available: samples the data holds, or ``None`` when a stream without a length was cut.
        selection: how the samples were chosen (method ``all``, ``stratified``, ``random`` or ``first``).
        source: :func:`describe_live_data` of the data.
        warnings: notes for the data provenance.
    """

    x: torch.Tensor
    y: torch.Tensor
    index: np.ndarray
    n_available: int | None
    selection: Selection
    source: str
    warnings: list[str] = field(default_factory=list)

    @property
    def max_label(self) -> int:
        """The largest label."""
        return int(self.y.max())


def read_live_data(data: Any, n_samples: NSamples, seed: int) -> LiveSamples:
    """Read the audit samples of ``data`` within the sample budget (see the module docstring).

    Raises:
        DataError: an unsupported form, or pixels/labels of the wrong shape, dtype or range.
    """
    source = describe_live_data(data)
    if isinstance(data, (tuple, list)):
        x = _pixels(data[0], "x", batched=True, check_values=False)
        y = _labels(data[1], "y", len(x))
        selection = select_rows(y.numpy(), n_samples, seed)
        rows = torch.from_numpy(selection.rows)
        picked = _check_values(x[rows.to(x.device)].detach().cpu(), "x")  # only the audited rows are read
        return LiveSamples(_dense(picked), y[rows].clone(), selection.rows, len(y), selection, source)
    warnings = []
    if isinstance(data, DataLoader):
        if isinstance(data.sampler, RandomSampler):
            warnings.append("the DataLoader shuffles, so memory:<i> indexes this run's random order; "
                            "pass shuffle=False to make the sample ids reproducible")
            logger.warning("%s", warnings[-1])
        pairs: Iterator[tuple[Any, Any]] = _batches(data)
        total = _length(data.dataset)
    elif isinstance(data, IterableDataset):
        pairs, total = _items(iter(data)), _length(data)
    else:
        total = _length(data)
        if total is None:
            raise DataError(f"the Dataset {_qualname(data)} has no len() and is not an IterableDataset",
                            fix="give it a __len__, or make it an IterableDataset")
        pairs = _items(data[i] for i in range(total))
    budget = _budget(n_samples, total)
    xs, ys, seen = [], [], 0
    for x, y in pairs:
        take = len(x) if budget is None else min(len(x), budget - seen)
        xs.append(x[:take])
        ys.append(y[:take])
        seen += take
        if budget is not None and seen >= budget:
            break
    if seen == 0:
        raise DataError(f"{source} holds no samples", fix="pass data that yields (x, y) pairs")
    x, y = torch.cat(xs), torch.cat(ys)
    if budget is None or seen < budget:  # read to the end
        total = seen
    cut = total is None or seen < total
    if not cut:
        selection = Selection(np.arange(seen, dtype=np.int64), "all", seed)
    else:
        of = f" of {total:,}" if total is not None else ""
        note = (f"the first {seen:,}{of} samples in order: a Dataset or DataLoader is read only up to the "
                "budget, so it is not stratified (pass (x, y) tensors for a stratified subsample)")
        default = DEFAULT_N_SAMPLES if n_samples is None else None
        selection = Selection(np.arange(seen, dtype=np.int64), "first", seed, note, default_budget=default)
        logger.info("auditing %s", note)
    if isinstance(n_samples, int) and not isinstance(n_samples, bool) and total is not None and n_samples > total:
        warnings.append(f"{n_samples} samples requested but only {total} available; using all")
    return LiveSamples(_dense(x), y, selection.rows, total, selection, source, warnings)


def convert_live(samples: LiveSamples, convert_channels: str | None, resize: tuple[int, int] | None,
                 model_channels: int | None) -> tuple[torch.Tensor, list[str]]:
    """The samples' pixels after the requested conversions (``convert_channels=``, ``resize=``), as
    float32 N×C×H×W in [0, 1], and the descriptions of what was done.

    Raises:
        DataError: a conversion that does not apply, or a channel count the model cannot take.
    """
    conversions.check_channels(int(samples.x.shape[1]), convert_channels, model_channels, "the given data")
    x, applied = conversions.convert_channels(samples.x, convert_channels)
    x, done = conversions.resize(x, resize)
    return _dense(x), applied + done


def live_audit_data(samples: LiveSamples, x: torch.Tensor, applied: list[str], num_classes: int,
                    n_requested: NSamples) -> AuditData:
    """The :class:`AuditData` of ``samples``, whose converted pixels are ``x`` (:func:`convert_live`),
    for a model with ``num_classes`` logits.

    Raises:
        DataError: a label outside [0, num_classes).
    """
    if samples.max_label >= num_classes:
        bad = int(torch.nonzero(samples.y >= num_classes)[0, 0])
        raise DataError(f"label {int(samples.y[bad])} of sample {MEMORY}:{int(samples.index[bad])} is outside the "
                        f"model's {num_classes} classes [0, {num_classes})",
                        fix="pass labels as class indices of the model's logits")
    stored_c = int(samples.x.shape[1])
    info = DatasetInfo(MEMORY, num_classes, int(x.shape[1]), (int(x.shape[2]), int(x.shape[3])),
                       stored_channels=stored_c, stored_image_size=(int(samples.x.shape[2]), int(samples.x.shape[3])))
    provenance = {
        "source": samples.source,
        "name": MEMORY,
        "path": None,
        "split": MEMORY,
        "n_available": samples.n_available,
        "n_requested": n_requested,
        "n_used": len(samples.y),
        "sampling": samples.selection.to_json(),
        "class_counts": np.bincount(samples.y.numpy(), minlength=num_classes).tolist(),
        "conversions": applied,
        "stored": {"channels": stored_c, "image_size": [int(samples.x.shape[2]), int(samples.x.shape[3])]},
        "samples_sha256": samples_sha256(samples.x, samples.y),
        "checksum_match": None,
        "files": [],
        "warnings": list(samples.warnings),
        "skipped_images": [],
    }
    ids = [f"{MEMORY}:{int(i)}" for i in samples.index]
    logger.info("loaded %d in-memory samples (%s)", len(ids), samples.selection.method)
    return AuditData(x=x, y=samples.y, ids=ids, info=info, provenance=provenance)


def _dense(x: torch.Tensor) -> torch.Tensor:
    """A float32 copy in the standard NCHW layout, whatever the caller's strides: ``.contiguous()`` keeps
    channels-last strides when C = 1, and convolutions pick their kernel (and rounding) by layout."""
    return torch.empty(x.shape, dtype=torch.float32).copy_(x)


def _budget(n_samples: NSamples, total: int | None) -> int | None:
    """How many samples to read from a stream of ``total`` (``None``: unknown); ``None``: all."""
    if n_samples == ALL:
        return None
    if n_samples is None:
        return None if total is not None and total <= DEFAULT_N_SAMPLES else DEFAULT_N_SAMPLES
    return int(n_samples)


def _length(obj: Any) -> int | None:
    try:
        return len(obj)
    except TypeError:
        return None


def _batches(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    first: tuple[int, ...] | None = None
    for b, batch in enumerate(loader):
        x, y = _pair(batch, f"batch {b} of the DataLoader")
        x = _pixels(x, f"x of batch {b} of the DataLoader", batched=True)
        first = _same_shape(tuple(x.shape[1:]), first, f"batch {b} of the DataLoader holds images of shape",
                            "batch 0's are")
        yield x, _labels(y, f"y of batch {b} of the DataLoader", len(x))


def _items(items: Iterable[Any]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    first: tuple[int, ...] | None = None
    for i, item in zip(itertools.count(), items):
        x, y = _pair(item, f"item {i} of the Dataset")
        x = _pixels(x, f"x of item {i} of the Dataset", batched=False)
        first = _same_shape(tuple(x.shape), first, f"item {i} of the Dataset has shape", "item 0 has")
        yield x[None], _labels(y, f"y of item {i} of the Dataset", 1, single=True)


def _same_shape(shape: tuple[int, ...], first: tuple[int, ...] | None, what: str,
                first_what: str) -> tuple[int, ...]:
    """The first item's C×H×W image shape; every later item must match it (they are stacked into N×C×H×W).

    Raises:
        DataError: ``shape`` differs from ``first``.
    """
    if first is None or shape == first:
        return shape
    raise DataError(f"{what} {shape}, {first_what} {first}: the audit stacks every image into one N×C×H×W tensor",
                    fix="add a Resize/CenterCrop transform to the Dataset so every image has the same size "
                        "(e.g. torchvision.transforms.Resize((H, W))), or pass (x, y) tensors")


def _pair(item: Any, what: str) -> tuple[Any, Any]:
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return item[0], item[1]
    kind = f"a {type(item).__name__}" + (f" of {len(item)}" if isinstance(item, (tuple, list)) else "")
    raise DataError(f"{what} is {kind}, not an (x, y) pair", fix="make it yield (image, label) pairs")


def _pixels(value: Any, what: str, *, batched: bool, check_values: bool = True) -> torch.Tensor:
    """``value`` as a float tensor of [0, 1] pixels (N×C×H×W, or C×H×W when not ``batched``), on the CPU;
    without ``check_values`` only its type and shape are checked and it stays where it is."""
    shape = "N×C×H×W" if batched else "C×H×W"
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise DataError(f"{what} is a {type(value).__name__}, not a tensor",
                        fix="convert images to float tensors in [0, 1] (e.g. torchvision.transforms.ToTensor())")
    if not value.is_floating_point():
        raise DataError(f"{what} has dtype {str(value.dtype).replace('torch.', '')}; robaudit takes float pixels in "
                        "[0, 1]", fix="convert it, e.g. x.float() / 255 for 8-bit images")
    dims = 4 if batched else 3
    if value.dim() != dims:
        raise DataError(f"{what} has shape {tuple(value.shape)}; robaudit takes {shape} images",
                        fix="add a channel axis for gray images (x.unsqueeze(-3))" if value.dim() == dims - 1
                        else f"pass {shape} pixels")
    c, last = value.shape[-3], value.shape[-1]
    if c not in (1, 3) and last in (1, 3):
        raise DataError(f"{what} has shape {tuple(value.shape)}, which looks channels-last; robaudit takes {shape}",
                        fix="permute it to channels-first, e.g. x.permute(0, 3, 1, 2)" if batched
                        else "permute it to channels-first, e.g. x.permute(2, 0, 1)")
    return _check_values(value.detach().cpu(), what) if check_values else value


def _check_values(value: torch.Tensor, what: str) -> torch.Tensor:
    """``value`` if its pixels are finite and in [0, 1]."""
    if value.numel() and not bool(torch.isfinite(value).all()):
        raise DataError(f"{what} holds NaN or infinite values", fix="pass finite pixels in [0, 1]")
    if value.numel():
        low, high = float(value.min()), float(value.max())
        if low < 0 or high > 1:
            fix = ("divide by 255" if high > 1 and low >= 0 else
                   "pass unnormalised pixels in [0, 1] and give the model's normalisation with mean= and std=")
            raise DataError(f"{what} has values in [{low:.4g}, {high:.4g}]; robaudit takes pixels in [0, 1]", fix=fix)
    return value


def _labels(value: Any, what: str, n: int, *, single: bool = False) -> torch.Tensor:
    """``value`` as an int64 tensor of ``n`` class indices ≥ 0."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = torch.tensor([int(value)])
    elif isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise DataError(f"{what} is a {type(value).__name__}, not class indices", fix="pass integer class indices")
    if single and value.dim() == 0:
        value = value.reshape(1)
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise DataError(f"{what} has dtype {str(value.dtype).replace('torch.', '')}; labels are integer class indices",
                        fix="pass class indices, e.g. y.long() (not one-hot or probabilities)")
    if value.dim() != 1:
        raise DataError(f"{what} has shape {tuple(value.shape)}; labels are one class index per sample",
                        fix="pass a 1-D tensor of class indices (y.argmax(1) for one-hot labels)")
    if len(value) != n:
        raise DataError(f"{what} has {len(value)} labels for {n} images", fix="pass one label per image")
    value = value.detach().cpu().to(torch.int64)
    if len(value) and int(value.min()) < 0:
        raise DataError(f"{what} holds the negative label {int(value.min())}", fix="pass class indices 0 … K−1")
    return value


def _qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def live_dataset_info(samples: LiveSamples, convert_channels: str | None,
                      resize: tuple[int, int] | None) -> DatasetInfo:
    """What the audit data will be, for loading a model by name or path: K is the largest label + 1
    (in-memory data carries no class count), C and H×W after the requested conversions."""
    c, h, w = (int(s) for s in samples.x.shape[1:])
    size = (int(resize[0]), int(resize[1])) if resize is not None else (h, w)
    return DatasetInfo(MEMORY, samples.max_label + 1, conversions.delivered_channels(c, convert_channels), size,
                       stored_channels=c, stored_image_size=(h, w))
