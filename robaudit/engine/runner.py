"""Run an audit: config → model → data → preflight → probes → results (→ report).

The engine owns the bookkeeping so probes don't: validation of probe names and knobs
before anything heavy, the run order from each probe's ``requires`` (:mod:`.plan`), the threat
model (resolved once), the attack-outcome table, seeding (one derived seed per probe, so
``--resume`` and ``--probes`` subsets reproduce the same numbers), device and grad mode, the
"model unchanged" check around every probe (:mod:`.model_guard`), timing, progress, and writing
each probe's result atomically the moment it finishes.

``--resume`` gives the results of an uninterrupted run: every probe reads its inputs in their
persisted form (the same whether computed now or read back), a saved result is reused only when
its version, knobs, the threat model and the results it read are unchanged, and every rewrite of
``results.json`` carries the saved results not yet reused or re-run, so an interrupted resume loses
nothing.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from robaudit import __version__
from robaudit.analysis.indicators import analyse
from robaudit.attack_outcomes import build_outcome_table
from robaudit.config import AuditConfig, build_probe_config, check_unselected_knobs
from robaudit.data import DataRequest, describe_dataset, load_data
from robaudit.data.audit_data import AuditData
from robaudit.data.class_subset import restrict_classes
from robaudit.engine import resume_checks
from robaudit.engine.model_guard import ModelGuard
from robaudit.engine.plan import probe_inputs, run_order
from robaudit.engine.progress import AuditProgress, progress_interval
from robaudit.errors import RESUME_REFUSED, ConfigError, InternalError, OutputError, ProbeError, RobauditError, UsageError
from robaudit.exitcodes import ExitCode
from robaudit.models import ModelRequest, load_model
from robaudit.models.audit_model import AuditModel
from robaudit.out_of_memory import OOM_FIX, first_line, is_out_of_memory
from robaudit.preflight import run_preflight
from robaudit.probes.base import (
    ATTACK_OUTCOMES,
    Column,
    Flag,
    Probe,
    ProbeContext,
    ProbeResult,
    Severity,
    column_meta,
)
from robaudit.probes.registry import ProbeRegistry
from robaudit.probes.cost import estimate_audit_cost, time_fwd_bwd
from robaudit.probes.seeding import derive_seed
from robaudit.results import store
from robaudit.results.outdir import claim_out_dir
from robaudit.results.environment import (
    cuda_peak_memory,
    describe_environment,
    make_cuda_reproducible,
    resolve_device,
)
from robaudit.results.serialise import to_jsonable
from robaudit.threat_model import ThreatModel, resolve_threat_model

if TYPE_CHECKING:
    from robaudit.live_inputs import LiveInputs

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

    def _repr_html_(self) -> str:
        """Jupyter: the verdict sentence and the summary tables (escaped HTML)."""
        from robaudit.cli.summary import summary_html

        return summary_html(self.results)


@dataclass
class SelectedProbe:
    """A probe chosen for this audit: its registry name, class and configured instance."""

    name: str
    cls: type[Probe]
    probe: Probe
    inputs: list[str] = field(default_factory=list)
    """The selected probes whose results this one reads (from its ``requires``)."""


def select_probes(config: AuditConfig, registry: ProbeRegistry,
                  broken: list[tuple[str, ProbeError]] | None = None) -> list[SelectedProbe]:
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
        selected.append(SelectedProbe(name, cls, cls(build_probe_config(cls, config.probe_config.get(name, {})))))
    classes = {s.name: s.cls for s in selected}
    inputs = probe_inputs(list(classes), classes, lambda capability: _providers(registry, capability))
    for sel in selected:
        sel.inputs = inputs[sel.name]
    by_name = {s.name: s for s in selected}
    selected = [by_name[n] for n in run_order(list(classes), inputs)]
    check_unselected_knobs(config.probe_config, seen, registry)
    return selected


def _providers(registry: ProbeRegistry, capability: str) -> list[str]:
    """Registered probes that provide ``capability`` (standard ones first), for an error message."""
    classes = [c for c in (registry.get_or_skip(n) for n in registry.names()) if c is not None]
    found = [c for c in classes if capability in getattr(c, "provides", ())]
    return [c.name for c in sorted(found, key=lambda c: not getattr(c, "standard", False))]


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


def prepare(config: AuditConfig, selected: list[SelectedProbe], live: LiveInputs | None = None,
            ) -> tuple[torch.device, int, AuditModel, AuditData]:
    """Set threads, resolve the device, and load the model and the data (``live``: the in-memory
    model and/or data given to :func:`robaudit.audit`, in place of ``config.model``/``config.dataset``).

    Returns:
        (device, torch thread count, audit model, audit data).
    """
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    threads = torch.get_num_threads()
    device = resolve_device(config.device)
    if device.type == "cuda":
        make_cuda_reproducible()
    second_order = any(s.cls.needs_double_backward for s in selected)
    if live is not None:
        model, data = live.load(config, second_order=second_order, device=str(device))
    else:
        request = data_request(config)
        info = describe_dataset(request)
        model = load_model(model_request(config, second_order, str(device)), info)
        data = load_data(request, model.in_channels, model.data_config)
    model, data = restrict_classes(model, data)  # ImageNet-A/R: every probe sees the 200-class model
    return device, threads, model, data


def data_request(config: AuditConfig) -> DataRequest:
    """The :class:`DataRequest` of ``config``'s data options."""
    return DataRequest(
        source=config.dataset, data_dir=config.data_dir, download=config.download, split=config.split,
        n_samples=config.n_samples, seed=config.seed, convert_channels=config.convert_channels, resize=config.resize,
        skip_bad_images=config.skip_bad_images,
    )


