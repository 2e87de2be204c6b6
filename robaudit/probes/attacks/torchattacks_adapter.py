"""The one place robaudit calls torchattacks (pinned to 3.5.x), with our fixes for its measured faults.

Every attack class of torchattacks is constructed here and nowhere else; probes call the
functions below. What this module guarantees, and why:

* **Pixels in, logits out.** torchattacks sees an :class:`AttackTarget` wrapping the audit model
  (pixels in [0, 1], normalisation inside). We never call ``set_normalization_used``: that path
  silently clamps inputs and renormalises them.
* **Explicit keywords.** Each constructor gets the keywords of the pinned version's signature
  (its docs show some it no longer accepts, e.g. ``iters=``); a test checks them against
  :func:`inspect.signature`.
* **Seeding.** torchattacks draws random starts from torch's *global* RNG of the input's device.
  Given one seed, a call seeds that generator (:func:`seed_global`) right before running (APGD/FAB/
  Square also get ``seed=``). Given one seed *per sample*, every random draw of the call is made
  row by row, each row from its sample's own generator (:class:`PerSampleDraws`), so a sample's
  attack does not depend on which other samples share its batch.
* **No side effects on the model.** During a session the model's parameters stop requiring
  gradients (FAB calls ``.backward()``, which would otherwise fill ``param.grad``) and every
  module's train/eval flag is restored afterwards; :class:`AttackTarget` is built in eval mode so
  torchattacks' ``_recover_model_mode`` never switches the model to training.
* **C&W, corrected** (:class:`CorrectedCW`): the loss is right for negative logits (upstream
  #184), pixels that are exactly 0 or 1 can move (projected Adam in pixel space instead of the
  atanh change of variables, whose gradient is zero there), early stopping is per sample (not on
  the batch-summed cost), and the constant c is found per sample by binary search.
* **PGD L2 step normalisation**: ``eps_for_division`` is 1e-30, not torchattacks' 1e-10, which
  swamps the (batch-mean) gradient of confident samples and stalls them (:data:`L2_DIVISION_FLOOR`).
* **AutoAttack** (:func:`autoattack_components`): the standard composition APGD-CE, APGD-T,
  FAB-T, Square, built component by component so that the iteration counts are ours (the
  reference 100, or torchattacks' reduced 10) and so that the caller can re-check every
  component's output instead of trusting ``MultiAttack``. APGD-T and FAB-T use min(9, K−1)
  target classes, as the reference implementation does (torchattacks uses K−1).

Nothing returned here is trusted: the probes re-check norm, box and finiteness and recompute
predictions themselves (:mod:`robaudit.probes.attacks.verify`).
"""
from __future__ import annotations

import contextlib
import numbers
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from robaudit.errors import ProbeError

SUPPORTED_VERSIONS = ((3, 5),)  # major.minor; pyproject pins torchattacks>=3.5.1,<3.6
L2_DIVISION_FLOOR = 1e-30
"""Added to ‖g‖₂ before normalising an L2 step. torchattacks' default 1e-10 is larger than the
whole gradient of a confident sample (the loss is a batch *mean*, and float32 softmax saturates:
‖g‖ ≈ 1e-16 at a logit margin of 37), which shrinks its steps a million-fold and stalls PGD L2."""
AUTOATTACK_TARGETS = 9  # target classes of APGD-T and FAB-T in the reference AutoAttack

# Iteration counts of the AutoAttack presets: "reference" is Croce & Hein's standard version
# (100 iterations, 5000 Square queries); "fast" is torchattacks' reduced default (10 iterations).
AUTOATTACK_PRESETS: dict[str, dict[str, int]] = {
    "reference": {"steps": 100, "square_queries": 5000},
    "fast": {"steps": 10, "square_queries": 5000},
}


def _torchattacks():  # noqa: ANN202 - the module
    import torchattacks

    version = tuple(int(p) for p in torchattacks.__version__.split(".")[:2])
    if version not in SUPPORTED_VERSIONS:
        raise ProbeError(
            f"torchattacks {torchattacks.__version__} is installed, but robaudit's attack adapter is written "
            f"and tested for 3.5.x",
            fix="install a supported version: pip install 'torchattacks>=3.5.1,<3.6'",
        )
    return torchattacks


def torchattacks_version() -> str:
    """The installed torchattacks version string (checked to be supported)."""
    return _torchattacks().__version__


