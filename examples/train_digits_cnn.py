"""Regenerate examples/digits_cnn.safetensors deterministically.

Trains DigitsCNN on the train split of scikit-learn's digits (robaudit's fixed split) with
full-batch Adam on one CPU thread, in deterministic mode, so the same torch version gives
the same bytes. Usage::

    python examples/train_digits_cnn.py [--out examples/digits_cnn.safetensors]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from digits_cnn import DigitsCNN  # noqa: E402

from robaudit.data.digits import DIGITS_MEAN, DIGITS_STD, digits_split  # noqa: E402

EPOCHS = 150
LR = 3e-3
SEED = 0


def train() -> tuple[DigitsCNN, float]:
    """Train and return (model, test accuracy)."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    x, y, _ = digits_split("train")
    xt, yt, _ = digits_split("test")
    mean, std = torch.tensor(DIGITS_MEAN).view(1, 1, 1, 1), torch.tensor(DIGITS_STD).view(1, 1, 1, 1)
    x, xt = (torch.from_numpy(x) - mean) / std, (torch.from_numpy(xt) - mean) / std
    y, yt = torch.from_numpy(y), torch.from_numpy(yt)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    for _ in range(EPOCHS):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(xt).argmax(1) == yt).double().mean())
    return model, acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "digits_cnn.safetensors")
    args = parser.parse_args()
    model, acc = train()
    metadata = {
        "arch": "examples/digits_cnn.py:DigitsCNN",
        "num_classes": "10",
        "mean": json.dumps(list(DIGITS_MEAN)),
        "std": json.dumps(list(DIGITS_STD)),
        "trained_on": "sklearn digits, robaudit train split (1437 samples)",
        "recipe": f"full-batch Adam lr={LR}, {EPOCHS} epochs, seed {SEED}, 1 thread, deterministic",
        "test_accuracy": f"{acc:.4f}",
        "torch": torch.__version__,
    }
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(args.out), metadata=metadata)
    print(f"wrote {args.out} (test accuracy {acc:.4f})")


if __name__ == "__main__":
    main()
