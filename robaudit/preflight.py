"""Preflight checks on the audit model and data, run once before any probe.

Checks that make every number meaningless raise :class:`PreflightError` (NaN/Inf logits,
a wrong logit shape, pixels outside [0, 1], a forward pass that raises — with the input
size the model does accept, when one of the usual sizes works). The rest become stored
flags: probabilities instead of logits, non-determinism in eval mode, outputs that depend on the
other samples in the batch (batch statistics in ``forward``), zero input
gradients, suspicious normalisation, and missing double backward (needed by second-order
probes).

When the normalisation was guessed (not given by ``--mean/--std``, the checkpoint's metadata
or the config of pretrained zoo weights), preflight compares the clean accuracy of every
plausible candidate (the chosen one, identity, the dataset's conventional statistics, the
architecture zoo's default) on the first ``NORMALISATION_SAMPLES`` audit samples, one
forward pass per candidate. A candidate is *clearly better* when, at ``NORMALISATION_ALPHA``
Bonferroni-corrected over the alternatives, either

- an exact McNemar test on the paired outcomes (a one-sided binomial test on the discordant
  samples) rejects "no better", or
- it gets at least as many samples right, its mean cross-entropy is at most
  ``1 / NORMALISATION_NLL_RATIO`` of the guess's, and Vuong's paired likelihood-ratio test (a
  one-sided z test on the per-sample differences of the cross-entropy, the log-likelihood ratio of
  the two input contracts) rejects "no better" at ``NORMALISATION_LIKELIHOOD_ALPHA`` per
  comparison; the effect-size gate, not the level, guards this route against false alarms.

The mean cross-entropy is a proper scoring rule, and it points at the right contract where ranks do
not: a wrong normalisation usually enlarges the inputs, so the model grows *more* confident on most
samples (lower loss on most, a rank test prefers it) while the few it gets wrong cost far more.

Accuracy alone has little power: a model trained on raw pixels and fed the dataset's statistics
often loses only a handful of the 360 digits test samples, while its loss doubles and every
gradient-based number moves. Then the audit stops with exit 2 naming it (``--normalisation check``, the default) or switches to
the best (``--normalisation auto``). Otherwise the ``normalisation_guessed`` flag (info)
records that the contract was guessed and checked.

A model whose input gradient is disconnected (``x.detach()`` or ``torch.no_grad()`` inside
``forward``, a ``(x > 0).float()`` step) or zero on every checked sample gets the
``zero_input_gradients`` and ``attack_gradients_vanish`` flags with severity error, and
:meth:`PreflightReport.skip_reason` tells the engine to skip every probe that needs input
gradients; the rest of the audit runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from scipy.special import bdtrc, ndtr  # binomial and normal tails; scipy.stats would import scipy.sparse

from robaudit.data.audit_data import AuditData
from robaudit.errors import InternalError, PreflightError
from robaudit.models.audit_model import AuditModel, ModelForwardExit, Normalisation
from robaudit.models.messages import one_line
from robaudit.models.scripted import ScriptedNetwork
from robaudit.out_of_memory import OOM_FIX, first_line, is_out_of_memory
from robaudit.probes.base import Flag, Probe, Severity, needs_input_gradients

if TYPE_CHECKING:
    from robaudit.engine.model_guard import ModelGuard

PREFLIGHT_SAMPLES = 64
# 512 paired samples detect an accuracy gap of ~3 points at α = 0.01 when few samples disagree
# (the typical case), at the cost of one forward pass per candidate over them.
NORMALISATION_SAMPLES = 512
NORMALISATION_ALPHA = 0.01
NORMALISATION_NLL_RATIO = 2.0
NORMALISATION_LIKELIHOOD_ALPHA = 0.05
_CHUNK = 256
BATCH_CHECK_SAMPLES = 2  # samples whose logits are compared in one batch and alone (one forward each)
SOURCE = "preflight"
# Input sizes tried (one sample each) when the forward pass fails, to suggest a --resize that works.
USUAL_SIZES: tuple[int, ...] = (8, 28, 32, 64, 96, 128, 224, 256, 299, 384)


@dataclass
class PreflightReport:
    """Outcome of the preflight checks.

    Attributes:
        flags: stored findings.
        stats: numbers recorded in ``results.json`` under ``preflight``.
        double_backward: ``True``/``False`` when tested (a probe needed it), else ``None``.
        double_backward_error: the error message when it failed.
        input_gradient_error: why the input gradient is unusable (disconnected, or zero or
            non-finite on every checked sample), else ``None``.
    """

    flags: list[Flag] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    double_backward: bool | None = None
    double_backward_error: str | None = None
    input_gradient_error: str | None = None

    def skip_reason(self, probe_cls: type[Probe]) -> tuple[str, str] | None:
        """``(error type, message)`` if the probe cannot run on this model, else ``None``."""
        if self.input_gradient_error is not None and needs_input_gradients(probe_cls):
            return "NoInputGradient", (f"it needs input gradients, and {self.input_gradient_error} "
                                       "(flag zero_input_gradients)")
        if probe_cls.needs_double_backward and self.double_backward is False:
            return "NoDoubleBackward", f"the model has no second derivatives: {self.double_backward_error}"
        return None


def run_preflight(model: AuditModel, data: AuditData, device: torch.device, check_double_backward: bool,
                  batch_size: int | None = None) -> PreflightReport:
    """Check the model on up to 64 audit samples (a guessed normalisation on up to 512).

    Args:
        model: the audit model (eval mode, on ``device``); left unchanged.
        data: the audit data; its pixels must lie in [0, 1].
        device: where to run.
        check_double_backward: test second derivatives (a selected probe needs them).
        batch_size: the most samples per model pass (the audit's ``--batch-size``); ``None``: the
            64 checked samples in one pass (forward-only passes of the normalisation check: 256).

    Raises:
        PreflightError: pixels outside [0, 1], a forward pass that raises (out of memory: with the
            advice to lower ``--batch-size``), logits of the wrong shape, NaN/Inf logits, or a guessed
            normalisation that another candidate clearly beats (with ``--normalisation check``).
    """
    report = PreflightReport()
    lo, hi = float(data.x.min()), float(data.x.max())
    report.stats["pixel_range"] = [lo, hi]
    if lo < 0.0 or hi > 1.0:
        raise PreflightError(
            f"audit inputs must be pixels in [0, 1] but range over [{lo:.4g}, {hi:.4g}]",
            fix="pass unnormalised data; the model applies mean/std itself (see --mean/--std)",
        )
    x = data.x[:PREFLIGHT_SAMPLES].to(device)
    y = data.y[:PREFLIGHT_SAMPLES].to(device)
    step = batch_size or len(x)
    modes = {path: m.training for path, m in model.named_modules()}  # as loaded: before any forward
    with torch.no_grad():
        _forward(model, x, step)  # a model that cannot run on the data stops here, with a --resize hint
    _check_normalisation(model, data, device, report, min(_CHUNK, batch_size or _CHUNK))
    from robaudit.engine.model_guard import ModelGuard  # here: robaudit.engine imports this module

    guard = ModelGuard(model)  # after the first passes: lazy modules and caches are set up by then

    seen: list[torch.Tensor] = []

    def record(_module: torch.nn.Module, args: tuple[Any, ...]) -> None:  # returns None: the input is unchanged
        seen.append(args[0].detach())

    hook = model.net.register_forward_pre_hook(record)
    try:
        with torch.no_grad():
            logits = _forward(model, x, step)
    finally:
        hook.remove()
    with torch.no_grad():
        again = _forward(model, x, step)
        deterministic = torch.equal(logits, again)
        batch_gap = _batch_dependence(model, x, logits, step) if deterministic else None
    _check_no_side_effects(guard, modes)
    _check_logits(logits, model.num_classes, len(x))
    if seen:  # one call of the network per pass; a network that calls itself again: its first input only
        _check_network_input(torch.cat(seen) if sum(len(t) for t in seen) == len(x) else seen[0], model, x, report)

    rows = logits.double()
    if bool((rows >= 0).all()) and bool(torch.allclose(rows.sum(dim=1), torch.ones_like(rows[:, 0]), atol=1e-4)):
        report.flags.append(Flag(
            "probabilities_not_logits", Severity.ERROR,
            "the model's outputs are non-negative and every row sums to 1: it returns probabilities, not logits; "
            "gradient attacks on softmax outputs are masked and the loss is computed twice through softmax",
            SOURCE,
        ))
    report.stats["batch_dependence"] = (
        {"ran": False, "reason": "nondeterministic" if not deterministic else "fewer than 2 samples"}
        if batch_gap is None else {"ran": True, "samples": BATCH_CHECK_SAMPLES, **batch_gap})
    gap = None if batch_gap is None else batch_gap["relative_gap"]
    if batch_gap is not None and (gap is None or gap > batch_gap["tolerance"]):
        how = (f"its forward raises on a single sample ({batch_gap['single_sample_error']}) but runs on a batch"
               if gap is None else f"logits of a sample in a batch vs alone differ by {gap:.3g} of the logit scale")
        report.flags.append(Flag(
            "batch_dependent_outputs", Severity.WARNING,
            f"the model's outputs depend on the other samples in the batch ({how}): put BatchNorm in eval mode / "
            "remove batch statistics from forward; every result depends on --batch-size and on which samples share "
            "a batch",
            SOURCE,
        ))
    if not deterministic:
        diff = float((logits - again).abs().max())
        report.flags.append(Flag(
            "nondeterministic_eval", Severity.WARNING,
            f"two identical forward passes in eval mode differ (max |Δlogit| = {diff:.3g}); "
            "per-sample results will not reproduce exactly",
            SOURCE,
        ))

    _check_input_gradients(model, x, y, report, step)
    if check_double_backward:
        _check_double_backward(model, x[:min(4, step)], y[:min(4, step)], report)
    report.stats["samples_checked"] = len(x)
    return report


def _check_normalisation(model: AuditModel, data: AuditData, device: torch.device, report: PreflightReport,
                         chunk: int) -> None:
    """Compare a guessed normalisation with the plausible alternatives (see the module docstring), in
    forward passes of at most ``chunk`` samples.

    Raises:
        PreflightError: another candidate is clearly better and the mode is ``check``.
    """
    prov = model.provenance
    chosen = prov.normalisation
    candidates = prov.normalisation_candidates
    if chosen.explicit or len(candidates) < 2:
        report.stats["normalisation_check"] = {"ran": False, "reason": "stated" if chosen.explicit else "no alternative"}
        if not chosen.explicit:
            _guessed_flag(report, chosen, "no plausible alternative to compare with")
        return
    n = min(len(data), NORMALISATION_SAMPLES)
    x, y = data.x[:n], data.y[:n].to(device)
    scored = [_scores_under(model, cand, x, y, device, chunk) for cand in candidates]
    model.set_normalisation(chosen)
    base, base_nll = scored[0]
    alpha = NORMALISATION_ALPHA / (len(candidates) - 1)
    rows: list[dict[str, Any]] = []
    for cand, (right, nll) in zip(candidates, scored):
        gained = int((right & ~base).sum())
        lost = int((base & ~right).sum())
        p = 1.0 if cand is chosen or gained + lost == 0 else float(bdtrc(gained - 1, gained + lost, 0.5))
        p_lr = 1.0 if cand is chosen else _vuong_p(base_nll - nll)
        by_accuracy = gained > lost and p < alpha
        by_likelihood = (gained >= lost and p_lr < NORMALISATION_LIKELIHOOD_ALPHA
                         and float(nll.mean()) * NORMALISATION_NLL_RATIO <= float(base_nll.mean()))
        rows.append({"source": cand.source, "mean": list(cand.mean), "std": list(cand.std), "correct": int(right.sum()),
                     "accuracy": float(right.float().mean()), "chosen": cand is chosen, "gained": gained, "lost": lost,
                     "p_value": p, "mean_nll": float(nll.mean()), "likelihood_p_value": p_lr,
                     "clearly_better": cand is not chosen and (by_accuracy or by_likelihood)})
    better = [i for i, row in enumerate(rows) if row["clearly_better"]]
    best = max(better, key=lambda i: (rows[i]["correct"], -rows[i]["mean_nll"])) if better else None
    stats: dict[str, Any] = {"ran": True, "samples": n, "test": "mcnemar_exact_one_sided+vuong_likelihood_ratio",
                             "nll_ratio": NORMALISATION_NLL_RATIO, "likelihood_alpha": NORMALISATION_LIKELIHOOD_ALPHA,
                             "alpha": NORMALISATION_ALPHA,
                             "alpha_per_comparison": alpha, "mode": prov.normalisation_mode, "candidates": rows,
                             "decision": "kept"}
    report.stats["normalisation_check"] = stats
    if best is None:
        top = max(rows[1:], key=lambda r: r["correct"])
        _guessed_flag(report, chosen, f"checked on {n} samples: {rows[0]['correct']}/{n} correct; the best alternative "
                      f"({top['source']}) gets {top['correct']}/{n}, not clearly better (McNemar p = {top['p_value']:.2g}, "
                      f"mean cross-entropy {top['mean_nll']:.3g} vs {rows[0]['mean_nll']:.3g})")
        return
    win, row = candidates[best], rows[best]
    if prov.normalisation_mode == "auto":
        model.set_normalisation(Normalisation(win.mean, win.std, f"auto:{win.source}"))
        stats["decision"] = "switched"
        _guessed_flag(report, model.provenance.normalisation,
                      f"--normalisation auto took {win.source} ({row['correct']}/{n} correct) over the guessed "
                      f"{chosen.source} ({rows[0]['correct']}/{n}; {_evidence(row, rows[0])})")
        return
    raise PreflightError(
        f"the normalisation was guessed ({_describe(chosen)}) and gives {rows[0]['correct']}/{n} correct on the "
        f"preflight samples, but {_describe(win)} gives {row['correct']}/{n} ({_evidence(row, rows[0])})",
        fix=f"pass --mean {_csv(win.mean)} --std {_csv(win.std)} if the model was trained that way, or "
            "--normalisation auto to take the best candidate",
    )


def _scores_under(model: AuditModel, norm: Normalisation, x: torch.Tensor, y: torch.Tensor,
                  device: torch.device, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """With ``norm`` folded in, one forward pass over ``x`` (CPU, moved ``chunk`` rows at a time): (N
    booleans: is the prediction right, N float64 cross-entropies in nats)."""
    model.set_normalisation(norm)
    with torch.no_grad():
        z = torch.cat([_forward(model, x[start:start + chunk].to(device), chunk).double()
                       for start in range(0, len(x), chunk)])
    return z.argmax(dim=1) == y, F.cross_entropy(z, y, reduction="none").cpu()


def _vuong_p(diff: torch.Tensor) -> float:
    """One-sided p of Vuong's paired likelihood-ratio test that the mean of ``diff`` (the guess's
    per-sample cross-entropy minus the alternative's, nats) is positive: z = √n · mean / sd.

    Fewer than two samples, or differences without spread, carry no evidence: p = 1 (the z statistic
    is undefined, and reading it as infinite let a one-sample audit "clearly" prefer another contract)."""
    d = diff.double()
    if len(d) < 2:
        return 1.0
    sd = float(d.std(unbiased=True))
    if not sd > 0:
        return 1.0
    return float(ndtr(-float(d.mean()) / sd * len(d) ** 0.5))


def _evidence(row: dict[str, Any], guess: dict[str, Any]) -> str:
    return (f"exact McNemar p = {row['p_value']:.2g}; mean cross-entropy {row['mean_nll']:.3g} vs "
            f"{guess['mean_nll']:.3g} nats, Vuong p = {row['likelihood_p_value']:.2g}")


def _guessed_flag(report: PreflightReport, norm: Normalisation, detail: str) -> None:
    report.flags.append(Flag(
        "normalisation_guessed", Severity.INFO,
        f"nobody stated the model's normalisation (no --mean/--std, checkpoint metadata or pretrained weights); "
        f"the audit uses {_describe(norm)}, {detail}",
        SOURCE,
    ))


def _describe(norm: Normalisation) -> str:
    names = {"identity": "identity (raw [0, 1] pixels)", "none": "none (raw [0, 1] pixels)",
             "dataset": "the dataset's conventional", "timm_pretrained_cfg": "the timm architecture's default",
             "torchvision_weights": "the torchvision weights' default"}
    return f"{names.get(norm.source, norm.source)} normalisation mean {_csv(norm.mean)} std {_csv(norm.std)}"


def _csv(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)


def _batch_dependence(model: AuditModel, x: torch.Tensor, logits: torch.Tensor, step: int) -> dict[str, Any] | None:
    """How much the logits of the first samples change when each is run alone instead of with its batch mates.

    ``logits`` are the checked samples' logits in passes of ``step``; when ``step`` is 1 the first
    samples are run once more as one batch. Costs ``BATCH_CHECK_SAMPLES`` single-sample forwards.

    Returns:
        ``relative_gap`` (max |Δlogit| over the largest |logit| of those rows; ``None`` when a single-sample
        forward raises, with ``single_sample_error``) and the ``tolerance`` for the logits' dtype, or ``None``
        with fewer than 2 samples.
    """
    n = min(BATCH_CHECK_SAMPLES, len(x))
    if n < 2:
        return None
    batched = logits[:n] if step >= n else _forward_once(model, x[:n])
    try:
        alone = torch.cat([model(x[i:i + 1]) for i in range(n)])
    except ModelForwardExit:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. batch statistics of a single value per channel
        _raise_if_out_of_memory(exc, "single-sample logits", 1)
        return {"relative_gap": None, "tolerance": _batch_tolerance(logits.dtype), "single_sample_error": one_line(exc)}
    batched, alone = batched.double(), alone.double().reshape(batched.shape)
    scale = float(torch.maximum(batched.abs().max(), alone.abs().max()))
    gap = float((batched - alone).abs().max())
    return {"relative_gap": gap / scale if scale > 0 else 0.0, "tolerance": _batch_tolerance(logits.dtype)}


def _batch_tolerance(dtype: torch.dtype) -> float:
    """The relative logit gap (of the rows' largest |logit|) above which batch mates changed a sample's logits.

    Batch-size-dependent kernel choices (BLAS blocking, cuDNN algorithms) reorder sums: in float64 that moves
    logits by ~1e-15 of their scale, in float32 by ~1e-6, with TF32 (cuDNN's default for float32 convolutions on
    CUDA) by ~1e-3; 16-bit formats round at 1e-3 (float16) to 8e-3 (bfloat16) per operation. Batch statistics
    move logits by a sizeable fraction of their scale, far above these.
    """
    return 0.1 if dtype in (torch.float16, torch.bfloat16) else 1e-2


def _forward(model: AuditModel, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``model(x)`` in passes of at most ``batch_size`` samples, each checked to return its n×K logits.

    A model whose forward raises is the user's input, not a robaudit bug; running out of memory gets the
    advice to lower ``--batch-size``.
    """
    parts = []
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size]
        out = _forward_once(model, chunk)
        _check_shape(out, model.num_classes, len(chunk))
        parts.append(out)
    return torch.cat(parts)


def _raise_if_out_of_memory(exc: BaseException, what: str, n: int) -> None:
    if is_out_of_memory(exc):
        raise PreflightError(f"out of memory computing {what} on a batch of {n} audit images: {first_line(exc)}",
                             fix=OOM_FIX) from exc


def _forward_once(model: AuditModel, x: torch.Tensor) -> torch.Tensor:
    try:
        return model(x)
    except ModelForwardExit:
        raise
    except Exception as exc:  # noqa: BLE001 - user code raises anything
        shape = "×".join(str(s) for s in x.shape[1:])
        if is_out_of_memory(exc):
            raise PreflightError(f"out of memory running the model on a batch of {len(x)} audit images ({shape}): "
                                 f"{first_line(exc)}", fix=OOM_FIX) from exc
        size = _working_size(model, x)
        if size is not None:
            h, w = size
            raise PreflightError(
                f"the model's forward raised {one_line(exc)} on the audit images ({shape}), but it runs on "
                f"{h}×{w} images: the images are {x.shape[-2]}×{x.shape[-1]} and the model needs {h}×{w}",
                fix=f"pass --resize {h if h == w else f'{h}x{w}'} to resize the audit images to {h}×{w}",
            ) from exc
        raise PreflightError(
            f"the model's forward raised {one_line(exc)} on a batch of {len(x)} audit images ({shape})",
            fix="fix the model's forward, or check --arch, the channels (--convert-channels) and the size (--resize N "
                "or HxW); rerun with --debug for the traceback",
        ) from exc


def _working_size(model: AuditModel, x: torch.Tensor) -> tuple[int, int] | None:
    """The first input size, other than x's, on which one sample goes through the model."""
    wanted = model.data_config.input_size
    candidates = [tuple(wanted[1:])] if wanted is not None else []
    candidates += [(s, s) for s in USUAL_SIZES]
    current = tuple(x.shape[-2:])
    for size in dict.fromkeys(candidates):
        if size == current:
            continue
        sample = F.interpolate(x[:1], size=size, mode="bilinear", align_corners=False)
        try:
            with torch.no_grad():
                out = model(sample)
        except Exception:  # noqa: BLE001 - trying sizes: any failure means "not this one"
            continue
        if out.ndim == 2 and out.shape == (1, model.num_classes):
            return size  # type: ignore[return-value]
    return None


def _check_no_side_effects(guard: "ModelGuard", modes: dict[str, bool]) -> None:
    """A forward in eval mode must leave the model as it was (checked over two passes after the first ones, so
    lazy modules and caches filled once are fine): one that keeps updating its own buffers or parameters (a call
    counter, BatchNorm statistics) or switches itself to training mode gives every probe a different network,
    depending on how often and on which batches it was called.

    ``modes`` holds each module's training flag before the first forward: a module that was already in training
    mode as loaded (an overridden ``train()`` keeping MC dropout on) was not switched by forward and is not refused.
    """
    training = [path or "root" for path, m in guard.model.named_modules() if m.training and not modes.get(path, False)]
    if training:
        raise PreflightError(f"the model's forward switched modules to training mode ({', '.join(training[:5])}): "
                             "dropout and BatchNorm statistics would then change every probe's numbers",
                             fix="do not call self.train() (or .train() on submodules) in forward")
    try:
        guard.check_by("the model's forward", subject="the model",
                       fix="make forward free of side effects in eval mode: no in-place updates of its buffers or "
                           "parameters, no self.train()")
    except InternalError as exc:
        raise PreflightError(exc.message, fix=exc.fix) from None


def _check_shape(logits: Any, num_classes: int, n: int) -> None:
    if not isinstance(logits, torch.Tensor):
        raise PreflightError(f"the model returned a {type(logits).__name__} for {n} inputs, not ({n}, {num_classes}) "
                             "logits", fix="wrap it so that forward returns the N×K logits tensor")
    if logits.ndim != 2 or logits.shape != (n, num_classes):
        raise PreflightError(
            f"the model returned shape {tuple(logits.shape)} for {n} inputs; expected ({n}, {num_classes}) logits",
            fix="check --arch and that the model ends in a classifier over the dataset's classes",
        )
    if not logits.is_floating_point():  # integer or complex "logits" have no softmax, loss or gradient
        raise PreflightError(
            f"the model returned {str(logits.dtype).replace('torch.', '')} logits; expected real floating-point logits",
            fix="return the classifier's floating-point outputs (not argmax class indices, rounded or complex "
                "values) from forward",
        )


def _check_logits(logits: torch.Tensor, num_classes: int, n: int) -> None:
    _check_shape(logits, num_classes, n)
    finite = torch.isfinite(logits).all(dim=1)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise PreflightError(
            f"the model returns NaN or Inf logits on {bad} of {n} preflight samples",
            fix="check the checkpoint (it may be corrupt or diverged) and the normalisation (--mean/--std)",
        )


def _check_network_input(seen: torch.Tensor, model: AuditModel, x: torch.Tensor, report: PreflightReport) -> None:
    """Record what the network sees (its input for the first ``len(seen)`` samples of ``x``), and confirm it
    is ``(x − mean)/std`` of the probe's pixels."""
    expected = model.normalise(x[:len(seen)])
    report.stats["network_input"] = {
        "matches_normalised_pixels": bool(torch.allclose(seen, expected)),
        "channel_mean": seen.double().mean(dim=(0, 2, 3)).tolist(),
        "channel_std": seen.double().std(dim=(0, 2, 3)).tolist(),
    }
    means = seen.double().mean(dim=(0, 2, 3)).abs()
    if bool((means > 3).any()):
        report.flags.append(Flag(
            "normalisation_suspect", Severity.WARNING,
            f"the network's normalised inputs have channel means {[round(float(m), 2) for m in means]}; "
            f"expected values near 0 (normalisation from '{model.provenance.normalisation.source}')",
            SOURCE,
        ))


def _check_input_gradients(model: AuditModel, x: torch.Tensor, y: torch.Tensor, report: PreflightReport,
                           batch_size: int) -> None:
    """Flag zero or missing input gradients; when none is usable, record why (probes needing them skip)."""
    grad, disconnected = _input_gradient(model, x, y, batch_size)
    if disconnected is not None:
        bad = len(x)
        report.input_gradient_error = f"the model's input gradient is disconnected ({disconnected})"
    else:
        per_sample = grad.flatten(1).abs().sum(dim=1)
        bad = int(((per_sample == 0) | ~torch.isfinite(per_sample)).sum())
        if bad == len(x):
            report.input_gradient_error = (f"the input gradient of the loss is zero or non-finite on all {bad} "
                                           "preflight samples")
    report.stats["zero_or_nonfinite_input_gradients"] = {"count": bad, "of": len(x),
                                                         "disconnected": disconnected is not None}
    if report.input_gradient_error is not None:
        reason = report.input_gradient_error
        report.flags.append(Flag(
            "zero_input_gradients", Severity.ERROR,
            f"{reason}: gradient-based attacks and indicators cannot see this model (gradient masking: "
            "a detach, no_grad or step function in forward); the probes that need input gradients were skipped",
            SOURCE,
        ))
        report.flags.append(Flag(
            "attack_gradients_vanish", Severity.ERROR,
            f"{reason}: every gradient attack would leave every sample unchanged and overstate robust accuracy, "
            "so the gradient attacks were skipped",
            SOURCE,
        ))
    elif bad > 0.1 * len(x):
        report.flags.append(Flag(
            "zero_input_gradients", Severity.WARNING,
            f"{bad} of {len(x)} preflight samples have a zero or non-finite input gradient of the loss; "
            "gradient-based attacks and indicators will understate vulnerability (gradient masking)",
            SOURCE,
        ))


def _input_gradient(model: AuditModel, x: torch.Tensor, y: torch.Tensor,
                    batch_size: int) -> tuple[torch.Tensor, str | None]:
    """(∇x of the summed cross-entropy, N×C×H×W, in passes of at most ``batch_size`` samples; why it is
    disconnected, or ``None``)."""
    grads = []
    for start in range(0, len(x), batch_size):
        xi = x[start:start + batch_size].clone().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(_forward(model, xi, batch_size), y[start:start + batch_size], reduction="sum")
            if not loss.requires_grad:
                return torch.zeros_like(x), "the logits have no autograd graph: torch.no_grad() or a detach in forward?"
            try:
                (grad,) = torch.autograd.grad(loss, xi, allow_unused=True)
            except RuntimeError as exc:
                _raise_if_out_of_memory(exc, "the input gradient", len(xi))
                raise
        if grad is None:
            return torch.zeros_like(x), "no autograd path from the input to the loss: a detach, no_grad or step function such as (x > 0).float() in forward?"
        grads.append(grad.detach())
    return torch.cat(grads), None


def _check_double_backward(model: AuditModel, x: torch.Tensor, y: torch.Tensor, report: PreflightReport) -> None:
    """Test a second derivative: through the input, or through the parameters when the input is masked."""
    wrt = "parameters" if report.input_gradient_error is not None else "input"
    try:
        _double_backward(model, x, y, wrt)
        report.double_backward = True
        return
    except RuntimeError as exc:
        _raise_if_out_of_memory(exc, "a second derivative", len(x))  # not "no second derivative"
        report.double_backward = False
        report.double_backward_error = str(exc).splitlines()[0]
    what = ("the TorchScript archive cannot double-backward" if isinstance(model.net, ScriptedNetwork)
            else "the model does not support second derivatives")
    report.flags.append(Flag(
        "no_double_backward", Severity.ERROR,
        f"{what} (with respect to its {wrt}: {report.double_backward_error}); "
        "second-order probes (input Hessians, parameter curvature) are skipped",
        SOURCE,
    ))


def _double_backward(model: AuditModel, x: torch.Tensor, y: torch.Tensor, wrt: str) -> None:
    x = x.clone().requires_grad_(wrt == "input")
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y)
        inputs = [x] if wrt == "input" else params
        grads = [g for g in torch.autograd.grad(loss, inputs, create_graph=True, allow_unused=True) if g is not None]
        if not grads:
            raise RuntimeError(f"the loss does not depend on the model's {wrt}")
        torch.autograd.grad(sum((g * torch.ones_like(g)).sum() for g in grads), inputs, allow_unused=True)
