"""``robaudit compare RUN_DIR... --out DIR``: models side by side, and cross-model rank correlations."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("compare")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("compare"), show_default=True,
              help="Where to write compare.json and compare.html.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds sampled permutation tests (9+ models).")
@click.option("-q", "--quiet", is_flag=True, default=False, help="Print only the report path.")
@click.option("--debug", is_flag=True, default=False, help="Show tracebacks.")
def compare(run_dirs: tuple[Path, ...], out: Path, seed: int, quiet: bool, debug: bool) -> None:
    """Compare the audits in RUN_DIR... (at least two results directories of 'robaudit run')."""
    from robaudit.analysis.compare import compare as build
    from robaudit.report.render import render_compare

    comparison = build(list(run_dirs), seed=seed)
    path = render_compare(out, comparison)
    if not quiet:
        for warning in comparison["warnings"]:
            click.echo(f"note: {warning}", err=True)
    click.echo(f"report: {path}")
