"""Writers for tiny ImageNet-style sets (synset folders, the devkit, Kaggle's CSV) and bad image files."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image
from safetensors.torch import save_file

from pixel_readout import FEATURES, SIDE

PIXEL_READOUT_ARCH = f"{Path(__file__).with_name('pixel_readout.py')}:PixelReadout"


def spike_pixels(spikes: dict[int, int]) -> np.ndarray:
    """A 19×19×3 uint8 image that is 0 except ``{flat C×H×W position: value}``."""
    chw = np.zeros(FEATURES, dtype=np.uint8)
    for position, value in spikes.items():
        chw[position] = value
    return chw.reshape(3, SIDE, SIDE).transpose(1, 2, 0).copy()


def write_spike_png(path: Path, spikes: dict[int, int]) -> None:
    """Save :func:`spike_pixels` as a (lossless) PNG at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(spike_pixels(spikes)).save(path, format="PNG")


def write_pixel_readout(path: Path, num_classes: int = 1000) -> Path:
    """Safetensors weights for ``PixelReadout``: W = [I | 0], b = 0, so logit j = input value j."""
    weight = torch.zeros(num_classes, FEATURES)
    weight[:, :num_classes] = torch.eye(num_classes)
    save_file({"fc.weight": weight, "fc.bias": torch.zeros(num_classes)}, str(path))
    return path


def write_meta_mat(path: Path, leaves: list[tuple[int, str]], internal: list[tuple[int, str]]) -> None:
    """A devkit ``meta.mat``: the ``synsets`` struct array with leaf (ILSVRC2012_ID, WNID) rows
    (``num_children`` 0) and internal nodes (``num_children`` > 0), as ILSVRC2012_devkit_t12 holds it."""
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    rows = [(i, w, 0) for i, w in leaves] + [(i, w, 3) for i, w in internal]
    table = np.zeros((len(rows), 1), dtype=[(f, "O") for f in fields])
    for r, (ilsvrc_id, wnid, children) in enumerate(rows):
        table[r, 0] = (np.array(ilsvrc_id, dtype=np.uint16), wnid, f"words of {wnid}", f"gloss of {wnid}",
                       np.array(children, dtype=np.uint8), np.zeros((1, children), dtype=np.uint16),
                       np.array(0, dtype=np.uint8), np.array(1300, dtype=np.uint16))
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"synsets": table})


def jpeg_bytes(seed: int = 0, side: int = 32) -> bytes:
    """A valid RGB JPEG of random pixels."""
    import io

    pixels = np.random.default_rng(seed).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A PNG whose header declares ``width``×``height`` gray pixels, with a few KB of zero rows
    after it: decoded in full it would need ``width·height`` bytes (900 MB by default)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    rows = zlib.compress(b"\x00" * (width + 1) * 64, 9)  # the first 64 rows, all zero
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