class AttackTarget(nn.Module):
    """What torchattacks attacks: the audit model, plus a recorder of first-step input gradients.

    After :meth:`arm`, the first forward pass whose input requires a gradient registers a hook
    that records, per sample, whether that input gradient is all zeros or non-finite
    (:attr:`first_grad_bad`, a bool tensor of the batch size; on CPU once :func:`_run` returns).
    Gradient-masking checks use it at no extra forward or backward pass. Callers that do not need
    it for a call set :attr:`check_gradients` to ``False`` (the sweeps only read it at their
    first budget), which skips the hook.

    Args:
        model: the audit model (pixels in [0, 1] → logits).
        device: where it lives; an empty anchor parameter there lets torchattacks find the device.
    """

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(0, device=device), requires_grad=False)
        self.model = model
        self._armed = False
        self.check_gradients = True
        self.float64_logits = True
        self.first_grad_bad: torch.Tensor | None = None
        self.draws: PerSampleDraws | None = None
        self.clean_correct: torch.Tensor | None = None
        self.clean_batch: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
        """The (x, y) that :attr:`clean_correct` describes (:meth:`known_clean`)."""
        self.network_draws: bool | None = None
        """Whether the network drew random numbers in a forward pass of an earlier per-sample-seeded
        call of this session (``None``: none has run yet); :func:`apgd` reads it."""
        self.logits_dtype: torch.dtype | None = None
        """The dtype of the network's own logits in the last forward pass (``None``: none yet); :func:`apgd`
        reads it (the shared clean verdict is an argmax of float32 logits)."""
        self.train(False)

    def train(self, mode: bool = True) -> "AttackTarget":
        """Only this wrapper's flag changes; the audit model's own modes are never touched."""
        self.training = mode
        return self

    @contextlib.contextmanager
    def known_clean(self, correct: torch.Tensor | None, x: torch.Tensor | None = None,
                    y: torch.Tensor | None = None) -> Iterator[None]:
        """Inside the block, :attr:`clean_correct` is ``correct``: N bools (CPU) saying which samples of
        the batch ``x`` (N×C×H×W), labels ``y`` (N), the caller is about to attack the model classifies
        correctly clean, as the audit's shared clean logits say. :func:`apgd` then skips APGD's own clean
        forward pass where that changes no number (see there), and only when it is called on these very
        tensors: an attack that hands APGD other pixels or other labels gets APGD's own check."""
        saved = self.clean_correct, self.clean_batch
        self.clean_correct, self.clean_batch = correct, (x, y)
        try:
            yield
        finally:
            self.clean_correct, self.clean_batch = saved

    def arm(self) -> None:
        """Record the gradient of the next forward pass that needs one."""
        self._armed = True
        self.first_grad_bad = None

    def disarm(self) -> None:
        """Stop waiting for a gradient (attacks without one: Square, FAB)."""
        self._armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits N×K of pixels ``x`` (N×C×H×W in [0, 1]).

        A model whose output has no autograd path to its input (hard thresholds, ``.detach()``)
        gets one with an exactly zero gradient, so gradient attacks run, find nothing, and the
        gradient-masking flags report it instead of torchattacks crashing.
        """
        if self._armed and x.requires_grad:
            self._armed = False
            x.register_hook(self._record)
        if self.draws is None:
            return self._logits(x)
        if self.draws.retired:
            with self.draws.late_forward_pass():
                return self._logits(x)
        with self.draws.forward_pass(gradient=x.requires_grad):
            return self._logits(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        self.logits_dtype = logits.dtype
        if x.requires_grad and not logits.requires_grad:
            logits = logits + 0.0 * x.flatten(1).sum(dim=1, keepdim=True)
        # float64 logits: torchattacks' cross-entropy gradient p − e_y loses its true-class term in
        # float32 once p_y rounds to 1 (logit margins above ~16; 116 of the 360 digits samples of the
        # demo CNN), which turned FGSM / L2GRAD / BIM steps away from the boundary. In float64 the
        # term survives to margins of ~36. The network itself still runs in its own precision.
        # (torchattacks' FAB writes logits into float32 buffers, so it gets them as they are.)
        return logits.double() if self.float64_logits else logits

    def _record(self, grad: torch.Tensor) -> None:
        # one reduction: max |g| is 0 for an all-zero gradient and NaN/inf when any entry is
        # non-finite (amax propagates NaN); stays on the device until _run hands it over
        peak = grad.detach().flatten(1).abs().amax(dim=1)
        self.first_grad_bad = (peak == 0) | ~torch.isfinite(peak)


@contextlib.contextmanager
def attack_session(model: nn.Module, device: torch.device) -> Iterator[AttackTarget]:
    """An :class:`AttackTarget` for ``model``; parameters stop requiring grad, and every module's
    mode and ``requires_grad`` flag are restored on exit (also on error)."""
    _torchattacks()
    params = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        for p, _ in params:
            p.requires_grad_(False)
        yield AttackTarget(model, device)
    finally:
        for p, flag in params:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


@dataclass
class AttackOutput:
    """An attack's raw output (not yet re-checked).

    Attributes:
        adv: N×C×H×W adversarial candidates.
        first_grad_bad: N bools, True where the input gradient at the attack's first step was
            all zeros or non-finite; ``None`` for attacks that use no gradient.
    """

    adv: torch.Tensor
    first_grad_bad: torch.Tensor | None


def seed_global(seed: int, device: torch.device) -> None:
    """Seed the global generator that torchattacks draws from for inputs on ``device``.

    Equivalent to ``torch.manual_seed(seed)`` for that device's draws, without its cost on CPU
    (``torch.manual_seed`` also queues a lazy CUDA seed and formats a stack trace every call,
    ≈0.4 ms — 2 % of an FGSM batch on the digits demo).
    """
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.default_generators[index].manual_seed(seed)
    elif device.type != "cpu":
        torch.manual_seed(seed)


Seeds = int | Sequence[int]
"""One seed for the whole call (torch's global generator), or one per sample (:class:`PerSampleDraws`)."""


class PerSampleDraws(TorchFunctionMode):
    """Inside this mode, every random draw whose first dimension is the batch is made row by row,
    row i from a generator of its own seeded with ``seeds[i]``.

    torchattacks draws random starts from torch's global generator for the whole batch, so sample
    i's start depends on its position in the batch. Here it depends on its seed alone: a sample's
    draws equal those of the same attack run on that sample alone with the global generator seeded
    with ``seeds[i]``. Each sample's generator carries on across the draws of one call. Only the
    draws torchattacks makes are supported (``rand``, ``randn``, their ``_like`` forms, and in-place
    ``uniform_`` / ``normal_``); any other random function, or a draw of another first dimension,
    raises instead of silently using the global generator.

    **Retirement.** Every torch call inside a mode pays a Python dispatch (about 6 µs; 10 % of an
    APGD-CE sweep on the digits demo, more on a deep network's forward pass), yet the attacks the
    sweeps run (FGSM, BIM, PGD, PGD L2, APGD) draw only before their first gradient step: their
    random start. So the attack target (:class:`AttackTarget`) tells the mode about each forward
    pass (:meth:`forward_pass`), and after the first one that takes a gradient the mode leaves the
    stack (:meth:`retire`), unless the network itself drew random numbers in a forward pass (then
    it stays for the whole call, as before). Any later draw from torch's global generator is still
    caught: the generators' states are compared on exit, which raises if they moved.

    **The network's own draws** (a randomised defence) are the network's: a draw in its forward
    pass whose first dimension is the batch is made per sample, like the attack's; any other (a
    scalar noise scale, ``randint`` for a random resize, …) comes from torch's global generator as
    it would outside robaudit, and is never refused. A network that draws after the mode retired
    (seen as the global generators moving across a forward pass) switches the exit check off: its
    draws and an attack's late ones can no longer be told apart, and such a model is flagged
    nondeterministic by the preflight anyway.

    Args:
        seeds: one seed per sample (31-bit integers, e.g. from :func:`robaudit.probes.seeding.derive_seed`).
    """

    _FACTORIES = (torch.rand, torch.randn)
    _LIKE = {torch.rand_like: torch.rand, torch.randn_like: torch.randn}
    _IN_PLACE = (torch.Tensor.uniform_, torch.Tensor.normal_)
    _REFUSED = (torch.randint, torch.randint_like, torch.randperm, torch.bernoulli, torch.multinomial, torch.normal,
                torch.poisson, torch.Tensor.random_, torch.Tensor.exponential_, torch.Tensor.bernoulli_,
                torch.Tensor.cauchy_, torch.Tensor.geometric_, torch.Tensor.log_normal_)

    def __init__(self, seeds: Sequence[int]) -> None:
        super().__init__()
        self.seeds = [int(s) for s in seeds]
        self.rows = list(range(len(self.seeds)))
        self._generators: dict[torch.device, list[torch.Generator]] = {}
        self.retired = False
        self._in_forward = False
        self._network_drew = False
        self._global_states: list[tuple[torch.Generator, torch.Tensor]] = []

    @contextlib.contextmanager
    def forward_pass(self, gradient: bool) -> Iterator[None]:
        """The network's forward pass runs inside this block; after the first one that takes a
        gradient (``gradient``), the mode retires unless the network drew random numbers."""
        self._in_forward = True
        try:
            yield
        finally:
            self._in_forward = False
        if gradient and not self._network_drew:
            self.retire()

    @property
    def network_drew(self) -> bool:
        """Whether the network drew random numbers in a forward pass of this call (so far)."""
        return self._network_drew

    @contextlib.contextmanager
    def late_forward_pass(self) -> Iterator[None]:
        """A forward pass after retirement: if the global generators move across it, the network drew."""
        before = [g.get_state() for g, _ in self._global_states]
        yield
        if any(not torch.equal(g.get_state(), state) for (g, _), state in zip(self._global_states, before)):
            self._network_drew = True

    def retire(self) -> None:
        """Leave the mode stack for the rest of the call (only when this mode is the innermost one),
        remembering the global generators' states so that :meth:`__exit__` can check no draw was
        made from them afterwards."""
        if self.retired or torch.overrides._get_current_function_mode() is not self:  # noqa: SLF001
            return
        self._global_states = [(g, g.get_state()) for g in _global_generators()]
        super().__exit__(None, None, None)
        self.retired = True

    def __exit__(self, exc_type, exc_value, traceback) -> None:  # noqa: ANN001 - context-manager protocol
        if not self.retired:
            super().__exit__(exc_type, exc_value, traceback)
            return
        if exc_type is None and not self._network_drew and any(
                not torch.equal(g.get_state(), state) for g, state in self._global_states):
            raise RuntimeError("an attack drew random numbers from torch's global generator after its first gradient "
                               "step; robaudit's per-sample streams cover only the draws before it")

    @contextlib.contextmanager
    def restricted(self, rows: Sequence[int]) -> Iterator[None]:
        """Draws inside this block have first dimension ``len(rows)`` and belong to those samples."""
        saved, self.rows = self.rows, [self.rows[int(r)] for r in rows]
        try:
            yield
        finally:
            self.rows = saved

    def _generator(self, row: int, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = [torch.Generator(device=device).manual_seed(s) for s in self.seeds]
        return self._generators[device][self.rows[row]]

    def _is_random(self, func: object) -> bool:
        return func in self._LIKE or func in self._FACTORIES or func in self._IN_PLACE or func in self._REFUSED

    @staticmethod
    def _factory_size(args: tuple) -> tuple:
        """The size a ``rand``/``randn`` call asks for: ``rand(n, d)`` or ``rand((n, d))``."""
        return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)) else tuple(args)

    def _batch_rows(self, func: object, args: tuple) -> int | None:
        """The first dimension of a supported draw (``None``: a refused function or a 0-d draw)."""
        if func in self._LIKE or func in self._IN_PLACE:
            shape = tuple(args[0].shape)
        elif func in self._FACTORIES:
            shape = self._factory_size(args)
        else:
            return None
        return int(shape[0]) if shape else None

    def _check(self, n: int, func: object) -> None:
        if n != len(self.rows):
            raise RuntimeError(f"per-sample random draw of first dimension {n} for a batch of {len(self.rows)} "
                               f"samples ({func}); robaudit cannot tell which sample each row belongs to")

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch protocol
        kwargs = dict(kwargs or {})
        if self._in_forward and self._is_random(func):
            self._network_drew = True
            if self._batch_rows(func, args) != len(self.rows):
                return func(*args, **kwargs)  # the network's own draw, not a sample's: the global generator
        if func in self._LIKE:
            like = args[0]
            kwargs.setdefault("dtype", like.dtype)
            kwargs.setdefault("device", like.device)
            func, args = self._LIKE[func], (tuple(like.shape),)
        if func in self._FACTORIES:
            size = self._factory_size(args)
            device = torch.device(kwargs.get("device") or "cpu")
            self._check(size[0], func)
            rows = [func(tuple(size[1:]), generator=self._generator(i, device), **kwargs) for i in range(size[0])]
            return torch.stack(rows) if rows else func(size, **kwargs)
        if func in self._IN_PLACE:
            tensor = args[0]
            self._check(len(tensor), func)
            for i in range(len(tensor)):
                func(tensor[i], *args[1:], generator=self._generator(i, tensor.device), **kwargs)
            return tensor
        if func in self._REFUSED:
            raise RuntimeError(f"{func} has no per-sample stream in robaudit's attack adapter")
        return func(*args, **kwargs)


