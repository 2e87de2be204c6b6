"""Samples stored as arrays in a ``.npz`` or ``.pt`` file.

The file holds ``x``: N×C×H×W pixels, either float in [0, 1] or uint8 0–255 (divided by
255), and ``y``: N integer labels. Optional keys: ``num_classes`` (K; otherwise
``max(y) + 1``) and ``class_names`` (K strings). ``.npz`` files are read with
``allow_pickle=False`` and ``.pt`` files with ``torch.load(weights_only=True)`` (a dict
of tensors or arrays), so neither can run code.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robaudit.errors import DataError

_FIX_LAYOUT = "save a dict with x (N×C×H×W float in [0, 1] or uint8) and y (N integer labels)"


@dataclass
class TensorFile:
    """The validated contents of a tensor file.

    Attributes:
        x: N×C×H×W pixels, uint8 (0–255) or floating point (already checked to lie in [0, 1]).
        y: N int64 labels (not yet range-checked).
        num_classes: K, from the file's ``num_classes`` or ``max(y) + 1``.
        class_names: K names from the file's ``class_names``, or ``None``.
        record: provenance of the file: path, bytes, sha256.
    """

    x: torch.Tensor
    y: np.ndarray
    num_classes: int
    class_names: list[str] | None
    record: dict[str, Any]


@dataclass
class TensorFileHeader:
    """What :func:`describe_tensor_file` learns without reading pixels.

    Attributes:
        shape: the shape of ``x``.
        num_classes: K (see :class:`TensorFile`).
        class_names: K names, or ``None``.
    """

    shape: tuple[int, ...]
    num_classes: int
    class_names: list[str] | None


def describe_tensor_file(path: Path) -> TensorFileHeader:
    """Shape of ``x``, K and class names of a tensor file, reading labels but not pixels."""
    if path.suffix.lower() == ".npz":
        with _open_npz(path) as npz:
            _require_keys(path, npz.files)
            shape = _npz_member_shape(path, "x")
            if shape is None:
                shape = tuple(npz["x"].shape)
            _check_x_shape(path, shape)
            y = _labels(path, npz["y"], shape[0])
            num_classes, names = _classes(path, npz, y)
    else:
        contents = _load_pt(path, mmap=True)
        _require_keys(path, list(contents))
        shape = tuple(contents["x"].shape)
        _check_x_shape(path, shape)
        y = _labels(path, contents["y"], shape[0])
        num_classes, names = _classes(path, contents, y)
    return TensorFileHeader(shape, num_classes, names)


def read_tensor_file(path: Path) -> TensorFile:
    """Read and validate a tensor file (see the module docstring for the layout).

    Raises:
        DataError: unreadable file, missing keys (listing the keys present), wrong shapes
            or dtypes, non-finite pixels, or float pixels outside [0, 1] (with the observed
            min and max).
    """
    if path.suffix.lower() == ".npz":
        with _open_npz(path) as npz:
            _require_keys(path, npz.files)
            x_raw: Any = _npz_array(path, npz, "x")
            y = _labels(path, _npz_array(path, npz, "y"), len(x_raw) if np.ndim(x_raw) else 0)
            num_classes, names = _classes(path, npz, y)
        x = torch.from_numpy(np.ascontiguousarray(x_raw))
    else:
        contents = _load_pt(path, mmap=False)
        _require_keys(path, list(contents))
        x_val = contents["x"]
        x = x_val if isinstance(x_val, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x_val))
        y = _labels(path, contents["y"], len(x) if x.dim() else 0)
        num_classes, names = _classes(path, contents, y)
    _check_x_shape(path, tuple(x.shape))
    _check_x_values(path, x)
    record = {"path": str(path), "bytes": path.stat().st_size, "sha256": _sha256(path)}
    return TensorFile(x, y, num_classes, names, record)


def _open_npz(path: Path) -> Any:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"could not read {path} as a .npz file ({exc})", fix=f"write it with numpy.savez: {_FIX_LAYOUT}"
        ) from exc


def _npz_array(path: Path, npz: Any, key: str) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise DataError(
            f"{key!r} in {path} cannot be read without unpickling ({exc})",
            fix=f"store {key} as a numeric array, not an object array",
        ) from exc


def _npz_member_shape(path: Path, key: str) -> tuple[int, ...] | None:
    """The shape stored in the ``.npy`` header of member ``key``, or ``None`` if unreadable."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, _ = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, _ = np.lib.format.read_array_header_2_0(f)
            else:
                return None
            return tuple(int(s) for s in shape)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _load_pt(path: Path, mmap: bool) -> Mapping[str, Any]:
    try:
        try:
            contents = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError:
            if not mmap:
                raise
            contents = torch.load(path, map_location="cpu", weights_only=True)  # legacy format: no mmap
    except pickle.UnpicklingError as exc:
        refused = re.search(r"GLOBAL ([\w.]+)", str(exc))  # torch names the refused global this way
        if refused:
            raise DataError(
                f"{path} holds a {refused.group(1)} object; robaudit unpickles only tensors and plain containers",
                fix=f"{_FIX_LAYOUT} as tensors (torch.from_numpy for numpy arrays), "
                "using torch.save({'x': x, 'y': y}, path)",
            ) from exc
        detail = re.search(r"WeightsUnpickler error: ([^\n]+)", str(exc))
        raise DataError(
            f"could not read {path} with torch.load ({detail.group(1).strip() if detail else exc})",
            fix=f"write it with torch.save: {_FIX_LAYOUT}",
        ) from exc
    except (OSError, RuntimeError, ValueError, EOFError) as exc:
        raise DataError(
            f"could not read {path} with torch.load ({exc})", fix=f"write it with torch.save: {_FIX_LAYOUT}"
        ) from exc
    if not isinstance(contents, Mapping):
        raise DataError(
            f"{path} holds a {type(contents).__name__}, not a dict of tensors",
            fix=f"{_FIX_LAYOUT}, using torch.save({{'x': x, 'y': y}}, path)",
        )
    return contents


