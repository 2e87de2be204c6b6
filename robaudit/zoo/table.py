"""The zoo's table: one row per model (``zoo.json``, ``zoo.csv``) and the cross-model analysis.

A row holds the model's provenance, its sweep status, the clean accuracy, the robust accuracy at
every (norm, ε) of the attack-outcome table (a sample counts as robust when no attack broke it there
and it was classified correctly, so this is the worst case over the attacks run) with its Wilson
interval, the worst case (the lowest robust accuracy at the largest ε of each norm), every model-level
indicator the cross-model analysis tests (:func:`robaudit.analysis.compare.model_metrics`), the tags
and the cost. The analysis is :func:`robaudit.analysis.compare.compare_runs`, the same code as
``robaudit compare``, over the models whose audit finished.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from robaudit import __version__
from robaudit.analysis.compare import Run, compare_runs, model_metrics
from robaudit.errors import RobauditError
from robaudit.probes.base import wilson_interval
from robaudit.results import store
from robaudit.results.serialise import to_jsonable
from robaudit.threat_model import eps_key
from robaudit.zoo.manifest import Manifest
from robaudit.zoo.task import TaskRecord

ZOO_SCHEMA_VERSION = "1"
ZOO_JSON = "zoo.json"
ZOO_CSV = "zoo.csv"


def _estimate(successes: int, n: int) -> dict[str, Any]:
    est = wilson_interval(successes, n)
    return {"value": est.value, "low": est.low, "high": est.high, "n": n}


def robust_accuracy(results: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """norm → ε key → robust accuracy (Wilson 95 %) from the attack-outcome table of ``results``."""
    table = results.get("attack_outcomes") or {}
    n = int(table.get("n", 0) or 0)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for norm, entry in (table.get("norms") or {}).items():
        for row in entry.get("by_eps", []):
            out.setdefault(norm, {})[eps_key(row["eps"])] = {"eps": row["eps"], **_estimate(n - int(row["broken"]), n)}
    return out


def _load_run(path: Path, name: str) -> Run | None:
    try:
        results = store.read_results(path)
        ids, columns = store.read_per_sample(path)
    except (RobauditError, OSError, ValueError):
        return None
    return Run(path, results, columns, ids, name)


def build_rows(manifest: Manifest, out: Path, records: dict[str, TaskRecord]) -> tuple[list[dict[str, Any]], list[Run]]:
    """One row per manifest model (manifest order) and the finished runs behind them."""
    rows, runs = [], []
    for model in manifest.models:
        record = records.get(model.name)
        run_dir = out / "models" / model.name
        run = _load_run(run_dir, model.name) if record is not None else None
        results = run.results if run is not None else {}
        prov = results.get("model", {})
        clean = (results.get("probes", {}).get("clean", {}).get("summary") or {}).get("accuracy")
        robust = robust_accuracy(results)
        worst = {norm: min(by_eps.values(), key=lambda e: (-e["eps"], e["value"])) for norm, by_eps in robust.items()}
        row = {
            "name": model.name,
            "source": model.source,
            "weights": results.get("config", {}).get("weights") or model.settings.get("weights"),
            "pretrained": bool(results.get("config", {}).get("pretrained") or model.settings.get("pretrained", False)),
            "sha256": prov.get("checkpoint_sha256"),
            "arch": prov.get("arch"),
            "status": record.status if record is not None else "pending",
            "exit_code": record.exit_code if record is not None else None,
            "reason": record.reason if record is not None else "",
            "clean_accuracy": ({k: clean.get(k) for k in ("value", "low", "high", "n")}
                               if isinstance(clean, dict) else None),
            "robust_accuracy": robust,
            "worst_case": worst,
            "indicators": {},
            "parameters": _parameters(results),
            "tags": model.tags,
            "cost": {"wall_s": record.wall_s if record is not None else None,
                     "device": results.get("environment", {}).get("device"),
                     "attempts": record.attempts if record is not None else 0,
                     "retried_batch_size": record.retried_batch_size if record is not None else None},
            "report": f"models/{model.name}/report.html" if (run_dir / "report.html").is_file() else None,
        }
        if run is not None and record is not None and record.status in ("ok", "gate_failed"):  # a finished audit
            for metric in model_metrics([run]):
                if metric.kind == "indicator" and math.isfinite(metric.values[0]):
                    row["indicators"][metric.id] = metric.values[0]
            runs.append(run)
        rows.append(row)
    return rows, runs


def _parameters(results: dict[str, Any]) -> int | None:
    for entry in results.get("probes", {}).values():
        count = ((entry.get("summary") or {}).get("operator") or {}).get("parameters")
        if isinstance(count, int):
            return count
    return None


def zoo_document(manifest: Manifest, out: Path, records: dict[str, TaskRecord], seed: int = 0) -> dict[str, Any]:
    """The content of ``zoo.json``: rows, the cross-model analysis over finished models, and the tag groups."""
    rows, runs = build_rows(manifest, out, records)
    parameters = {"parameter count": [float(r["parameters"]) if r["parameters"] is not None else math.nan
                                      for r in rows if r["name"] in {run.name for run in runs}]}
    analysis = compare_runs(runs, seed, parameters) if len(runs) >= 2 else None
    groups = {}
    for key in sorted({k for m in manifest.models for k in m.tags}):
        for value in sorted({json.dumps(m.tags[key]) for m in manifest.models if key in m.tags}):
            members = [r for r in runs if json.dumps(_tags(manifest, r.name).get(key)) == value]
            if len(members) >= 3:
                groups[f"{key}={json.loads(value)}"] = compare_runs(members, seed)["correlations"]
    return {
        "schema_version": ZOO_SCHEMA_VERSION,
        "robaudit_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "manifest": str(manifest.path) if manifest.path else None,
        "audit": manifest.audit,
        "models": rows,
        "analysis": analysis,
        "groups": groups,
    }


def _tags(manifest: Manifest, name: str) -> dict[str, Any]:
    return next(m.tags for m in manifest.models if m.name == name)


def csv_text(rows: list[dict[str, Any]]) -> str:
    """``zoo.csv``: one row per model, nested fields flattened to ``robust_accuracy/linf/0.1``-style columns."""
    flat = [_flatten(r) for r in rows]
    columns = list(dict.fromkeys(k for r in flat for k in r))
    # a field that is null in one row and nested in another (a failed model's clean accuracy) is the nested
    # columns left empty, not a column of its own
    nested = {k.rsplit("/", 1)[0] for k in columns if "/" in k}
    parents = {p for k in nested for p in _prefixes(k)}
    columns = [k for k in columns if k not in parents]
    flat = [{k: v for k, v in r.items() if k not in parents} for r in flat]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()


def _prefixes(path: str) -> list[str]:
    """``a/b/c`` → ``["a", "a/b", "a/b/c"]``."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}/{k}" if prefix else str(k)))
        return out
    return {prefix: "" if node is None else node}


def write_zoo(out: Path, document: dict[str, Any]) -> None:
    """Write ``zoo.json`` and ``zoo.csv`` atomically."""
    for name, text in ((ZOO_JSON, json.dumps(to_jsonable(document), indent=2, allow_nan=False)),
                       (ZOO_CSV, csv_text(document["models"]))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)

