"""Run an audit: config → model → data → preflight → probes → results (→ report).

The engine owns the bookkeeping so probes don't: validation of probe names and knobs
before anything heavy, seeding (one derived seed per probe, so ``--resume`` and
``--probes`` subsets reproduce the same numbers), device and grad mode, timing,
progress, and writing each probe's result atomically the moment it finishes.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robaudit import __version__
from robaudit.analysis.indicators import analyse
from robaudit.config import AuditConfig, build_probe_config, check_unselected_knobs
from robaudit.data import DataRequest, describe_dataset, load_data
from robaudit.data.audit_data import AuditData
from robaudit.engine.progress import make_progress
from robaudit.errors import ProbeError, RobauditError
from robaudit.exitcodes import ExitCode
from robaudit.models import ModelRequest, load_model
from robaudit.models.audit_model import AuditModel
from robaudit.preflight import run_preflight
from robaudit.probes.base import Column, Flag, Probe, ProbeContext, ProbeResult, Severity, column_meta
from robaudit.probes.registry import ProbeRegistry
from robaudit.results import store
from robaudit.results.environment import describe_environment, resolve_device
from robaudit.results.serialise import to_jsonable

log = logging.getLogger("robaudit")


@dataclass
class AuditOutcome:
    """What :func:`run_audit` did.

    Attributes:
        out_dir: the results directory.
        results: the final ``results.json`` content.
        exit_code: the CLI exit code this outcome maps to.
        report_path: the HTML report, when rendered.
    """

    out_dir: Path
    results: dict[str, Any]
    exit_code: ExitCode
    report_path: Path | None = None
    probe_results: dict[str, ProbeResult] = field(default_factory=dict)


@dataclass
class _Selected:
    name: str
    cls: type[Probe]
    probe: Probe


def select_probes(config: AuditConfig, registry: ProbeRegistry,
                  broken: list[tuple[str, ProbeError]] | None = None) -> list[_Selected]:
    """Resolve probe names and build each probe's Config, before any model is loaded.

    Args:
        broken: when given, a listed *plugin* probe that fails to import or breaks the contract is
            appended here (name, error) instead of raising, so the rest of the audit can run.

    Raises:
        ProbeError: an unknown probe name or knob (knobs of a registered probe that won't run are
            checked, then ignored with a warning: :func:`robaudit.config.check_unselected_knobs`).
    """
    names = expand_probe_names(config.probes, registry)
    if not names:
        raise ProbeError("no probe selected", fix="pass --probes NAME,... (see 'robaudit probes')")
    seen: set[str] = set()
    selected = []
    for name in names:
        if name in seen:
            raise ProbeError(f"probe '{name}' is listed twice in --probes", fix="list each probe once")
        seen.add(name)
        cls = registry.get(name) if broken is None else registry.get_or_skip(name)
        if cls is None:
            broken.append((name, registry.broken[name]))
            continue
        selected.append(_Selected(name, cls, cls(build_probe_config(cls, config.probe_config.get(name, {})))))
    # Probes read earlier probes' results (attack.worst_case combines the attacks, the geometry
    # surfaces reuse PGD perturbations), so they run in their declared order, not the listed one.
    selected.sort(key=lambda s: getattr(s.cls, "order", 100))
    check_unselected_knobs(config.probe_config, seen, registry)
    return selected


STANDARD_KEYWORD = "standard"


def expand_probe_names(requested: list[str] | None, registry: ProbeRegistry) -> list[str]:
    """The probe names to run: ``None`` means the standard set, and the keyword ``standard``
    inside a list expands to it (``--probes standard,attack.cw_l2``)."""
    if not requested:
        return registry.standard_set()
    names: list[str] = []
    for name in requested:
        names.extend(registry.standard_set() if name == STANDARD_KEYWORD else [name])
    return names


def probe_seed(seed: int, name: str) -> int:
    """The seed of one probe: a hash of the run seed and the probe name (31 bits)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def prepare(config: AuditConfig, selected: list[_Selected]) -> tuple[torch.device, int, AuditModel, AuditData]:
    """Set threads, resolve the device, and load the model and the data.

    Returns:
        (device, torch thread count, audit model, audit data).
    """
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    threads = torch.get_num_threads()
    device = resolve_device(config.device)
    data_request = DataRequest(
        source=config.dataset, data_dir=config.data_dir, download=config.download, split=config.split,
        n_samples=config.n_samples, seed=config.seed, convert_channels=config.convert_channels, resize=config.resize,
    )
    info = describe_dataset(data_request)
    model_request = ModelRequest(
        source=config.model, arch=config.arch, arch_kwargs=dict(config.arch_kwargs),
        trust_checkpoint=config.trust_checkpoint, non_strict=config.non_strict, use_ema=config.ema,
        mean=config.mean, std=config.std, second_order=any(s.cls.needs_double_backward for s in selected),
        device=str(device), pretrained=config.pretrained, weights=config.weights, download=config.download,
        num_classes=config.num_classes, normalisation=config.normalisation,
    )
    model = load_model(model_request, info)
    data = load_data(data_request, model.in_channels, model.data_config)
    return device, threads, model, data


