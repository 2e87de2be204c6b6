"""What the user asked for (:class:`DataRequest`) and its validation into a :class:`ResolvedSource`.

Nothing here reads pixels; it only checks the request and works out which kind of
source it names and where that source lives on disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from robaudit.data.catalog import NAMED_DATASETS
from robaudit.data.sampling import ALL, NSamples
from robaudit.errors import DataError, did_you_mean

SPLITS = ("test", "train")
CHANNEL_CONVERSIONS = ("rgb", "gray")
TENSOR_SUFFIXES = (".npz", ".pt")
IMAGEFOLDER_PREFIX = "imagefolder:"
# prefix → (kind, canonical name) of the sources that name a folder
FOLDER_PREFIXES = {
    IMAGEFOLDER_PREFIX: ("imagefolder", "imagefolder"),
    "imagenet:": ("imagenet", "imagenet"),
    "imagenet-a:": ("imagenet", "imagenet-a"),
    "imagenet-r:": ("imagenet", "imagenet-r"),
}
SOURCE_FORMS = (
    "digits, cifar10, cifar100, mnist, fashion-mnist, svhn, imagefolder:PATH, imagenet:PATH, imagenet-a:PATH, "
    "imagenet-r:PATH, or a path to a .npz / .pt file"
)


@dataclass
class DataRequest:
    """Which samples to audit, as given on the command line.

    Attributes:
        source: ``digits``, ``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``,
            ``svhn``, ``imagefolder:PATH``, ``imagenet:PATH``, ``imagenet-a:PATH``,
            ``imagenet-r:PATH``, or a path to a ``.npz`` / ``.pt`` file.
        data_dir: root holding the named torchvision datasets; ``None`` means
            ``$ROBAUDIT_DATA_DIR``, else ``$XDG_CACHE_HOME/robaudit/data``, else
            ``~/.cache/robaudit/data``.
        download: allow torchvision to download a named dataset whose files are missing.
        split: ``test`` or ``train``. Image folders and tensor files hold one set of
            samples; for them the split only names the sample ids.
        n_samples: number of samples to audit (stratified, seeded subsample); ``"all"``:
            every sample; ``None``: the default budget (every sample of a split of at most
            1,000, else a stratified 1,000; see :mod:`robaudit.data.sampling`).
        seed: seed of the subsample.
        convert_channels: ``None``, ``"rgb"`` (repeat a gray channel three times) or
            ``"gray"`` (RGB → ITU-R 601 luma).
        resize: explicit (H, W) in pixels to resize every image to (bilinear, antialiased).
        skip_bad_images: image files that cannot be decoded safely (corrupt, truncated,
            decompression bombs) are skipped and recorded instead of raising.
    """

    source: str
    data_dir: Path | None = None
    download: bool = False
    split: str = "test"
    n_samples: NSamples = None
    seed: int = 0
    convert_channels: str | None = None
    resize: tuple[int, int] | None = None
    skip_bad_images: bool = False


@dataclass(frozen=True)
class ResolvedSource:
    """A validated source.

    Attributes:
        kind: ``digits``, ``named`` (a torchvision dataset), ``imagefolder``, ``imagenet`` or ``tensors``.
        name: canonical dataset name (``cifar10`` …, ``digits``, ``imagefolder``, ``imagenet``,
            ``imagenet-a``, ``imagenet-r``, ``tensors``).
        path: the data root (named datasets), the folder (image folders, ImageNet sets), the
            file (tensor files), all absolute; ``None`` for digits.
    """

    kind: str
    name: str
    path: Path | None


def default_data_dir() -> Path:
    """The root for named datasets when ``--data-dir`` is not given (see :class:`DataRequest`)."""
    explicit = os.environ.get("ROBAUDIT_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "robaudit" / "data"
    return Path.home() / ".cache" / "robaudit" / "data"


def validate_request(request: DataRequest) -> ResolvedSource:
    """Check every field of ``request`` and resolve its source; raise :class:`DataError` if bad."""
    _check_split(request.split)
    _check_n_samples(request.n_samples)
    if isinstance(request.seed, bool) or not isinstance(request.seed, int):
        raise DataError(
            f"the sampling seed must be an integer, got {request.seed!r}", fix="pass --seed with an integer"
        )
    if request.convert_channels is not None and request.convert_channels not in CHANNEL_CONVERSIONS:
        hint = did_you_mean(str(request.convert_channels), CHANNEL_CONVERSIONS)
        raise DataError(
            f"unknown channel conversion {request.convert_channels!r}" + (f"; {hint}" if hint else ""),
            fix="use --convert-channels rgb (gray → RGB) or --convert-channels gray (RGB → gray)",
        )
    _check_resize(request.resize)
    return resolve_source(request)


def resolve_source(request: DataRequest) -> ResolvedSource:
    """Work out which kind of source ``request.source`` names (no pixels are read)."""
    source = request.source.strip() if isinstance(request.source, str) else ""
    if not source:
        raise DataError("no dataset given", fix=f"pass --dataset with one of: {SOURCE_FORMS}")
    for prefix, (kind, name) in FOLDER_PREFIXES.items():
        if source.lower().startswith(prefix):
            raw = source[len(prefix) :]
            if not raw:
                raise DataError(f"{prefix} needs a folder path", fix=f"pass --dataset {prefix}PATH/TO/FOLDER")
            return ResolvedSource(kind, name, Path(raw).expanduser().resolve())
    lowered = source.lower()
    if lowered == "digits":
        return ResolvedSource("digits", "digits", None)
    if lowered in NAMED_DATASETS:
        data_dir = request.data_dir if request.data_dir is not None else default_data_dir()
        return ResolvedSource("named", lowered, Path(data_dir).expanduser().resolve())
    path = Path(source).expanduser()
    if path.suffix.lower() in TENSOR_SUFFIXES:
        if not path.is_file():
            raise DataError(
                f"tensor file {path.resolve()} does not exist",
                fix="check the path given to --dataset",
            )
        return ResolvedSource("tensors", "tensors", path.resolve())
    if path.is_dir():
        raise DataError(
            f"{path.resolve()} is a folder; folders of images are read as image folders",
            fix=f"pass --dataset imagefolder:{source}",
        )
    folder_prefix = f"{lowered}:"
    if folder_prefix in FOLDER_PREFIXES:
        raise DataError(f"{source} needs a folder path", fix=f"pass --dataset {folder_prefix}PATH/TO/FOLDER")
    hint = did_you_mean(lowered, ["digits", *NAMED_DATASETS])
    raise DataError(
        f"unknown dataset {source!r}" + (f"; {hint}" if hint else ""),
        fix=f"pass --dataset with one of: {SOURCE_FORMS}",
    )


def _check_split(split: str) -> None:
    if split not in SPLITS:
        hint = did_you_mean(str(split), SPLITS)
        raise DataError(
            f"unknown split {split!r}" + (f"; {hint}" if hint else "") + " (robaudit reads only 'test' and 'train')",
            fix="pass --split test or --split train",
        )


def _check_n_samples(n_samples: NSamples) -> None:
    if n_samples is None or n_samples == ALL:
        return
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise DataError(
            f"the number of samples must be 'all' or a positive integer, got {n_samples!r}",
            fix="pass --n-samples with an integer ≥ 1, or --n-samples all to audit every sample",
        )


def _check_resize(resize: tuple[int, int] | None) -> None:
    if resize is None:
        return
    ok = (
        isinstance(resize, (tuple, list))
        and len(resize) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in resize)
    )
    if not ok:
        raise DataError(
            f"the resize target must be two positive integers (H, W), got {resize!r}",
            fix="pass --resize N or HxW, e.g. --resize 32 or --resize 32x48",
        )
