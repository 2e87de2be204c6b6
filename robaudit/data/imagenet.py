"""ImageNet-style evaluation sets: ``imagenet:PATH``, ``imagenet-a:PATH``, ``imagenet-r:PATH``.

Labels are the 1,000-class ImageNet-1k indices, through the synset list timm ships
(``timm.data.ImageNetInfo``): a folder holding any subset of the classes keeps their true
indices, and class names come from the same list. Three layouts are read:

* **synset folders** ``PATH/n01440764/*.JPEG`` (torchvision's ``ImageNet`` ``val/``
  folder, ImageNet-A, ImageNet-R, any subset of the 1,000 classes). Sample ids are
  positions in the sorted (synset, file) list, as for image folders.
* **the flat validation folder** ``PATH/ILSVRC2012_val_00000001.JPEG …`` with the
  devkit's ground truth: ``data/meta.mat`` and ``data/ILSVRC2012_validation_ground_truth.txt``
  of an extracted ``ILSVRC2012_devkit_t12``, found in ``PATH``, ``PATH/data``,
  ``PATH/ILSVRC2012_devkit_t12/data`` or next to ``PATH``. ``meta.mat`` is parsed as
  torchvision's ``parse_devkit_archive`` parses it (leaf synsets: ILSVRC2012_ID → WNID).
* **Kaggle's layout:** the same flat files (``PATH`` or ``PATH/ILSVRC/Data/CLS-LOC/val``)
  with ``LOC_val_solution.csv`` (``ImageId,PredictionString``; the first token is the
  synset) in ``PATH`` or up to four folders above it.

For the flat layouts a sample's id is its validation number (``ILSVRC2012_val_00000042``
→ ``test:42``). The devkit wins when both ground truths are present.

**The 200-class variants.** ImageNet-A and ImageNet-R score a 1,000-class model on the
logits of their 200 classes only (Hendrycks et al.'s ``indices_in_1k``). ``imagenet-a:PATH``
and ``imagenet-r:PATH`` name the benchmark: the folders must be synsets of its 200 classes
(any subset of them), and the restriction is to all 200, as the benchmark defines it.
``imagenet:PATH`` recognises a variant when its synset folders are exactly the
benchmark's 200. The restriction itself is :mod:`robaudit.data.class_subset`.
"""

from __future__ import annotations

import csv
import pkgutil
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from robaudit.data.class_subset import ClassSubset
from robaudit.errors import DataError

VARIANTS = ("imagenet-a", "imagenet-r")
VARIANT_SYNSET_FILES = {"imagenet-a": "imagenet_a_synsets.txt", "imagenet-r": "imagenet_r_synsets.txt"}
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
SYNSET = re.compile(r"n\d{8}")
VAL_FILE = re.compile(r"ILSVRC2012_val_(\d{8})", re.IGNORECASE)
DEVKIT_META = "meta.mat"
DEVKIT_GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
KAGGLE_SOLUTION = "LOC_val_solution.csv"
KAGGLE_VAL = Path("ILSVRC") / "Data" / "CLS-LOC" / "val"
LAYOUTS_FIX = (
    "arrange PATH as synset folders (PATH/n01440764/…), or as the flat ILSVRC2012_val_*.JPEG files with the "
    f"extracted devkit (ILSVRC2012_devkit_t12/data/{DEVKIT_META} and {DEVKIT_GROUND_TRUTH}) or Kaggle's "
    f"{KAGGLE_SOLUTION}"
)


@dataclass
class ImageNetListing:
    """The files and labels of an ImageNet-style set; no pixels read.

    Attributes:
        root: the folder holding the images.
        layout: ``synset_folders``, ``devkit`` or ``loc_val_solution``.
        paths: N image files, in sample order.
        labels: N int64 ImageNet-1k indices.
        index: N int64 sample indices for the ids.
        ground_truth: the ground-truth files read (flat layouts), else empty.
        class_subset: the 200-class restriction of a variant, or ``None``.
    """

    root: Path
    layout: str
    paths: list[str]
    labels: np.ndarray
    index: np.ndarray
    ground_truth: list[str]
    class_subset: ClassSubset | None


@lru_cache(maxsize=1)
def imagenet_synsets() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k synsets in class-index order (timm's ``ImageNetInfo``)."""
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo().label_names())


@lru_cache(maxsize=1)
def imagenet_synset_index() -> dict[str, int]:
    """Each ImageNet-1k synset's class index (the position in :func:`imagenet_synsets`)."""
    return {s: i for i, s in enumerate(imagenet_synsets())}


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1,000 class descriptions in class-index order (``ImageNetInfo().index_to_description``)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))


@lru_cache(maxsize=None)
def variant_synsets(variant: str) -> tuple[str, ...]:
    """The 200 synsets of ``imagenet-a`` or ``imagenet-r``, as timm ships them."""
    raw = pkgutil.get_data("timm.data", f"_info/{VARIANT_SYNSET_FILES[variant]}")
    if raw is None:  # pragma: no cover - timm always ships these files
        raise DataError(f"timm does not ship the {variant} synset list", fix="install timm ≥ 0.9")
    return tuple(line.strip() for line in raw.decode("utf-8").splitlines() if line.strip())


