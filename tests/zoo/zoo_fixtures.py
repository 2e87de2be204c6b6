"""Tiny zoos for the zoo tests: seeded variants of the demo digits CNN, saved as safetensors checkpoints."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[2]
DEMO_CHECKPOINT = REPO / "examples" / "digits_cnn.safetensors"
DEMO_ARCH_FILE = REPO / "examples" / "digits_cnn.py"
PROBES = ["clean", "attack.fgsm", "curvature.topk"]
N_SAMPLES = 40

BROKEN_ARCH = '''
import os
import signal
import sys

import torch

from digits_cnn import DigitsCNN


class RaisesInForward(DigitsCNN):
    """The demo CNN (its checkpoint loads), but forward raises."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this model's forward always fails")


class ExitsInForward(DigitsCNN):
    """The demo CNN, but forward ends its process with sys.exit(7)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sys.exit(7)


class DetachedInput(DigitsCNN):
    """The demo CNN with its input detached: its input gradients are zero, so preflight raises the error flag
    zero_input_gradients; validate calls it valid (with the flag) and run audits it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.detach())


class KilledOnBatchesOf16(DigitsCNN):
    """The demo CNN, but a batch of 16 samples (the audit's batch size in the tests) kills its process with
    SIGKILL, as the kernel's OOM killer would; on other batches (preflight's, the halved retry's) it is the demo CNN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 16:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x)
'''


def variant(path: Path, seed: int, scale: float) -> Path:
    """The demo checkpoint with every weight perturbed by seeded Gaussian noise of std ``scale``
    (``seed`` 0 with ``scale`` 0 is the demo checkpoint itself); its metadata is kept."""
    with safe_open(str(DEMO_CHECKPOINT), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    gen = torch.Generator().manual_seed(seed)
    tensors = {k: (v + scale * torch.randn(v.shape, generator=gen)).contiguous() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata=meta)
    return path


def make_zoo(root: Path, n_models: int = 3, probes: list[str] | None = None, device: str | None = None) -> Path:
    """Write ``root/zoo.toml`` (the issue's minimal manifest, one [[model]] per variant) with its checkpoints
    under ``root/runs/bs<k>/model.pt`` and the architecture as ``root/models.py:M1``; ``probes`` replaces
    :data:`PROBES` and ``device`` sets ``[audit] device``."""
    shutil.copy(DEMO_ARCH_FILE, root / "digits_cnn.py")
    (root / "models.py").write_text("from digits_cnn import DigitsCNN as M1\n", encoding="utf-8")
    lines = ['[audit]                       # shared settings: the same keys as robaudit.toml',
             'dataset = "digits"', f'probes = {probes or PROBES!r}'.replace("'", '"'), f"n-samples = {N_SAMPLES}",
             *([f'device = "{device}"'] if device else []), ""]
    for k in range(n_models):
        bs = 16 * 2 ** k
        (root / "runs" / f"bs{bs}").mkdir(parents=True)
        variant(root / "runs" / f"bs{bs}" / "model.pt", seed=k, scale=0.02 * k)
        lines += ["[[model]]", f'name = "bs{bs}"                 # unique; the output folder zoo/models/bs{bs}/',
                  f'source = "runs/bs{bs}/model.pt" # a checkpoint path (relative to the manifest)',
                  'arch = "models.py:M1"         # optional, as --arch', "arch-kwargs = {num_classes = 10}",
                  f"tags = {{batch_size = {bs}, lr = 0.01}}", ""]
    path = root / "zoo.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
