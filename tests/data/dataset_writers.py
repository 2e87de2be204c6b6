"""Writers of tiny datasets in the real on-disk formats, for the data-loading tests.

Each writer produces the files torchvision (or robaudit) reads, byte-compatible with the
official releases' layouts:

* CIFAR python batches: pickled dicts ``{"data": uint8 N×3072, "labels": [...], ...}``.
  By default they are written the way the official files were (Python 2 ``cPickle``,
  protocol 2, ``numpy.core.multiarray._reconstruct``, strings as ``BINSTRING``), via a
  small emitter, so the test loads the same opcode stream a real file contains.
* MNIST / Fashion-MNIST: big-endian IDX ``idx3-ubyte`` / ``idx1-ubyte`` files.
* SVHN: MATLAB ``.mat`` with ``X`` H×W×C×N uint8 and ``y`` N×1 with 10 for digit 0.
* Image folders of PNGs; ``.npz`` and ``.pt`` tensor files.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image


# --------------------------------------------------------------------------- pickles
class _Py2Pickler:
    """Emits the opcode stream Python 2's cPickle (protocol 2) writes for CIFAR batches."""

    def __init__(self) -> None:
        self.memo = 0
        self.out = bytearray(b"\x80\x02")

    def put(self) -> None:
        self.memo += 1
        self.out += b"q" + bytes([self.memo]) if self.memo < 256 else b"r" + struct.pack("<I", self.memo)

    def string(self, raw: bytes) -> None:
        if len(raw) < 256:
            self.out += b"U" + bytes([len(raw)]) + raw
        else:
            self.out += b"T" + struct.pack("<I", len(raw)) + raw

    def integer(self, v: int) -> None:
        if 0 <= v < 256:
            self.out += b"K" + bytes([v])
        elif 0 <= v < 65536:
            self.out += b"M" + struct.pack("<H", v)
        else:
            self.out += b"J" + struct.pack("<i", v)

    def save(self, obj: object) -> None:
        if isinstance(obj, dict):
            self.out += b"}"
            self.put()
            self.out += b"("
            for k, v in obj.items():
                self.save(k)
                self.save(v)
            self.out += b"u"
        elif isinstance(obj, list):
            self.out += b"]"
            self.put()
            for start in range(0, len(obj), 1000):  # cPickle batches APPENDS per 1000 items
                self.out += b"("
                for item in obj[start : start + 1000]:
                    self.save(item)
                self.out += b"e"
        elif isinstance(obj, str):
            self.string(obj.encode("latin-1"))
            self.put()
        elif isinstance(obj, (int, np.integer)):
            self.integer(int(obj))
        elif isinstance(obj, np.ndarray):
            self.ndarray(obj)
        else:
            raise TypeError(type(obj))

    def ndarray(self, arr: np.ndarray) -> None:
        if arr.dtype != np.uint8 or arr.ndim != 2:
            raise TypeError("only 2-D uint8 arrays are needed")
        self.out += b"cnumpy.core.multiarray\n_reconstruct\n"
        self.put()
        self.out += b"cnumpy\nndarray\n"
        self.put()
        self.out += b"K\x00\x85"
        self.string(b"b")
        self.out += b"\x87R"
        self.put()
        self.out += b"(K\x01"
        self.integer(arr.shape[0])
        self.integer(arr.shape[1])
        self.out += b"\x86"
        self.put()
        self.out += b"cnumpy\ndtype\n"
        self.put()
        self.string(b"u1")
        self.out += b"K\x00K\x01\x87R"
        self.put()
        self.out += b"(K\x03"
        self.string(b"|")
        self.out += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
        self.string(np.ascontiguousarray(arr).tobytes())
        self.out += b"tb"


def dumps_py2(obj: object) -> bytes:
    """``obj`` (dicts, lists, str, int, 2-D uint8 arrays) pickled as Python 2 cPickle would."""
    pickler = _Py2Pickler()
    pickler.save(obj)
    return bytes(pickler.out + b".")


def _dump(obj: object, path: Path, protocol: int | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dumps_py2(obj) if protocol == "py2" else pickle.dumps(obj, protocol=int(protocol)))


