"""Stop requests: the first raises KeyboardInterrupt, later ones only ask to leave; the pool leaves
hosts in flight behind on the second, and their logs end in a final line."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.interrupts import STOP_SIGNALS, StopRequests
from orchestrator.inventory import Host
from orchestrator.rolloutlog import Event, RunLog, read_host_log
from orchestrator.runner import PoolInterrupted, in_pool
from tests.unit.test_runner_pool import host


def test_the_first_request_raises_and_later_ones_only_ask_to_leave() -> None:
    stop = StopRequests()
    with pytest.raises(KeyboardInterrupt):
        stop.handle(signal.SIGTERM)
    assert stop.requested and not stop.leave.is_set()
    for number in (signal.SIGINT, signal.SIGINT, signal.SIGTERM):
        stop.handle(number)  # nothing raised: the bookkeeping after the first cannot be cut short
    assert stop.leave.is_set()
    assert stop.received == [signal.SIGTERM, signal.SIGINT, signal.SIGINT, signal.SIGTERM]


def test_a_request_while_held_raises_nothing() -> None:
    stop = StopRequests()
    with stop.held():
        stop.handle(signal.SIGINT)
    assert stop.requested and not stop.leave.is_set()


@pytest.fixture
def saved_handlers() -> Iterator[None]:
    saved = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


@pytest.mark.usefixtures("saved_handlers")
def test_install_keeps_a_signal_ignored_at_start_ignored() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts it
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as a terminal starts it (a background job ignores it)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    stop = StopRequests()
    stop.install()
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) == stop.handle
    assert signal.getsignal(signal.SIGINT) == stop.handle


def test_a_second_request_leaves_the_hosts_in_flight_behind() -> None:
    hosts = [host(f"h{i}") for i in range(4)]
    leave, release = threading.Event(), threading.Event()
    started = threading.Barrier(3)

    def work(h: Host) -> str:
        if h.name == "h3":
            return "done"  # it may start in h0's thread before the pool cancels it
        started.wait(timeout=5)
        if h.name == "h0":
            raise KeyboardInterrupt  # the first request, in the waiting main thread
        leave.set()  # the second request, while the pool waits for h1 and h2
        release.wait(timeout=10)
        return "done"

    try:
        with pytest.raises(PoolInterrupted) as info:
            in_pool(work, hosts, 3, interrupted=lambda h: "interrupted", leave=leave)
    finally:
        release.set()
    assert info.value.abandoned
    assert set(info.value.in_flight) == {1, 2}
    assert info.value.outcomes[:3] == ["interrupted"] * 3 and info.value.outcomes[3] in ("interrupted", "done")


def test_an_abandoned_host_log_ends_in_its_last_line(tmp_path: Path) -> None:
    log = RunLog.create(tmp_path, "run")
    worker = log.host_logger("web01")
    worker.info(Event.STEP_START, step="loopback")
    log.abandon(["web01"], step="rollout", status="interrupted")
    worker.info(Event.STEP_RESULT, step="loopback", status="changed")  # the left-behind thread goes on
    log.close()
    events = read_host_log(tmp_path / "run" / "hosts" / "web01.jsonl").events
    assert [e["event"] for e in events] == [Event.STEP_START, Event.HOST_DONE]
    assert events[-1]["status"] == "interrupted" and events[-1]["abandoned"] is True
