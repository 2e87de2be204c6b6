"""The one place that touches torchvision's dataset classes and their internals.

robaudit reads CIFAR-10, CIFAR-100, MNIST, Fashion-MNIST and SVHN through torchvision's
dataset classes, in torchvision's on-disk layout under the data directory, and takes their
raw arrays (``.data`` and ``.targets`` / ``.labels``) rather than going item by item.

Why subclasses. torchvision checks the MD5 of every CIFAR and SVHN file against the
official release and refuses anything else ("Dataset not found or corrupted"). An
auditor must be able to audit a re-encoded, filtered or test copy of a dataset, so the
subclasses below only check that the files are *present*; robaudit then computes the MD5
of every file it read and compares it with torchvision's official value itself, recording
``checksum_match`` (``True`` / ``False``; ``None`` when no reference exists) in the
provenance. A non-official file is therefore recorded, not refused. Only the files of the
requested split (plus CIFAR's metadata file) are required. For MNIST-style datasets
torchvision publishes checksums only for the ``.gz`` archives, so the extracted IDX files
are verified through their archive when it is still next to them (as ``--download``
leaves it); otherwise ``checksum_match`` is ``None``. MNIST's pre-2021 ``processed/*.pt``
cache is ignored: robaudit always reads the raw IDX files.

Why a pickle check. CIFAR's python files are pickles that torchvision unpickles; every
batch and metadata file is scanned with :func:`robaudit.data.safe_pickle.check_pickle_file`
before torchvision opens it, so a crafted data directory cannot run code.

Internals relied on (re-check them when upgrading torchvision; the tests exercise each):
``CIFAR10/CIFAR100.{base_folder, train_list, test_list, meta, url, _check_integrity}``,
``MNIST/FashionMNIST.{resources, raw_folder, processed_folder, _check_exists,
_check_legacy_exist}``, ``SVHN.{split_list, filename, _check_integrity}``, and the
``data`` / ``targets`` / ``labels`` attributes and their layouts (CIFAR N×H×W×C numpy,
MNIST N×H×W uint8 tensor, SVHN N×C×H×W numpy with digit 0 already mapped from 10 to 0).

Downloads. torchvision is passed ``download=True`` only when the user asked for it
(``--download``) *and* a file the split needs is missing; files already present are never
fetched again or replaced by robaudit (torchvision downloads whole archives, so fetching a
missing split can rewrite sibling files extracted from the same archive).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np
from torchvision.datasets import CIFAR10, CIFAR100, MNIST, SVHN, FashionMNIST

from robaudit.data.catalog import NAMED_DATASETS
from robaudit.data.safe_pickle import check_pickle_file
from robaudit.errors import DataError

logger = logging.getLogger(__name__)

# Exceptions torchvision / pickle / scipy raise on malformed files.
_READ_ERRORS = (
    OSError, ValueError, KeyError, IndexError, TypeError, RuntimeError, EOFError,
    AssertionError, pickle.UnpicklingError, NotImplementedError,
)  # fmt: skip


class _PresenceCIFAR10(CIFAR10):
    """CIFAR-10 that checks only that this split's files and the metadata file exist (and are safe)."""

    title = "CIFAR-10"

    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = [[name, None] for name, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}  # torchvision's _load_meta checks presence only when md5 is None

    def _check_integrity(self) -> bool:
        # torchvision calls this before unpickling anything (also right after a download),
        # so it is where every pickle this split needs is scanned.
        names = [n for n, _ in (self.train_list if self.train else self.test_list)] + [self.meta["filename"]]
        paths = [Path(self.root) / self.base_folder / n for n in names]
        if not all(p.is_file() for p in paths):
            return False
        for path in paths:
            check_pickle_file(path, f"{self.title} file")
        return True


class _PresenceCIFAR100(CIFAR100):
    """CIFAR-100 that checks only that this split's file and the metadata file exist (and are safe)."""

    title = "CIFAR-100"

    train_list = [[name, None] for name, _ in CIFAR100.train_list]
    test_list = [[name, None] for name, _ in CIFAR100.test_list]
    meta = {**CIFAR100.meta, "md5": None}

    _check_integrity = _PresenceCIFAR10._check_integrity


class _RawIdxMNIST(MNIST):
    """MNIST read from this split's raw IDX files only (no legacy ``processed/`` cache)."""

    folder_name = "MNIST"

    @property
    def raw_folder(self) -> str:
        return os.path.join(self.root, self.folder_name, "raw")

    @property
    def processed_folder(self) -> str:
        return os.path.join(self.root, self.folder_name, "processed")

    def _check_legacy_exist(self) -> bool:
        return False

    def _check_exists(self) -> bool:
        prefix = "train" if self.train else "t10k"
        names = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
        return all(os.path.isfile(os.path.join(self.raw_folder, n)) for n in names)

    def _load_data(self) -> Any:
        # torchvision's IDX reader meets a wrong magic number with a bare ``assert``.
        prefix = "train" if self.train else "t10k"
        _check_idx_magic(Path(self.raw_folder) / f"{prefix}-images-idx3-ubyte", _IDX_IMAGES_MAGIC)
        _check_idx_magic(Path(self.raw_folder) / f"{prefix}-labels-idx1-ubyte", _IDX_LABELS_MAGIC)
        return MNIST._load_data(self)  # shared by the Fashion-MNIST class below


