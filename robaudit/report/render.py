"""Render ``report.html`` from a results directory, with jinja2 templates from ``reports/templates``.

The report is one self-contained file: inline CSS and SVG, no scripts or fonts from the
network. Autoescaping is on, so names taken from checkpoints or paths cannot inject HTML.

Sections: each entry of :data:`SECTIONS` is shown when one of its probes ran. A section may
have its own template ``reports/templates/sections/<id>.html.j2`` and its own context builder
``robaudit.report.sections.<id>.build(results) -> dict`` (figures, tables); the template sees
that dict as ``s.ctx`` and the section spec as ``s``. Without them the section lists each
probe's summary table.
"""
from __future__ import annotations

import importlib
import math
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2

from robaudit.analysis.ranking import distinct_labels, rank_indicators, top_and_worst
from robaudit.errors import InternalError
from robaudit.report import figures
from robaudit.report.verdict import verdict
from robaudit.results import store

TEMPLATE = "report.html.j2"

# The report's sections, in order; each is shown when one of its probes ran.
SECTIONS: tuple[dict[str, Any], ...] = (
    {"id": "attacks", "title": "Attacks", "prefixes": ("attack.",),
     "how": "add attack probes, e.g. --probes clean,attack.pgd (see 'robaudit probes')"},
    {"id": "curvature", "title": "Parameter curvature", "prefixes": ("curvature.",),
     "how": "add curvature probes, e.g. --probes clean,curvature.topk"},
    {"id": "geometry", "title": "Input geometry", "prefixes": ("geometry.",),
     "how": "add input-geometry probes, e.g. --probes clean,geometry.gradients"},
    {"id": "indicators", "title": "Indicator tests", "prefixes": (),
     "how": "run indicator probes (input geometry) together with a minimal-ε attack probe (attack.min_eps) or "
            "attack probes at their norm's reference budget; or set auroc-budgets = \"all\" in [analysis] of "
            "robaudit.toml to test attacks run at other budgets too"},
)


def template_dir() -> Path:
    """The templates: packaged as ``robaudit/templates`` in a wheel, ``reports/templates`` in a checkout."""
    packaged = files("robaudit") / "templates"
    if packaged.is_dir():
        return Path(str(packaged))
    source = Path(__file__).resolve().parents[2] / "reports" / "templates"
    if source.is_dir():
        return source
    raise InternalError("robaudit's report templates are missing from this installation",
                        fix="reinstall robaudit (pip install --force-reinstall robaudit)")


