"""The ``robaudit`` command line: run, validate, probes, report.

Every error for bad input is one line on stderr with a fix and a documented exit code
(:class:`robaudit.exitcodes.ExitCode`); a traceback is printed only with ``--debug``.
"""
from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

import click

from robaudit import __version__
from robaudit.cli import compare_command, gate_command, zoo_command
from robaudit.cli.options import (
    config_from_cli,
    file_defaults_for_click,
    make_registry,
    OUTPUT_PARAMS,
    model_and_data_options,
    output_options,
    plugin_options,
)
from robaudit.config import find_config_file, read_config_file
from robaudit.cli.signals import Terminated, sigterm_as_interrupt
from robaudit.cli.summary import print_summary
from robaudit.errors import RobauditError, UsageError
from robaudit.exitcodes import ExitCode
from robaudit.results.store import display_path

log = logging.getLogger("robaudit")

RUN_EPILOG = """
\b
Examples:
  # the embedded default: the demo CNN on scikit-learn's 8×8 digits
  robaudit run examples/digits_cnn.safetensors --arch examples/digits_cnn.py:DigitsCNN
\b
  # a torchvision checkpoint on CIFAR-10 read from ~/data/cifar-10-batches-py
  robaudit run resnet18.pt --arch torchvision:resnet18 --dataset cifar10 --data-dir ~/data --out audit/
\b
  # a timm model, 500 stratified samples, chosen probes and a probe knob
  robaudit run timm:resnet18 --dataset cifar10 --n-samples 500 --probes clean,calibration --set calibration.bins=20
\b
  # finish an interrupted audit, skipping probes that already finished
  robaudit run resnet18.pt --dataset cifar10 --resume audit/
\b
Defaults can come from robaudit.toml or [tool.robaudit] in pyproject.toml; flags override them.
Exit codes: 0 ok, 1 gate failed, 2 usage/bad input, 3 internal error, 4 interrupted, 5 nothing ran.
"""


