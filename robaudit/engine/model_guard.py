"""The engine's proof that a probe left the audit model unchanged (for every probe, plugins included).

``torch`` bumps a tensor's version counter on every in-place write, so a changed parameter or
BatchNorm running statistic is detected without cloning anything; a replaced tensor (``.to``,
``load_state_dict`` with new storage) changes its identity or storage pointer.
"""
from __future__ import annotations

from torch import nn

from robaudit.errors import InternalError

Snapshot = tuple[tuple[tuple[str, bool], ...], tuple[tuple[object, ...], ...]]


class ModelGuard:
    """Snapshot a model's state tensors (identity, storage, in-place version, shape, dtype, device,
    requires_grad) and every module's training flag; :meth:`check` compares against it."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._before = self._snapshot()

    def _snapshot(self) -> Snapshot:
        flags = tuple((path, m.training) for path, m in self.model.named_modules())
        state = tuple(
            (k, id(t), t.data_ptr(), t._version, tuple(t.shape), t.dtype, t.device, t.requires_grad)
            for k, t in self.model.state_dict(keep_vars=True).items()
        )
        return flags, state

    def check(self, probe: str) -> None:
        """Raise :class:`InternalError` naming ``probe`` if the model's state or modes changed."""
        self.check_by(f"probe '{probe}'")

    def check_by(self, actor: str, *, subject: str = "the audit model",
                 fix: str = "a probe must work on model.audit_copy() when it needs another mode or weights") -> None:
        """Raise :class:`InternalError` saying that ``actor`` changed ``subject`` if its state or modes changed."""
        flags, state = self._snapshot()
        if flags != self._before[0]:
            changed = [p for (p, a), (_, b) in zip(flags, self._before[0]) if a != b] or ["(modules differ)"]
            raise InternalError(f"{actor} changed {subject}'s training mode: "
                                f"{', '.join(p or 'root' for p in changed[:5])}", fix=fix)
        if state != self._before[1]:
            changed = [b[0] for a, b in zip(state, self._before[1]) if a != b] or ["(keys differ)"]
            raise InternalError(f"{actor} changed {subject}'s state: {', '.join(changed[:5])}", fix=fix)