# --------------------------------------------------------------------------- CIFAR
def cifar_batch(data: np.ndarray, labels: np.ndarray, label_key: str = "labels") -> dict:
    """A batch dict as in the official files: uint8 rows of 3072 = R(1024) G(1024) B(1024)."""
    n = len(labels)
    batch: dict = {"batch_label": "testing batch 1 of 1", label_key: [int(v) for v in labels], "data": data}
    batch["filenames"] = [f"img_{i:05d}.png" for i in range(n)]
    return batch


def write_cifar10(
    root: Path,
    test: tuple[np.ndarray, np.ndarray],
    train: list[tuple[np.ndarray, np.ndarray]] | None = None,
    protocol: int | str = "py2",
) -> Path:
    """Write ``root/cifar-10-batches-py/`` (test_batch, data_batch_1..5, batches.meta)."""
    folder = root / "cifar-10-batches-py"
    _dump(cifar_batch(*test), folder / "test_batch", protocol)
    for i, batch in enumerate(train or [], start=1):
        _dump(cifar_batch(*batch), folder / f"data_batch_{i}", protocol)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _dump({"num_cases_per_batch": 10000, "label_names": names, "num_vis": 3072}, folder / "batches.meta", protocol)
    return folder


def write_cifar100(
    root: Path,
    test: tuple[np.ndarray, np.ndarray],
    train: tuple[np.ndarray, np.ndarray] | None = None,
    protocol: int | str = "py2",
) -> Path:
    """Write ``root/cifar-100-python/`` (test, train, meta) with ``fine_labels``."""
    folder = root / "cifar-100-python"

    def batch(data: np.ndarray, fine: np.ndarray) -> dict:
        out = cifar_batch(data, fine, label_key="fine_labels")
        out["coarse_labels"] = [int(v) // 5 for v in fine]
        return out

    _dump(batch(*test), folder / "test", protocol)
    if train is not None:
        _dump(batch(*train), folder / "train", protocol)
    meta = {
        "fine_label_names": [f"class_{i}" for i in range(100)],
        "coarse_label_names": [f"super_{i}" for i in range(20)],
    }
    _dump(meta, folder / "meta", protocol)
    return folder


# --------------------------------------------------------------------------- MNIST
def write_idx_images(path: Path, images: np.ndarray) -> None:
    """IDX3 file: magic 0x00000803, N, H, W as big-endian uint32, then uint8 pixels."""
    n, h, w = images.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(">IIII", 0x00000803, n, h, w) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """IDX1 file: magic 0x00000801, N as big-endian uint32, then uint8 labels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(">II", 0x00000801, len(labels)) + labels.astype(np.uint8).tobytes())


def write_mnist(
    root: Path,
    folder: str,
    test: tuple[np.ndarray, np.ndarray],
    train: tuple[np.ndarray, np.ndarray] | None = None,
    gz: bool = False,
) -> Path:
    """Write ``root/<folder>/raw/{t10k,train}-{images-idx3,labels-idx1}-ubyte`` (+ ``.gz`` copies)."""
    raw = root / folder / "raw"
    splits = {"t10k": test} if train is None else {"t10k": test, "train": train}
    for prefix, (x, y) in splits.items():
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", x)
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", y)
    if gz:
        for f in list(raw.iterdir()):
            (raw / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes()))
    return raw


# --------------------------------------------------------------------------- SVHN
def write_svhn(root: Path, split: str, images: np.ndarray, digits: np.ndarray) -> Path:
    """Write ``root/<split>_32x32.mat``: X H×W×C×N uint8, y N×1 uint8 with 10 for digit 0."""
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{split}_32x32.mat"
    y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
    scipy.io.savemat(path, {"X": np.ascontiguousarray(images.transpose(2, 3, 1, 0)), "y": y})
    return path


# --------------------------------------------------------------------------- image folders
def write_png(path: Path, pixels: np.ndarray) -> None:
    """Save H×W×3 (RGB) or H×W (gray) uint8 ``pixels`` as a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def random_images(rng: np.random.Generator, n: int, c: int, h: int, w: int) -> np.ndarray:
    """N×C×H×W uint8 random pixels covering 0–255."""
    return rng.integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


def balanced_labels(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """N labels 0…K−1, each class as often as possible, in random order."""
    return rng.permutation(np.arange(n) % k).astype(np.int64)
