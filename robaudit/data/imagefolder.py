"""Folders of images, one sub-folder per class, read with torchvision's ``ImageFolder``.

Classes are the sub-folder names in sorted order (label = position); samples are in
``ImageFolder``'s sorted order, and a sample's id is its position in that list. Images
are decoded as RGB, safely (:mod:`robaudit.data.decoding`: a corrupt, truncated or huge
file is an error naming it, or with ``--skip-bad-images`` a recorded skip). Only the
selected samples are decoded.

Pixels are prepared for the model the way timm evaluates: with the model's
:class:`~robaudit.models.audit_model.DataConfig` giving an input size (H, W), each image is
resized to ``int(size / crop_pct)`` with the configured interpolation (the shorter side
when H == W) and centre-cropped to (H, W). An explicit ``--resize HxW`` resizes each
image to exactly (H, W) instead. Without either, all selected images must share one
size. No normalisation is applied: the audit model applies its own mean/std.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision import transforms as T
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes

from robaudit.data.decoding import BadImage, decode_rgb
from robaudit.errors import DataError
from robaudit.models.audit_model import DataConfig

logger = logging.getLogger(__name__)


@dataclass
class OpenedImageFolder:
    """An image folder whose file list (but no pixels) has been read.

    Attributes:
        root: the folder.
        dataset: torchvision's ``ImageFolder`` over it (no transform).
        labels: N int64 labels, in sample order.
        classes: the K class names (sorted sub-folder names).
    """

    root: Path
    dataset: ImageFolder
    labels: np.ndarray
    classes: list[str]


def folder_classes(root: Path) -> list[str]:
    """The class names (sorted sub-folder names) of image folder ``root``; reads no images."""
    _check_root(root)
    try:
        classes, _ = find_classes(root)
    except FileNotFoundError as exc:
        raise DataError(
            f"image folder {root} has no class sub-folders",
            fix=f"arrange the images as {root}/<class name>/<image file>",
        ) from exc
    return classes


def open_imagefolder(root: Path) -> OpenedImageFolder:
    """List the images of ``root``; raise :class:`DataError` if there are none."""
    folder_classes(root)  # clear errors for a missing folder or no class folders
    try:
        dataset = ImageFolder(str(root), allow_empty=True)
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"could not list image folder {root} ({exc})",
                        fix="check the folder given to --dataset") from exc
    if len(dataset.samples) == 0:
        raise DataError(
            f"image folder {root} has no images (looked for {', '.join(IMG_EXTENSIONS)} files in "
            f"{len(dataset.classes)} class sub-folders)",
            fix=f"put the images in {root}/<class name>/",
        )
    labels = np.asarray(dataset.targets, dtype=np.int64)
    return OpenedImageFolder(root, dataset, labels, list(dataset.classes))


def build_transform(
    data_config: DataConfig | None, resize: tuple[int, int] | None
) -> tuple[Callable[[object], torch.Tensor], list[str], bool]:
    """The PIL → C×H×W [0, 1] tensor transform for an image folder.

    Returns:
        (transform, descriptions of what it does, whether it yields one fixed size).
    """
    if resize is not None:
        h, w = resize
        transform = T.Compose(
            [T.Resize((h, w), interpolation=T.InterpolationMode.BILINEAR, antialias=True), T.ToTensor()]
        )
        return transform, [f"resize each image to {h}×{w} bilinear (antialias)"], True
    if data_config is not None and data_config.input_size is not None:
        _, h, w = data_config.input_size
        crop_pct = float(data_config.crop_pct)
        if not 0.0 < crop_pct <= 1.0:
            raise DataError(
                f"the model's crop_pct is {crop_pct}, outside (0, 1]",
                fix="fix crop_pct in the model's data config, or pass --resize N or HxW",
            )
        try:
            mode = T.InterpolationMode(data_config.interpolation)
        except ValueError as exc:
            choices = ", ".join(m.value for m in T.InterpolationMode)
            raise DataError(
                f"unknown interpolation {data_config.interpolation!r} in the model's data config (known: {choices})",
                fix="fix the interpolation in the model's data config, or pass --resize N or HxW",
            ) from exc
        if h == w:
            scale: int | tuple[int, int] = int(h / crop_pct)
            what = f"resize shorter side to {scale}"
        else:
            scale = (int(h / crop_pct), int(w / crop_pct))
            what = f"resize to {scale[0]}×{scale[1]}"
        transform = T.Compose([T.Resize(scale, interpolation=mode, antialias=True), T.CenterCrop((h, w)), T.ToTensor()])
        return transform, [f"{what} {mode.value}, centre crop {h}×{w} (crop_pct {crop_pct:g})"], True
    return T.ToTensor(), [], False


@dataclass
class DecodedImages:
    """The images decoded for a set of selected rows.

    Attributes:
        x: K×C×H×W float32 pixels in [0, 1], one per kept row.
        kept: positions (into the rows asked for) of the K images decoded, ascending.
        skipped: the images that could not be decoded (only with ``skip_bad``).
    """

    x: torch.Tensor
    kept: np.ndarray
    skipped: list[BadImage]


def load_images(
    paths: Sequence[str],
    transform: Callable[[object], torch.Tensor],
    fixed_size: bool,
    where: str,
    skip_bad: bool = False,
) -> DecodedImages:
    """Decode (safely, see :mod:`robaudit.data.decoding`) and transform the image files ``paths``.

    Args:
        paths: the files, in sample order.
        transform: PIL image → C×H×W float tensor in [0, 1] (:func:`build_transform`).
        fixed_size: whether ``transform`` yields one size; if not, all images must agree.
        where: the folder, for messages.
        skip_bad: skip files that cannot be decoded (returned in ``skipped``) instead of raising.

    Raises:
        DataError: an image cannot be decoded (without ``skip_bad``), none can (with it), or
            (without a fixed output size) the images differ in size.
    """
    images: list[torch.Tensor] = []
    kept: list[int] = []
    skipped: list[BadImage] = []
    first: tuple[str, tuple[int, ...]] | None = None
    for position, path in enumerate(paths):
        try:
            image = transform(decode_rgb(path))
        except BadImage as bad:
            if not skip_bad:
                raise DataError(
                    f"could not decode image {path}: {bad.reason}",
                    fix="remove or replace the file, or pass --skip-bad-images to skip such files (recorded)",
                ) from None
            logger.warning("skipped image %s: %s", path, bad.reason)
            skipped.append(bad)
            continue
        if not fixed_size:
            if first is None:
                first = (path, tuple(image.shape[-2:]))
            elif tuple(image.shape[-2:]) != first[1]:
                raise DataError(
                    f"images in {where} differ in size: {first[0]} is {first[1][0]}×{first[1][1]} but "
                    f"{path} is {image.shape[-2]}×{image.shape[-1]} (H×W), and the model gives no input size",
                    fix="pass --resize N or HxW to resize every image",
                )
        images.append(image)
        kept.append(position)
    if not images:
        raise DataError(
            f"none of the {len(paths)} selected images in {where} could be decoded (e.g. {skipped[0]})",
            fix="replace the files, or select other samples (--n-samples, --seed)",
        )
    return DecodedImages(torch.stack(images).to(torch.float32), np.asarray(kept, dtype=np.int64), skipped)


def _check_root(root: Path) -> None:
    if not root.exists():
        raise DataError(f"image folder {root} does not exist", fix="check the path after imagefolder:")
    if not root.is_dir():
        raise DataError(
            f"{root} is not a folder", fix="pass imagefolder:PATH with the folder holding the class sub-folders"
        )
