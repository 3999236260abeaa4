"""Shells left behind on purpose, and the host's idle timeout that ends them.

A test that loses a connection on purpose (a cut, a drop, a client that walks away) leaves a shell
that only the host's idle timeout can end, as on Windows. `let_idle_shells_expire` lets that time
pass at once: it shortens the running host's idle timeout and waits until the host has deleted every
shell left, all of them by the idle timeout.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from orchestrator.lab.common import RequestCounters, WinRMConfig

EXPIRY_WAIT = 3.0  # seconds a short idle timeout and the lab's housekeeping need at most
# Seconds a request still in flight on a host may take to end: a Receive long-polls for the lab
# inventory's OperationTimeout (5 s) and is answered within its read timeout (10 s).
SETTLE_WAIT = 15.0


class _Host(Protocol):
    counters: RequestCounters
    winrm: WinRMConfig


def _wait_until_none(count: Callable[[], int], within: float) -> int:
    """Polls `count` until it is 0 or `within` seconds pass; its last value."""
    deadline = time.monotonic() + within
    while (left := count()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def wait_for_expiry(host: _Host, *, within: float = EXPIRY_WAIT) -> int:
    """Waits until no shell is left on `host` or `within` seconds pass; the shells still left."""
    return _wait_until_none(lambda: host.counters.shells_open, within)


def wait_until_quiet(host: _Host, *, within: float = SETTLE_WAIT) -> int:
    """Waits until `host` serves no request (one a client that went away sent included) or `within`
    seconds pass; the requests still in flight."""
    return _wait_until_none(lambda: host.counters.in_flight, within)


def let_idle_shells_expire(*hosts: _Host, left: int | None = None) -> None:
    """Ends the shells left on running `hosts` by their idle timeout, now. `left`: how many the test
    expects in all (checked before they expire).

    The shells are counted once no request is in flight on the host: a request a killed client sent
    may still create or delete one."""
    for number, host in enumerate(hosts):
        assert wait_until_quiet(host) == 0, f"host {number}: {host.counters.in_flight} request(s) still in flight"
    before = [h.counters.shells_now() for h in hosts]
    if left is not None:
        assert sum(was_open for was_open, _ in before) == left, [was_open for was_open, _ in before]
    for host in hosts:
        host.winrm.idle_timeout_ms = 200
    for number, (host, (was_open, deletes)) in enumerate(zip(hosts, before, strict=True)):
        assert wait_for_expiry(host) == 0, f"host {number}: {host.counters.shells_open} shell(s) did not expire"
        ended = host.counters.shell_deletes - deletes
        assert ended == Counter(idle=was_open), f"host {number}: {was_open} shell(s) open, then ended: {dict(ended)}"
