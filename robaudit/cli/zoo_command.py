"""``robaudit zoo ZOO.toml --out DIR``: audit a whole model zoo into one leaderboard (docs/zoo.md)."""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import click

from robaudit.cli.signals import Terminated
from robaudit.errors import UsageError
from robaudit.exitcodes import ExitCode

ZOO_EPILOG = """
\b
Examples:
  robaudit zoo zoo.toml --out zoo/ --workers 2
  robaudit zoo zoo.toml --out zoo/ --ray                  # a local Ray instance
  robaudit zoo zoo.toml --out /shared/zoo --ray ray://head:10001   # a Ray cluster; --out on a shared filesystem
  robaudit zoo zoo.toml --out zoo/ --resume          # after an interruption: finished models are kept
  robaudit zoo --timm 'resnet1*' --pretrained --dataset imagenet:PATH --n-samples 200 --out zoo/
\b
Exit codes: 0 every model audited (and passed --gate); otherwise the most severe model's code:
3 a model's audit hit an internal error or its process died, 2 bad input for a model, 1 only gate failures;
4 Ctrl-C or SIGTERM stopped the sweep (--resume continues it).
"""


@click.command("zoo", epilog=ZOO_EPILOG)
@click.argument("manifest", required=False, type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("zoo"), show_default=True,
              help="Zoo directory: models/<name>/, zoo.json, zoo.csv, zoo.html.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Models audited at once: long-lived worker processes, each model in its own forked child; the "
                   "CPU threads are split between them [default: 1; with a local --ray, the machine's CPUs].")
@click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
              help="Run the models as Ray tasks: on the cluster at ADDRESS (or $RAY_ADDRESS), else on a local "
                   "Ray instance. Needs pip install 'robaudit[ray]'.")
@click.option("--resume", is_flag=True, default=False,
              help="Continue the sweep in --out: skip models finished with the same settings, re-run the rest.")
@click.option("--gate", "gate_rules", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Gate every model on the rules in FILE; exit 1 if any model fails (docs/ci-gate.md).")
@click.option("--dry-run", is_flag=True, default=False,
              help="Expand the models and validate each (load, match, preflight) without probes; print a table.")
@click.option("--timm", "timm_pattern", default=None, metavar="PATTERN",
              help="Instead of a manifest: every timm model matching PATTERN (timm.list_models).")
@click.option("--torchvision", "tv_pattern", default=None, metavar="PATTERN",
              help="Instead of a manifest: every torchvision model matching PATTERN (torchvision.models.list_models).")
@click.option("--pretrained", is_flag=True, default=False, help="With --timm/--torchvision: the pretrained weights.")
@click.option("--dataset", default=None, help="With --timm/--torchvision: the audit dataset (as in 'robaudit run').")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="With --timm/--torchvision: as in 'robaudit run'.")
@click.option("--n-samples", default=None, help="With --timm/--torchvision: as in 'robaudit run'.")
@click.option("--probes", default=None, help="With --timm/--torchvision: comma-separated probe names.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the cross-model bootstrap/permutations.")
@click.option("-q", "--quiet", is_flag=True, default=False, help="No per-model progress lines.")
@click.option("--debug", is_flag=True, default=False, help="Show tracebacks.")
def zoo(manifest: Path | None, out: Path, workers: int | None, ray_address: str | None, resume: bool,
        gate_rules: Path | None, dry_run: bool,
        timm_pattern: str | None,
        tv_pattern: str | None, pretrained: bool, dataset: str | None, data_dir: Path | None, n_samples: str | None,
        probes: str | None, seed: int, quiet: bool, debug: bool) -> None:
    """Audit every model of MANIFEST (ZOO.toml) or of a --timm/--torchvision pattern, one process per model."""
    from robaudit.cli import gate_command
    from robaudit.results.outdir import hold_lock
    from robaudit.zoo.manifest import expand_registry, read_manifest
    from robaudit.zoo.sweep import check_out_dir

    patterns = [(k, p) for k, p in (("timm", timm_pattern), ("torchvision", tv_pattern)) if p is not None]
    if (manifest is None) == (not patterns) or len(patterns) > 1:
        raise UsageError("name the models once: a MANIFEST, or one of --timm PATTERN / --torchvision PATTERN",
                         fix="e.g. 'robaudit zoo zoo.toml --out zoo/' or 'robaudit zoo --timm \"resnet*\" --dataset D'")
    if manifest is not None:
        if any(v is not None for v in (dataset, data_dir, n_samples, probes)) or pretrained:
            raise UsageError("--dataset, --data-dir, --n-samples, --probes and --pretrained go with --timm/--torchvision",
                             fix="set them in the manifest's [audit] table instead")
        spec = read_manifest(manifest)
    else:
        audit: dict[str, Any] = {}
        for key, value in (("dataset", dataset), ("data-dir", str(data_dir.resolve()) if data_dir else None),
                           ("n-samples", _n_samples(n_samples)), ("probes", probes.split(",") if probes else None)):
            if value is not None:
                audit[key] = value
        spec = expand_registry(*patterns[0], audit, pretrained)
    if gate_rules is not None:
        gate_command.prepare_run_gate(gate_rules)  # bad rules fail before any model runs
    address = (ray_address or os.environ.get("RAY_ADDRESS") or None) if ray_address is not None else None
    if ray_address is not None and not dry_run:
        from robaudit.zoo.ray_backend import check_ray

        check_ray(address)  # without Ray, or with nothing at the address: one line, exit 2, before any model runs
    if dry_run:
        from robaudit.zoo.sweep import thread_share

        click.get_current_context().exit(_print_dry_run(spec, thread_share(1)))
    check_out_dir(out, resume)
    with hold_lock(out):  # one sweep per --out: a second (with --resume too) stops with exit 2, naming this PID
        check_out_dir(out, resume)  # again, under the lock: a sweep that started meanwhile has written by now
        _sweep(spec, out, workers, resume, gate_rules, ray_address, address, seed, quiet)


