"""Shells left behind on purpose, and the host's idle timeout that ends them.

A test that loses a connection on purpose (a cut, a drop, a client that walks away) leaves a shell
that only the host's idle timeout can end, as on Windows. `let_idle_shells_expire` lets that time
pass at once: it shortens the running host's idle timeout and waits until the host has deleted every
shell left, all of them by the idle timeout.
"""

from __future__ import annotations

import time
from typing import Protocol

from orchestrator.lab.common import RequestCounters, WinRMConfig

EXPIRY_WAIT = 3.0  # seconds a short idle timeout and the lab's housekeeping need at most


class _Host(Protocol):
    counters: RequestCounters
    winrm: WinRMConfig


def wait_for_expiry(host: _Host, *, within: float = EXPIRY_WAIT) -> int:
    """Waits until no shell is left on `host` or `within` seconds pass; the shells still left."""
    deadline = time.monotonic() + within
    while host.counters.shells_open and time.monotonic() < deadline:
        time.sleep(0.05)
    return host.counters.shells_open


def let_idle_shells_expire(*hosts: _Host, left: int | None = None) -> None:
    """Ends the shells left on running `hosts` by their idle timeout, now. `left`: how many the test
    expects in all (checked before they expire)."""
    if left is not None:
        assert sum(h.counters.shells_open for h in hosts) == left, [h.counters.shells_open for h in hosts]
    idle_before = [h.counters.shell_deletes["idle"] for h in hosts]
    open_before = [h.counters.shells_open for h in hosts]
    for host in hosts:
        host.winrm.idle_timeout_ms = 200
    for host, idle, was_open in zip(hosts, idle_before, open_before, strict=True):
        assert wait_for_expiry(host) == 0, f"{host.counters.shells_open} shell(s) did not expire"
        assert host.counters.shell_deletes["idle"] - idle == was_open