# IDX magic numbers (big-endian): 0x0000, then 0x08 (unsigned bytes), then the number of dimensions.
_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801


def _check_idx_magic(path: Path, expected: int) -> None:
    """Raise :class:`DataError` unless the IDX file at ``path`` starts with the magic number ``expected``."""
    with open(path, "rb") as f:
        head = f.read(4)
    found = int.from_bytes(head, "big") if len(head) == 4 else None
    if found != expected:
        what = f"magic number 0x{found:08x}" if found is not None else f"only {len(head)} byte(s), no magic number"
        raise DataError(
            f"{path} is not an IDX file of this kind: it holds {what}; expected magic number 0x{expected:08x}",
            fix="replace it with the official file, e.g. delete it and pass --download",
        )


class _RawIdxFashionMNIST(FashionMNIST):
    """Fashion-MNIST read from this split's raw IDX files only."""

    folder_name = "FashionMNIST"
    raw_folder = _RawIdxMNIST.raw_folder
    processed_folder = _RawIdxMNIST.processed_folder
    _check_legacy_exist = _RawIdxMNIST._check_legacy_exist
    _check_exists = _RawIdxMNIST._check_exists
    _load_data = _RawIdxMNIST._load_data


class _PresenceSVHN(SVHN):
    """SVHN that checks only that this split's ``.mat`` file exists."""

    def _check_integrity(self) -> bool:
        return os.path.isfile(os.path.join(self.root, self.filename))


@dataclass
class NamedSplit:
    """One split of a named dataset, as stored.

    Attributes:
        images: N×C×H×W uint8 pixels 0–255.
        labels: N int64 labels.
        folder: the folder holding the dataset's files.
        files: one dict per file read: path, bytes, md5, official_md5, match (and for
            MNIST-style files the ``archive`` used to verify them).
        checksum_match: all files match the official release (``None``: no reference).
        checksum_note: why ``checksum_match`` is ``None``, if it is.
        downloaded: whether torchvision was asked to download.
    """

    images: np.ndarray
    labels: np.ndarray
    folder: Path
    files: list[dict[str, Any]] = field(default_factory=list)
    checksum_match: bool | None = None
    checksum_note: str | None = None
    downloaded: bool = False


def dataset_folder(name: str, data_dir: Path) -> Path:
    """The folder under ``data_dir`` where torchvision keeps dataset ``name``."""
    if name == "cifar10":
        return data_dir / CIFAR10.base_folder
    if name == "cifar100":
        return data_dir / CIFAR100.base_folder
    if name == "mnist":
        return data_dir / "MNIST" / "raw"
    if name == "fashion-mnist":
        return data_dir / "FashionMNIST" / "raw"
    if name == "svhn":
        return data_dir
    raise KeyError(name)


def expected_files(name: str, split: str, data_dir: Path) -> list[Path]:
    """Absolute paths of the files that split ``split`` of dataset ``name`` is read from."""
    folder = dataset_folder(name, data_dir)
    train = split == "train"
    if name in ("cifar10", "cifar100"):
        cls = CIFAR10 if name == "cifar10" else CIFAR100
        names = [n for n, _ in (cls.train_list if train else cls.test_list)] + [cls.meta["filename"]]
    elif name in ("mnist", "fashion-mnist"):
        prefix = "train" if train else "t10k"
        names = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
    elif name == "svhn":
        names = [SVHN.split_list[split][1]]
    else:
        raise KeyError(name)
    return [folder / n for n in names]


