"""The knobs of the per-sample indicator analysis (``[analysis]`` in ``robaudit.toml``).

Kept free of numpy and scipy, so that reading a config file (``robaudit --version``, ``validate``)
stays cheap. The effective values are recorded in ``results.json`` (``analysis.config``).
"""
from __future__ import annotations

from dataclasses import dataclass

AUROC_BUDGETS = ("reference", "all")
"""``reference``: attack success is tested at each norm's reference budget only (the audit's ε);
``all``: at every budget of every attack."""


@dataclass(frozen=True)
class AnalysisConfig:
    """Knobs of the analysis stage.

    Attributes:
        n_bootstrap: bootstrap resamples per interval.
        n_permutations: permutations per Spearman p-value.
        level: interval coverage (two-sided, in (0, 1)).
        alpha: false-discovery rate for the verdict lines (after Benjamini–Hochberg), in (0, 1).
        min_samples: below this many usable samples a test reports "too few samples" (at least 3).
        auroc_budgets: which attack-success columns are tested with AUROC: ``"reference"`` (each
            norm's reference budget, the audit's ε; the default) or ``"all"`` (every budget).
    """

    n_bootstrap: int = 1000
    n_permutations: int = 2000
    level: float = 0.95
    alpha: float = 0.05
    min_samples: int = 20
    max_points: int = 1000
    """At most this many (indicator, outcome) points per scatter stored for the report."""
    auroc_budgets: str = "reference"

    def __post_init__(self) -> None:
        for name in ("n_bootstrap", "n_permutations", "max_points"):
            _check_int(name, getattr(self, name), 1)
        _check_int("min_samples", self.min_samples, 3)
        for name in ("level", "alpha"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
        if self.auroc_budgets not in AUROC_BUDGETS:
            raise ValueError(f"auroc_budgets must be one of {', '.join(repr(v) for v in AUROC_BUDGETS)}, "
                             f"got {self.auroc_budgets!r}")


def _check_int(name: str, value: object, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")
