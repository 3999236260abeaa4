"""Requests to stop the process: Ctrl-C (SIGINT), SIGTERM and SIGHUP (a closed SSH session).

All three mean the same: the first one raises KeyboardInterrupt in the main thread, which the worker
pool turns into "start no more hosts, let the steps in flight finish" (orchestrator/runner.py
`in_pool`); every later one only sets `leave`, which the pool's wait watches to stop waiting for the
hosts in flight. No request after the first raises anything, so the bookkeeping that follows an
interruption (each host's outcome in run.json, the last line of each host log, the locks) cannot be
cut short by pressing Ctrl-C again. `held()` keeps even the first request from raising while a run
that has ended writes its summary.

A SIGHUP also means the terminal is gone: the standard streams that were a terminal are pointed at
/dev/null, so that what the run prints on its way out cannot fail on the closed terminal.

A signal that was ignored when the process started (`nohup`, a background job of a script) stays
ignored. The handlers are installed by the command line (`install()`); the rest of the process only
reads `STOP`.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

# The signals that ask a run to stop, as a first Ctrl-C does.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequests:
    """The stop requests this process has received, in order."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.leave = threading.Event()  # set by every request after the first: leave without waiting
        self._held = 0
        self._terminal_fds: tuple[int, ...] = ()

    @property
    def requested(self) -> bool:
        return bool(self.received)

    def install(self) -> None:
        """Handle the stop signals (those not ignored at start) in this process."""
        self._terminal_fds = tuple(fd for fd in (0, 1, 2) if _isatty(fd))
        for number in STOP_SIGNALS:
            if signal.getsignal(number) is not signal.SIG_IGN:
                signal.signal(number, self.handle)

    def handle(self, number: int, _frame: FrameType | None = None) -> None:
        """The signal handler (it runs in the main thread)."""
        self.received.append(number)
        if number == signal.SIGHUP:
            self._detach_terminal()
        if len(self.received) > 1:
            self.leave.set()
            return
        if not self._held:
            raise KeyboardInterrupt

    @contextmanager
    def held(self) -> Iterator[None]:
        """Requests arriving inside are recorded, and raise nothing."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1

    def _detach_terminal(self) -> None:
        """Point the standard streams that were the (now closed) terminal at /dev/null."""
        if not self._terminal_fds:
            return
        null = os.open(os.devnull, os.O_RDWR)
        try:
            for fd in self._terminal_fds:
                os.dup2(null, fd)
        finally:
            os.close(null)
        self._terminal_fds = ()


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


STOP = StopRequests()
