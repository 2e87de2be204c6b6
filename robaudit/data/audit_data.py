"""The data contract: every dataset becomes an :class:`AuditData` of [0, 1] pixels with stable ids."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from robaudit.data.class_subset import ClassSubset


@dataclass
class DatasetInfo:
    """What is known about a dataset before its samples are read (cheap to compute).

    ``channels``, ``image_size``, ``mean`` and ``std`` describe the images as
    :func:`robaudit.data.load_data` delivers them for the request, i.e. after any requested
    ``--convert-channels`` / ``--resize``; ``stored_channels`` / ``stored_image_size``
    describe them as stored.

    Attributes:
        name: canonical name: ``digits``, ``cifar10``, ``cifar100``, ``mnist``,
            ``fashion-mnist``, ``svhn``, ``imagefolder``, ``imagenet``, ``imagenet-a``,
            ``imagenet-r``, ``tensors``.
        num_classes: K, the number of classes.
        channels: C of the delivered images, or ``None`` if unknown before reading.
        image_size: (H, W) of the delivered images, or ``None`` if not known before
            loading (image folders without ``--resize``: set by the model's data config).
        mean, std: the dataset's conventional per-channel normalisation, or ``None``
            (image folders, tensor files, and RGB converted to gray). Repeated three
            times when gray is converted to RGB.
        class_names: names of the K classes, when known.
        stored_channels: C of the stored images (image folders: 3, decoded as RGB).
        stored_image_size: (H, W) of the stored images, or ``None`` if variable.
    """

    name: str
    num_classes: int
    channels: int | None
    image_size: tuple[int, int] | None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    class_names: list[str] | None = None
    stored_channels: int | None = None
    stored_image_size: tuple[int, int] | None = None


@dataclass
class AuditData:
    """The audit samples, in memory.

    Attributes:
        x: N×C×H×W float32 pixels in [0, 1] (CPU).
        y: N int64 labels in [0, K).
        ids: N stable sample ids, ``"<split>:<index in the split>"`` (digits: the index
            into ``load_digits()``, see :mod:`robaudit.data.digits`), in ascending order.
        info: see :class:`DatasetInfo`.
        provenance: JSON-serialisable description for ``results.json`` under ``data``:
            source, path, split, samples available / requested / used, sampling method and
            seed, conversions applied, checksum status, images skipped.
        class_subset: the classes the model must be scored on (ImageNet-A/R: 200 of the
            1,000), applied by :func:`robaudit.data.class_subset.restrict_classes`; until then
            ``y`` holds indices into all K classes. ``None``: every class.
    """

    x: torch.Tensor
    y: torch.Tensor
    ids: list[str]
    info: DatasetInfo
    provenance: dict[str, Any] = field(default_factory=dict)
    class_subset: ClassSubset | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def content_keys(self) -> list[str]:
        """One key per sample from its pixels alone: the first 16 hex digits of the sha256 of its
        C×H×W float32 bytes. The same image gets the same key whatever its id, its source (a file or
        in-memory tensors) or its position, which is what the attacks' per-sample random streams are
        seeded from."""
        pixels = self.x.detach().to("cpu", torch.float32).contiguous().numpy()
        return [hashlib.sha256(pixels[i].tobytes()).hexdigest()[:16] for i in range(len(pixels))]

    def batches(self, batch_size: int) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
        """Yield ``(rows, x, y)`` per batch in sample order; ``rows`` indexes ``ids``."""
        n = len(self.ids)
        for start in range(0, n, batch_size):
            rows = slice(start, min(start + batch_size, n))
            yield rows, self.x[rows], self.y[rows]


def samples_sha256(x: torch.Tensor, y: torch.Tensor) -> str:
    """sha256 of samples: ``x`` (N×C×H×W) as float32 C-order bytes, then ``y`` (N) as int64 bytes, both
    little-endian. Recorded as ``data.samples_sha256``: in-memory data hashes the samples as given (before
    any conversion), a dataset read from disk the pixels as audited (after ``--convert-channels``/``--resize``);
    ``--resume`` compares it."""
    h = hashlib.sha256()
    h.update(x.detach().to(torch.float32).contiguous().numpy().astype("<f4", copy=False).tobytes())
    h.update(y.detach().to(torch.int64).contiguous().numpy().astype("<i8", copy=False).tobytes())
    return h.hexdigest()
