"""Settings the geometry probes share: working precision, the audit's ε, batch sizing, errors."""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from robaudit.errors import ProbeError
from robaudit.models.audit_model import AuditModel
from robaudit.threat_model import ThreatModel

PRECISIONS: dict[str, torch.dtype] = {"float64": torch.float64, "float32": torch.float32}

JACOBIAN_PRECISIONS = ("mixed", "float64")
"""The precisions of the probes built on the logit Jacobian (:class:`ClassSubsetConfig`). ``mixed`` runs
the Jacobian and the H·v check on a float32 copy, the logits, probabilities and the c×c solve in float64."""


def resolve_epsilon(epsilon: float | None, threat_model: ThreatModel) -> tuple[float, str]:
    """The audit's L∞ budget ε (pixel units) and where it came from.

    Returns:
        (ε, source): the probe's ``epsilon`` knob (source ``knob``), else the threat model's L∞
        reference budget (source ``threat model (<its source>)``).
    """
    if epsilon is not None:
        return float(epsilon), "knob"
    return threat_model.reference("linf"), f"threat model ({threat_model.source('linf')})"


def check_precision(precision: str) -> None:
    """Raise ``ValueError`` (turned into a ProbeError by the config) for an unknown precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def working_model(model: AuditModel, precision: str) -> AuditModel:
    """A private copy of ``model`` in ``precision`` (``mixed``: float32) with frozen parameters (the audit
    model is untouched).

    Frozen parameters keep autograd from building parameter-gradient graphs: every geometry
    quantity is a derivative with respect to the input only.
    """
    copy = model.audit_copy().to(PRECISIONS["float32" if precision == "mixed" else precision])
    for p in copy.parameters():
        p.requires_grad_(False)
    copy.eval()
    return copy


def logits_model(model: AuditModel, precision: str) -> AuditModel | None:
    """A float64 working copy for the logits (and, in ``mixed``, the Lanczos fallback) when the working
    precision is lower, else ``None``."""
    return working_model(model, "float64") if precision != "float64" else None


def batch_rows(n: int, batch_size: int, bytes_per_sample: int, budget: int) -> Iterator[slice]:
    """Row slices of at most ``batch_size`` samples whose working tensors fit in ``budget`` bytes.

    Args:
        n: the number of samples (rows).
        batch_size: the most rows per slice.
        bytes_per_sample: the working memory one sample takes (bytes).
        budget: the bytes one slice may take: :func:`robaudit.probes.memory.working_budget` of the
            device (the one owner of that number); a slice holds at least one row whatever it says.
    """
    size = _rows_per_batch(batch_size, bytes_per_sample, budget)
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def n_batches(n: int, batch_size: int, bytes_per_sample: int, budget: int) -> int:
    """How many slices :func:`batch_rows` yields for the same arguments."""
    return math.ceil(n / _rows_per_batch(batch_size, bytes_per_sample, budget)) if n else 0


def _rows_per_batch(batch_size: int, bytes_per_sample: int, budget: int) -> int:
    return max(1, min(batch_size, budget // max(1, bytes_per_sample)))


def dtype_bytes(precision: str) -> int:
    """Bytes per element of ``precision``."""
    return 8 if precision == "float64" else 4


def second_order_error(exc: BaseException) -> ProbeError | None:
    """A :class:`ProbeError` with the documented advice when ``exc`` says a second derivative is missing."""
    text = str(exc)
    first = (text.splitlines() or [""])[0]
    if "scaled_dot_product" in text or "flash_attention" in text or "efficient_attention" in text:
        return ProbeError(
            f"the model has no double backward through fused attention ({first})",
            fix="build the model with fused attention off: robaudit does this when a probe needing second "
                "derivatives is selected (timm fused_attn=False, math SDPA kernel)",
        )
    if "hardsigmoid_backward" in text or "hardswish_backward" in text or (
        "derivative for" in text and "not implemented" in text
    ):
        return ProbeError(
            f"the model has no second derivative ({first})",
            fix="load the model for second-order probes so robaudit swaps Hardsigmoid/Hardswish for "
                "exactly equal relu6 forms (it does this when such a probe is selected)",
        )
    return None


def forward_batch(batch_size: int, dim: int) -> int:
    """Inputs per forward-only pass: at least ``batch_size``, more for small inputs (≤ 4096).

    Line searches and surface grids run thousands of forward passes without autograd; small
    inputs (digits, CIFAR) run far faster in large batches, large ones keep the run's batch size.
    """
    return max(batch_size, min(4096, (1 << 22) // max(1, dim)))


@dataclass
class GeometryConfig:
    """Knobs every input-geometry probe shares; probe Configs extend it (and call ``super().__post_init__()``)."""

    epsilon: float | None = field(default=None, metadata={"unit": "pixel units ([0, 1])"})
    """Audit L∞ budget ε in pixel units (robust split, Yu's indicator, ε-ball marks); default: the threat
    model's L∞ reference budget."""
    precision: str = field(default="float64", metadata={"unit": "choice"})
    """Working precision of the model copy: ``float64`` or ``float32`` (``mixed`` for the Jacobian probes)."""
    histogram_bins: int = field(default=30, metadata={"unit": "bins"})
    """Bins of the report's histograms."""

    def __post_init__(self) -> None:
        if self.epsilon is not None and not self.epsilon > 0:
            raise ValueError(f"epsilon must be positive, got {self.epsilon}")
        if isinstance(self, ClassSubsetConfig):
            if self.precision not in JACOBIAN_PRECISIONS:
                raise ValueError(f"precision must be one of {', '.join(JACOBIAN_PRECISIONS)}, got {self.precision!r}"
                                 + (" (float32 Jacobians always come with float64 logits and c×c solve here: that "
                                    "is 'mixed')" if self.precision == "float32" else ""))
        else:
            check_precision(self.precision)
        if self.histogram_bins < 2:
            raise ValueError(f"histogram_bins must be at least 2, got {self.histogram_bins}")


@dataclass
class ClassSubsetConfig(GeometryConfig):
    """:class:`GeometryConfig` plus the class subset of probes whose cost grows with the class count c."""

    precision: str = field(default="mixed", metadata={"unit": "choice"})
    """``mixed``: float32 logit Jacobian and H·v check, float64 logits, probabilities and c×c solve (and
    Lanczos fallback); ``float64``: everything in float64 (about twice the CPU time on conv nets)."""
    top_m: int | None = field(default=None, metadata={"unit": "classes"})
    """Classes kept (the most probable); default all when c ≤ max_full_classes, else 10."""
    max_full_classes: int = field(default=100, metadata={"unit": "classes"})
    """Largest class count for which every class is kept by default."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.top_m is not None and self.top_m < 1:
            raise ValueError(f"top_m must be at least 1, got {self.top_m}")
        if self.max_full_classes < 1:
            raise ValueError(f"max_full_classes must be at least 1, got {self.max_full_classes}")