def run_audit(config: AuditConfig, registry: ProbeRegistry | None = None, *, quiet: bool = False,
              command: list[str] | None = None) -> AuditOutcome:
    """Run one audit end to end and write ``results.json``, the per-sample table and the report.

    Raises:
        RobauditError: bad input found before probes ran (nothing written then, except on resume).
        KeyboardInterrupt: after writing every finished probe's result (status ``interrupted``).
    """
    registry = registry or ProbeRegistry()
    broken: list[tuple[str, ProbeError]] = []
    selected = select_probes(config, registry, broken=broken)
    out_dir = Path(config.out)
    previous = _previous_results(out_dir) if config.resume else None

    device, threads, model, data = prepare(config, selected)
    preflight = run_preflight(model, data, device, any(s.cls.needs_double_backward for s in selected))
    flags: list[Flag] = list(preflight.flags)
    if model.provenance.load_report.warnings:
        flags.append(Flag("non_strict_load", Severity.WARNING,
                          "; ".join(model.provenance.load_report.warnings), "loader"))

    results: dict[str, Any] = {
        "schema_version": store.SCHEMA_VERSION,
        "robaudit_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "status": "running",
        "command": command or [],
        "config": to_jsonable(config.to_json()),
        "environment": {**describe_environment(device, config.seed, threads),
                        "plugins": registry.plugins_used([s.name for s in selected]),
                        "broken_plugins": registry.broken_plugins()},
        "model": to_jsonable({**model.provenance.to_json(), "in_channels": model.in_channels,
                              "data_config": dataclasses.asdict(model.data_config)}),
        "data": to_jsonable(data.provenance),
        "preflight": to_jsonable({"stats": preflight.stats, "double_backward": preflight.double_backward}),
        "flags": [],
        "probe_order": [s.name for s in selected],
        "probes": {},
        "per_sample": {"file": store.PER_SAMPLE_FILE, "rows": len(data), "columns": []},
        "analysis": None,
        "gate": None,
    }
    columns: dict[str, np.ndarray] = {}
    reused = _reusable(previous, results, data, selected, out_dir) if previous else {}

    probe_results: dict[str, ProbeResult] = {}
    exit_code = ExitCode.OK
    for name, error in broken:  # listed but unloadable plugin probes: recorded as failed, the rest runs
        results["probes"][name] = _broken_entry(name, error, registry)
        results["probe_order"].append(name)
        exit_code = ExitCode.INTERNAL
    progress = make_progress(quiet)
    ctx_cache: dict[str, Any] = {}
    _write(out_dir, results, flags, data, columns)
    try:
        for sel in selected:
            if sel.name in reused:
                entry, cols = reused[sel.name]
                results["probes"][sel.name] = entry
                columns.update(cols)
                flags.extend(Flag(f["id"], Severity(f["severity"]), f["message"], f["source"], f["docs"])
                             for f in entry.get("flags", []))
                log.info("probe %s: reused from %s", sel.name, out_dir)
                continue
            entry, result = _run_one(sel, config, registry, model, data, device, preflight, probe_results, progress, ctx_cache)
            results["probes"][sel.name] = entry
            if result is not None:
                probe_results[sel.name] = result
                flags.extend(result.flags)
                for key, arr in result.per_sample.items():
                    columns[store.per_sample_column(sel.name, key)] = np.asarray(arr)
            if entry["status"] == "failed":
                exit_code = max(exit_code, ExitCode.INTERNAL if entry["error"]["internal"] else ExitCode.USAGE)
            _write(out_dir, results, flags, data, columns)
    except KeyboardInterrupt:
        results["status"] = "interrupted"
        _write(out_dir, results, flags, data, columns)
        _render_quietly(out_dir, config)
        raise

    try:
        results["analysis"] = analyse(results, {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()},
                                      seed=probe_seed(config.seed, "analysis"))
    except Exception as exc:  # the probes' results must survive a bug in the analysis
        log.error("analysis failed: %s", _advice(exc))
        results["analysis"] = {"error": _advice(exc)}
        exit_code = max(exit_code, ExitCode.INTERNAL)

    statuses = [p["status"] for p in results["probes"].values()]
    if exit_code == ExitCode.OK and "ok" not in statuses:
        exit_code = ExitCode.NOTHING_RAN
    results["status"] = "complete" if all(s == "ok" for s in statuses) else "partial"
    _write(out_dir, results, flags, data, columns)
    report_path = _render_quietly(out_dir, config)
    return AuditOutcome(out_dir, results, ExitCode(exit_code), report_path, probe_results)