def environment() -> jinja2.Environment:
    """The jinja2 environment: strict undefined, autoescape on for every template."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = format_number
    env.filters["estimate"] = format_estimate
    env.filters["interval"] = format_interval
    env.filters["interval_methods"] = interval_methods
    return env


def format_number(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; ``—`` for missing."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:.{digits}g}"
    return str(value)


def format_estimate(value: Any) -> str:
    """``0.9722 [0.9496, 0.9848]`` for an estimate dict, else :func:`format_number`."""
    if isinstance(value, dict) and "value" in value:
        text = format_number(value["value"])
        if value.get("low") is not None and value.get("high") is not None:
            level = value.get("level")
            pct = f"{round(100 * level)} % " if level else ""
            text += f" ({pct}CI {format_number(value['low'])}–{format_number(value['high'])}, {value.get('method')})"
        return text
    return format_number(value)


def format_interval(value: Any) -> str:
    """``0.9722 [0.9496, 0.9848]`` for an estimate dict (its level and method go in a header, once:
    :func:`interval_methods`), else :func:`format_number`."""
    if isinstance(value, dict) and "value" in value:
        text = format_number(value["value"])
        if value.get("low") is not None and value.get("high") is not None:
            text += f" [{format_number(value['low'])}, {format_number(value['high'])}]"
        return text
    return format_number(value)


def interval_methods(values: Any) -> str:
    """``95 % CI, wilson`` (each distinct level and method of the estimates among ``values``, joined
    by ``; ``): the one place a table states how its bracketed intervals were computed."""
    seen = []
    for value in values:
        if isinstance(value, dict) and value.get("low") is not None and value.get("method"):
            level = value.get("level")
            text = f"{round(100 * level)} % CI, {value['method']}" if level else f"CI, {value['method']}"
            if text not in seen:
                seen.append(text)
    return "; ".join(seen)


def flatten_summary(summary: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """(``a › b``, leaf) rows of a nested summary; estimates and lists of numbers are leaves."""
    rows: list[tuple[str, Any]] = []
    for key, value in summary.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and "value" not in value:
            rows.extend(flatten_summary(value, path))
        elif isinstance(value, list):
            rows.append((" › ".join(path), ", ".join(format_number(v, 3) for v in value)))
        else:
            rows.append((" › ".join(path), value))
    return rows


def build_context(results: dict[str, Any]) -> dict[str, Any]:
    """Everything the template needs, derived from ``results.json``."""
    probes = results.get("probes", {})
    ok = {name: p for name, p in probes.items() if p.get("status") == "ok"}
    sections = []
    templates = template_dir()
    for spec in SECTIONS:
        members = [n for n in probes if spec["prefixes"] and n.startswith(spec["prefixes"])]
        ran = any(n in ok for n in members)
        if spec["id"] == "indicators":  # the analysis stage, not a probe
            ran = bool((results.get("analysis") or {}).get("tests"))
        own = f"sections/{spec['id']}.html.j2"
        why = (results.get("analysis") or {}).get("skipped") if spec["id"] == "indicators" else None
        sections.append({
            **spec, "probes": members, "ran": ran, "why": why,
            "template": own if (templates / own).is_file() else None,
            "ctx": _section_context(spec["id"], results) if ran else {},
        })
    figs: dict[str, str] = {}
    if "calibration" in ok and ok["calibration"]["artifacts"].get("reliability_diagram"):
        figs["reliability"] = figures.reliability_diagram(ok["calibration"]["artifacts"]["reliability_diagram"])
    confusion = confusion_summary(ok["clean"]["artifacts"]) if "clean" in ok else None
    if confusion and confusion["dense"] is not None:
        figs["confusion"] = figures.confusion_matrix(confusion["dense"])
    severities = {"error": 0, "warning": 0, "info": 0}
    for flag in results.get("flags", []):
        severities[flag["severity"]] = severities.get(flag["severity"], 0) + 1
    return {
        "r": results,
        "plugin_sections": plugin_sections(results),
        "probes": probes,
        "ok": ok,
        "summaries": {name: flatten_summary(_readable_summary(name, p.get("summary", {}))) for name, p in probes.items()},
        "sections": sections,
        "figures": figs,
        "severities": severities,
        "headline": headline_robustness(ok),
        "confusion": confusion,
        "per_class": per_class_rows(ok.get("clean", {}).get("summary", {})),
        "verdict": verdict(results),
        "ranked": ranked_indicators(results),
    }


DENSE_CONFUSION_MAX = 20  # classes; above it the report lists the top confusions instead of a heat-map
TOP_CONFUSIONS = 20


def confusion_summary(artifacts: dict[str, Any]) -> dict[str, Any] | None:
    """The clean probe's confusion matrix for the report: ``dense`` (K×K lists, K ≤
    :data:`DENSE_CONFUSION_MAX`, else None), ``top`` (the largest off-diagonal cells as true, predicted,
    count; at most :data:`TOP_CONFUSIONS`), ``num_classes`` and ``off_diagonal`` (total misclassified).
    Reads the sparse ``confusion`` artifact (clean v2) or the dense ``confusion_matrix`` (v1)."""
    if artifacts.get("confusion"):
        k, cells = artifacts["confusion"]["num_classes"], artifacts["confusion"]["cells"]
    elif artifacts.get("confusion_matrix"):
        dense = artifacts["confusion_matrix"]
        k, cells = len(dense), [[i, j, c] for i, row in enumerate(dense) for j, c in enumerate(row) if c]
    else:
        return None
    off = sorted((c for c in cells if c[0] != c[1]), key=lambda c: (-c[2], c[0], c[1]))
    dense = None
    if k <= DENSE_CONFUSION_MAX:
        dense = [[0] * k for _ in range(k)]
        for t, p, c in cells:
            dense[t][p] = c
    return {"num_classes": k, "dense": dense, "top": off[:TOP_CONFUSIONS], "off_diagonal": sum(c[2] for c in off),
            "cells": len(cells)}


def _readable_summary(name: str, summary: dict[str, Any]) -> dict[str, Any]:
    """A probe summary for its generic table: the clean probe's per-class list is left out above
    :data:`DENSE_CONFUSION_MAX` classes (the report lists the worst classes instead)."""
    if name == "clean" and len(summary.get("per_class_accuracy") or []) > DENSE_CONFUSION_MAX:
        return {k: v for k, v in summary.items() if k != "per_class_accuracy"}
    return summary


def per_class_rows(summary: dict[str, Any], worst: int = TOP_CONFUSIONS) -> dict[str, Any]:
    """Per-class accuracy for the report: every class with samples when there are few, else the
    ``worst`` lowest (class, accuracy) and the count of classes with samples."""
    values = summary.get("per_class_accuracy") or []
    present = [(c, a) for c, a in enumerate(values) if a is not None]
    return {"num_classes": len(values), "with_samples": len(present),
            "worst": sorted(present, key=lambda ca: (ca[1], ca[0]))[:worst]}


def ranked_indicators(results: dict[str, Any], k: int = 5) -> dict[str, Any]:
    """The ``#top-indicators`` table: the top ``k`` and worst ``k`` indicators of
    :func:`~robaudit.analysis.ranking.rank_indicators`, with display labels."""
    analysis = results.get("analysis") or {}
    rows = rank_indicators(analysis) if analysis.get("tests") else []
    labels = distinct_labels(analysis.get("labels", {}))
    for i, row in enumerate(rows, 1):
        row.update(rank=i, label=labels.get(row["indicator"], row["indicator"]),
                   outcome_label=labels.get(row["outcome"], row["outcome"]))
    top, worst = top_and_worst(rows, k)
    method = analysis.get("method") or {}
    return {"rows": rows, "top": top, "worst": worst, "hidden": len(rows) - len(top) - len(worst),
            "alpha": method.get("alpha", 0.05), "level_pct": round(100 * method.get("level", 0.95))}


NORM_NAMES = {"linf": "L∞", "l2": "L2"}


def headline_robustness(ok: dict[str, Any]) -> list[dict[str, Any]]:
    """Verdict-summary cards: robust accuracy per ε (all samples, Wilson CI) of the per-sample worst
    case over all attacks, per norm; without ``attack.worst_case``, of each attack probe that ran."""
    cards = []
    worst = ok.get("attack.worst_case", {}).get("summary", {})
    sources = ([(f"Worst-case robust accuracy ({NORM_NAMES.get(norm, norm)})", worst[norm]) for norm in NORM_NAMES
                if isinstance(worst.get(norm), dict)] if worst else
               [(f"{name} robust accuracy", p["summary"]) for name, p in ok.items()
                if name.startswith("attack.") and isinstance(p["summary"].get("robust_accuracy"), dict)])
    for title, summary in sources:
        rows = [{"eps": key, **est} for key, est in summary.get("robust_accuracy", {}).items()
                if isinstance(est, dict) and est.get("value") is not None]
        if rows:
            cards.append({"title": title, "rows": rows, "attacks": summary.get("attacks")})
    min_eps = ok.get("attack.min_eps", {}).get("summary", {})
    if isinstance(min_eps.get("min_eps_quantiles"), dict):
        cards.append({"title": f"Median minimal ε ({NORM_NAMES.get(min_eps.get('norm'), '')}, clean-correct)",
                      "median": min_eps["min_eps_quantiles"].get("q50"), "quartiles": min_eps["min_eps_quantiles"],
                      "n": min_eps.get("clean_correct")})
    return cards


def plugin_sections(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Sections contributed by probes with a ``report_template`` (typically plugins).

    Each is rendered in its own autoescaping environment over the probe package's
    templates and handed to the main template as markup. A probe whose distribution is not
    installed here still gets its generic summary table, with a note saying what to install.
    """
    from robaudit.errors import RobauditError
    from robaudit.probes.registry import ProbeRegistry

    out = []
    registry = None
    for name, entry in results.get("probes", {}).items():
        if entry.get("status") != "ok" or entry.get("distribution", {}).get("name") == "robaudit":
            continue
        registry = registry or ProbeRegistry(autoload_plugins=True)
        try:
            cls = registry.get(name)
        except RobauditError:
            dist = entry.get("distribution", {}).get("name", "its plugin")
            out.append({"name": name, "title": name, "html": None,
                        "note": f"install '{dist}' to render this probe's own report section"})
            continue
        if not getattr(cls, "report_template", None):
            continue
        out.append({"name": name, "title": cls.report_title or name, "html": render_probe_section(cls, entry, results),
                    "note": None})
    return out


