"""SIGTERM stops an audit once: the SIGINT that can come with it (a process-group SIGTERM reaches a zoo
child whose worker also forwards a SIGINT) must not interrupt the writing of the finished results."""
from __future__ import annotations

import os
import signal

import pytest

from robaudit.cli.signals import Terminated, sigterm_as_interrupt


def test_after_a_sigterm_a_sigint_is_ignored_until_the_block_ends() -> None:
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Terminated):
        with sigterm_as_interrupt():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                signal.sigtimedwait([], 0.5) if hasattr(signal, "sigtimedwait") else None
            except Terminated:
                # what the engine does here: write the finished results; a SIGINT now is ignored
                assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
                os.kill(os.getpid(), signal.SIGINT)
                raise
    assert signal.getsignal(signal.SIGINT) is before


def test_without_a_sigterm_sigint_is_left_alone() -> None:
    before = signal.getsignal(signal.SIGINT)
    with sigterm_as_interrupt():
        assert signal.getsignal(signal.SIGINT) is before
    assert signal.getsignal(signal.SIGINT) is before