def variant_subset(variant: str) -> ClassSubset:
    """The restriction of a 1,000-class model to the 200 classes of ``variant``."""
    index = imagenet_synset_index()
    columns = sorted(index[s] for s in variant_synsets(variant))
    names = imagenet_class_names()
    return ClassSubset(variant, tuple(columns), tuple(imagenet_synsets()[c] for c in columns),
                       tuple(names[c] for c in columns))


def open_imagenet(root: Path, variant: str | None) -> ImageNetListing:
    """List an ImageNet-style set at ``root`` (see the module docstring for the layouts).

    Args:
        root: the folder.
        variant: ``None`` (``imagenet:``), ``imagenet-a`` or ``imagenet-r``.

    Raises:
        DataError: the folder is missing, in no known layout, names unknown synsets, or its
            ground truth is missing, unreadable or does not cover every image.
    """
    if not root.is_dir():
        raise DataError(f"ImageNet folder {root} does not exist or is not a folder",
                        fix="check the path after imagenet:")
    subdirs = sorted(p.name for p in root.iterdir() if p.is_dir())
    synset_dirs = [d for d in subdirs if SYNSET.fullmatch(d)]
    if synset_dirs:
        listing = _open_synset_folders(root, subdirs, synset_dirs)
    elif variant is not None:
        raise DataError(f"{variant} folder {root} has no synset sub-folders (n01440764/ …)",
                        fix=f"pass the folder holding {variant}'s synset folders")
    else:
        listing = _open_flat(root)
    listing.class_subset = _variant_for(listing, variant)
    return listing


def _variant_for(listing: ImageNetListing, variant: str | None) -> ClassSubset | None:
    present = {imagenet_synsets()[int(k)] for k in np.unique(listing.labels)}
    if variant is not None:
        outside = sorted(present - set(variant_synsets(variant)))
        if outside:
            raise DataError(
                f"{listing.root} holds {len(outside)} synset folders that are not among {variant}'s 200 classes "
                f"(e.g. {', '.join(outside[:3])})",
                fix=f"remove them, or pass imagenet:{listing.root} to score on all 1,000 logits",
            )
        return variant_subset(variant)
    if listing.layout == "synset_folders":
        for name in VARIANTS:
            if present == set(variant_synsets(name)):
                return variant_subset(name)
    return None


def _open_synset_folders(root: Path, subdirs: list[str], synset_dirs: list[str]) -> ImageNetListing:
    from torchvision.datasets.folder import make_dataset

    others = [d for d in subdirs if d not in synset_dirs]
    if others:
        raise DataError(f"ImageNet folder {root} mixes synset folders with other folders ({', '.join(others[:3])})",
                        fix="keep only the synset folders (n01440764/ …) in it")
    index = imagenet_synset_index()
    unknown = [d for d in synset_dirs if d not in index]
    if unknown:
        raise DataError(f"{len(unknown)} synset folders in {root} are not ImageNet-1k classes "
                        f"(e.g. {', '.join(unknown[:3])})",
                        fix="keep only folders named for ImageNet-1k synsets (timm.data.ImageNetInfo)")
    class_to_idx = {s: index[s] for s in synset_dirs}
    samples = make_dataset(str(root), class_to_idx, extensions=IMAGE_SUFFIXES, allow_empty=True)
    if not samples:
        raise DataError(f"the synset folders in {root} hold no images ({', '.join(IMAGE_SUFFIXES)})",
                        fix="put the images in PATH/<synset>/")
    paths = [p for p, _ in samples]
    labels = np.asarray([k for _, k in samples], dtype=np.int64)
    return ImageNetListing(root, "synset_folders", paths, labels, np.arange(len(paths), dtype=np.int64), [], None)