def model_request(config: AuditConfig, second_order: bool, device: str) -> ModelRequest:
    """The :class:`ModelRequest` of ``config``'s model options, on the resolved ``device``."""
    return ModelRequest(
        source=config.model, arch=config.arch, arch_kwargs=dict(config.arch_kwargs),
        trust_checkpoint=config.trust_checkpoint, non_strict=config.non_strict, use_ema=config.ema,
        mean=config.mean, std=config.std, second_order=second_order, device=device, pretrained=config.pretrained,
        weights=config.weights, download=config.download, num_classes=config.num_classes,
        normalisation=config.normalisation,
    )


def run_audit(config: AuditConfig, registry: ProbeRegistry | None = None, *, quiet: bool = False,
              command: list[str] | None = None, live: LiveInputs | None = None) -> AuditOutcome:
    """Run one audit end to end and write ``results.json``, the per-sample table and the report.

    The results directory is claimed first (created, checked writable, locked, an earlier audit in it
    refused or moved aside: :func:`robaudit.results.outdir.claim_out_dir`) and held until the end.
    ``live`` carries the in-memory model and/or data of :func:`robaudit.audit` (see :func:`prepare`).

    Raises:
        RobauditError: bad input found before probes ran (nothing written then, except on resume);
            an ``OutputError`` when the results cannot be written (finished results stay on disk).
        KeyboardInterrupt: after writing every finished probe's result (status ``interrupted``).
    """
    with claim_out_dir(Path(config.out), resume=config.resume, overwrite=config.overwrite):
        return _run_audit(config, registry, quiet=quiet, command=command, live=live)


