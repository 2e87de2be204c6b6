"""The run's threat model: for each norm, the ε budgets every probe reads (one owner of ε).

Resolved once per run (:func:`resolve_threat_model`) from, in order of precedence:

1. the config: ``--eps linf=0.03,8/255 --eps l2=0.5`` (or ``eps = ["linf=0.03,8/255"]`` in
   ``robaudit.toml``) sets that norm's list for the whole run;
2. the dataset family, by canonical dataset name (``digits``, ``mnist``, ``cifar10`` …);
3. the input size, for datasets without a family (tensor files, ImageFolder trees of any size):
   at most 8×8 → digits, 28×28 grey → MNIST-like, at most 64×64 → CIFAR-like, else ImageNet-like.

Every ε is in [0, 1] pixel units (the model normalises inside), measured in the L∞ or L2 norm of
the perturbation δ = x_adv − x over all C·H·W pixels of one sample. The resolved model, with the
source of each norm's list, is written to ``results.json`` (top-level ``threat_model``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

NORMS = ("linf", "l2")

DIGITS = "digits"            # scikit-learn digits, 8×8 grey (d = 64)
MNIST_LIKE = "mnist-like"    # 28×28 grey (d = 784)
CIFAR_LIKE = "cifar-like"    # 32×32 colour
IMAGENET_LIKE = "imagenet-like"

_FAMILY_BY_NAME = {
    "digits": DIGITS,
    "mnist": MNIST_LIKE,
    "fashion-mnist": MNIST_LIKE,
    "cifar10": CIFAR_LIKE,
    "cifar100": CIFAR_LIKE,
    "svhn": CIFAR_LIKE,
    "imagenet": IMAGENET_LIKE,
}


@dataclass(frozen=True)
class NormBudget:
    """The budgets of one norm.

    Attributes:
        eps: the sweep, ascending and distinct (pixel units): the fixed-budget attacks' list.
        reference: the headline budget, one of ``eps``: AutoAttack's single budget and the
            geometry probes' robust split, Yu's indicator and ε-ball marks. The family's standard
            budget, or the largest configured one.
        search_max: upper end of the minimal-ε search (beyond it a sample counts as not broken).
        tolerance: the minimal-ε bisection's tolerance.
        source: ``config`` or ``default:<family>``.
    """

    eps: tuple[float, ...]
    reference: float
    search_max: float
    tolerance: float
    source: str

    def to_json(self) -> dict[str, Any]:
        """The budget as a JSON object."""
        return {"eps": list(self.eps), "reference": self.reference, "search_max": self.search_max,
                "tolerance": self.tolerance, "source": self.source}


# Sweeps (science.md §3): CIFAR adds Yao's 0.01 and 0.02; L2 lists include Yao's 1.2 (CIFAR) and
# 2.8 (MNIST); the digits L2 list is scaled to its 64 pixels. The reference is the RobustBench /
# AutoAttack standard budget (digits: 0.1 L∞, below which its natural models are not broken outright).
# Bisection tolerance: 1/255 on digits / MNIST; finer where budgets are smaller.
_FAMILY_BUDGETS: dict[str, dict[str, NormBudget]] = {
    DIGITS: {
        "linf": NormBudget((0.05, 0.1, 0.15, 0.2, 0.3), 0.1, 0.5, 1 / 255, f"default:{DIGITS}"),
        "l2": NormBudget((0.25, 0.5, 1.0, 1.5), 1.0, 4.0, 4.0 / 128, f"default:{DIGITS}"),
    },
    MNIST_LIKE: {
        "linf": NormBudget((0.05, 0.1, 0.15, 0.2, 0.3), 0.3, 0.5, 1 / 255, f"default:{MNIST_LIKE}"),
        "l2": NormBudget((0.5, 1.0, 2.0, 2.8), 2.0, 8.0, 8.0 / 128, f"default:{MNIST_LIKE}"),
    },
    CIFAR_LIKE: {
        "linf": NormBudget((2 / 255, 0.01, 4 / 255, 0.02, 8 / 255), 8 / 255, 32 / 255, 0.25 / 255,
                           f"default:{CIFAR_LIKE}"),
        "l2": NormBudget((0.25, 0.5, 1.0, 1.2), 0.5, 4.0, 4.0 / 128, f"default:{CIFAR_LIKE}"),
    },
    IMAGENET_LIKE: {
        "linf": NormBudget((1 / 255, 2 / 255, 4 / 255), 4 / 255, 16 / 255, 0.125 / 255, f"default:{IMAGENET_LIKE}"),
        "l2": NormBudget((0.5, 1.0, 2.0, 3.0), 3.0, 8.0, 8.0 / 128, f"default:{IMAGENET_LIKE}"),
    },
}


def family_of(dataset: str, image_shape: Sequence[int]) -> str:
    """The dataset family: by canonical name, else by image size (C, H, W)."""
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
class ThreatModel:
    """The run's budgets per norm (pixel units), resolved once; see the module docstring.

    Attributes:
        family: the dataset family the defaults came from.
        image_shape: (C, H, W) of the audit samples.
        norms: ``linf`` and ``l2`` → :class:`NormBudget`.
    """

    family: str
    image_shape: tuple[int, ...]
    norms: Mapping[str, NormBudget]

    def eps(self, norm: str) -> tuple[float, ...]:
        """The ε sweep of ``norm`` (ascending)."""
        return self.norms[check_norm(norm)].eps

    def reference(self, norm: str) -> float:
        """The headline budget of ``norm``."""
        return self.norms[check_norm(norm)].reference

    def source(self, norm: str) -> str:
        """Where ``norm``'s list came from: ``config`` or ``default:<family>``."""
        return self.norms[check_norm(norm)].source

    def to_json(self) -> dict[str, Any]:
        """The threat model as written to ``results.json``."""
        return {"family": self.family, "image_shape": list(self.image_shape),
                "norms": {norm: budget.to_json() for norm, budget in self.norms.items()}}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> "ThreatModel":
        """The inverse of :meth:`to_json`."""
        return cls(str(value["family"]), tuple(int(v) for v in value["image_shape"]),
                   {norm: NormBudget(tuple(float(e) for e in b["eps"]), float(b["reference"]), float(b["search_max"]),
                                     float(b["tolerance"]), str(b["source"])) for norm, b in value["norms"].items()})