def _open_flat(root: Path) -> ImageNetListing:
    folder = root / KAGGLE_VAL if (root / KAGGLE_VAL).is_dir() else root
    numbered: dict[int, Path] = {}
    for path in folder.iterdir():
        match = VAL_FILE.match(path.name)
        if match and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            numbered[int(match.group(1))] = path
    if not numbered:
        raise DataError(f"{root} holds neither synset folders nor ILSVRC2012_val_*.JPEG files", fix=LAYOUTS_FIX)
    numbers = sorted(numbered)
    devkit = _find_devkit(folder)
    if devkit is not None:
        wnid_of = _devkit_labels(devkit)
        layout, ground_truth = "devkit", [str(devkit / DEVKIT_META), str(devkit / DEVKIT_GROUND_TRUTH)]
    else:
        solution = _find_solution(folder)
        if solution is None:
            raise DataError(
                f"{folder} holds {len(numbered)} ILSVRC2012_val_*.JPEG files but no ground truth",
                fix=f"put the extracted devkit (ILSVRC2012_devkit_t12/data/{DEVKIT_META} and {DEVKIT_GROUND_TRUTH}) "
                    f"or Kaggle's {KAGGLE_SOLUTION} in {folder}",
            )
        wnid_of = _solution_labels(solution)
        layout, ground_truth = "loc_val_solution", [str(solution)]
    index = imagenet_synset_index()
    missing = [n for n in numbers if n not in wnid_of]
    if missing:
        raise DataError(f"the ground truth {ground_truth[-1]} has no label for {len(missing)} images "
                        f"(e.g. {numbered[missing[0]].name})",
                        fix="use the ground truth of the ILSVRC2012 validation set these images come from")
    unknown = sorted({wnid_of[n] for n in numbers} - set(index))
    if unknown:
        raise DataError(f"the ground truth {ground_truth[-1]} names synsets that are not ImageNet-1k classes "
                        f"(e.g. {', '.join(unknown[:3])})", fix="use the ILSVRC2012 (ImageNet-1k) ground truth")
    labels = np.asarray([index[wnid_of[n]] for n in numbers], dtype=np.int64)
    return ImageNetListing(folder, layout, [str(numbered[n]) for n in numbers], labels,
                           np.asarray(numbers, dtype=np.int64), ground_truth, None)


def _find_devkit(folder: Path) -> Path | None:
    """The folder holding both devkit files, or ``None``."""
    for candidate in (folder, folder / "data", folder / "ILSVRC2012_devkit_t12" / "data",
                      folder.parent / "ILSVRC2012_devkit_t12" / "data"):
        if (candidate / DEVKIT_META).is_file() and (candidate / DEVKIT_GROUND_TRUTH).is_file():
            return candidate
    return None


def _devkit_labels(data_dir: Path) -> dict[int, str]:
    """Validation number (1-based) → synset, from the devkit's ``meta.mat`` and ground-truth text.

    ``meta.mat`` is read as torchvision's ``parse_devkit_archive`` reads it: the ``synsets``
    struct array, leaf synsets (``num_children == 0``) give ILSVRC2012_ID → WNID.
    """
    import scipy.io as sio

    meta_file, truth_file = data_dir / DEVKIT_META, data_dir / DEVKIT_GROUND_TRUTH
    try:
        meta = sio.loadmat(str(meta_file), squeeze_me=True)["synsets"]
        nums_children = list(zip(*meta))[4]
        leaves = [meta[i] for i, n in enumerate(nums_children) if n == 0]
        idcs, wnids = list(zip(*leaves))[:2]
        idx_to_wnid = {int(i): str(w) for i, w in zip(idcs, wnids)}
    except Exception as exc:  # scipy raises ValueError, KeyError, TypeError … on a damaged or foreign file
        raise DataError(f"could not read the devkit's {meta_file} ({type(exc).__name__}: {exc})",
                        fix="use meta.mat from the extracted ILSVRC2012_devkit_t12") from None
    try:
        truth = [int(line) for line in truth_file.read_text(encoding="ascii").split()]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"could not read {truth_file} ({exc})",
                        fix=f"use {DEVKIT_GROUND_TRUTH} from the extracted ILSVRC2012_devkit_t12") from None
    bad = [t for t in truth if t not in idx_to_wnid]
    if bad:
        raise DataError(f"{truth_file} holds ILSVRC2012 ids that {meta_file} does not define (e.g. {bad[0]})",
                        fix="use both files from the same ILSVRC2012_devkit_t12")
    return {number: idx_to_wnid[t] for number, t in enumerate(truth, start=1)}


def _find_solution(folder: Path) -> Path | None:
    for candidate in (folder, *list(folder.parents)[:4]):
        if (candidate / KAGGLE_SOLUTION).is_file():
            return candidate / KAGGLE_SOLUTION
    return None


def _solution_labels(path: Path) -> dict[int, str]:
    """Validation number → synset from Kaggle's ``LOC_val_solution.csv`` (first synset of each row)."""
    out: dict[int, str] = {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"ImageId", "PredictionString"} <= set(reader.fieldnames):
                raise DataError(f"{path} has no ImageId and PredictionString columns",
                                fix=f"use Kaggle's {KAGGLE_SOLUTION} (header ImageId,PredictionString)")
            for line, row in enumerate(reader, start=2):
                match = VAL_FILE.fullmatch((row["ImageId"] or "").strip())
                tokens = (row["PredictionString"] or "").split()
                if not match or not tokens:
                    raise DataError(f"{path} line {line} is not 'ILSVRC2012_val_NNNNNNNN,<synset> …'",
                                    fix=f"use Kaggle's {KAGGLE_SOLUTION} unchanged")
                out[int(match.group(1))] = tokens[0]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"could not read {path} ({exc})", fix=f"use Kaggle's {KAGGLE_SOLUTION} unchanged") from None
    return out
