"""Choosing the mean/std the audit model folds in, and saying where they came from.

Precedence (first that is present wins): ``--mean/--std`` (``cli``), checkpoint metadata
(``checkpoint``), the config of pretrained zoo weights that were loaded
(``timm_pretrained:ARCH.TAG``, ``torchvision_weights:ENUM``, ``hf_hub:ORG/NAME``), the
architecture's zoo defaults (``timm_pretrained_cfg`` or ``torchvision_weights``), the
dataset's conventional values (``dataset``), else zeros and ones (``none``). Values are in
[0, 1] pixel units. A single value is broadcast to all C channels.

The first three are *stated*; the rest are guesses, and :func:`candidates` lists the
alternatives preflight compares them with (``robaudit.preflight``).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch

from robaudit.errors import ModelLoadError
from robaudit.models.audit_model import Normalisation

logger = logging.getLogger(__name__)

Candidate = tuple[str, Any, Any]
"""``(source, mean, std)``; values as found (lists, tuples, tensors or ``None``)."""


def resolve_normalisation(
    channels: int,
    cli: tuple[Sequence[float] | None, Sequence[float] | None],
    checkpoint: tuple[Any, Any],
    arch_defaults: list[Candidate],
    dataset: tuple[Sequence[float] | None, Sequence[float] | None],
    warnings: list[str],
) -> Normalisation:
    """Pick the normalisation for a model with ``channels`` input channels.

    Args:
        channels: C, the model's input channels.
        cli: ``(mean, std)`` from ``--mean/--std`` or ``(None, None)``.
        checkpoint: ``(mean, std)`` from checkpoint metadata or ``(None, None)``.
        arch_defaults: candidates from the architecture, in order of preference.
        dataset: the dataset's conventional ``(mean, std)`` or ``(None, None)``.
        warnings: list to append notes to (skipped defaults).

    Raises:
        ModelLoadError: user-supplied (cli) or checkpoint values are malformed or do not
        fit C channels. Architecture and dataset defaults that do not fit are skipped.
    """
    candidates: list[tuple[Candidate, bool]] = [(("cli", *cli), True), (("checkpoint", *checkpoint), True)]
    candidates += [(c, False) for c in arch_defaults]
    candidates.append((("dataset", *dataset), False))
    for (source, mean, std), must_fit in candidates:
        if mean is None and std is None:
            continue
        if mean is None or std is None:
            missing = "std" if std is None else "mean"
            raise ModelLoadError(
                f"the {_where(source)} gives {'mean' if missing == 'std' else 'std'} but no {missing}",
                fix="give both mean and std (one value per channel, in [0, 1] pixel units)",
            )
        mean_t = _as_floats(mean, "mean", source)
        std_t = _as_floats(std, "std", source)
        if any(v <= 0 for v in std_t):
            raise ModelLoadError(
                f"the {_where(source)} gives std {list(std_t)}, which has a value <= 0",
                fix="give positive standard deviations in [0, 1] pixel units",
            )
        fitted = _fit(mean_t, channels), _fit(std_t, channels)
        if fitted[0] is None or fitted[1] is None:
            text = (
                f"the {_where(source)} gives mean {list(mean_t)} and std {list(std_t)}, "
                f"which do not fit the model's {channels} input channel(s)"
            )
            if must_fit:
                counts = "1 value" if channels == 1 else f"1 or {channels} values"
                raise ModelLoadError(text, fix=f"give {counts} for each of mean and std")
            warnings.append(text + "; they were skipped")
            logger.warning("%s; skipped", text)
            continue
        if must_fit and (max(abs(v) for v in mean_t) > 1.0 or max(std_t) > 1.0):
            raise ModelLoadError(
                f"the {_where(source)} gives mean {list(mean_t)} and std {list(std_t)}, which look like 0-255 "
                "units; robaudit's models take [0, 1] pixels",
                fix="divide the values by 255",
            )
        return Normalisation(mean=fitted[0], std=fitted[1], source=source)
    return Normalisation(mean=(0.0,) * channels, std=(1.0,) * channels, source="none")


def candidates(
    channels: int,
    chosen: Normalisation,
    arch_defaults: list[Candidate],
    dataset: tuple[Sequence[float] | None, Sequence[float] | None],
) -> list[Normalisation]:
    """The plausible normalisations for a guessed one: the chosen; identity; the dataset's; the zoo default.

    Values that are missing, malformed or do not fit C channels are left out; candidates
    with the same values as an earlier one are dropped (the chosen one comes first).
    """
    found = [chosen, Normalisation((0.0,) * channels, (1.0,) * channels, "identity")]
    raw: list[Candidate] = [("dataset", *dataset), *arch_defaults[:1]]
    for source, mean, std in raw:
        if mean is None or std is None:
            continue
        try:
            mean_t, std_t = _fit(_as_floats(mean, "mean", source), channels), _fit(_as_floats(std, "std", source), channels)
        except ModelLoadError:
            continue
        if mean_t is not None and std_t is not None and all(v > 0 for v in std_t):
            found.append(Normalisation(mean_t, std_t, source))
    out: list[Normalisation] = []
    for cand in found:
        if not any(_same(cand, kept) for kept in out):
            out.append(cand)
    return out


def _same(a: Normalisation, b: Normalisation) -> bool:
    return all(math.isclose(u, v, abs_tol=1e-6) for u, v in zip(a.mean + a.std, b.mean + b.std))


def _where(source: str) -> str:
    return {
        "cli": "command line (--mean/--std)",
        "checkpoint": "checkpoint metadata",
        "timm_pretrained_cfg": "timm pretrained_cfg",
        "torchvision_weights": "torchvision default weights",
        "dataset": "dataset's conventional normalisation",
    }.get(source, source)


def _as_floats(value: Any, name: str, source: str) -> tuple[float, ...]:
    if isinstance(value, torch.Tensor):
        value = value.detach().flatten().tolist()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ModelLoadError(
            f"the {_where(source)} gives {name} {value!r}, not a list of numbers",
            fix=f"give {name} as a list of numbers, one per channel",
        )
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(float(item)):
            raise ModelLoadError(
                f"the {_where(source)} gives {name} {list(value)!r}, which holds a non-number",
                fix=f"give {name} as finite numbers, one per channel",
            )
        out.append(float(item))
    return tuple(out)


def _fit(values: tuple[float, ...], channels: int) -> tuple[float, ...] | None:
    if len(values) == channels:
        return values
    if len(values) == 1:
        return values * channels
    return None