def _require_keys(path: Path, keys: list[str]) -> None:
    missing = [k for k in ("x", "y") if k not in keys]
    if missing:
        present = ", ".join(repr(k) for k in keys) or "none"
        raise DataError(
            f"{path} has no {' or '.join(repr(k) for k in missing)} (keys present: {present})",
            fix=f"{_FIX_LAYOUT}, under the keys 'x' and 'y'",
        )


def _check_x_shape(path: Path, shape: tuple[int, ...]) -> None:
    if len(shape) == 4 and shape[0] == 0:
        raise DataError(f"{path} has no samples (x has shape {list(shape)})", fix="use a file with at least one sample")
    if len(shape) == 4:
        return
    if len(shape) == 3:
        fix = "add a channel axis: x[:, None] for N×H×W gray images"
    else:
        fix = _FIX_LAYOUT
    raise DataError(f"x in {path} has shape {list(shape)}; expected 4 dimensions N×C×H×W", fix=fix)


def _check_x_values(path: Path, x: torch.Tensor) -> None:
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        raise DataError(
            f"x in {path} has shape {list(x.shape)}, which looks like N×H×W×C; expected N×C×H×W",
            fix="transpose it: x.permute(0, 3, 1, 2) (torch) or x.transpose(0, 3, 1, 2) (numpy)",
        )
    if x.dtype == torch.uint8:
        return
    if not x.is_floating_point():
        raise DataError(
            f"x in {path} is {x.dtype}; expected float pixels in [0, 1] or uint8 pixels 0–255",
            fix="convert it: x.astype('float32') / 255 or x.astype('uint8')",
        )
    if x.numel() == 0:
        return
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise DataError(f"x in {path} has {bad} NaN or infinite values", fix="replace them with valid pixels in [0, 1]")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise DataError(
            f"x in {path} has float pixels in [{lo:.4g}, {hi:.4g}], outside [0, 1]",
            fix="store unnormalised pixels scaled to [0, 1] (or uint8 0–255); the model applies its own mean/std",
        )


def _labels(path: Path, value: Any, n: int) -> np.ndarray:
    y = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if y.ndim != 1:
        raise DataError(
            f"y in {path} has shape {list(y.shape)}; expected one label per sample (N,)",
            fix="store y as a 1-D array of class indices, e.g. y.reshape(-1)",
        )
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"y in {path} is {y.dtype}; expected integer class indices", fix="store y as int64")
    if len(y) != n:
        raise DataError(f"{path} has {n} images in x but {len(y)} labels in y", fix="store one label per image")
    return y.astype(np.int64)


def _classes(path: Path, contents: Any, y: np.ndarray) -> tuple[int, list[str] | None]:
    keys = contents.files if hasattr(contents, "files") else list(contents)
    names: list[str] | None = None
    if "class_names" in keys:
        raw = contents["class_names"]
        names = [str(v) for v in (raw.tolist() if hasattr(raw, "tolist") else raw)]
    if "num_classes" in keys:
        raw_k = contents["num_classes"]
        try:
            k = int(raw_k.item() if hasattr(raw_k, "item") else raw_k)
        except (TypeError, ValueError) as exc:
            raise DataError(f"num_classes in {path} is not an integer", fix="store num_classes as an int") from exc
        if k < 1:
            raise DataError(f"num_classes in {path} is {k}", fix="store the number of classes, ≥ 1")
    elif names is not None:
        k = len(names)
    else:
        k = int(y.max()) + 1 if len(y) else 0
    if names is not None and len(names) != k:
        raise DataError(
            f"{path} names {len(names)} classes in class_names but has {k} classes",
            fix="store one name per class in class_names",
        )
    return k, names


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
