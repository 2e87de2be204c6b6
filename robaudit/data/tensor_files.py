"""Samples stored as arrays in a ``.npz`` or ``.pt`` file.

The file holds ``x``: N×C×H×W pixels, either float in [0, 1] or uint8 0–255 (divided by
255), and ``y``: N integer class indices ≥ 0. Optional keys: ``num_classes`` (K; otherwise
``max(y) + 1``) and ``class_names`` (K strings). Neither format can run code: ``.npz``
members are read with ``allow_pickle=False`` (an object array is refused from its header),
``.pt`` files with ``torch.load(weights_only=True)`` (a dict of tensors).

A data file may be large or hostile, so nothing is read before its size is known: an
``.npz`` member's ``.npy`` header (shape, dtype) is read first, a member holding less data
than its header declares is refused, and the pixels of ``x`` are read only for the samples
selected — memory-mapped when the member is stored uncompressed (and for ``.pt`` files),
streamed through the decompressor otherwise — after checking that they fit in memory.
Pixel values (finite, in [0, 1]) are checked on the samples read.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robaudit.data.memory import available_memory, format_bytes
from robaudit.errors import DataError

_FIX_LAYOUT = "save a dict with x (N×C×H×W float in [0, 1] or uint8) and y (N integer labels)"


@dataclass
class TensorFile:
    """The validated contents of a tensor file.

    Attributes:
        x: the N×C×H×W pixels, read on demand (:meth:`Pixels.take`).
        y: N int64 labels, each ≥ 0 (the upper bound is checked against K by the loader).
        num_classes: K, from the file's ``num_classes`` or ``max(y) + 1``.
        class_names: K names from the file's ``class_names``, or ``None``.
        record: provenance of the file: path, bytes, sha256.
    """

    x: "Pixels"
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


class Pixels:
    """``x`` of a tensor file, whose rows are read only when taken.

    A ``.npz`` member stored uncompressed is memory-mapped; a compressed one is decompressed as
    a stream, keeping only the rows taken; a ``.pt`` tensor is memory-mapped by ``torch.load``.
    Before any row is read, the memory the taken rows need is compared with the memory available.

    Attributes:
        shape: N×C×H×W.
        dtype: the stored dtype as torch names it (uint8 or floating point, checked).
        itemsize: bytes per stored element.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: str, itemsize: int,
                 read_rows: Callable[[np.ndarray], np.ndarray | torch.Tensor]) -> None:
        self.path = path
        self.shape = shape
        self.dtype = dtype
        self.itemsize = itemsize
        self._read_rows = read_rows

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of the whole stored array."""
        return math.prod(self.shape) * self.itemsize

    def take(self, rows: np.ndarray) -> torch.Tensor:
        """Rows ``rows`` (sorted, unique int64 positions) as a K×C×H×W tensor of the stored dtype.

        Raises:
            DataError: the rows cannot fit in the available memory, the file is truncated, or the
                pixels taken are not finite or not in [0, 1] (floating point).
        """
        rows = np.asarray(rows, dtype=np.int64)
        per_row = math.prod(self.shape[1:])
        need = len(rows) * per_row * (self.itemsize + 4)  # stored rows plus their float32 copy
        available = available_memory()
        if available is not None and need > available:
            fit = max(1, available // max(1, per_row * (self.itemsize + 4)))
            raise DataError(
                f"x in {self.path} has shape {list(self.shape)} {self.dtype} ({format_bytes(self.nbytes)}); the "
                f"{len(rows)} samples selected need {format_bytes(need)} of memory but {format_bytes(available)} "
                "is available",
                fix=f"audit fewer samples with --n-samples (about {fit} fit), or free memory",
            )
        taken = self._read_rows(rows)
        if isinstance(taken, np.ndarray):
            taken = torch.from_numpy(np.ascontiguousarray(taken.astype(taken.dtype.newbyteorder("="), copy=False)))
        _check_x_values(self.path, taken)
        return taken


def describe_tensor_file(path: Path) -> TensorFileHeader:
    """Shape of ``x``, K and class names of a tensor file, reading labels but not pixels."""
    contents = read_tensor_file(path, with_record=False)
    return TensorFileHeader(contents.x.shape, contents.num_classes, contents.class_names)


def read_tensor_file(path: Path, *, with_record: bool = True) -> TensorFile:
    """Open and validate a tensor file (see the module docstring for the layout); pixels stay on disk.

    ``.npz`` members are checked from their ``.npy`` headers before any is decompressed: object
    arrays (which only unpickling can read) are refused, and so is a member whose header declares
    more data than the member holds. Labels are read whole; pixels only by :meth:`Pixels.take`.

    Args:
        with_record: hash the file for the provenance record (skipped when only describing it).

    Raises:
        DataError: unreadable file, missing keys (listing the keys present), object arrays, wrong
            shapes or dtypes, negative, NaN or non-integer labels, or an array too large for memory.
    """
    if path.suffix.lower() == ".npz":
        with _open_npz(path) as zf:
            members = _npz_members(zf)
            _require_keys(path, list(members))
            x_member = _npy_header(zf, path, members["x"], "x")
            _check_x_header(path, x_member.shape, _torch_name(x_member.dtype),
                            x_member.dtype == np.uint8 or x_member.dtype.kind == "f")
            y = _labels(path, _npy_read_whole(zf, path, _npy_header(zf, path, members["y"], "y")), x_member.shape[0])
            small = {key: _npy_read_whole(zf, path, _npy_header(zf, path, members[key], key))
                     for key in ("num_classes", "class_names") if key in members}
        num_classes, names = _classes(path, small, y)
        x = Pixels(path, x_member.shape, _torch_name(x_member.dtype), x_member.dtype.itemsize,
                   lambda rows: _npz_rows(path, x_member, rows))
    else:
        contents = _load_pt(path, mmap=True)
        _require_keys(path, list(contents))
        x_val = contents["x"]
        if not isinstance(x_val, torch.Tensor):
            raise DataError(f"x in {path} is a {type(x_val).__name__}, not a tensor", fix=_FIX_LAYOUT)
        _check_x_header(path, tuple(x_val.shape), str(x_val.dtype),
                        x_val.dtype == torch.uint8 or x_val.is_floating_point())
        y = _labels(path, contents["y"], len(x_val))
        num_classes, names = _classes(path, contents, y)
        x = Pixels(path, tuple(x_val.shape), str(x_val.dtype), x_val.element_size(),
                   lambda rows: x_val[torch.from_numpy(rows)])
    record = {"path": str(path), "bytes": path.stat().st_size, "sha256": _sha256(path) if with_record else None}
    return TensorFile(x, y, num_classes, names, record)


@dataclass(frozen=True)
class _NpyMember:
    """One ``.npy`` member of a ``.npz``, known from its header alone.

    Attributes:
        key: the array's name (``x`` for ``x.npy``).
        shape, dtype, fortran_order: from the header.
        data_start: offset of the array data inside the member (the header's length).
        info: the zip entry.
    """

    key: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    data_start: int
    info: zipfile.ZipInfo

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _open_npz(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"could not read {path} as a .npz file ({exc})", fix=f"write it with numpy.savez: {_FIX_LAYOUT}"
        ) from exc


def _npz_members(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Array name → zip entry, for the ``NAME.npy`` members (the names ``numpy.savez`` writes)."""
    return {info.filename[:-4]: info for info in zf.infolist() if info.filename.endswith(".npy")}


def _npy_header(zf: zipfile.ZipFile, path: Path, info: zipfile.ZipInfo, key: str) -> _NpyMember:
    """Read only the ``.npy`` header of a member: refuse object arrays and members shorter than declared."""
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
            start = f.tell()
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{key!r} in {path} is not a readable .npy array ({exc})",
                        fix=f"write it with numpy.savez: {_FIX_LAYOUT}") from exc
    if dtype.hasobject:
        raise DataError(
            f"{key!r} in {path} is an object array, which numpy can only read by unpickling; robaudit does not "
            "unpickle data files",
            fix=f"store {key} as a numeric (or, for class_names, a fixed-width string) array, not an object array",
        )
    member = _NpyMember(key, tuple(int(d) for d in shape), dtype, bool(fortran), start, info)
    held = info.file_size - start
    if min(member.shape, default=0) < 0 or held != member.nbytes:
        raise DataError(
            f"{key!r} in {path} declares shape {list(member.shape)} {dtype} ({format_bytes(member.nbytes)}) but its "
            f"member holds {format_bytes(max(held, 0))} of data: the file is truncated or was not written by numpy",
            fix=f"write it again with numpy.savez: {_FIX_LAYOUT}",
        )
    return member


