"""Perturbation budgets: dataset-aware ε lists, norms, and the stable ε key format.

Every ε is in [0, 1] pixel units (the model normalises inside), measured in the L∞ or
L2 norm of the perturbation δ = x_adv − x over all C·H·W pixels of one sample.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from robaudit.errors import ProbeError

NORMS = ("linf", "l2")

# Dataset families. Unknown names (``tensors`` …) are placed by image size, see family_of.
DIGITS = "digits"            # scikit-learn digits, 8×8 gray (d = 64)
MNIST_LIKE = "mnist-like"    # 28×28 gray (d = 784)
CIFAR_LIKE = "cifar-like"    # 32×32 colour
IMAGENET_LIKE = "imagenet-like"

_FAMILY_BY_NAME = {
    "digits": DIGITS,
    "mnist": MNIST_LIKE,
    "fashion-mnist": MNIST_LIKE,
    "cifar10": CIFAR_LIKE,
    "cifar100": CIFAR_LIKE,
    "svhn": CIFAR_LIKE,
    "imagefolder": IMAGENET_LIKE,
    "imagenet": IMAGENET_LIKE,
}

# Sweep defaults (science.md §3). CIFAR adds Yao's 0.01 and 0.02; L2 lists include Yao's 1.2 (CIFAR)
# and 2.8 (MNIST). The digits L2 list is scaled to its 64 pixels.
DEFAULT_EPS: dict[str, dict[str, tuple[float, ...]]] = {
    DIGITS: {"linf": (0.05, 0.1, 0.15, 0.2, 0.3), "l2": (0.25, 0.5, 1.0, 1.5)},
    MNIST_LIKE: {"linf": (0.05, 0.1, 0.15, 0.2, 0.3), "l2": (0.5, 1.0, 2.0, 2.8)},
    CIFAR_LIKE: {"linf": (2 / 255, 0.01, 4 / 255, 0.02, 8 / 255), "l2": (0.25, 0.5, 1.0, 1.2)},
    IMAGENET_LIKE: {"linf": (1 / 255, 2 / 255, 4 / 255), "l2": (0.5, 1.0, 2.0, 3.0)},
}

# The single standard threat-model budget of each family (RobustBench / AutoAttack convention):
# AutoAttack is reported at one ε per threat model, and each ε costs a full AutoAttack run.
STANDARD_EPS: dict[str, dict[str, tuple[float, ...]]] = {
    DIGITS: {"linf": (0.3,), "l2": (1.0,)},
    MNIST_LIKE: {"linf": (0.3,), "l2": (2.0,)},
    CIFAR_LIKE: {"linf": (8 / 255,), "l2": (0.5,)},
    IMAGENET_LIKE: {"linf": (4 / 255,), "l2": (3.0,)},
}

# Upper end of the minimal-ε bisection; beyond it a sample counts as "not broken".
DEFAULT_EPS_MAX: dict[str, dict[str, float]] = {
    DIGITS: {"linf": 0.5, "l2": 4.0},
    MNIST_LIKE: {"linf": 0.5, "l2": 8.0},
    CIFAR_LIKE: {"linf": 32 / 255, "l2": 4.0},
    IMAGENET_LIKE: {"linf": 16 / 255, "l2": 8.0},
}

# Bisection tolerance: 1/255 on digits / MNIST (the brief's "1/255 scale"); finer where budgets are smaller.
DEFAULT_TOLERANCE: dict[str, dict[str, float]] = {
    DIGITS: {"linf": 1 / 255, "l2": 4.0 / 128},
    MNIST_LIKE: {"linf": 1 / 255, "l2": 8.0 / 128},
    CIFAR_LIKE: {"linf": 0.25 / 255, "l2": 4.0 / 128},
    IMAGENET_LIKE: {"linf": 0.125 / 255, "l2": 8.0 / 128},
}


def family_of(dataset: str, image_shape: Sequence[int]) -> str:
    """The dataset family for defaults: by canonical name, else by image size (C, H, W).

    Unknown datasets: at most 8×8 → digits, at most 28×28 with one channel → MNIST-like,
    at most 64×64 → CIFAR-like, larger → ImageNet-like.
    """
    if dataset in _FAMILY_BY_NAME:
        return _FAMILY_BY_NAME[dataset]
    c, h, w = (tuple(image_shape) + (1, 1, 1))[:3]
    if h * w <= 64:
        return DIGITS
    if c == 1 and h * w <= 28 * 28:
        return MNIST_LIKE
    if h * w <= 64 * 64:
        return CIFAR_LIKE
    return IMAGENET_LIKE


@dataclass(frozen=True)
class Budgets:
    """The resolved ε list of one probe.

    Attributes:
        norm: ``linf`` or ``l2``.
        eps: ascending, distinct budgets in pixel units.
        source: ``config`` or ``default:<family>``.
    """

    norm: str
    eps: tuple[float, ...]
    source: str


def check_norm(norm: str) -> str:
    """``norm`` lower-cased, if it is ``linf`` or ``l2``; ValueError otherwise."""
    value = norm.lower()
    if value not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return value


def check_eps_list(eps: Sequence[float] | None, norm: str) -> None:
    """Validate a configured ε list (in a Config's ``__post_init__``): ValueError when wrong."""
    if eps is None:
        return
    if len(eps) == 0:
        raise ValueError("eps must list at least one budget (or be omitted for the dataset default)")
    for e in eps:
        if not math.isfinite(e) or e <= 0:
            raise ValueError(f"every eps must be a positive number of pixel units, got {e}")
        if norm == "linf" and e > 1:
            raise ValueError(f"an L∞ eps is in [0, 1] pixel units; {e} is larger than the whole pixel range")


def resolve_eps(eps: Sequence[float] | None, norm: str, dataset: str, image_shape: Sequence[int],
                standard_only: bool = False) -> Budgets:
    """The probe's budgets: the configured list (sorted, de-duplicated) or the dataset default —
    the sweep list, or with ``standard_only`` the family's single standard threat-model budget.

    Raises:
        ProbeError: an L2 budget larger than the diameter √d of the pixel box.
    """
    if eps is None:
        family = family_of(dataset, image_shape)
        if standard_only:
            return Budgets(norm, STANDARD_EPS[family][norm], f"standard:{family}")
        return Budgets(norm, DEFAULT_EPS[family][norm], f"default:{family}")
    values = tuple(sorted({float(e) for e in eps}))
    if norm == "l2":
        diameter = math.sqrt(math.prod(image_shape))
        if values[-1] > diameter + 1e-9:
            raise ProbeError(f"L2 budget {values[-1]} exceeds the diameter √d = {diameter:.4g} of the pixel box",
                             fix="use L2 budgets no larger than √(C·H·W)")
    return Budgets(norm, values, "config")


def default_eps_max(norm: str, dataset: str, image_shape: Sequence[int]) -> float:
    """Upper end of the minimal-ε search for the dataset family."""
    return DEFAULT_EPS_MAX[family_of(dataset, image_shape)][norm]


def default_tolerance(norm: str, dataset: str, image_shape: Sequence[int]) -> float:
    """Bisection tolerance for the dataset family (1/255 for digits/MNIST L∞)."""
    return DEFAULT_TOLERANCE[family_of(dataset, image_shape)][norm]


def sanity_eps(norm: str, image_shape: Sequence[int]) -> float:
    """A budget that reaches every image in the pixel box: 1 for L∞, √d for L2."""
    return 1.0 if norm == "linf" else math.sqrt(math.prod(image_shape))


def known_eps_keys(norms: Sequence[str]) -> list[str]:
    """The :func:`eps_key` of every default and standard budget of any family in ``norms``: the
    per-sample columns that get an ε-specific label in their column metadata."""
    values = {e for table in (DEFAULT_EPS, STANDARD_EPS) for family in table.values() for n in norms for e in family[n]}
    return [eps_key(e) for e in sorted(values)]


def eps_key(eps: float) -> str:
    """The stable text form of a budget used as a summary key and in per-sample names.

    Six significant digits, no trailing zeros: 0.1 → ``0.1``, 8/255 → ``0.0313725``.
    """
    return f"{float(eps):.6g}"