def render_probe_section(cls: Any, entry: dict[str, Any], results: dict[str, Any]) -> str:
    """The HTML of a probe's own report section, as ``report.html`` embeds it.

    The probe's :attr:`~robaudit.probes.base.Probe.report_template` is rendered in an autoescaping,
    strict environment over its package's templates, with the filters ``num`` and ``estimate``, and
    sees ``entry`` (the probe's results.json entry), ``results`` (the whole file) and ``ctx``
    (:meth:`~robaudit.probes.base.Probe.report_context`).
    """
    package, _, rel = cls.report_template.partition(":")
    env = jinja2.Environment(loader=jinja2.PackageLoader(package, str(Path(rel).parent) or "."),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = format_number
    env.filters["estimate"] = format_estimate
    return env.get_template(Path(rel).name).render(entry=entry, results=results, ctx=cls.report_context(entry, results))


def _section_context(section_id: str, results: dict[str, Any]) -> dict[str, Any]:
    """``robaudit.report.sections.<id>.build(results)``, or ``{}`` when the section has no builder."""
    name = f"robaudit.report.sections.{section_id}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return {}
        raise
    return module.build(results)


def render_report(out_dir: Path) -> Path:
    """Render ``out_dir/report.html`` from ``out_dir/results.json``; returns its path."""
    out_dir = Path(out_dir)
    # Printable strings: a results.json from an older robaudit may hold a non-UTF-8 path as lone surrogates.
    results = store.printable_strings(store.read_results(out_dir))
    html = environment().get_template(TEMPLATE).render(**build_context(results))
    path = out_dir / store.REPORT_FILE
    store.atomic_write_text(path, html)
    return path


COMPARE_TEMPLATE = "compare.html.j2"
COMPARE_JSON = "compare.json"
COMPARE_HTML = "compare.html"


def render_compare(out_dir: Path, comparison: dict[str, Any]) -> Path:
    """Write ``compare.json`` and the self-contained ``compare.html`` into ``out_dir``."""
    from robaudit import __version__

    out_dir = Path(out_dir)
    comparison = store.printable_strings(comparison)  # run directories may have non-UTF-8 names
    store.atomic_write_text(out_dir / COMPARE_JSON, store.json_text(comparison))
    figs = [figures.robust_accuracy_curves(curves, probe) for probe, curves in comparison["curves"].items()]
    paths = [{**p, "svg": figures.loss_path(p["t"], p["losses"], p["from"], p["to"])}
             for p in comparison.get("loss_paths", [])]
    html = environment().get_template(COMPARE_TEMPLATE).render(c=comparison, figures=figs, loss_paths=paths,
                                                               version=__version__)
    path = out_dir / COMPARE_HTML
    store.atomic_write_text(path, html)
    return path