def _run_audit(config: AuditConfig, registry: ProbeRegistry | None, *, quiet: bool,
               command: list[str] | None, live: LiveInputs | None) -> AuditOutcome:
    registry = registry or ProbeRegistry()
    interval = progress_interval()  # a bad ROBAUDIT_PROGRESS_INTERVAL stops the run before anything is written
    broken: list[tuple[str, ProbeError]] = []
    selected = select_probes(config, registry, broken=broken)
    out_dir = Path(config.out)
    previous = _previous_results(out_dir) if config.resume else None

    device, threads, model, data = prepare(config, selected, live)
    threat_model = audit_threat_model(config, data)
    preflight = run_preflight(model, data, device, any(s.cls.needs_double_backward for s in selected),
                              config.batch_size)
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
        "threat_model": threat_model.to_json(),
        "flags": [],
        "probe_order": [s.name for s in selected],
        "probes": {},
        "attack_outcomes": None,
        "per_sample": {"file": store.PER_SAMPLE_FILE, "rows": len(data), "columns": []},
        "analysis": None,
        "gate": None,
    }
    results["cost_estimate"] = audit_cost_estimate(selected, model, data, device, config.batch_size, threat_model)
    run = _RunState(out_dir, results, data, flags,
                    _carried(previous, results, data, out_dir) if previous else {},
                    [s.name for s in selected if ATTACK_OUTCOMES in s.cls.provides])

    probe_results: dict[str, ProbeResult] = {}
    exit_code = ExitCode.OK
    for name, error in broken:  # listed but unloadable plugin probes: recorded as failed, the rest runs
        run.entries[name] = _broken_entry(name, error, registry)
        results["probe_order"].append(name)
        exit_code = ExitCode.INTERNAL
    ctx_cache: dict[str, Any] = {}
    run.write()
    try:
        with AuditProgress(len(selected), quiet=quiet, interval=interval) as progress:
            for index, sel in enumerate(selected, start=1):
                progress.start_probe(index, sel.name)
                inputs = {u: run.persisted[u] for u in sel.inputs if u in run.persisted}
                digest = _inputs_digest(results["threat_model"], inputs)
                reason = run.stale_reason(sel, digest)
                if reason is None:
                    run.reuse(sel.name)
                    log.info("probe %s: reused from %s", sel.name, out_dir)
                    _test_stop_hook(sel.name)
                    continue
                if sel.name in run.carried:
                    log.info("probe %s: re-running, the saved result is stale (%s)", sel.name, reason)
                outcomes = build_outcome_table({u: r for u, r in inputs.items() if u in run.providers}, len(data))
                entry, result = _run_one(sel, config, registry, model, data, device, preflight, inputs,
                                         progress.track, ctx_cache, threat_model, outcomes)
                entry["inputs"] = {"probes": list(inputs), "digest": digest}
                run.finish(sel.name, entry, result)
                if result is not None:
                    probe_results[sel.name] = result
                if entry["status"] == "failed":
                    exit_code = max(exit_code, ExitCode.INTERNAL if entry["error"]["internal"] else ExitCode.USAGE)
                run.write()
                _test_stop_hook(sel.name)
    except KeyboardInterrupt:
        results["status"] = "interrupted"
        run.write()
        _render_quietly(out_dir, config)
        raise

    run.carried.clear()  # every selected probe is decided; saved results of unselected ones are dropped
    run.compose()
    columns = run.columns()
    try:
        results["analysis"] = analyse(results, {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()},
                                      seed=derive_seed(config.seed, "analysis"), config=config.analysis)
    except Exception as exc:  # the probes' results must survive a bug in the analysis
        log.error("analysis failed: %s", _advice(exc))
        results["analysis"] = {"error": _advice(exc)}
        exit_code = max(exit_code, ExitCode.INTERNAL)

    statuses = [p["status"] for p in run.entries.values()]
    if exit_code == ExitCode.OK and "ok" not in statuses:
        exit_code = ExitCode.NOTHING_RAN
    results["status"] = "complete" if all(s == "ok" for s in statuses) else "partial"
    results["environment"].update(cuda_peak_memory(device))
    run.write()
    report_path = _render_quietly(out_dir, config)
    return AuditOutcome(out_dir, results, ExitCode(exit_code), report_path, probe_results)


