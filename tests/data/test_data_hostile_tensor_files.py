"""Hostile and broken tensor files, through the real CLI: one line, exit 2, nothing unpickled,
nothing decompressed that cannot fit; and the rows read lazily equal the rows stored."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from demo import DEMO_ARCH, DEMO_CHECKPOINT
from robaudit.cli.main import main
from robaudit.data import DataRequest, describe_dataset, load_data
from robaudit.exitcodes import ExitCode


def _validate(dataset: Path, *extra: str) -> tuple[int, str]:
    """``robaudit validate`` of the demo digits CNN on ``dataset``: (exit code, the one error line)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--dataset", str(dataset), "--threads", "2",
                     "-q", *extra])
    text = err.getvalue()
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.startswith("robaudit: error")]
    assert len(lines) == (1 if code else 0), text
    return code, lines[0] if lines else ""


def _digits(n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 1, 8, 8), dtype=np.float32), np.arange(n) % 10


class _Payload:
    """Unpickling this creates a directory: proof that code ran."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.target),)


@pytest.mark.parametrize("key", ["x", "y", "class_names"])
def test_object_arrays_are_refused_as_pickles(tmp_path: Path, key: str) -> None:
    target = tmp_path / "pwned"
    x, y = _digits()
    arrays: dict[str, object] = {"x": x, "y": y, "class_names": np.array([str(i) for i in range(10)])}
    hostile = np.empty(len(y) if key != "class_names" else 10, dtype=object)
    hostile[:] = [_Payload(target)] * len(hostile)
    arrays[key] = hostile if key != "x" else np.array([_Payload(target)], dtype=object)
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    code, line = _validate(path)
    assert code == ExitCode.USAGE
    assert f"'{key}' in {path} is an object array, which numpy can only read by unpickling" in line
    assert "not an object array" in line
    assert not target.exists()


def _npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _zip_declaring(path: Path, shape: tuple[int, ...], dtype: str, *, claim: bool) -> int:
    """A .npz whose x.npy header declares ``shape`` but which holds 4 KiB of data (deflated).

    With ``claim``, the zip's central directory also declares the full uncompressed size (as a
    crafted file would), so only the .npy header and the memory check stand between the reader and
    the allocation. Returns the declared bytes of x.
    """
    declared = int(np.prod(shape)) * np.dtype(dtype).itemsize
    header = _npy_header(shape, dtype)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.npy", header + bytes(4096))
        zf.writestr("y.npy", _npy((np.arange(shape[0]) % 10).astype(np.uint8)))
    if claim:
        raw = bytearray(path.read_bytes())
        central = raw.index(b"PK\x01\x02")  # x.npy's central directory entry comes first
        assert raw[central + 46:central + 46 + 5] == b"x.npy"
        raw[central + 24:central + 28] = struct.pack("<I", len(header) + declared)  # uncompressed size
        path.write_bytes(bytes(raw))
    return declared


def test_a_header_declaring_more_than_the_member_holds_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "bomb.npz"
    _zip_declaring(path, (300_000, 1, 8, 8), "float64", claim=False)  # 146 MiB declared, 4 KiB held
    code, line = _validate(path)
    assert code == ExitCode.USAGE
    assert f"'x' in {path} declares shape [300000, 1, 8, 8] float64 (146.5 MiB) but its member holds 4.0 KiB" in line
    assert "truncated" in line


def test_an_x_too_large_for_memory_is_refused_before_decompressing(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bomb.npz"
    declared = _zip_declaring(path, (3_000_000, 1, 8, 8), "float64", claim=True)  # 1.4 GiB declared
    read: list[int] = []
    real_read = zipfile.ZipExtFile.read

    def counting_read(self: zipfile.ZipExtFile, n: int = -1) -> bytes:
        data = real_read(self, n)
        read.append(len(data))
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    info = describe_dataset(DataRequest(str(path)))  # x's header alone: no pixel decompressed
    assert (info.channels, info.image_size, info.num_classes) == (1, (8, 8), 10)
    assert sum(read) < 4 * (1 << 20)
    read.clear()
    monkeypatch.setattr("robaudit.data.tensor_files.available_memory", lambda: 1 << 30)
    code, line = _validate(path, "--n-samples", "all")  # the default budget would select only 1,000
    assert code == ExitCode.USAGE
    assert f"x in {path} has shape [3000000, 1, 8, 8] torch.float64 (1.4 GiB)" in line
    assert "the 3000000 samples selected need 2.1 GiB of memory but 1.0 GiB is available" in line
    assert "--n-samples" in line
    assert sum(read) < 8 * (1 << 20) < declared  # the labels (3 MB, read by describe and by load) and headers
    # a few samples are streamed until the data runs out: one line, not a crash or a 1.4 GiB buffer
    code, line = _validate(path, "--n-samples", "20")
    assert code == ExitCode.USAGE and f"x in {path} could not be read" in line


@pytest.mark.parametrize("writer", ["savez", "savez_compressed"])
@pytest.mark.parametrize("fortran", [False, True], ids=["C", "F"])
def test_selected_rows_read_lazily_equal_the_stored_rows(tmp_path: Path, writer: str, fortran: bool) -> None:
    x, y = _digits(200)
    stored = np.asfortranarray(x) if fortran else x
    path = tmp_path / "d.npz"
    getattr(np, writer)(path, x=stored, y=y)
    data = load_data(DataRequest(str(path), n_samples=37, seed=3))
    rows = np.array([int(i.split(":")[1]) for i in data.ids])
    assert len(rows) == 37 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(data.x.numpy(), x[rows])
    np.testing.assert_array_equal(data.y.numpy(), y[rows])


def test_pt_rows_are_read_from_a_memory_map(tmp_path: Path) -> None:
    x, y = _digits(50)
    path = tmp_path / "d.pt"
    torch.save({"x": torch.from_numpy((x * 255).astype(np.uint8)), "y": torch.from_numpy(y)}, path)
    data = load_data(DataRequest(str(path), n_samples=12, seed=1))
    rows = np.array([int(i.split(":")[1]) for i in data.ids])
    np.testing.assert_array_equal(data.x.numpy(), (x[rows] * 255).astype(np.uint8).astype(np.float32) / 255)


LABEL_CASES = [
    (np.full(30, -1), "has 30 negative label(s): -1 at index 0, -1 at index 1, -1 at index 2 and 27 more"),
    (np.array([0, 1, -3] + [2] * 27), "has 1 negative label(s): -3 at index 2"),
    (np.array([0.0, np.nan] + [1.0] * 28), "has 1 NaN label(s), e.g. at index 1"),
    (np.array([0.0, 0.5] + [1.0] * 28), "has 1 non-integer label(s), e.g. 0.5 at index 1"),
    (np.arange(30) % 10 * 1.0, "is float64; expected integer class indices"),
]


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
@pytest.mark.parametrize(("labels", "said"), LABEL_CASES, ids=["all-negative", "one-negative", "nan", "fraction", "float"])
def test_bad_labels_say_what_is_wrong(tmp_path: Path, suffix: str, labels: np.ndarray, said: str) -> None:
    x, _ = _digits()
    path = tmp_path / f"d{suffix}"
    if suffix == ".npz":
        np.savez(path, x=x, y=labels)
    else:
        torch.save({"x": torch.from_numpy(x), "y": torch.from_numpy(labels)}, path)
    code, line = _validate(path)
    assert code == ExitCode.USAGE
    assert f"y in {path} {said}" in line and "Fix:" in line


@pytest.mark.parametrize("how", ["label", "num_classes"])
def test_an_absurd_class_count_is_named_before_any_model_is_built(tmp_path: Path, how: str) -> None:
    """A label of 2**40 (or num_classes = 10**12) would ask for a model head larger than any memory."""
    x, _ = _digits()
    y = np.arange(30) % 10
    path = tmp_path / "d.npz"
    if how == "label":
        y[7] = 2**40
        np.savez(path, x=x, y=y)
    else:
        np.savez(path, x=x, y=y, num_classes=np.int64(10**12))
    code, line = _validate(path)
    assert code == ExitCode.USAGE
    said = "its largest label 1099511627776" if how == "label" else "its num_classes"
    assert f"has {(2**40 + 1 if how == 'label' else 10**12):,} classes by {said}" in line, line
    assert "Fix:" in line