def _sweep(spec: Any, out: Path, workers: int | None, resume: bool, gate_rules: Path | None, ray_address: str | None,
           address: str | None, seed: int, quiet: bool) -> None:
    """Run the sweep into ``out`` (locked by the caller) and write zoo.json, zoo.csv and zoo.html."""
    from robaudit.zoo.render import render_zoo
    from robaudit.zoo.sweep import load_record, run_sweep
    from robaudit.zoo.table import write_zoo, zoo_document

    def refresh() -> None:
        records = {m.name: r for m in spec.models if (r := load_record(out, m.name)) is not None}
        write_zoo(out, zoo_document(spec, out, records, seed))

    def progress(record: Any, done: int, failed: int, remaining: int, eta: float | None) -> None:
        if quiet:
            return
        what = record.status if not record.reason else f"{record.status}: {record.reason}"
        retry = f" (retried with batch size {record.retried_batch_size})" if record.retried_batch_size else ""
        click.echo(f"zoo: {record.name} {what}{retry} in {record.wall_s:.1f}s | done {done}, failed {failed}, "
                   f"remaining {remaining}, ETA {dt.timedelta(seconds=round(eta or 0))}", err=True)

    try:
        outcome = run_sweep(spec, out, workers=workers, resume=resume, gate=gate_rules,
                            use_ray=ray_address is not None, ray_address=address, on_finish=progress,
                            after_each=refresh)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the models in flight are recorded as interrupted
        how = f" by {exc}" if isinstance(exc, Terminated) else ""
        click.echo(f"robaudit: zoo interrupted{how}; finished and interrupted models are recorded in "
                   f"{out / 'tasks'}/, and 'robaudit zoo ... --resume' continues the sweep", err=True)
        if (out / "tasks").is_dir():
            refresh()
            render_zoo(out)
        click.get_current_context().exit(int(ExitCode.INTERRUPTED))
    refresh()
    path = render_zoo(out)
    if not quiet:
        if outcome.skipped:
            click.echo(f"zoo: {len(outcome.skipped)} model(s) already finished with the same settings: "
                       f"{', '.join(outcome.skipped)}", err=True)
        for record in outcome.records:
            if record.status != "ok":
                click.echo(f"zoo: {record.name} {record.status} (exit {record.exit_code}): {record.reason}", err=True)
    click.echo(f"zoo: {path}")
    click.get_current_context().exit(int(outcome.exit_code))


def _print_dry_run(spec: Any, threads: int) -> int:
    """Print the dry-run table; the exit code is 0 when every model is valid, else the most severe model's."""
    from robaudit.zoo.dry_run import dry_run
    from robaudit.zoo.sweep import zoo_exit_code
    from robaudit.zoo.task import TaskRecord

    rows = dry_run(spec, threads)
    click.echo(f"{'model':<24} {'status':<7} {'parameters':>12} {'fwd+bwd s':>10} {'forward':>10} {'fwd+bwd':>10} "
               f"{'HVP':>10} {'est. s':>9}")
    ok = [r for r in rows if r["status"] == "ok"]
    for r in rows:
        if r["status"] != "ok":
            click.echo(f"{r['name']:<24} {'failed':<7} exit {r['exit_code']}: {r['reason']}")
            continue
        est = r["cost_estimate"]
        total = est["total"]
        note = f"  (no estimate: {', '.join(est['omitted'])})" if est["omitted"] else ""
        if r["error_flags"]:
            note += f"  (error flag(s): {', '.join(r['error_flags'])})"
        click.echo(f"{r['name']:<24} {'ok':<7} {r['parameters']:>12,} {est['seconds_per_fwd_bwd']:>10.2e} "
                   f"{total['forward']:>10,.0f} {total['backward']:>10,.0f} {total['hvp']:>10,.0f} "
                   f"{total['seconds']:>9.1f}{note}")
    totals = [r["cost_estimate"]["total"] for r in ok]
    click.echo(f"{'zoo total':<24} {len(ok)}/{len(rows)} valid {sum(r['parameters'] for r in ok):>10,} {'':>10} "
               + " ".join(f"{sum(t[k] for t in totals):>10,.0f}" for k in ("forward", "backward", "hvp"))
               + f" {sum(t['seconds'] for t in totals):>9.1f}")
    click.echo("per-sample passes (forward-only, forward+backward, Hessian-vector products) from each probe's settings, "
               "as 'robaudit run' estimates them; fwd+bwd s: one timed forward+backward of one sample on this device; "
               "est. s = passes in forward+backward equivalents × fwd+bwd s")
    records = [TaskRecord(r["name"], "", r["status"], r["exit_code"], r.get("reason", "")) for r in rows]
    return int(zoo_exit_code(records))


def _n_samples(text: str | None) -> int | str | None:
    if text is None or text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--n-samples must be a positive integer or 'all', got '{text}'",
                         fix="pass e.g. --n-samples 200") from None
