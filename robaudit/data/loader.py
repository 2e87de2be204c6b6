"""The two entry points: :func:`describe_dataset` (cheap) and :func:`load_data` (pixels).

Every source is first opened as a split (labels and ids, pixels not yet converted); the
rows to audit are then chosen by :func:`robaudit.data.sampling.select_rows`, only those
rows are turned into float32 pixels in [0, 1], and the requested conversions are applied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robaudit.data import conversions
from robaudit.data.audit_data import AuditData, DatasetInfo, samples_sha256
from robaudit.data.catalog import DIGITS_SPEC, NAMED_DATASETS
from robaudit.data.class_subset import ClassSubset
from robaudit.data.digits import DIGITS_SPLIT_SEED, DIGITS_TEST_SIZE, digits_split
from robaudit.data.imagefolder import DecodedImages
from robaudit.data.request import DataRequest, ResolvedSource, validate_request
from robaudit.data.sampling import select_rows
from robaudit.errors import DataError, InternalError
from robaudit.models.audit_model import DataConfig

logger = logging.getLogger(__name__)

IMAGE_FILE_KINDS = ("imagefolder", "imagenet")


@dataclass
class _OpenSplit:
    """A split whose labels are known and whose pixels can be fetched by row.

    Attributes:
        what: human-readable description for messages (``"CIFAR-10 test split"``).
        labels: N int64 labels.
        index: N int64 sample indices used in the ids.
        fetch: rows → the K×C×H×W float32 pixels in [0, 1] (before conversions) of the rows
            it could read, as :class:`DecodedImages` (image sources may skip bad files).
        num_classes: K.
        class_names: K names, or ``None``.
        channels: C of the stored images.
        image_size: (H, W) of the stored images, or ``None`` if variable.
        mean, std: conventional normalisation of the stored images, or ``None``.
        conversions: descriptions of transforms ``fetch`` itself applies.
        label_fix: how to fix out-of-range labels.
        provenance: source-specific provenance entries.
        class_subset: the classes to score the model on (ImageNet-A/R), else ``None``.
    """

    what: str
    labels: np.ndarray
    index: np.ndarray
    fetch: Callable[[np.ndarray], DecodedImages]
    num_classes: int
    class_names: list[str] | None
    channels: int
    image_size: tuple[int, int] | None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    conversions: list[str] = field(default_factory=list)
    label_fix: str = "replace the files with the official ones"
    provenance: dict[str, Any] = field(default_factory=dict)
    class_subset: ClassSubset | None = None


def describe_dataset(request: DataRequest) -> DatasetInfo:
    """What :func:`load_data` will deliver for ``request``, without reading pixels.

    Named datasets and digits are described from static facts (no file is opened);
    image folders from their sub-folder names; tensor files from their labels and the
    shape of ``x``. Channels, image size and mean/std describe the data after the
    requested ``convert_channels`` / ``resize``; ``image_size`` is ``None`` for image
    folders without ``resize`` (it then depends on the model's data config).

    Raises:
        DataError: the request is invalid or names a source that cannot be described.
    """
    source = validate_request(request)
    if source.kind in ("digits", "named"):
        spec = DIGITS_SPEC if source.kind == "digits" else NAMED_DATASETS[source.name]
        stored = _StoredFacts(
            spec.num_classes, spec.channels, spec.image_size, spec.mean, spec.std, list(spec.class_names)
        )
    elif source.kind == "imagefolder":
        from robaudit.data.imagefolder import folder_classes

        classes = folder_classes(_path(source))
        stored = _StoredFacts(len(classes), 3, None, None, None, classes)
    elif source.kind == "imagenet":
        from robaudit.data.imagenet import imagenet_class_names, open_imagenet

        open_imagenet(_path(source), _variant(source))  # layout and ground-truth errors before the model loads
        names = list(imagenet_class_names())
        stored = _StoredFacts(len(names), 3, None, None, None, names)
    else:
        from robaudit.data.tensor_files import describe_tensor_file

        header = describe_tensor_file(_path(source))
        _, c, h, w = header.shape
        stored = _StoredFacts(header.num_classes, c, (h, w), None, None, header.class_names)
    size = (int(request.resize[0]), int(request.resize[1])) if request.resize is not None else stored.image_size
    return _make_info(source.name, stored, request.convert_channels, size)


def load_data(
    request: DataRequest, model_channels: int | None = None, data_config: DataConfig | None = None
) -> AuditData:
    """Load the audit samples described by ``request``.

    Args:
        request: which dataset, split, subsample and conversions.
        model_channels: C the model expects; a mismatch not resolved by
            ``request.convert_channels`` is an error. ``None`` skips the check.
        data_config: the model's expected input; for image folders it sets the resize and
            centre crop (see :mod:`robaudit.data.imagefolder`). For other sources a size
            different from its ``input_size`` is recorded as a warning, not changed.

    Returns:
        :class:`AuditData` with ``x`` N×C×H×W float32 in [0, 1] on the CPU, ``y`` N int64,
        ids ``"<split>:<index>"`` in ascending index order, and the provenance.

    Raises:
        DataError: any invalid request or input; the message says what and how to fix it.
    """
    source = validate_request(request)
    opened = _open(source, request, data_config)
    n_available = len(opened.labels)
    if n_available == 0:
        raise DataError(f"the {opened.what} has no samples", fix="use a dataset or split that holds samples")
    _check_label_range(opened)
    conversions.check_channels(opened.channels, request.convert_channels, model_channels, f"the {opened.what}")

    selection = select_rows(opened.labels, request.n_samples, request.seed)
    fetched = opened.fetch(selection.rows)
    rows, x = selection.rows[fetched.kept], fetched.x
    applied = list(opened.conversions)
    resize_now = request.resize if source.kind not in IMAGE_FILE_KINDS else None  # image files resize while decoding
    if request.convert_channels == "rgb":
        x, done = conversions.resize(x, resize_now)
        applied += done
        x, done = conversions.convert_channels(x, "rgb")
        applied += done
    else:
        x, done = conversions.convert_channels(x, request.convert_channels)
        applied += done
        x, done = conversions.resize(x, resize_now)
        applied += done
    x = x.to(torch.float32).contiguous()
    y = torch.from_numpy(opened.labels[rows].astype(np.int64))
    ids = [f"{request.split}:{int(i)}" for i in opened.index[rows]]

    warnings: list[str] = []
    # Only the config of pretrained weights says what size the weights were trained at.
    if data_config is not None and data_config.input_size is not None and data_config.source == "pretrained":
        want = tuple(data_config.input_size[1:])
        if tuple(x.shape[-2:]) != want:
            msg = (
                f"images are {x.shape[-2]}×{x.shape[-1]} but the model's data config expects "
                f"{want[0]}×{want[1]}; pass --resize {want[0] if want[0] == want[1] else f'{want[0]}x{want[1]}'} to match"
            )
            logger.warning("%s", msg)
            warnings.append(msg)
    if selection.note and selection.method == "all":
        warnings.append(selection.note)
    if fetched.skipped:
        warnings.append(f"skipped {len(fetched.skipped)} of {len(selection.rows)} selected images that could not be "
                        "decoded (--skip-bad-images); see skipped_images")

    stored = _StoredFacts(
        opened.num_classes, opened.channels, opened.image_size, opened.mean, opened.std, opened.class_names
    )
    info = _make_info(source.name, stored, request.convert_channels, (int(x.shape[-2]), int(x.shape[-1])))
    provenance: dict[str, Any] = {
        "source": request.source,
        "name": source.name,
        "path": str(source.path) if source.path is not None else None,
        "split": request.split,
        "n_available": n_available,
        "n_requested": request.n_samples,
        "n_used": len(ids),
        "sampling": selection.to_json(),
        "class_counts": np.bincount(opened.labels[rows], minlength=opened.num_classes).tolist(),
        "conversions": applied,
        "stored": {"channels": opened.channels, "image_size": list(opened.image_size) if opened.image_size else None},
        "samples_sha256": samples_sha256(x, y),
        "checksum_match": None,
        "files": [],
        "warnings": warnings,
        "skipped_images": [bad.to_json() for bad in fetched.skipped],
    }
    provenance.update(opened.provenance)
    logger.info(
        "loaded %s: %d of %d samples (%s, seed %d)",
        opened.what,
        len(ids),
        n_available,
        selection.method,
        selection.seed,
    )
    return AuditData(x=x, y=y, ids=ids, info=info, provenance=provenance, class_subset=opened.class_subset)


@dataclass
class _StoredFacts:
    num_classes: int
    channels: int | None
    image_size: tuple[int, int] | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    class_names: list[str] | None


def _make_info(name: str, stored: _StoredFacts, convert: str | None, image_size: tuple[int, int] | None) -> DatasetInfo:
    mean, std = conversions.converted_mean_std(stored.mean, stored.std, stored.channels, convert)
    return DatasetInfo(
        name=name,
        num_classes=stored.num_classes,
        channels=conversions.delivered_channels(stored.channels, convert),
        image_size=image_size,
        mean=mean,
        std=std,
        class_names=stored.class_names,
        stored_channels=stored.channels,
        stored_image_size=stored.image_size,
    )


def _open(source: ResolvedSource, request: DataRequest, data_config: DataConfig | None) -> _OpenSplit:
    if source.kind == "digits":
        return _open_digits(request.split)
    if source.kind == "named":
        return _open_named(source, request)
    if source.kind == "imagefolder":
        return _open_imagefolder(source, request, data_config)
    if source.kind == "imagenet":
        return _open_imagenet(source, request, data_config)
    return _open_tensors(source)


def _open_digits(split: str) -> _OpenSplit:
    x, y, index = digits_split(split)
    spec = DIGITS_SPEC
    return _OpenSplit(
        what=f"digits {split} split",
        labels=y,
        index=index,
        fetch=lambda rows: _every_row(torch.from_numpy(np.ascontiguousarray(x[rows]))),
        num_classes=spec.num_classes,
        class_names=list(spec.class_names),
        channels=spec.channels,
        image_size=spec.image_size,
        mean=spec.mean,
        std=spec.std,
        label_fix="report this as a bug: the bundled digits are fixed",
        provenance={
            "path": None,
            "split_definition": (
                f"sklearn.datasets.load_digits(), train_test_split(test_size={DIGITS_TEST_SIZE}, "
                f"stratify=y, random_state={DIGITS_SPLIT_SEED}); ids index load_digits()"
            ),
        },
    )


def _open_named(source: ResolvedSource, request: DataRequest) -> _OpenSplit:
    from robaudit.data.torchvision_adapter import read_split

    spec = NAMED_DATASETS[source.name]
    raw = read_split(source.name, request.split, _path(source), request.download)
    images = raw.images
    extra: dict[str, Any] = {
        "path": str(raw.folder),
        "data_dir": str(source.path),
        "checksum_match": raw.checksum_match,
        "files": raw.files,
        "downloaded": raw.downloaded,
    }
    if raw.checksum_note:
        extra["checksum_note"] = raw.checksum_note
    if raw.checksum_match is False:
        logger.warning("%s files differ from the official release (recorded as checksum_match: false)", spec.title)
    return _OpenSplit(
        what=f"{spec.title} {request.split} split",
        labels=raw.labels,
        index=np.arange(len(raw.labels), dtype=np.int64),
        fetch=lambda rows: _every_row(_uint8_to_unit(images[rows])),
        num_classes=spec.num_classes,
        class_names=list(spec.class_names),
        channels=int(images.shape[1]),
        image_size=(int(images.shape[2]), int(images.shape[3])),
        mean=spec.mean,
        std=spec.std,
        provenance=extra,
    )


def _open_imagefolder(source: ResolvedSource, request: DataRequest, data_config: DataConfig | None) -> _OpenSplit:
    from robaudit.data.imagefolder import build_transform, load_images, open_imagefolder

    opened = open_imagefolder(_path(source))
    transform, described, fixed = build_transform(data_config, request.resize)
    paths = [path for path, _ in opened.dataset.samples]
    return _OpenSplit(
        what=f"image folder {source.path}",
        labels=opened.labels,
        index=np.arange(len(opened.labels), dtype=np.int64),
        fetch=lambda rows: load_images([paths[r] for r in rows.tolist()], transform, fixed, str(source.path),
                                       request.skip_bad_images),
        num_classes=len(opened.classes),
        class_names=opened.classes,
        channels=3,
        image_size=None,
        conversions=described,
        provenance={"files": [{"path": str(source.path), "images_listed": len(opened.labels)}]},
    )


def _open_imagenet(source: ResolvedSource, request: DataRequest, data_config: DataConfig | None) -> _OpenSplit:
    from robaudit.data.imagefolder import build_transform, load_images
    from robaudit.data.imagenet import imagenet_class_names, open_imagenet

    listing = open_imagenet(_path(source), _variant(source))
    transform, described, fixed = build_transform(data_config, request.resize)
    paths = listing.paths
    if listing.class_subset is not None:
        logger.info("%s: scoring on the logits of its %d classes only (%s restriction)", source.path,
                    len(listing.class_subset.columns), listing.class_subset.name)
    return _OpenSplit(
        what=f"ImageNet set {listing.root}",
        labels=listing.labels,
        index=listing.index,
        fetch=lambda rows: load_images([paths[r] for r in rows.tolist()], transform, fixed, str(listing.root),
                                       request.skip_bad_images),
        num_classes=len(imagenet_class_names()),
        class_names=list(imagenet_class_names()),
        channels=3,
        image_size=None,
        conversions=described,
        label_fix="use ImageNet-1k synsets",
        provenance={
            "path": str(listing.root),
            "layout": listing.layout,
            "ground_truth": listing.ground_truth,
            "label_source": "timm.data.ImageNetInfo (ImageNet-1k synsets in class-index order)",
            "files": [{"path": str(listing.root), "images_listed": len(paths)}],
        },
        class_subset=listing.class_subset,
    )


def _variant(source: ResolvedSource) -> str | None:
    return None if source.name == "imagenet" else source.name


def _every_row(x: torch.Tensor) -> DecodedImages:
    return DecodedImages(x, np.arange(len(x), dtype=np.int64), [])


def _open_tensors(source: ResolvedSource) -> _OpenSplit:
    from robaudit.data.tensor_files import read_tensor_file

    contents = read_tensor_file(_path(source))
    x = contents.x

    def fetch(rows: np.ndarray) -> DecodedImages:
        picked = x.take(rows)
        return _every_row(_uint8_to_unit(picked) if picked.dtype == torch.uint8 else picked.to(torch.float32))

    return _OpenSplit(
        what=f"tensor file {source.path}",
        labels=contents.y,
        index=np.arange(len(contents.y), dtype=np.int64),
        fetch=fetch,
        num_classes=contents.num_classes,
        class_names=contents.class_names,
        channels=int(x.shape[1]),
        image_size=(int(x.shape[2]), int(x.shape[3])),
        label_fix="store labels as class indices 0 … K−1 (and num_classes = K if some classes are absent)",
        provenance={"files": [contents.record]},
    )


def _path(source: ResolvedSource) -> Path:
    if source.path is None:
        raise InternalError(f"source {source.name!r} has no path")
    return source.path


def _uint8_to_unit(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 0–255 → float32 in [0, 1] (exactly ``float32(v) / 255``)."""
    t = pixels if isinstance(pixels, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(pixels))
    return t.to(torch.float32).div_(255.0)


def _check_label_range(opened: _OpenSplit) -> None:
    labels, k = opened.labels, opened.num_classes
    bad = np.flatnonzero((labels < 0) | (labels >= k))
    if len(bad):
        first = int(bad[0])
        raise DataError(
            f"the {opened.what} has {len(bad)} labels outside [0, {k}): e.g. {int(labels[first])} "
            f"at index {int(opened.index[first])}",
            fix=opened.label_fix,
        )