def audit_cost_estimate(selected: list[SelectedProbe], model: AuditModel, data: AuditData, device: torch.device,
                   batch_size: int, threat_model: ThreatModel) -> dict[str, Any]:
    """Estimate the audit's passes per probe, time one forward+backward on a real batch, log one
    INFO line per probe and the total, and return the record for ``results.json``.

    Raises:
        UsageError: the timed batch (the first ``batch_size`` samples, the batch an attack step takes) does
            not fit in memory; the message gives the probes' out-of-memory advice.
    """
    seconds = 0.0
    for _rows, x, y in data.batches(batch_size):  # the first batch only
        try:
            seconds = time_fwd_bwd(model, x.to(device), y.to(device))
        except Exception as exc:  # noqa: BLE001 - OOM comes as RuntimeError subclasses of several kinds
            if not is_out_of_memory(exc):
                raise
            raise UsageError(f"out of memory timing one forward+backward of a batch of {len(x)} samples on "
                             f"{device} ({first_line(exc)}), the batch every attack step takes",
                             fix=OOM_FIX) from exc
        break
    estimate = estimate_audit_cost([s.probe for s in selected], len(data), threat_model, seconds,
                                   names=[s.name for s in selected], num_classes=int(model.num_classes))
    for line in estimate.lines():
        log.info("%s", line)
    return to_jsonable(estimate.to_json())


def audit_threat_model(config: AuditConfig, data: AuditData) -> ThreatModel:
    """The run's threat model from ``--eps`` and the data (a usage error when a budget cannot fit)."""
    try:
        return resolve_threat_model(data.info.name, tuple(data.x.shape[1:]), config.eps)
    except ValueError as exc:
        raise ConfigError(f"--eps: {exc}", fix="use L2 budgets no larger than √(C·H·W) of the audit images") from None


TEST_STOP_VARIABLE = "ROBAUDIT_TEST_STOP_AFTER"


def _test_stop_hook(name: str) -> None:
    """Test-only: ``ROBAUDIT_TEST_STOP_AFTER=<probe>:KILL|INT`` sends this process SIGKILL, or raises
    the KeyboardInterrupt of a Ctrl-C, right after ``<probe>``'s result is on disk (the resume-equivalence tests stop a run at each probe
    boundary with it). Inert when the variable is unset or names another probe."""
    value = os.environ.get(TEST_STOP_VARIABLE)
    if not value:
        return
    probe, _, sig = value.rpartition(":")
    if probe == name:
        if sig == "KILL":
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(5)
        # Ctrl-C: what Python's SIGINT handler raises at the next bytecode boundary, raised here so the
        # in-process tests do not depend on the test process's signal state
        raise KeyboardInterrupt


class _RunState:
    """The results being written: this run's entries and per-sample columns, the saved ones a resume
    carries until it reuses or re-runs them, and every finished result in its persisted form."""

    def __init__(self, out_dir: Path, results: dict[str, Any], data: AuditData, flags: list[Flag],
                 carried: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]], providers: list[str]) -> None:
        self.out_dir, self.results, self.data, self.flags = out_dir, results, data, flags
        self.carried = carried
        self.providers = providers
        self.entries: dict[str, dict[str, Any]] = {}
        self._columns: dict[str, dict[str, np.ndarray]] = {}
        self.persisted: dict[str, ProbeResult] = {}
        self.table = store.PerSampleWriter(out_dir, data.ids, data.y.numpy())

    def stale_reason(self, sel: SelectedProbe, digest: str) -> str | None:
        """Why the saved result of ``sel`` cannot be reused (``None``: it can; "not saved" when absent)."""
        if sel.name not in self.carried:
            return "not saved"
        entry = self.carried[sel.name][0]
        if entry.get("version") != sel.cls.version:
            return f"probe version {entry.get('version')} → {sel.cls.version}"
        if entry.get("config") != to_jsonable(dataclasses.asdict(sel.probe.config)):
            return "its knobs changed"
        if (entry.get("inputs") or {}).get("digest") != digest:
            return "the threat model or the results it read changed"
        return None

    def reuse(self, name: str) -> None:
        entry, cols = self.carried.pop(name)
        self.entries[name] = entry
        self._columns[name] = cols
        self.flags.extend(Flag(f["id"], Severity(f["severity"]), f["message"], f["source"], f["docs"])
                          for f in entry.get("flags", []))
        self.persisted[name] = store.persisted_result(entry, cols)

    def finish(self, name: str, entry: dict[str, Any], result: ProbeResult | None) -> None:
        self.carried.pop(name, None)
        self.entries[name] = entry
        if result is None:
            self._columns.pop(name, None)
            return
        self.flags.extend(result.flags)
        cols = {store.per_sample_column(name, k): store.persisted_column(v) for k, v in result.per_sample.items()}
        self._columns[name] = cols
        self.persisted[name] = store.persisted_result(entry, cols)

    def columns(self) -> dict[str, np.ndarray]:
        """Per-sample columns in probe order: this run's, then the saved ones still carried."""
        out: dict[str, np.ndarray] = {}
        for name in self._order():
            out.update(self._columns[name] if name in self._columns else self.carried.get(name, ({}, {}))[1])
        return out

    def _order(self) -> list[str]:
        names = list(self.results["probe_order"])
        return names + [n for n in self.carried if n not in names]

    def write(self) -> None:
        """Rewrite ``results.json`` and the per-sample table atomically, carried results included
        (``results.json`` in its compact checkpoint form while the status is ``running``)."""
        columns = self.compose()
        self.table.write(columns)
        store.write_results(self.out_dir, self.results, checkpoint=self.results["status"] == "running")

    def compose(self) -> dict[str, np.ndarray]:
        """Fill ``results`` (probes in order, outcome counts, flags, column list); return the columns."""
        entries = {**{n: e for n, (e, _) in self.carried.items()}, **self.entries}
        self.results["probes"] = {n: entries[n] for n in self._order() if n in entries}
        sources = [n for n in self.providers if n in self.persisted]
        table = build_outcome_table({n: self.persisted[n] for n in sources}, len(self.data))
        self.results["attack_outcomes"] = {"sources": sources, **table.summary()}
        columns = self.columns()
        self.results["flags"] = _dedupe([f.to_json() for f in self.flags])
        self.results["per_sample"]["columns"] = list(columns)
        return columns