def _run_one(sel: _Selected, config: AuditConfig, registry: ProbeRegistry, model: AuditModel, data: AuditData,
             device: torch.device, preflight: Any, done: dict[str, ProbeResult], progress: Any,
             ctx_cache: dict[str, Any]) -> tuple[dict[str, Any], ProbeResult | None]:
    """Run one probe with seeding, grad mode and timing; never raises except KeyboardInterrupt."""
    dist, dist_version = registry.distribution(sel.name)
    entry: dict[str, Any] = {
        "name": sel.name, "version": sel.cls.version, "distribution": {"name": dist, "version": dist_version},
        "status": "running", "config": to_jsonable(dataclasses.asdict(sel.probe.config)),
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "duration_s": None,
        "summary": {}, "higher_is_better": _nest_hib(sel.cls.higher_is_better), "artifacts": {},
        "notes": [], "per_sample_columns": [], "columns": {}, "error": None,
    }
    skip = preflight.skip_reason(sel.cls)
    if skip is not None:
        entry["status"] = "skipped"
        entry["error"] = {"type": skip[0], "internal": False, "message": skip[1]}
        log.warning("probe %s skipped: %s", sel.name, entry["error"]["message"])
        return entry, None

    seed = probe_seed(config.seed, sel.name)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    ctx = ProbeContext(
        model=model, data=data, device=device, batch_size=config.batch_size, seed=seed, generator=generator,
        logger=logging.getLogger(f"robaudit.probes.{sel.name}"), progress=progress, previous=dict(done),
        dataset=data.info.name, _clean_logits=ctx_cache.get("clean_logits"),
    )
    log.info("probe %s: running", sel.name)
    start = time.perf_counter()
    try:
        with torch.set_grad_enabled(sel.cls.needs_grad):
            result = sel.probe.run(ctx)
        _check_result(sel.name, result, len(data))
    except KeyboardInterrupt:
        entry["status"] = "interrupted"
        entry["duration_s"] = time.perf_counter() - start
        raise
    except RobauditError as exc:
        entry.update(status="failed", duration_s=time.perf_counter() - start,
                     error={"type": type(exc).__name__, "message": exc.one_line(), "internal": False})
        log.error("probe %s failed: %s", sel.name, exc.one_line())
        return entry, None
    except Exception as exc:  # a probe bug must not lose the other probes' results
        message = _advice(exc)
        entry.update(status="failed", duration_s=time.perf_counter() - start,
                     error={"type": type(exc).__name__, "message": message, "internal": not _is_oom(exc),
                            "traceback": traceback.format_exc(limit=8)})
        log.error("probe %s failed: %s", sel.name, message)
        return entry, None
    ctx_cache["clean_logits"] = ctx._clean_logits
    entry.update(
        status="ok", duration_s=round(time.perf_counter() - start, 4),
        summary=to_jsonable(result.summary), artifacts=to_jsonable(result.artifacts), notes=list(result.notes),
        per_sample_columns=[store.per_sample_column(sel.name, k) for k in result.per_sample],
        columns={store.per_sample_column(sel.name, k): (meta.to_json() if (meta := column_meta(sel.cls, k)) else
                                                         Column(k).to_json()) for k in result.per_sample},
        flags=[f.to_json() for f in result.flags],
    )
    log.info("probe %s: done in %.2f s", sel.name, entry["duration_s"])
    return entry, result