def read_split(name: str, split: str, data_dir: Path, download: bool) -> NamedSplit:
    """Read split ``split`` of named dataset ``name`` from ``data_dir`` through torchvision.

    Raises:
        DataError: files missing (naming each expected file), a download that failed,
            an unsafe pickle, or a file torchvision cannot parse.
    """
    spec = NAMED_DATASETS[name]
    folder = dataset_folder(name, data_dir)
    files = expected_files(name, split, data_dir)
    missing = [p for p in files if not p.is_file()]
    fetch = bool(missing) and download
    if missing and not download:
        raise DataError(
            f"{spec.title} {split} split not found in {folder}: missing " + ", ".join(str(p) for p in missing),
            fix=f"pass --data-dir DIR where DIR holds {_layout_hint(name)}, "
            f"or add --download to fetch {spec.title} into {data_dir}",
        )
    if fetch:
        logger.info("downloading %s into %s", spec.title, data_dir)
    if name in ("cifar10", "cifar100") and not fetch:
        # Also checked inside the subclasses' _check_integrity; checking here as well keeps
        # the guarantee independent of when torchvision calls that hook.
        for path in files:
            check_pickle_file(path, f"{spec.title} file")

    train = split == "train"
    try:
        if name == "cifar10":
            ds: Any = _PresenceCIFAR10(str(data_dir), train=train, download=fetch)
        elif name == "cifar100":
            ds = _PresenceCIFAR100(str(data_dir), train=train, download=fetch)
        elif name == "mnist":
            ds = _RawIdxMNIST(str(data_dir), train=train, download=fetch)
        elif name == "fashion-mnist":
            ds = _RawIdxFashionMNIST(str(data_dir), train=train, download=fetch)
        else:
            ds = _PresenceSVHN(str(data_dir), split=split, download=fetch)
    except URLError as exc:
        raise DataError(
            f"downloading {spec.title} into {data_dir} failed ({exc})",
            fix=f"check the network connection, or copy the files ({', '.join(p.name for p in files)}) "
            f"into {folder} by hand",
        ) from exc
    except DataError:
        raise
    except _READ_ERRORS as exc:
        if fetch and any(not p.is_file() for p in files):
            raise DataError(
                f"downloading {spec.title} into {data_dir} failed ({exc})",
                fix=f"check the network connection, or copy the files into {folder} by hand",
            ) from exc
        raise DataError(
            f"could not read the {spec.title} {split} files in {folder} ({type(exc).__name__}: {exc})",
            fix="replace them with the official files, e.g. delete them and pass --download",
        ) from exc

    try:
        images, labels = _raw_arrays(name, ds)
    except _READ_ERRORS as exc:
        raise DataError(
            f"the {spec.title} {split} files in {folder} do not hold images in the expected layout "
            f"({type(exc).__name__}: {exc})",
            fix="replace them with the official files, e.g. delete them and pass --download",
        ) from exc

    records, match, note = _checksums(name, files)
    return NamedSplit(images, labels, folder, records, match, note, downloaded=fetch)


def _raw_arrays(name: str, ds: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N×C×H×W uint8 images, N int64 labels) from a constructed torchvision dataset."""
    if name in ("cifar10", "cifar100"):
        images = np.asarray(ds.data).transpose(0, 3, 1, 2)  # torchvision stores N×H×W×C
        labels = np.asarray(ds.targets, dtype=np.int64).reshape(-1)
    elif name in ("mnist", "fashion-mnist"):
        images = ds.data.numpy()[:, None, :, :]
        labels = ds.targets.numpy().astype(np.int64).reshape(-1)
    else:
        images = np.asarray(ds.data)  # torchvision already transposed H×W×C×N to N×C×H×W
        labels = np.asarray(ds.labels, dtype=np.int64).reshape(-1)  # digit 0 already mapped 10 → 0
    if images.dtype != np.uint8:
        raise TypeError(f"pixels are {images.dtype}, expected uint8")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    return images, labels


def _official_md5(name: str, filename: str) -> str | None:
    """torchvision's MD5 of the official file ``filename`` of dataset ``name``."""
    if name in ("cifar10", "cifar100"):
        cls = CIFAR10 if name == "cifar10" else CIFAR100
        table = dict(cls.train_list + cls.test_list)
        table[cls.meta["filename"]] = cls.meta["md5"]
        return table.get(filename)
    if name == "svhn":
        return {entry[1]: entry[2] for entry in SVHN.split_list.values()}.get(filename)
    cls_m = MNIST if name == "mnist" else FashionMNIST
    return dict(cls_m.resources).get(filename)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _gunzip_md5(path: Path) -> str | None:
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except (OSError, EOFError):
        return None
    return digest.hexdigest()


def _checksums(name: str, files: list[Path]) -> tuple[list[dict[str, Any]], bool | None, str | None]:
    """Per-file MD5 records, whether all match the official release, and a note if unknown."""
    records: list[dict[str, Any]] = []
    for path in files:
        md5 = _md5(path)
        record: dict[str, Any] = {"path": str(path), "bytes": path.stat().st_size, "md5": md5}
        if name in ("mnist", "fashion-mnist"):
            archive = path.with_name(path.name + ".gz")
            official_gz = _official_md5(name, archive.name)
            record["official_md5"] = None
            if archive.is_file():
                gz_md5 = _md5(archive)
                record["archive"] = {"path": str(archive), "md5": gz_md5, "official_md5": official_gz}
                record["match"] = gz_md5 == official_gz and _gunzip_md5(archive) == md5
            else:
                record["archive"] = None
                record["match"] = None
        else:
            official = _official_md5(name, path.name)
            record["official_md5"] = official
            record["match"] = md5 == official
        records.append(record)
    matches = [r["match"] for r in records]
    if any(m is False for m in matches):
        return records, False, None
    if any(m is None for m in matches):
        note = (
            "torchvision publishes checksums only for the .gz archives, which are not next to the "
            "extracted files, so the files could not be verified"
        )
        return records, None, note
    return records, True, None


def _layout_hint(name: str) -> str:
    if name in ("cifar10", "cifar100"):
        return f"{dataset_folder(name, Path('.')).name}/"
    if name == "mnist":
        return "MNIST/raw/"
    if name == "fashion-mnist":
        return "FashionMNIST/raw/"
    return "the .mat files"