def _npy_read_whole(zf: zipfile.ZipFile, path: Path, member: _NpyMember) -> np.ndarray:
    """A small member (labels, class names), read whole once it is known to fit in memory."""
    available = available_memory()
    if available is not None and member.nbytes > available:
        raise DataError(
            f"{member.key!r} in {path} has shape {list(member.shape)} {member.dtype} ({format_bytes(member.nbytes)}), "
            f"more than the {format_bytes(available)} of memory available",
            fix=f"store one {member.key} entry per sample (or per class)",
        )
    try:
        with zf.open(member.info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{member.key!r} in {path} could not be read ({exc})",
                        fix=f"write it again with numpy.savez: {_FIX_LAYOUT}") from exc


def _npz_rows(path: Path, member: _NpyMember, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of an ``.npz`` member: memory-mapped when stored, streamed when compressed."""
    shape, dtype = member.shape, member.dtype
    try:
        if member.info.compress_type == zipfile.ZIP_STORED and not member.info.flag_bits & 0x1:
            with open(path, "rb") as fh:
                fh.seek(member.info.header_offset)
                local = fh.read(30)
            if local[:4] != b"PK\x03\x04":
                raise ValueError("bad local file header")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            offset = member.info.header_offset + 30 + name_len + extra_len + member.data_start
            mapped = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                               order="F" if member.fortran_order else "C")
            return np.array(mapped[rows])
        with zipfile.ZipFile(path) as zf, zf.open(member.info) as f:
            if member.fortran_order:  # rows are not contiguous: read the array (Pixels.take checked the memory)
                return np.lib.format.read_array(f, allow_pickle=False)[rows]
            _read_exactly(f, member.data_start)
            row_bytes = math.prod(shape[1:]) * dtype.itemsize
            out = np.empty((len(rows), *shape[1:]), dtype=dtype)
            position = 0
            for i, row in enumerate(rows.tolist()):
                for _ in range((row - position) * row_bytes // _CHUNK):
                    _read_exactly(f, _CHUNK)
                _read_exactly(f, (row - position) * row_bytes % _CHUNK)
                out[i] = np.frombuffer(_read_exactly(f, row_bytes), dtype=dtype).reshape(shape[1:])
                position = row + 1
            return out
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"x in {path} could not be read ({exc})",
                        fix=f"write it again with numpy.savez: {_FIX_LAYOUT}") from exc


_CHUNK = 1 << 24


def _torch_name(dtype: np.dtype) -> str:
    """``torch.int32`` for numpy's int32 (any byte order); the numpy name when torch has none."""
    try:
        return str(torch.from_numpy(np.empty(0, dtype=dtype.newbyteorder("="))).dtype)
    except (TypeError, ValueError):
        return str(dtype)


def _read_exactly(f: Any, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError(f"the data ends early: {n} bytes expected, {len(data)} read")
    return data


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


def _check_x_header(path: Path, shape: tuple[int, ...], dtype_name: str, pixels: bool) -> None:
    """Refuse a wrong layout or dtype of ``x`` from its shape and dtype alone (no pixel is read).

    Args:
        dtype_name: the dtype as torch names it (``torch.int32``), for messages.
        pixels: whether the dtype is uint8 or floating point.
    """
    if len(shape) == 4 and shape[0] == 0:
        raise DataError(f"{path} has no samples (x has shape {list(shape)})", fix="use a file with at least one sample")
    if len(shape) != 4:
        fix = "add a channel axis: x[:, None] for N×H×W gray images" if len(shape) == 3 else _FIX_LAYOUT
        raise DataError(f"x in {path} has shape {list(shape)}; expected 4 dimensions N×C×H×W", fix=fix)
    if shape[-1] in (1, 3) and shape[1] not in (1, 3):
        raise DataError(
            f"x in {path} has shape {list(shape)}, which looks like N×H×W×C; expected N×C×H×W",
            fix="transpose it: x.permute(0, 3, 1, 2) (torch) or x.transpose(0, 3, 1, 2) (numpy)",
        )
    if not pixels:
        raise DataError(
            f"x in {path} is {dtype_name}; expected float pixels in [0, 1] or uint8 pixels 0–255",
            fix="convert it: x.astype('float32') / 255 or x.astype('uint8')",
        )


def _check_x_values(path: Path, x: torch.Tensor) -> None:
    """Refuse non-finite or out-of-range float pixels among those read (uint8 is always in range)."""
    if x.dtype == torch.uint8 or x.numel() == 0:
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
    """``y`` as N int64 class indices ≥ 0; anything else is refused, saying which labels are wrong."""
    if isinstance(value, torch.Tensor):
        value = value.float() if value.dtype == torch.bfloat16 else value
        y = value.numpy()
    else:
        y = np.asarray(value)
    if y.ndim != 1:
        raise DataError(
            f"y in {path} has shape {list(y.shape)}; expected one label per sample (N,)",
            fix="store y as a 1-D array of class indices, e.g. y.reshape(-1)",
        )
    if len(y) != n:
        raise DataError(f"{path} has {n} images in x but {len(y)} labels in y", fix="store one label per image")
    if np.issubdtype(y.dtype, np.floating):
        nan = np.flatnonzero(np.isnan(y))
        if len(nan):
            raise DataError(f"y in {path} has {len(nan)} NaN label(s), e.g. at index {int(nan[0])}",
                            fix="store a class index 0 … K−1 for every sample")
        frac = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if len(frac):
            raise DataError(f"y in {path} has {len(frac)} non-integer label(s), e.g. {float(y[frac[0]]):g} at index "
                            f"{int(frac[0])}", fix="store class indices 0 … K−1 as int64")
        raise DataError(f"y in {path} is {y.dtype}; expected integer class indices",
                        fix="store y as int64: y.astype('int64')")
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"y in {path} is {y.dtype}; expected integer class indices", fix="store y as int64")
    if np.issubdtype(y.dtype, np.unsignedinteger) and len(y) and int(y.max()) > np.iinfo(np.int64).max:
        raise DataError(f"y in {path} has a label above 2⁶³ − 1 ({int(y.max())})", fix="store class indices 0 … K−1")
    y = y.astype(np.int64)
    negative = np.flatnonzero(y < 0)
    if len(negative):
        shown = ", ".join(f"{int(y[i])} at index {int(i)}" for i in negative[:3])
        raise DataError(f"y in {path} has {len(negative)} negative label(s): {shown}"
                        + (f" and {len(negative) - 3} more" if len(negative) > 3 else ""),
                        fix="store class indices 0 … K−1 (labels cannot be negative)")
    return y


MAX_CLASSES = 1_000_000
"""More classes than any classifier robaudit audits (ImageNet-21k has 21,841); a larger count comes
from a corrupt label or ``num_classes``, and building a model head for it would exhaust memory."""


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
    if k > MAX_CLASSES:
        where = "its num_classes" if "num_classes" in keys else f"its largest label {int(y.max())}"
        raise DataError(
            f"{path} has {k:,} classes by {where}, more than the {MAX_CLASSES:,} robaudit supports: "
            "a label or num_classes is corrupt",
            fix="store y as class indices 0 … K−1 (and num_classes = K)",
        )
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