def _broken_entry(name: str, error: ProbeError, registry: ProbeRegistry) -> dict[str, Any]:
    dist, dist_version = registry.distribution(name)
    return {
        "name": name, "version": "?", "distribution": {"name": dist, "version": dist_version}, "status": "failed",
        "config": {}, "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "duration_s": None,
        "summary": {}, "higher_is_better": {}, "artifacts": {}, "notes": [], "per_sample_columns": [], "columns": {},
        "error": {"type": "BrokenPlugin", "message": error.one_line(), "internal": True},
    }


def _check_result(name: str, result: Any, n: int) -> None:
    if not isinstance(result, ProbeResult):
        raise TypeError(f"probe '{name}' returned {type(result).__name__}, not ProbeResult")
    for key, arr in result.per_sample.items():
        if np.ndim(arr) != 1 or len(arr) != n:
            raise ValueError(f"probe '{name}' per-sample '{key}' has shape {np.shape(arr)}, expected ({n},)")


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _advice(exc: BaseException) -> str:
    first = (str(exc).splitlines() or [""])[0]
    if _is_oom(exc):
        return f"out of memory ({first}); lower --batch-size or use --n-samples to audit fewer samples"
    return f"{type(exc).__name__}: {first} (internal error; rerun with --debug and report it)"


def _nest_hib(hib: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, better in hib.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = better
    return out


def _write(out_dir: Path, results: dict[str, Any], flags: list[Flag], data: AuditData, columns: dict[str, np.ndarray]) -> None:
    results["flags"] = _dedupe([f.to_json() for f in flags])
    results["per_sample"]["columns"] = list(columns)
    store.write_per_sample(out_dir, data.ids, data.y.numpy(), columns)
    store.write_results(out_dir, results)


def _dedupe(flags: list[dict[str, str]]) -> list[dict[str, str]]:
    seen, out = set(), []
    for f in flags:
        key = (f["id"], f["source"], f["message"])
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def _previous_results(out_dir: Path) -> dict[str, Any] | None:
    if not (out_dir / store.RESULTS_FILE).is_file():
        log.info("nothing to resume in %s; running every probe", out_dir)
        return None
    return store.read_results(out_dir)


def _reusable(previous: dict[str, Any], current: dict[str, Any], data: AuditData, selected: list[_Selected],
              out_dir: Path) -> dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]]:
    """Finished probes of an earlier run that this run may reuse: same model, samples, version and knobs."""
    from robaudit.errors import UsageError

    old_sha = previous.get("model", {}).get("checkpoint_sha256")
    if old_sha != current["model"].get("checkpoint_sha256") or previous.get("model", {}).get("source") != current["model"]["source"]:
        raise UsageError(f"--resume {out_dir}: those results were made with a different model",
                         fix="use a new --out directory, or drop --resume")
    ids, cols = store.read_per_sample(out_dir)
    if ids != data.ids:
        raise UsageError(f"--resume {out_dir}: those results cover different samples (dataset, split, --n-samples or seed)",
                         fix="use a new --out directory, or drop --resume")
    reused = {}
    for sel in selected:
        entry = previous.get("probes", {}).get(sel.name)
        if not entry or entry.get("status") != "ok" or entry.get("version") != sel.cls.version:
            continue
        if entry.get("config") != to_jsonable(dataclasses.asdict(sel.probe.config)):
            continue
        reused[sel.name] = (entry, {c: cols[c] for c in entry.get("per_sample_columns", []) if c in cols})
    return reused


def _render_quietly(out_dir: Path, config: AuditConfig) -> Path | None:
    if not config.report:
        return None
    from robaudit.report import render_report

    try:
        return render_report(out_dir)
    except RobauditError as exc:
        log.error("report not rendered: %s", exc.one_line())
        return None