def _global_generators() -> list[torch.Generator]:
    """torch's global generators: the CPU one, and each CUDA device's once CUDA is initialised."""
    gens = [torch.default_generator]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        gens.extend(torch.cuda.default_generators)
    return gens


@contextlib.contextmanager
def seeded(seed: Seeds, device: torch.device) -> Iterator[PerSampleDraws | None]:
    """Random draws inside the block: from the global generator seeded with ``seed`` (one int), or
    per sample (a sequence: yields the :class:`PerSampleDraws` mode)."""
    if isinstance(seed, numbers.Integral):
        seed_global(int(seed), device)
        yield None
        return
    with PerSampleDraws(seed) as draws:
        yield draws


def _run(attack: object, target: AttackTarget, x: torch.Tensor, y: torch.Tensor, seed: Seeds,
         record_gradient: bool = True, float64_logits: bool = True) -> AttackOutput:
    target.float64_logits = float64_logits
    record = record_gradient and target.check_gradients
    if record:
        target.arm()
    else:
        target.disarm()
    with seeded(seed, x.device) as draws:
        if draws is not None:
            attack.draws = draws  # type: ignore[attr-defined] - read by the per-sample APGD
        target.draws = draws
        try:
            adv = attack(x, y)  # type: ignore[operator]
        finally:
            target.draws = None
        if draws is not None:
            target.network_draws = bool(target.network_draws) or draws.network_drew
    target.disarm()
    bad = target.first_grad_bad if record else None
    if bad is not None:
        bad = target.first_grad_bad = bad.cpu()
    return AttackOutput(adv.detach(), bad)