def resolve_threat_model(dataset: str, image_shape: Sequence[int],
                         configured: Mapping[str, Sequence[float]] | None = None) -> ThreatModel:
    """The run's threat model: configured lists override the family defaults per norm.

    Args:
        dataset: the canonical dataset name.
        image_shape: (C, H, W) of one sample.
        configured: norm → ε list from ``--eps`` / the config file (validated by :func:`parse_eps_option`).

    Raises:
        ValueError: an L2 budget larger than the diameter √d of the pixel box.
    """
    family = family_of(dataset, image_shape)
    norms = dict(_FAMILY_BUDGETS[family])
    diameter = math.sqrt(math.prod(image_shape))
    for norm, values in (configured or {}).items():
        eps = tuple(sorted({float(e) for e in values}))
        if norm == "l2" and eps[-1] > diameter + 1e-9:
            raise ValueError(f"L2 budget {eps[-1]} exceeds the diameter √d = {diameter:.4g} of the pixel box")
        default = norms[norm]
        norms[norm] = NormBudget(eps, eps[-1], max(default.search_max, eps[-1]), default.tolerance, "config")
    return ThreatModel(family, tuple(int(s) for s in image_shape), norms)


def check_norm(norm: str) -> str:
    """``norm`` lower-cased, if it is ``linf`` or ``l2``; ValueError otherwise."""
    value = str(norm).lower()
    if value not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return value


def check_eps_list(eps: Sequence[float] | None, norm: str) -> None:
    """Validate an ε list (config or a probe knob): ValueError when wrong."""
    if eps is None:
        return
    if len(eps) == 0:
        raise ValueError("eps must list at least one budget (or be omitted for the run's threat model)")
    for e in eps:
        if not math.isfinite(e) or e <= 0:
            raise ValueError(f"every eps must be a positive number of pixel units, got {e}")
        if norm == "linf" and e > 1:
            raise ValueError(f"an L∞ eps is in [0, 1] pixel units; {e} is larger than the whole pixel range")


def parse_eps_option(items: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """Parse ``--eps`` values, each ``NORM=E1,E2,…`` (numbers or fractions such as ``8/255``).

    Raises:
        ValueError: a malformed item, an unknown norm, a norm given twice or a bad budget.
    """
    out: dict[str, tuple[float, ...]] = {}
    for item in items:
        norm, sep, values = str(item).partition("=")
        if not sep or not values.strip():
            raise ValueError(f"--eps expects NORM=E1,E2,... (e.g. linf=8/255,0.05), got '{item}'")
        norm = check_norm(norm.strip())
        if norm in out:
            raise ValueError(f"--eps gives the {norm} budgets twice; list them once: {norm}=E1,E2,...")
        try:
            eps = tuple(float(Fraction(v.strip())) for v in values.split(",") if v.strip())
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"--eps {norm}: expected numbers or fractions like 8/255, got '{values}'") from None
        check_eps_list(eps, norm)
        out[norm] = eps
    return out


def eps_key(eps: float) -> str:
    """The stable text form of a budget, used as a summary key: six significant digits, no trailing
    zeros (0.1 → ``0.1``, 8/255 → ``0.0313725``). Never parsed back: the numbers live beside it."""
    return f"{float(eps):.6g}"


def same_eps(a: float, b: float) -> bool:
    """Whether two budgets are the same (to 1e-9 relative: one float written by two computations)."""
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


def known_eps_keys(norms: Sequence[str]) -> list[str]:
    """The :func:`eps_key` of every family default budget in ``norms``: per-sample columns that get an
    ε-specific label in their column metadata."""
    values = {e for family in _FAMILY_BUDGETS.values() for n in norms for e in family[n].eps}
    return [eps_key(e) for e in sorted(values)]
