"""``robaudit compare RUN_DIR... --out DIR``: models side by side, and cross-model rank correlations."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("compare")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("compare"), show_default=True,
              help="Where to write compare.json and compare.html.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds sampled permutation tests (9+ models).")
@click.option("--loss-path", "loss_paths", nargs=2, multiple=True, metavar="RUN_A RUN_B",
              help="Also draw the loss along the straight line from RUN_A's checkpoint to RUN_B's (Yao Fig 5): "
                   "a small curvature.landscape audit of RUN_A (same architecture). Repeatable.")
@click.option("--trust-checkpoint", is_flag=True, default=False,
              help="Allow unpickling for --loss-path checkpoints (never taken from the saved runs).")
@click.option("--arch", default=None, metavar="SPEC",
              help="Architecture for --loss-path audits (timm:NAME | torchvision:NAME | path/file.py:Class | "
                   "package.module:Class). Needed when the runs were audited with a Python file or module: "
                   "robaudit never imports code named by a results.json.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads for --loss-path.")
@click.option("-q", "--quiet", is_flag=True, default=False, help="Print only the report path.")
@click.option("--debug", is_flag=True, default=False, help="Show tracebacks.")
def compare(run_dirs: tuple[Path, ...], out: Path, seed: int, loss_paths: tuple[tuple[str, str], ...],
            trust_checkpoint: bool, arch: str | None, threads: int | None, quiet: bool, debug: bool) -> None:
    """Compare the audits in RUN_DIR... (at least two results directories of 'robaudit run')."""
    from robaudit.analysis.compare import compare as build
    from robaudit.analysis.compare import pick_run
    from robaudit.analysis.loss_path import loss_path
    from robaudit.report.render import render_compare

    comparison = build(list(run_dirs), seed=seed)
    comparison["loss_paths"] = []
    pairs = [(pick_run(run_dirs, a), pick_run(run_dirs, b)) for a, b in loss_paths]  # bad names fail before any work
    path = render_compare(out, comparison)
    for (name_a, run_a), (name_b, run_b) in pairs:  # each path is an audit: the comparison is on disk before it
        comparison["loss_paths"].append(loss_path(run_a, run_b, (name_a, name_b), Path(out) / f"loss-path-{name_a}-to-{name_b}",
                                                  trust_checkpoint=trust_checkpoint, threads=threads, arch=arch))
        path = render_compare(out, comparison)
    if not quiet:
        for warning in comparison["warnings"]:
            click.echo(f"note: {warning}", err=True)
    click.echo(f"report: {path}")