def _inputs_digest(threat_model: dict[str, Any], inputs: dict[str, ProbeResult]) -> str:
    """A hash of what a probe reads besides its knobs: the threat model and its inputs' persisted results."""
    h = hashlib.sha256(json.dumps(threat_model, sort_keys=True).encode())
    for name in sorted(inputs):
        result = inputs[name]
        h.update(json.dumps([name, to_jsonable(result.summary), to_jsonable(result.artifacts)], sort_keys=True).encode())
        for key in sorted(result.per_sample):
            h.update(key.encode())
            h.update(np.ascontiguousarray(result.per_sample[key], dtype=np.float64).tobytes())
    return h.hexdigest()


def _run_one(sel: SelectedProbe, config: AuditConfig, registry: ProbeRegistry, model: AuditModel, data: AuditData,
             device: torch.device, preflight: Any, inputs: dict[str, ProbeResult], progress: Any,
             ctx_cache: dict[str, Any], threat_model: ThreatModel, outcomes: Any) -> tuple[dict[str, Any], ProbeResult | None]:
    """Run one probe with seeding, grad mode, the model check and timing; never raises except KeyboardInterrupt."""
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
    missing = [r.target for r in sel.cls.requires if not r.optional and not _satisfied(r.target, inputs, registry)]
    if missing:
        entry["status"] = "skipped"
        entry["error"] = {"type": "MissingInput", "internal": False,
                          "message": f"no result for its required {', '.join(missing)} (the probes behind it failed)"}
        log.warning("probe %s skipped: %s", sel.name, entry["error"]["message"])
        return entry, None

    seed = derive_seed(config.seed, sel.name)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    ctx = ProbeContext(
        model=model, data=data, device=device, batch_size=config.batch_size, seed=seed, generator=generator,
        logger=logging.getLogger(f"robaudit.probes.{sel.name}"), progress=progress, previous=inputs,
        dataset=data.info.name, threat_model=threat_model, outcomes=outcomes,
        _clean_logits=ctx_cache.get("clean_logits"),
    )
    log.info("probe %s: running", sel.name)
    start = time.perf_counter()
    guard = ModelGuard(model)
    try:
        with torch.set_grad_enabled(sel.cls.needs_grad):
            result = sel.probe.run(ctx)
        guard.check(sel.name)
        _check_result(sel.name, result, len(data))
    except KeyboardInterrupt:
        entry["status"] = "interrupted"
        entry["duration_s"] = time.perf_counter() - start
        raise
    except RobauditError as exc:
        entry.update(status="failed", duration_s=time.perf_counter() - start,
                     error={"type": type(exc).__name__, "message": exc.one_line(),
                            "internal": isinstance(exc, InternalError)})
        log.error("probe %s failed: %s", sel.name, exc.one_line())
        return entry, None
    except SystemExit as exc:  # probe code calling sys.exit is a probe bug: it must not end the audit, or pass
        entry.update(status="failed", duration_s=time.perf_counter() - start,
                     error={"type": "SystemExit", "message": f"the probe called sys.exit({exc.code!r})",
                            "internal": True, "traceback": traceback.format_exc(limit=8)})
        log.error("probe %s failed: it called sys.exit(%r)", sel.name, exc.code)
        return entry, None
    except Exception as exc:  # a probe bug must not lose the other probes' results
        message = _advice(exc)
        entry.update(status="failed", duration_s=time.perf_counter() - start,
                     error={"type": type(exc).__name__, "message": message, "internal": not is_out_of_memory(exc),
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


def _satisfied(target: str, inputs: dict[str, ProbeResult], registry: ProbeRegistry) -> bool:
    """Whether some finished input is ``target`` or provides it."""
    return any(name == target or target in getattr(registry.get_or_skip(name), "provides", ()) for name in inputs)


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


def _advice(exc: BaseException) -> str:
    first = first_line(exc)
    if is_out_of_memory(exc):
        return f"out of memory ({first}); {OOM_FIX}"
    return f"{type(exc).__name__}: {first} (internal error; rerun with --debug and report it)"


def _nest_hib(hib: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, better in hib.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = better
    return out


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


def _carried(previous: dict[str, Any], current: dict[str, Any], data: AuditData,
             out_dir: Path) -> dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]]:
    """The finished probes of an earlier run in ``out_dir`` (entry, per-sample columns), after checking
    that run used the same audit model and samples (:mod:`robaudit.engine.resume_checks`). Whether each
    may be reused is decided at its turn; a saved entry that is malformed, or made under another seed,
    is not carried (it runs again).

    Raises:
        UsageError: the saved results were made with another model or other samples.
    """
    differs = resume_checks.model_difference(previous.get("model"), current["model"])
    if differs is not None:
        raise UsageError(f"--resume {out_dir}: {RESUME_REFUSED} were made with a different model ({differs})",
                         fix="use a new --out directory, or drop --resume")
    ids, cols = store.read_per_sample(out_dir)
    differs = resume_checks.data_difference(previous.get("data"), current["data"])
    if ids != data.ids or differs is not None:
        raise UsageError(f"--resume {out_dir}: {RESUME_REFUSED} cover different samples (dataset, split, --n-samples, "
                         f"seed, --resize or --convert-channels{'; ' + differs if differs else ''})",
                         fix="use a new --out directory, or drop --resume")
    old_seed = (previous.get("environment") or {}).get("seed")
    if old_seed != current["environment"]["seed"]:
        log.warning("--resume %s: those results were made with --seed %s, this run uses %s; every probe runs again",
                    out_dir, old_seed, current["environment"]["seed"])
        return {}
    carried = {}
    for name, entry in previous.get("probes", {}).items():
        if entry.get("status") != "ok":
            continue
        problem = resume_checks.entry_problem(name, entry, cols)
        if problem is not None:
            log.warning("probe %s: the saved result in %s cannot be reused (%s); it runs again", name, out_dir, problem)
            continue
        carried[name] = (entry, {c: cols[c] for c in entry["per_sample_columns"]})
    return carried


def _render_quietly(out_dir: Path, config: AuditConfig) -> Path | None:
    if not config.report:
        return None
    from robaudit.report import render_report

    try:
        return render_report(out_dir)
    except OutputError:
        raise  # a full or read-only disk is the user's to fix (exit 2), not a silently missing report
    except RobauditError as exc:
        log.error("report not rendered: %s", exc.one_line())
        return None
