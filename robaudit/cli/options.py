"""The options shared by ``robaudit run`` and ``robaudit validate``, and config-file plumbing."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from robaudit.config import AuditConfig, ConfigError, config_from_mapping, parse_knob_assignment
from robaudit.threat_model import parse_eps_option

# Keys a config file may not set: opting into unpickling must be a deliberate flag on the
# command line, never something a checked-in (or pull-request-supplied) file can switch on.
LANDSCAPE = "curvature.landscape"
CLI_ONLY = {"trust_checkpoint": "--trust-checkpoint", "model": "the MODEL argument", "resume": "--resume"}


def _floats(text: str | None) -> tuple[float, ...] | None:
    if text is None or text == "":
        return None
    try:
        return tuple(float(v) for v in str(text).replace(" ", "").split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got '{text}'") from None


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None or text == "":
        return None
    parts = str(text).lower().replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts if p.strip()]
    except ValueError:
        raise click.BadParameter(f"expected N or HxW, got '{text}'") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise click.BadParameter(f"expected N or HxW with positive sizes, got '{text}'")
    return values[0], values[1]


class _NSamples(click.ParamType):
    """``--n-samples``: a positive integer, or ``all`` for every sample."""

    name = "N|all"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        if isinstance(value, bool):
            self.fail(f"expected a positive integer or 'all', got {value!r}", param, ctx)
        if isinstance(value, int):
            number = value
        elif str(value).strip().lower() == "all":
            return "all"
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                self.fail(f"expected a positive integer or 'all', got '{value}'", param, ctx)
        if number < 1:
            self.fail(f"expected a positive integer or 'all', got {number}", param, ctx)
        return number


def _json_object(text: str | None) -> dict[str, Any]:
    if text is None or text == "":
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg} at column {exc.colno}): {text}") from None
    if not isinstance(value, dict):
        raise click.BadParameter(f"expected a JSON object like '{{\"num_classes\": 10}}', got {text}")
    return value


def model_and_data_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options that say what to audit (shared by run and validate)."""
    decorators = [
        click.argument("model"),
        click.option("-d", "--dataset", default="digits", show_default=True,
                     help="digits | cifar10 | cifar100 | mnist | fashion-mnist | svhn | imagefolder:PATH | imagenet:PATH | "
                          "imagenet-a:PATH | imagenet-r:PATH | FILE.npz | FILE.pt"),
        click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                     help="Root of the named datasets [default: $ROBAUDIT_DATA_DIR or ~/.cache/robaudit/data]."),
        click.option("--download/--no-download", default=False, show_default=True,
                     help="Let robaudit download a missing named dataset or missing zoo weights (otherwise offline)."),
        click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True),
        click.option("--n-samples", type=_NSamples(), default=None,
                     help="Stratified, seeded subsample size, or 'all' [default: every sample up to 1,000, "
                          "else a stratified 1,000]."),
        click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True),
        click.option("--convert-channels", type=click.Choice(["rgb", "gray"]), default=None,
                     help="Convert the data's channels to the model's: gray→rgb or rgb→gray (recorded)."),
        click.option("--resize", default=None, metavar="N|HxW", help="Resize the data to the model's input size (recorded)."),
        click.option("--skip-bad-images", is_flag=True, default=False,
                     help="Skip images that cannot be decoded (corrupt, truncated, decompression bombs) and record "
                          "them, instead of stopping with exit 2."),
        click.option("--arch", default=None, metavar="SPEC",
                     help="timm:NAME | torchvision:NAME | path/file.py:Class | package.module:Class."),
        click.option("--arch-kwargs", default=None, metavar="JSON", help="Keyword arguments for the architecture, as a JSON object."),
        click.option("--pretrained/--no-pretrained", default=False, show_default=True,
                     help="timm:NAME.TAG: load timm's published weights from the Hugging Face Hub cache "
                          "(HF_HOME/HF_HUB_CACHE; safetensors only unless --trust-checkpoint)."),
        click.option("--weights", default=None, metavar="DEFAULT|ENUM",
                     help="torchvision:NAME: load these published weights (DEFAULT, IMAGENET1K_V1 …) from the torch "
                          "hub cache (TORCH_HOME), hash-checked."),
        click.option("--num-classes", type=click.IntRange(min=1), default=None, metavar="K",
                     help="Build the model with K classes; re-initialises a pretrained head (recorded)."),
        click.option("--normalisation", type=click.Choice(["check", "auto"]), default="check", show_default=True,
                     help="When mean/std are guessed (not from --mean/--std, the checkpoint or pretrained weights), "
                          "preflight compares the plausible ones: 'check' stops if another is clearly better, "
                          "'auto' takes the best."),
        click.option("--trust-checkpoint", is_flag=True, default=False,
                     help="Allow unpickling a full pickled nn.Module or loading a TorchScript archive. This runs code from "
                          "the file: only for checkpoints you trust."),
        click.option("--non-strict/--strict", default=False, show_default=True,
                     help="Load despite missing/unexpected/mis-shaped keys (recorded as a warning)."),
        click.option("--ema/--no-ema", default=False, show_default=True, help="Use the EMA weights (state_dict_ema)."),
        click.option("--mean", default=None, metavar="M1,M2,M3", help="Normalisation mean per channel, in [0, 1] pixel units."),
        click.option("--std", default=None, metavar="S1,S2,S3", help="Normalisation std per channel, in [0, 1] pixel units."),
        click.option("--probes", default=None, metavar="NAME,...",
                     help="Probes to run (they run in their declared order); 'standard' stands for the default "
                          "audit set, e.g. standard,attack.cw_l2 [default: standard]."),
        click.option("--interpolate-to", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
                     metavar="OTHER",
                     help="Also draw the loss along the straight path to checkpoint OTHER (same architecture; "
                          "Yao Fig 5). Adds curvature.landscape; same as --set curvature.landscape.interpolate_to=OTHER."),
        click.option("--set", "knobs", multiple=True, metavar="PROBE.KNOB=VALUE", help="Set a probe knob (repeatable)."),
        click.option("--eps", "eps", multiple=True, metavar="NORM=E1,E2",
                     help="The run's threat model: ε budgets of one norm (linf or l2) in [0, 1] pixel units, "
                          "fractions allowed (linf=2/255,8/255); repeat per norm [default: by dataset family]."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N | mps."),
        click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads [default: torch's]."),
        *plugin_options(),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


OUTPUT_PARAMS = ("out", "resume", "overwrite", "no_report", "gate_rules")
"""The parameters of :func:`output_options`: ``run`` uses them, ``validate`` accepts and ignores them."""


def output_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Where ``run`` writes (``validate`` takes them too, so that swapping the command word works)."""
    decorators = [
        click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("audit"), show_default=True,
                     help="Results directory: results.json, per_sample.csv, report.html."),
        click.option("--resume", type=click.Path(path_type=Path), default=None, metavar="DIR",
                     help="Continue the audit in DIR, skipping probes that finished with the same settings."),
        click.option("--overwrite/--no-overwrite", default=False, show_default=True,
                     help="If --out holds an earlier audit, move its files into OUT/previous-<UTC time>/ first "
                          "(nothing is deleted). Without it such a directory is refused."),
        click.option("--no-report", is_flag=True, default=False, help="Skip the HTML report."),
        click.option("--gate", "gate_rules", type=click.Path(path_type=Path), default=None, metavar="FILE",
                     help="After the audit, gate the results on the rules in FILE (exit 1 if a rule fails; "
                          "docs/ci-gate.md)."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def plugin_options() -> list[Any]:
    """--no-plugin-autoload, -p/--plugin and --block-plugin (run, validate, probes)."""
    return [
        click.option("--no-plugin-autoload", is_flag=True, default=False,
                     help="Load only robaudit's built-in probes (also: ROBAUDIT_NO_PLUGIN_AUTOLOAD=1)."),
        click.option("-p", "--plugin", "plugins", multiple=True, metavar="DIST",
                     help="Load this plugin distribution even with autoload off (repeatable)."),
        click.option("--block-plugin", "blocked_plugins", multiple=True, metavar="DIST",
                     help="Never load this plugin distribution (repeatable; also: ROBAUDIT_BLOCK_PLUGINS=a,b)."),
    ]


def make_registry(params: dict[str, Any]) -> Any:
    """The probe registry the plugin options ask for (the options are removed from ``params``)."""
    from robaudit.probes.registry import ProbeRegistry

    no_autoload = params.pop("no_plugin_autoload", False)
    return ProbeRegistry(autoload_plugins=False if no_autoload else None, plugins=tuple(params.pop("plugins", ()) or ()),
                         blocked=tuple(params.pop("blocked_plugins", ()) or ()))


def file_defaults_for_click(run_values: dict[str, Any]) -> dict[str, Any]:
    """Config-file values as click defaults (strings where the CLI takes strings).

    Raises:
        ConfigError: the file sets a key only the command line may set.
    """
    out: dict[str, Any] = {}
    for key, value in run_values.items():
        if key in CLI_ONLY:
            raise ConfigError(f"'{key.replace('_', '-')}' cannot be set in a config file",
                              fix=f"pass {CLI_ONLY[key]} on the command line")
        if key in ("mean", "std", "probes") and isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif key == "resize" and isinstance(value, list):
            value = "x".join(str(v) for v in value)
        elif key == "arch_kwargs" and isinstance(value, dict):
            value = json.dumps(value)
        elif key == "eps" and isinstance(value, str):
            value = [value]
        elif key == "report":
            key, value = "no_report", not value
        out[key] = value
    return out


def config_from_cli(params: dict[str, Any], file_probe_config: dict[str, dict[str, Any]],
                    file_analysis: dict[str, Any] | None = None) -> AuditConfig:
    """Build the :class:`AuditConfig` from click's parameters plus the file's probe knobs (``--set`` wins) and
    its ``[analysis]`` table."""
    probe_config = {name: dict(knobs) for name, knobs in file_probe_config.items()}
    for text in params.pop("knobs", ()) or ():
        probe, knob, value = parse_knob_assignment(text)
        probe_config.setdefault(probe, {})[knob] = value
    values = dict(params)
    values["mean"] = _floats(values.get("mean"))
    values["std"] = _floats(values.get("std"))
    values["resize"] = _size(values.get("resize"))
    values["arch_kwargs"] = _json_object(values.get("arch_kwargs"))
    try:
        values["eps"] = parse_eps_option(values.get("eps") or ())
    except ValueError as exc:
        raise ConfigError(str(exc), fix="pass --eps NORM=E1,E2 (norm linf or l2), e.g. --eps linf=2/255,8/255") from None
    probes = values.get("probes")
    values["probes"] = [p.strip() for p in probes.split(",") if p.strip()] if probes else None
    other = values.pop("interpolate_to", None)
    if other is not None:
        from robaudit.models.checkpoint import refuse_untrusted_code

        refuse_untrusted_code(other, bool(values.get("trust_checkpoint")))  # before the audit, not after it
        probe_config.setdefault(LANDSCAPE, {})["interpolate_to"] = str(other)
        if values["probes"] is None:
            values["probes"] = ["standard"]
        if LANDSCAPE not in values["probes"]:
            values["probes"].append(LANDSCAPE)
    values["probe_config"] = probe_config
    values["analysis"] = dict(file_analysis or {})
    for key in ("no_plugin_autoload", "quiet", "debug", "config", "gate"):
        values.pop(key, None)
    if "no_report" in values:
        values["report"] = not values.pop("no_report")
    return config_from_mapping({k: v for k, v in values.items() if v is not None or k in ("arch",)})
