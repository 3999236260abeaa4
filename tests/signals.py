"""Signals as a command started from a terminal has them, for the tests that send Ctrl-C to a child."""

from __future__ import annotations

import signal


def default_ctrl_c() -> None:
    """A `preexec_fn`: SIGINT at its default in the child. A shell without job control starts a
    background command (`pytest ... &`) with SIGINT ignored, every child inherits that, and dsrprep
    keeps a signal ignored at start ignored (as under nohup), so Ctrl-C would never reach it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
