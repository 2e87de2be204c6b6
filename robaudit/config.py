"""One configuration object for the CLI and the Python API, fed by ``robaudit.toml``.

Precedence: command-line flags > config file > built-in defaults. The config file feeds
click's ``default_map``, so an explicit flag always wins, including ``False`` and ``0``.

File format (``robaudit.toml``, or the same keys under ``[tool.robaudit]`` in
``pyproject.toml``)::

    dataset = "cifar10"
    n-samples = 500
    probes = ["clean", "calibration"]
    eps = ["linf=2/255,8/255", "l2=0.5"]   # the run's threat model, as --eps

    [probe-config.calibration]
    bins = 20

    [analysis]                             # the per-sample indicator analysis (docs/analysis.md)
    n-bootstrap = 1000
    auroc-budgets = "reference"

Top-level keys are the ``robaudit run`` options (dashes or underscores); the
``[probe-config.NAME]`` tables hold probe knobs; ``[analysis]`` holds the analysis knobs
(:class:`~robaudit.analysis.config.AnalysisConfig`); ``[gate]`` is reserved for gate rules.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from robaudit.analysis.config import AnalysisConfig
from robaudit.errors import ConfigError, ProbeError, did_you_mean
from robaudit.threat_model import check_eps_list, check_norm

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)

CONFIG_FILE = "robaudit.toml"
PROBE_CONFIG_TABLE = "probe_config"
ANALYSIS_TABLE = "analysis"
RESERVED_TABLES = ("gate",)


@dataclass
class AuditConfig:
    """Everything one audit needs. Field names match the ``robaudit run`` options.

    Units: ``mean``/``std`` in [0, 1] pixel units; ``resize`` as (H, W) pixels;
    ``batch_size`` in samples; ``threads`` is torch's intra-op thread count.
    ``n_samples``: a positive integer, ``"all"``, or ``None`` for the default budget (a
    stratified, seeded 1,000 when the split is larger; :mod:`robaudit.data.sampling`).
    ``skip_bad_images``: skip (and record) images that cannot be decoded safely instead
    of stopping with exit 2.
    """

    model: str
    dataset: str = "digits"
    out: Path = Path("audit")
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    trust_checkpoint: bool = False
    non_strict: bool = False
    ema: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    data_dir: Path | None = None
    download: bool = False
    split: str = "test"
    n_samples: int | str | None = None
    batch_size: int = 128
    convert_channels: str | None = None
    resize: tuple[int, int] | None = None
    skip_bad_images: bool = False
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    probes: list[str] | None = None
    probe_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    eps: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """The run's threat model per norm (``--eps linf=8/255``): ε in [0, 1] pixel units; norms not
    given take the dataset family's default (see :mod:`robaudit.threat_model`)."""
    resume: bool = False
    overwrite: bool = False
    report: bool = True
    pretrained: bool = False
    weights: str | None = None
    num_classes: int | None = None
    normalisation: str = "check"
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    """Knobs of the per-sample indicator analysis (an :class:`AnalysisConfig`, or a mapping of its
    fields: the ``[analysis]`` table). It runs at the end of every run, ``--resume`` included, with
    the knobs of that run."""

    def __post_init__(self) -> None:
        self.model = os.fspath(self.model) if isinstance(self.model, os.PathLike) else self.model
        self.dataset = os.fspath(self.dataset) if isinstance(self.dataset, os.PathLike) else self.dataset
        if not isinstance(self.model, str) or not isinstance(self.dataset, str):
            what = "model" if not isinstance(self.model, str) else "dataset"
            raise ConfigError(f"AuditConfig.{what} takes a source string, not a {type(getattr(self, what)).__name__}",
                              fix="pass a live nn.Module, (x, y) tensors, Dataset or DataLoader to "
                                  "robaudit.audit(model=..., data=...) instead")
        self.out = Path(self.out)
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir)
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}", fix="pass --batch-size 1 or more")
        if (self.n_samples is not None and self.n_samples != "all"
                and (isinstance(self.n_samples, (str, bool)) or self.n_samples < 1)):
            raise ConfigError(f"--n-samples takes a positive integer or 'all', got {self.n_samples!r}",
                              fix="pass --n-samples N, or --n-samples all to audit every sample (omit it for "
                                  "the default: a stratified 1,000 of a larger split)")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}", fix="omit --threads to use torch's default")
        if self.split not in ("test", "train"):
            raise ConfigError(f"unknown split '{self.split}'", fix="use --split test or --split train")
        if self.device.split(":")[0] not in ("auto", "cpu", "cuda", "mps"):
            raise ConfigError(f"unknown device '{self.device}'", fix="use --device auto, cpu, cuda, cuda:N or mps")
        if (self.mean is None) != (self.std is None):
            raise ConfigError("--mean and --std must be given together", fix="pass both, one value per channel")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ConfigError(f"--std values must be positive, got {list(self.std)}", fix="pass the per-channel std in [0, 1] pixel units")
        if self.resume and self.overwrite:
            raise ConfigError("--resume continues the audit in its directory and --overwrite moves it aside; "
                              "they cannot be combined", fix="drop --overwrite (or pass --no-overwrite when a config file sets it)")
        eps: dict[str, tuple[float, ...]] = {}
        for norm, values in dict(self.eps).items():
            try:
                norm = check_norm(norm)
                values = tuple(float(v) for v in values)
                check_eps_list(values, norm)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"--eps {norm}: {exc}", fix="pass --eps NORM=E1,E2 with norm linf or l2 and "
                                                              "budgets in [0, 1] pixel units, e.g. --eps linf=8/255") from None
            eps[norm] = values
        self.eps = eps
        if self.normalisation not in ("check", "auto"):
            raise ConfigError(f"unknown normalisation mode '{self.normalisation}'",
                              fix="use --normalisation check (stop on a clearly better one) or auto (take the best)")
        if self.num_classes is not None and self.num_classes < 1:
            raise ConfigError(f"--num-classes must be at least 1, got {self.num_classes}", fix="omit --num-classes")
        if self.convert_channels not in (None, "rgb", "gray"):
            raise ConfigError(f"unknown channel conversion '{self.convert_channels}'", fix="use --convert-channels rgb or gray")
        if isinstance(self.analysis, Mapping):
            self.analysis = analysis_config(self.analysis, "analysis")
        elif not isinstance(self.analysis, AnalysisConfig):
            raise ConfigError(f"AuditConfig.analysis takes an AnalysisConfig or a table of its knobs, not a "
                              f"{type(self.analysis).__name__}", fix="pass analysis={'n_bootstrap': 1000, ...}")

    def to_json(self) -> dict[str, Any]:
        """The config as JSON (the echo written to results.json)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            elif f.name == "eps":
                value = {norm: list(values) for norm, values in value.items()}
            elif isinstance(value, AnalysisConfig):
                value = dataclasses.asdict(value)
            out[f.name] = value
        return out


RUN_KEYS = tuple(f.name for f in dataclasses.fields(AuditConfig) if f.name not in ("model", ANALYSIS_TABLE))

_ANALYSIS_VALUES = {
    "n_bootstrap": "a whole number of resamples, at least 1 (default 1000)",
    "n_permutations": "a whole number of permutations, at least 1 (default 2000)",
    "level": "an interval coverage between 0 and 1 (default 0.95)",
    "alpha": "a false-discovery rate between 0 and 1 (default 0.05)",
    "min_samples": "a whole number of samples, at least 3 (default 20)",
    "max_points": "a whole number of scatter points, at least 1 (default 1000)",
    "auroc_budgets": '"reference" (each norm\'s reference budget, the default) or "all" (every budget)',
}


def analysis_config(values: Mapping[str, Any], where: str) -> AnalysisConfig:
    """An :class:`AnalysisConfig` from a table of knobs (dashes or underscores), each checked.

    Args:
        values: knob → value, e.g. the ``[analysis]`` table of a config file.
        where: what to name in messages (``[analysis] in robaudit.toml``).

    Raises:
        ConfigError: an unknown knob (with a suggestion) or a bad value, naming the knob and the fix.
    """
    hints = typing.get_type_hints(AnalysisConfig)
    kwargs: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = str(raw_key).replace("-", "_")
        if key not in hints:
            hint = did_you_mean(_dashed(key), [_dashed(k) for k in hints])
            raise ConfigError(f"unknown key '{raw_key}' in {where}" + (f"; {hint}" if hint else ""),
                              fix=f"use one of {', '.join(_dashed(k) for k in hints)} (docs/analysis.md)")
        try:
            kwargs[key] = coerce(value, hints[key])
            AnalysisConfig(**{key: kwargs[key]})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{_dashed(key)} = {value!r} in {where}: {exc}",
                              fix=f"set {_dashed(key)} to {_ANALYSIS_VALUES[key]}") from None
    return AnalysisConfig(**kwargs)


def find_config_file(start: Path | None = None) -> Path | None:
    """``robaudit.toml`` in ``start`` (default: cwd), else a ``pyproject.toml`` there with ``[tool.robaudit]``."""
    start = start or Path.cwd()
    candidate = start / CONFIG_FILE
    if candidate.is_file():
        return candidate
    pyproject = start / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            return None
        if "robaudit" in data.get("tool", {}):
            return pyproject
    return None


def read_config_file(path: Path) -> dict[str, Any]:
    """Read and check a config file.

    Returns:
        ``{"run": {option: value}, "probe_config": {probe: {knob: value}}, "analysis": {knob: value},
        "gate": {...}}`` with option and knob names normalised to underscores.

    Raises:
        ConfigError: unreadable TOML, or an unknown key (with a suggestion).
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist", fix="check the path given to --config") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", fix="fix the TOML syntax") from None
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("robaudit", {})
    run: dict[str, Any] = {}
    probe_config: dict[str, dict[str, Any]] = {}
    analysis: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        if key == PROBE_CONFIG_TABLE:
            if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
                raise ConfigError(f"[{raw_key}] in {path} must hold one table per probe", fix=f"write [{raw_key}.PROBE] tables")
            probe_config = {probe: {k.replace("-", "_"): v for k, v in knobs.items()} for probe, knobs in value.items()}
        elif key == ANALYSIS_TABLE:
            if not isinstance(value, dict):
                raise ConfigError(f"'{raw_key}' in {path} must be a table of analysis knobs",
                                  fix="write them under [analysis], e.g. n-bootstrap = 1000")
            analysis_config(value, f"[{raw_key}] in {path}")  # checked now, before any model is loaded
            analysis = {k.replace("-", "_"): v for k, v in value.items()}
        elif key in RESERVED_TABLES:
            extra[key] = value
        elif key in RUN_KEYS:
            _check_integer_key(raw_key, value, path)
            run[key] = value
        else:  # suggest the spelling the README uses (dashes), whichever the user typed
            hint = did_you_mean(_dashed(key), list(dict.fromkeys(_dashed(k) for k in (*RUN_KEYS, PROBE_CONFIG_TABLE,
                                                                                    ANALYSIS_TABLE, *RESERVED_TABLES))))
            raise ConfigError(
                f"unknown key '{raw_key}' in {path}" + (f"; {hint}" if hint else ""),
                fix="see 'robaudit run --help' for the valid option names",
            )
    return {"run": run, PROBE_CONFIG_TABLE: probe_config, ANALYSIS_TABLE: analysis, **extra}