def fgsm(target: AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: float, seed: Seeds) -> AttackOutput:
    """FGSM, x + ε·sign(∇ₓ CE), clipped to [0, 1] (L∞, one step)."""
    ta = _torchattacks()
    return _run(ta.FGSM(target, eps=eps), target, x, y, seed)


def bim(target: AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
        seed: Seeds) -> AttackOutput:
    """BIM / FGSM-k: ``steps`` signed-gradient steps of size ``alpha``, projected onto the L∞ ε-ball
    and [0, 1], from the clean image."""
    ta = _torchattacks()
    return _run(ta.BIM(target, eps=eps, alpha=alpha, steps=steps), target, x, y, seed)


def pgd_linf(target: AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
             random_start: bool, seed: Seeds) -> AttackOutput:
    """PGD L∞ (Madry et al.): optional uniform random start in the ε-ball, ``steps`` signed steps of
    ``alpha``, projection onto the ball and [0, 1]; returns the last iterate."""
    ta = _torchattacks()
    attack = ta.PGD(target, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
    return _run(attack, target, x, y, seed)


def pgd_l2(target: AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
           random_start: bool, seed: Seeds) -> AttackOutput:
    """PGD L2: optional random start in the ε-ball, ``steps`` normalised-gradient steps of length
    ``alpha``, projection onto the L2 ball and [0, 1]; returns the last iterate."""
    ta = _torchattacks()
    attack = ta.PGDL2(target, eps=eps, alpha=alpha, steps=steps, random_start=random_start,
                      eps_for_division=L2_DIVISION_FLOOR)
    return _run(attack, target, x, y, seed)


def _per_sample_pgd_classes() -> tuple[type, type]:
    ta = _torchattacks()

    def column(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.to(like.device, like.dtype).view(-1, *[1] * (like.dim() - 1))

    class PerSamplePGD(ta.PGD):
        """torchattacks' PGD L∞ with one budget per sample: ``eps`` and ``alpha`` are (N,) tensors.

        The update is torchattacks' ``PGD.forward`` line for line (mean cross-entropy, signed
        steps, clamp to the ball and [0, 1]); only the random start is written as
        ``u·2ε − ε`` with u ~ U[0, 1) so that ε can differ per sample. Used by the minimal-ε
        bisection, where every sample has its own bracket.
        """

        def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            images = images.clone().detach().to(self.device)
            labels = labels.clone().detach().to(self.device)
            eps, alpha = column(self.eps, images), column(self.alpha, images)
            loss = nn.CrossEntropyLoss()
            adv_images = images.clone().detach()
            if self.random_start:
                adv_images = adv_images + torch.empty_like(adv_images).uniform_(0, 1) * (2 * eps) - eps
                adv_images = torch.clamp(adv_images, min=0, max=1).detach()
            for _ in range(self.steps):
                adv_images.requires_grad = True
                cost = loss(self.get_logits(adv_images), labels)
                grad = torch.autograd.grad(cost, adv_images, retain_graph=False, create_graph=False)[0]
                adv_images = adv_images.detach() + alpha * grad.sign()
                delta = torch.clamp(adv_images - images, min=-eps, max=eps)
                adv_images = torch.clamp(images + delta, min=0, max=1).detach()
            return adv_images

    class PerSamplePGDL2(ta.PGDL2):
        """torchattacks' PGD L2 with one budget per sample (``eps``, ``alpha``: (N,) tensors);
        the update is ``PGDL2.forward`` line for line."""

        def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            images = images.clone().detach().to(self.device)
            labels = labels.clone().detach().to(self.device)
            eps, alpha = column(self.eps, images), column(self.alpha, images)
            loss = nn.CrossEntropyLoss()
            adv_images = images.clone().detach()
            batch_size = len(images)
            if self.random_start:
                delta = torch.empty_like(adv_images).normal_()
                n = delta.view(batch_size, -1).norm(p=2, dim=1).view(batch_size, 1, 1, 1)
                r = torch.zeros_like(n).uniform_(0, 1)
                delta *= r / n * eps
                adv_images = torch.clamp(adv_images + delta, min=0, max=1).detach()
            for _ in range(self.steps):
                adv_images.requires_grad = True
                cost = loss(self.get_logits(adv_images), labels)
                grad = torch.autograd.grad(cost, adv_images, retain_graph=False, create_graph=False)[0]
                grad_norms = torch.norm(grad.view(batch_size, -1), p=2, dim=1) + self.eps_for_division
                grad = grad / grad_norms.view(batch_size, 1, 1, 1)
                adv_images = adv_images.detach() + alpha * grad
                delta = adv_images - images
                delta_norms = torch.norm(delta.view(batch_size, -1), p=2, dim=1)
                factor = torch.min(eps.view(-1) / delta_norms, torch.ones_like(delta_norms))
                delta = delta * factor.view(-1, 1, 1, 1)
                adv_images = torch.clamp(images + delta, min=0, max=1).detach()
            return adv_images

    return PerSamplePGD, PerSamplePGDL2


def pgd_per_sample(target: AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, step_fraction: float,
                   steps: int, random_start: bool, norm: str, seed: Seeds) -> AttackOutput:
    """PGD (``linf`` or ``l2``) with a budget per sample: ``eps`` is (N,) in pixel units and the step
    is ``step_fraction``·ε of each sample."""
    linf, l2 = _per_sample_pgd_classes()
    cls = linf if norm == "linf" else l2
    eps = eps.to(x.device, x.dtype)
    kwargs = {"eps_for_division": L2_DIVISION_FLOOR} if norm == "l2" else {}
    attack = cls(target, eps=eps, alpha=eps * step_fraction, steps=steps, random_start=random_start, **kwargs)
    return _run(attack, target, x, y, seed)


def _per_sample_apgd_class() -> type:
    ta = _torchattacks()

    class PerSampleAPGD(ta.APGD):
        """torchattacks' APGD (Croce & Hein's Auto-PGD: momentum, step size halved at checkpoints
        where the loss stalled, no step-size knob), one restart, with two changes to ``perturb``:

        * with per-sample seeds (:class:`PerSampleDraws`, attached by :func:`_run` as ``draws``) each
          clean-correct sample's random start comes from its own stream, not from the global
          generator torchattacks re-seeds with ``seed`` for the whole batch;
        * a sample it does not break gets its highest-loss iterate back (torchattacks returns the
          clean image), so the loss and margin recorded after the attack are the attack's.

        ``attack_single_run``, which does the work, is torchattacks' own. The samples it attacked
        (the clean-correct ones) are left in ``attacked`` for the gradient recorder. With
        ``clean_correct`` set (N bools, set by :func:`apgd`) those are the samples attacked, and
        ``perturb``'s clean forward pass is skipped.
        """

        draws: PerSampleDraws | None = None
        attacked: torch.Tensor | None = None
        clean_correct: torch.Tensor | None = None

        def perturb(self, x_in: torch.Tensor, y_in: torch.Tensor, best_loss: bool = False,
                    cheap: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = x_in.clone(), y_in.clone()
            adv = x.clone()
            if self.clean_correct is not None:
                acc = self.clean_correct.to(x.device, torch.bool).clone()
            else:
                acc = self.get_logits(x).max(1)[1] == y
            idx = acc.nonzero().flatten()
            self.attacked = idx.cpu()
            if self.draws is None:
                torch.random.manual_seed(self.seed)
                if x.is_cuda:
                    torch.cuda.random.manual_seed(self.seed)
            if len(idx):
                with self.draws.restricted(idx.tolist()) if self.draws is not None else contextlib.nullcontext():
                    best, acc_curr, _, best_adv = self.attack_single_run(x[idx], y[idx])
                broken = acc_curr == 0
                adv[idx] = torch.where(broken.view(-1, *[1] * (x.dim() - 1)), best_adv, best)
                acc[idx] = ~broken
            return acc, adv

    return PerSampleAPGD


_FLOAT32_EXACT = (torch.float32, torch.float16, torch.bfloat16)
"""Logit dtypes that the shared clean logits (float32) hold exactly, so that their argmax is APGD's own."""


def apgd(target: AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, steps: int,
         seed: Seeds) -> AttackOutput:
    """APGD-CE (AutoAttack's first stage; :func:`_per_sample_apgd_class`): ``steps`` iterations on the
    cross-entropy of the (float64) logits, one restart, random start in the ε-ball of ``norm``.

    Per sample: a broken sample's verified-by-torchattacks adversarial iterate, else its
    highest-loss iterate; clean-misclassified samples come back unchanged. Costs one forward pass
    (the clean check) and ``steps + 1`` forward+backward passes per clean-correct sample.

    **The clean check, reused.** Inside :meth:`AttackTarget.known_clean` (the sweeps set it from the
    audit's shared clean logits), when ``x`` and ``y`` are the very tensors it describes, the samples to
    attack are the ones it names, and APGD's own clean forward pass is skipped, but only where that
    changes no number: with per-sample seeds and a
    network known (:attr:`AttackTarget.network_draws` is ``False``) not to draw random numbers in
    its forward pass, since that pass would otherwise advance the samples' streams, and whose logits
    are float32 or narrower (:attr:`AttackTarget.logits_dtype`): the shared logits are stored as
    float32, where two float64 logits can round to a tie and so to another argmax. The shared verdict
    is then that same forward pass on the same model: bitwise the same logits on the same batch (a
    sweep's first budget); on a batch of other composition (later budgets, restarts, the large-ε
    check) the same argmax unless the network's kernels round differently by batch size and the top
    two logits lie within that rounding.
    """
    attack = _per_sample_apgd_class()(target, norm=_norm_name(norm), eps=eps, steps=steps, n_restarts=1,
                                      seed=seed if isinstance(seed, numbers.Integral) else 0, loss="ce",
                                      eot_iter=1, rho=0.75, verbose=False)
    known = target.clean_correct
    if (known is not None and target.clean_batch[0] is x and target.clean_batch[1] is y
            and not isinstance(seed, numbers.Integral) and target.network_draws is False
            and target.logits_dtype in _FLOAT32_EXACT):
        if len(known) != len(x):
            raise ValueError(f"known_clean names {len(known)} samples for a batch of {len(x)}")
        attack.clean_correct = known
    out = _run(attack, target, x, y, seed)
    if out.first_grad_bad is not None and attack.attacked is not None and len(out.first_grad_bad) != len(x):
        bad = torch.zeros(len(x), dtype=torch.bool)  # recorded for the attacked (clean-correct) rows only
        bad[attack.attacked] = out.first_grad_bad
        out = AttackOutput(out.adv, bad)
    return out


def l2grad(target: AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: float, seed: Seeds) -> AttackOutput:
    """L2GRAD (Yao Table 5): x + ε·g/‖g‖₂ in one step, clipped to [0, 1].

    torchattacks has no such class; it is exactly PGDL2 with one step of length ε and no
    random start (the projection then never binds).
    """
    return pgd_l2(target, x, y, eps, alpha=eps, steps=1, random_start=False, seed=seed)


# --------------------------------------------------------------------------------------- C&W L2

def _corrected_cw_class() -> type:
    ta = _torchattacks()

    class CorrectedCW(ta.CW):
        """Carlini–Wagner L2 (untargeted), torchattacks' class with its three faults fixed.

        1. ``f`` uses the largest *other* logit; torchattacks multiplies by a one-hot mask, so
           with all-negative logits the "largest other logit" is the 0 of the mask (#184).
        2. The box constraint is kept by projected Adam on the pixels themselves; the atanh change
           of variables maps pixels at exactly 0 or 1 to ±∞ where the gradient is 0, so they
           never move (58 % of digits pixels are 0).
        3. Early stopping is decided per sample: a sample stops when its own cost has not fallen
           by 0.01 % over the last ``steps // 10`` steps (Carlini's criterion), instead of the
           whole batch stopping when the batch-summed cost rises. Adam is element-wise and the
           cost is a sum over samples, so each sample's result is independent of its batch.

        The constant c is set per sample by ``binary_search_steps`` rounds of binary search
        (×10 until the first success), starting from ``c``. After a call, :attr:`best_l2` holds
        the squared L2 distance of the best adversarial found per sample (∞ where none).
        """

        def __init__(self, model: nn.Module, c: float, kappa: float, steps: int, lr: float,
                     binary_search_steps: int) -> None:
            super().__init__(model, c=c, kappa=kappa, steps=steps, lr=lr)
            self.binary_search_steps = binary_search_steps
            self.supported_mode = ["default"]
            self.best_l2: torch.Tensor | None = None

        def f(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            real = outputs.gather(1, labels[:, None]).squeeze(1)
            other = outputs.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
            return torch.clamp(real - other, min=-self.kappa)

        def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            x = images.clone().detach().to(self.device)
            y = labels.clone().detach().to(self.device)
            n = len(x)
            const = torch.full((n,), float(self.c), device=x.device)
            lower = torch.zeros(n, device=x.device)
            upper = torch.full((n,), float("inf"), device=x.device)
            best_l2 = torch.full((n,), float("inf"), device=x.device)
            best_adv = x.clone()
            check_every = max(self.steps // 10, 1)
            for _ in range(self.binary_search_steps):
                w = x.clone().requires_grad_(True)
                optimizer = torch.optim.Adam([w], lr=self.lr)
                active = torch.ones(n, dtype=torch.bool, device=x.device)
                prev = torch.full((n,), float("inf"), device=x.device)
                found = torch.zeros(n, dtype=torch.bool, device=x.device)
                for step in range(self.steps):
                    l2 = (w - x).pow(2).flatten(1).sum(dim=1)
                    logits = self.get_logits(w)
                    cost = l2 + const * self.f(logits, y)
                    optimizer.zero_grad()
                    cost.sum().backward()
                    with torch.no_grad():
                        success = logits.argmax(dim=1) != y
                        better = success & (l2 < best_l2)
                        best_l2 = torch.where(better, l2, best_l2)
                        best_adv[better] = w[better]
                        found |= success
                        before = w.detach().clone()
                    optimizer.step()
                    with torch.no_grad():
                        w.clamp_(0.0, 1.0)
                        w[~active] = before[~active]
                        if step % check_every == 0:
                            c_now = cost.detach()
                            active &= ~torch.isfinite(prev) | (c_now <= prev - 1e-4 * prev.abs())
                            prev = torch.where(active, c_now, prev)
                            if not bool(active.any()):
                                break
                upper = torch.where(found, torch.minimum(upper, const), upper)
                lower = torch.where(found, lower, torch.maximum(lower, const))
                const = torch.where(torch.isfinite(upper), (lower + upper) / 2, const * 10)
            self.best_l2 = best_l2
            return best_adv

    return CorrectedCW


def corrected_cw(model: nn.Module, c: float = 1.0, kappa: float = 0.0, steps: int = 100, lr: float = 0.01,
                 binary_search_steps: int = 5) -> object:
    """A :class:`CorrectedCW` attack object (see its docstring), for tests and :func:`cw_l2`."""
    return _corrected_cw_class()(model, c=c, kappa=kappa, steps=steps, lr=lr, binary_search_steps=binary_search_steps)


def stock_cw(model: nn.Module, c: float = 1.0, kappa: float = 0.0, steps: int = 100, lr: float = 0.01) -> object:
    """torchattacks' own, unfixed C&W, for the tests that demonstrate its faults."""
    return _torchattacks().CW(model, c=c, kappa=kappa, steps=steps, lr=lr)


def cw_l2(target: AttackTarget, x: torch.Tensor, y: torch.Tensor, c: float, kappa: float, steps: int, lr: float,
          binary_search_steps: int, seed: int) -> AttackOutput:
    """Corrected C&W L2: the closest adversarial found per sample (the clean image where none)."""
    attack = corrected_cw(target, c=c, kappa=kappa, steps=steps, lr=lr, binary_search_steps=binary_search_steps)
    return _run(attack, target, x, y, seed)


# ------------------------------------------------------------------------------ AutoAttack, FAB

Component = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _norm_name(norm: str) -> str:
    return {"linf": "Linf", "l2": "L2"}[norm]


def autoattack_components(target: AttackTarget, eps: float, norm: str, steps: int, square_queries: int,
                          num_classes: int, seed: int) -> list[tuple[str, Component]]:
    """AutoAttack's standard composition as (name, attack(x, y) → adv) pairs, in order.

    APGD-CE, APGD-T (skipped for K < 4: its targeted DLR loss needs the 4th-largest logit),
    FAB-T and Square, each with one restart. Run each on the samples the previous ones did not
    break, re-checking every output yourself.
    """
    ta = _torchattacks()
    n = _norm_name(norm)
    targets = max(1, min(AUTOATTACK_TARGETS, num_classes - 1))
    apgd = ta.APGD(target, norm=n, eps=eps, steps=steps, n_restarts=1, seed=seed, loss="ce", eot_iter=1,
                   rho=0.75, verbose=False)
    components: list[tuple[str, object, bool]] = [("apgd-ce", apgd, True)]
    if num_classes >= 4:
        apgdt = ta.APGDT(target, norm=n, eps=eps, steps=steps, n_restarts=1, seed=seed, eot_iter=1, rho=0.75,
                         verbose=False, n_classes=num_classes)
        apgdt.n_target_classes = targets
        components.append(("apgd-t", apgdt, True))
    fabt = ta.FAB(target, norm=n, eps=eps, steps=steps, n_restarts=1, alpha_max=0.1, eta=1.05, beta=0.9,
                  verbose=False, seed=seed, multi_targeted=True, n_classes=num_classes)
    fabt.n_target_classes = targets
    components.append(("fab-t", fabt, False))
    square = ta.Square(target, norm=n, eps=eps, n_queries=square_queries, n_restarts=1, p_init=0.8, loss="margin",
                       resc_schedule=True, seed=seed, verbose=False)
    components.append(("square", square, False))

    def bind(attack: object, gradient: bool, float64_logits: bool) -> Component:
        return lambda xb, yb: _run(attack, target, xb, yb, seed, record_gradient=gradient,
                                   float64_logits=float64_logits).adv

    return [(name, bind(attack, grad, name != "fab-t")) for name, attack, grad in components]


AUTOATTACK_COMPONENTS = ("apgd-ce", "apgd-t", "fab-t", "square")


def fab_min_norm(target: AttackTarget, x: torch.Tensor, y: torch.Tensor, norm: str, steps: int, restarts: int,
                 num_classes: int, seed: int) -> AttackOutput:
    """Untargeted FAB (Croce & Hein), a minimum-norm attack: the closest adversarial it finds per
    sample, at any distance (``eps`` set to the whole pixel box); the clean image where none."""
    ta = _torchattacks()
    big = 1.0 if norm == "linf" else float(x[0].numel()) ** 0.5
    attack = ta.FAB(target, norm=_norm_name(norm), eps=big, steps=steps, n_restarts=restarts, alpha_max=0.1,
                    eta=1.05, beta=0.9, verbose=False, seed=seed, multi_targeted=False, n_classes=num_classes)
    return _run(attack, target, x, y, seed, record_gradient=False, float64_logits=False)