def _setup_logging(quiet: bool, debug: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    logger = logging.getLogger("robaudit")
    logger.handlers.clear()
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, show_time=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("robaudit: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def common_options(func: Any) -> Any:
    """--quiet, --debug and --config on every command."""
    func = click.option("--debug", is_flag=True, default=False, help="Show tracebacks and debug logs.")(func)
    func = click.option("-q", "--quiet", is_flag=True, default=False, help="No progress bars or info logs.")(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="robaudit", message="%(prog)s %(version)s")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Config file [default: ./robaudit.toml, or [tool.robaudit] in ./pyproject.toml].")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """robaudit: audit the adversarial robustness of PyTorch models, and why."""
    path = config_path or find_config_file()
    file_values = read_config_file(path) if path is not None else {"run": {}, "probe_config": {}}
    ctx.obj = {"config_path": path, "config_given": config_path, "file": file_values}
    defaults = file_defaults_for_click(file_values["run"])
    ctx.default_map = {"run": defaults, "validate": defaults}


def _subcommand_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """``robaudit run X --config f.toml``: read the file before the other options take their defaults
    (this option is eager), exactly as ``robaudit --config f.toml run X`` does."""
    if value is None:
        return None
    given = (ctx.obj or {}).get("config_given")
    if given is not None and Path(given) != value:
        raise UsageError(f"--config is given twice, as {given} and {value}", fix="pass one --config")
    file_values = read_config_file(value)
    ctx.obj.update(config_path=value, config_given=value, file=file_values)
    ctx.default_map = file_defaults_for_click(file_values["run"])
    return value


def config_option(func: Any) -> Any:
    """--config after the subcommand (run, validate)."""
    return click.option("--config", "config_path", type=click.Path(path_type=Path), default=None, is_eager=True,
                        expose_value=False, callback=_subcommand_config,
                        help="Config file (also accepted before the subcommand) [default: ./robaudit.toml, or "
                             "[tool.robaudit] in ./pyproject.toml].")(func)


@cli.command(epilog=RUN_EPILOG)
@model_and_data_options
@output_options
@config_option
@common_options
@click.pass_context
def run(ctx: click.Context, **params: Any) -> None:
    """Audit MODEL (a checkpoint path, timm:NAME or torchvision:NAME) on a dataset."""
    from robaudit.engine import run_audit

    _setup_logging(params["quiet"], params["debug"])
    resume = params.pop("resume")
    if resume is not None:
        source = ctx.get_parameter_source("out")
        if source == click.core.ParameterSource.COMMANDLINE and Path(params["out"]) != resume:
            raise UsageError(f"--out {params['out']} and --resume {resume} name different directories",
                             fix="drop --out; --resume DIR writes to DIR")
        params["out"], params["resume"] = resume, True
    quiet = params["quiet"]
    gate_rules = params.pop("gate_rules")
    rules = gate_command.prepare_run_gate(gate_rules) if gate_rules is not None else None  # bad rules fail before the audit
    registry = make_registry(params)
    config = config_from_cli(params, ctx.obj["file"]["probe_config"], ctx.obj["file"].get("analysis"))
    try:
        outcome = run_audit(config, registry, quiet=quiet, command=["robaudit", *sys.argv[1:]])
    except KeyboardInterrupt as exc:
        how = f" by {exc}" if isinstance(exc, Terminated) else ""
        click.echo(f"robaudit: interrupted{how}; finished probe results are in {display_path(config.out)}/", err=True)
        ctx.exit(int(ExitCode.INTERRUPTED))
    print_summary(outcome.results, outcome.out_dir, outcome.report_path, quiet)
    code = outcome.exit_code
    if rules is not None:
        code = gate_command.gate_after_run(rules, outcome.out_dir, code, quiet=quiet, render=outcome.report_path is not None)
    ctx.exit(int(code))


@cli.command()
@model_and_data_options
@output_options
@config_option
@common_options
@click.pass_context
def validate(ctx: click.Context, **params: Any) -> None:
    """Check a model/data/config triple without running probes: load, match, preflight.

    Takes every option of 'run' (swap the command word to check a run's command line first); the
    output ones (--out, --resume, --overwrite, --no-report, --gate) are accepted and ignored.
    """
    from robaudit.engine.runner import prepare, select_probes
    from robaudit.preflight import run_preflight

    _setup_logging(params["quiet"], params["debug"])
    for key in OUTPUT_PARAMS:
        params.pop(key, None)
    registry = make_registry(params)
    config = config_from_cli(params, ctx.obj["file"]["probe_config"], ctx.obj["file"].get("analysis"))
    selected = select_probes(config, registry)
    device, threads, model, data = prepare(config, selected)
    needs_second = any(s.cls.needs_double_backward for s in selected)
    report = run_preflight(model, data, device, needs_second, config.batch_size)
    p = model.provenance
    lines = [
        f"model     {p.source} → {p.arch} ({p.num_classes} classes from {p.num_classes_source}; "
        f"{p.load_report.format}{', sha256 ' + p.checkpoint_sha256[:12] if p.checkpoint_sha256 else ''})",
        f"normalise mean {list(p.normalisation.mean)} std {list(p.normalisation.std)} from {p.normalisation.source}",
        f"data      {data.provenance.get('source')} {data.provenance.get('split')}: {len(data)} samples, "
        f"{tuple(data.x.shape[1:])}",
        f"probes    {', '.join(s.name for s in selected)}",
        f"device    {device}, {threads} thread(s)",
    ]
    for flag in report.flags:
        lines.append(f"flag      {flag.id} ({flag.severity.value}): {flag.message}")
    click.echo("\n".join(lines))
    errors = [f for f in report.flags if f.severity.value == "error"]
    click.echo("valid" + (f", with {len(errors)} error flag(s)" if errors else ""))
    ctx.exit(int(ExitCode.OK))


def _with_plugin_options(func: Any) -> Any:
    for decorator in reversed(plugin_options()):
        func = decorator(func)
    return func


@cli.command()
@click.argument("name", required=False, default=None)
@click.option("--json", "as_json", is_flag=True, default=False,
              help="Print as JSON: a list of probes, each with its knobs (name, type, default, unit, description).")
@_with_plugin_options
@common_options
def probes(name: str | None, as_json: bool, quiet: bool, debug: bool, **plugin_params: Any) -> None:
    """List the registered probes with their versions; with NAME, that probe's knobs (--set NAME.KNOB=VALUE)."""
    import json

    from robaudit.cli.probe_knobs import knob_rows

    registry = make_registry(plugin_params)
    infos = registry.describe()
    if name is not None:
        registry.get(name)  # an unknown name: one line with the closest names, exit 2
        infos = [info for info in infos if info.name == name]
    listed = []
    for info in infos:
        cls = registry.get_or_skip(info.name)
        listed.append({**info.__dict__, "knobs": knob_rows(cls.Config) if cls is not None else []})
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(100, Console().width))
    if name is not None:
        entry = listed[0]
        console.print(f"{entry['name']} {entry['version']} ({entry['distribution']} {entry['distribution_version']}): "
                      f"{entry['description']}", highlight=False)
        knobs = Table(title=f"knobs (--set {name}.KNOB=VALUE)", title_justify="left")
        for col in ("knob", "type", "default", "unit", "description"):
            knobs.add_column(col, no_wrap=col in ("knob", "type"), overflow="fold")
        for k in entry["knobs"]:
            knobs.add_row(k["name"], k["type"], json.dumps(k["default"]), k["unit"], k["description"])
        console.print(knobs)
        return
    table = Table(title="registered probes", title_justify="left")
    for col in ("name", "version", "distribution", "standard", "description"):
        table.add_column(col)
    for info in infos:
        table.add_row(info.name, info.version, f"{info.distribution} {info.distribution_version}",
                      "yes" if info.standard else "", info.description)
    console.print(table)
    console.print("robaudit probes NAME shows a probe's knobs.")


@cli.command()
@click.argument("results_dir", type=click.Path(path_type=Path))
@common_options
def report(results_dir: Path, quiet: bool, debug: bool) -> None:
    """Re-render RESULTS_DIR/report.html from saved results (no recomputation)."""
    from robaudit.report import render_report

    path = render_report(results_dir)
    click.echo(str(path))


cli.add_command(gate_command.gate)
cli.add_command(compare_command.compare)
cli.add_command(zoo_command.zoo)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and map every outcome to an :class:`ExitCode`."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("ROBAUDIT_DEBUG") == "1"
    if not debug:  # torch.func's first use warns about torch's own internal use of torch.jit.script
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    try:
        with sigterm_as_interrupt():
            result = cli.main(args=args, prog_name="robaudit", standalone_mode=False)
        return int(result or 0)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:  # click's own usage errors
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f". Fix: see '{exc.ctx.command_path} --help'"
        click.echo(f"robaudit: error: {' '.join(message.split())}{hint}", err=True)
        return int(ExitCode.USAGE)
    except (click.Abort, KeyboardInterrupt):
        click.echo("robaudit: interrupted; finished results are already on disk", err=True)
        return int(ExitCode.INTERRUPTED)
    except RobauditError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"robaudit: error: {exc.one_line()}", err=True)
        return int(exc.exit_code)
    except SystemExit as exc:  # robaudit's own exits are click's Exit: this is code it ran (a plugin, say)
        if debug:
            traceback.print_exc()
        click.echo(f"robaudit: internal error: code run by robaudit called sys.exit({exc.code!r}), which must not end "
                   "an audit. Rerun with --debug for the traceback and report it.", err=True)
        return int(ExitCode.INTERNAL)
    except Exception as exc:
        if debug:
            traceback.print_exc()
        first = (str(exc).splitlines() or [""])[0]
        click.echo(f"robaudit: internal error: {type(exc).__name__}: {first}. "
                   "Rerun with --debug for the traceback and report it.", err=True)
        return int(ExitCode.INTERNAL)


def entry_point() -> None:
    """The console script."""
    sys.exit(main())