def _check_integer_key(raw_key: str, value: Any, path: Path) -> None:
    """Refuse a TOML float or boolean for a run key that takes integers (click would truncate 1.5 to 1)."""
    hint = typing.get_type_hints(AuditConfig)[raw_key.replace("-", "_")]
    options = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    if any(typing.get_origin(a) is tuple and set(typing.get_args(a)) == {int} for a in options):
        items = value if isinstance(value, list) else [value]  # resize = [H, W] or N
    elif int in options and float not in options:
        items = [value]
    else:
        return
    bad = next((v for v in items if isinstance(v, (bool, float))), None)
    if bad is None:
        return
    shown = str(bad).lower() if isinstance(bad, bool) else repr(bad)
    whole = isinstance(bad, float) and bad.is_integer() and abs(bad) < 2**53
    raise ConfigError(
        f"'{raw_key}' in {path} is {shown}, not an integer",
        fix=f"write '{raw_key}' as a whole number without a decimal point"
        + (f", e.g. {int(bad)}" if whole else ""),
    )


def _dashed(key: str) -> str:
    return key.replace("_", "-")


def parse_knob_assignment(text: str) -> tuple[str, str, Any]:
    """Parse ``PROBE.KNOB=VALUE`` from ``--set`` into (probe, knob, value).

    The probe name may itself contain dots (``attack.pgd.steps=40``): the knob is the
    part after the last dot. VALUE is read as JSON when it parses (numbers, booleans,
    lists), else kept as a string.
    """
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"cannot read --set '{text}'", fix="write --set PROBE.KNOB=VALUE, e.g. --set calibration.bins=20")
    lhs, raw = text.split("=", 1)
    probe, knob = lhs.rsplit(".", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return probe, knob.replace("-", "_"), value


def build_probe_config(probe_cls: type, knobs: dict[str, Any]) -> Any:
    """Make ``probe_cls.Config`` from a dict of knob values, checking names and types.

    Raises:
        ProbeError: an unknown knob (with a suggestion) or a value of the wrong type.
    """
    config_cls = probe_cls.Config
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    hints = typing.get_type_hints(config_cls)
    values: dict[str, Any] = {}
    for knob, value in knobs.items():
        if knob not in fields:
            hint = did_you_mean(knob, fields)
            known = ", ".join(fields) or "none"
            raise ProbeError(
                f"probe '{probe_cls.name}' has no knob '{knob}'" + (f"; {hint}" if hint else ""),
                fix=f"use one of its knobs: {known}",
            )
        try:
            values[knob] = coerce(value, hints[knob])
        except (TypeError, ValueError) as exc:
            raise ProbeError(
                f"knob '{probe_cls.name}.{knob}' got {value!r}: {exc}",
                fix=f"give a value of type {_type_name(hints[knob])}",
            ) from None
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise ProbeError(f"invalid knobs for probe '{probe_cls.name}': {exc}", fix="check the knob values") from None


def check_unselected_knobs(probe_config: dict[str, dict[str, Any]], selected: Iterable[str], registry: Any) -> None:
    """Check the knobs given for probes that will not run, before any model is loaded.

    A knob table (``--set PROBE.KNOB=VALUE`` or ``[probe-config.PROBE]``) for an unknown probe is an
    error with a suggestion; one for a registered probe that is not selected is checked like any
    other and then ignored with one warning naming the probe and how to select it (a config
    file's knob tables are defaults for whenever their probe runs, so they are not refused).

    Args:
        probe_config: probe name → knob values.
        selected: the probes that will run.
        registry: the :class:`~robaudit.probes.registry.ProbeRegistry` (``names``, ``get``, ``broken``).

    Raises:
        ProbeError: an unknown probe name, or an unknown knob or a bad value for a registered one.
    """
    chosen = set(selected)
    for name, knobs in probe_config.items():
        if name in chosen or name in registry.broken:
            continue
        registered = registry.names()
        if name not in registered:
            dotted = [f"{name}.{k}" for k, v in knobs.items() if isinstance(v, dict) and f"{name}.{k}" in registered]
            if dotted:  # TOML read [probe-config.attack.cw_l2] as table 'attack' holding table 'cw_l2'
                raise ProbeError(f"knobs given for unknown probe '{name}': TOML splits a table name at its dots",
                                 fix=f'quote a dotted probe name: [probe-config."{dotted[0]}"]')
            hint = did_you_mean(name, registered)
            raise ProbeError(f"knobs given for unknown probe '{name}'" + (f"; {hint}" if hint else ""),
                             fix="run 'robaudit probes' to list the registered probes")
        build_probe_config(registry.get(name), knobs)
        log.warning("knobs for probe '%s' (%s) are ignored: the probe is not selected; add it to --probes to run it "
                    "(e.g. --probes standard,%s)", name, ", ".join(knobs) or "none", name)


def coerce(value: Any, hint: Any) -> Any:
    """Convert a TOML/JSON/CLI value to the type ``hint`` (bool, int, float, str, Optional, list/tuple)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        inner = args[0] if args else Any
        items = [coerce(v, inner) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise TypeError(f"expected a table, got {type(value).__name__}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "yes", "1", "false", "no", "0"}:
            return value.lower() in {"true", "yes", "1"}
        raise TypeError(f"expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise TypeError(f"expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value
    if hint is Path:
        return Path(value)
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise TypeError(f"cannot convert {value!r} to {_type_name(hint)}")


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def config_from_mapping(values: dict[str, Any]) -> AuditConfig:
    """An :class:`AuditConfig` from option values, coercing each by the field's type.

    Raises:
        ConfigError: an unknown option (with a suggestion) or a value of the wrong type.
    """
    hints = typing.get_type_hints(AuditConfig)
    kwargs: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = raw_key.replace("-", "_")
        if key == ANALYSIS_TABLE:
            kwargs[key] = value  # a mapping or an AnalysisConfig, checked by AuditConfig
            continue
        if key not in hints:
            hint = did_you_mean(key, hints)
            raise ConfigError(f"unknown option '{raw_key}'" + (f"; {hint}" if hint else ""), fix="see 'robaudit run --help'")
        try:
            kwargs[key] = coerce(value, hints[key])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"option '{raw_key}' got {value!r}: {exc}", fix=f"give a value of type {_type_name(hints[key])}") from None
    if "model" not in kwargs:
        raise ConfigError("no model given", fix="pass a model: a checkpoint path, timm:NAME or torchvision:NAME")
    return AuditConfig(**kwargs)
