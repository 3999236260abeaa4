"""Fault knobs of the lab fleet, seen through real pypsrp and dsrprep's transport, retries and log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.inventory import Inventory, load_inventory
from orchestrator.lab.fleet import LabFleet
from orchestrator.retry import NO_RETRY, RetryPolicy
from orchestrator.rolloutlog import RunLog, read_host_log
from orchestrator.runner import gather_host_facts
from orchestrator.transport import PsrpSession, psrp_session

pytestmark = pytest.mark.lab


@pytest.fixture()
def fleet() -> Iterator[LabFleet]:
    with LabFleet.build(3, seed=5, profile="mixed") as fleet:
        yield fleet


def _inventory(fleet: LabFleet, tmp_path: Path) -> Inventory:
    path = tmp_path / "lab.yml"
    fleet.write_inventory(path)
    return load_inventory(path)


def test_wsman_fault_is_retried_and_logged(fleet: LabFleet, tmp_path: Path) -> None:
    inv = _inventory(fleet, tmp_path)
    handle = fleet.hosts[0]
    handle.faults.fault_on_request = 1  # the very first WS-Management request: the pool's Create
    log = RunLog.create(tmp_path / "runs", "r1")
    slept: list[float] = []
    outcome = gather_host_facts(inv.host(handle.name), session_factory=psrp_session, log=log,
                                policy=RetryPolicy(), sleep=slept.append)
    log.close()
    assert outcome.status == "ok"
    assert outcome.attempts == 2 and len(slept) == 1
    events = read_host_log(log.hosts_dir / f"{handle.name}.jsonl").events
    failed = [e for e in events if e["event"] == "attempt_failed"]
    assert len(failed) == 1 and failed[0]["error_class"] == "RemoteFault" and failed[0]["will_retry"] is True


def test_dropped_connection_mid_step_is_connection_lost(fleet: LabFleet, tmp_path: Path) -> None:
    inv = _inventory(fleet, tmp_path)
    handle = fleet.hosts[1]
    handle.faults.drop_on_request = 4  # Create, two Receives (the pool opens in two), then the Command
    log = RunLog.create(tmp_path / "runs", "r2")
    outcome = gather_host_facts(inv.host(handle.name), session_factory=psrp_session, log=log,
                                policy=RetryPolicy(faults=1), sleep=lambda _s: None)
    log.close()
    assert outcome.status == "ok" and outcome.attempts == 2
    events = read_host_log(log.hosts_dir / f"{handle.name}.jsonl").events
    assert [e["error_class"] for e in events if e["event"] == "attempt_failed"] == ["ConnectionLost"]


def test_fault_on_every_attempt_ends_failed_with_the_fault(fleet: LabFleet, tmp_path: Path) -> None:
    inv = _inventory(fleet, tmp_path)
    handle = fleet.hosts[2]
    log = RunLog.create(tmp_path / "runs", "r3")
    handle.faults.fault_on_request = 1
    outcome = gather_host_facts(inv.host(handle.name), session_factory=psrp_session, log=log,
                                policy=NO_RETRY, sleep=lambda _s: None)
    log.close()
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error.error_class == "RemoteFault"


def test_latency_slows_but_does_not_break(fleet: LabFleet, tmp_path: Path) -> None:
    inv = _inventory(fleet, tmp_path)
    handle = fleet.hosts[0]
    handle.faults.latency = 0.05
    session = PsrpSession(inv.host(handle.name).connection)
    try:
        session.open()
        before = handle.counters.http_requests
        result = session.run("# dsrprep-step: facts\nparam()\n", {}, timeout=30)
        assert len(result.output) == 1
        assert handle.counters.http_requests > before
    finally:
        session.close()


def test_one_pool_serves_many_scripts(fleet: LabFleet, tmp_path: Path) -> None:
    inv = _inventory(fleet, tmp_path)
    handle = fleet.hosts[1]
    session = PsrpSession(inv.host(handle.name).connection)
    try:
        for _ in range(3):
            session.run("# dsrprep-step: facts\nparam()\n", {}, timeout=30)
    finally:
        session.close()
    assert handle.counters.wsman["Create"] == 1
    assert handle.counters.steps["facts"] == 3
    assert handle.counters.wsman["Delete"] == 1


def test_script_error_keeps_the_remote_message(fleet: LabFleet, tmp_path: Path) -> None:
    from orchestrator.errors import ScriptError

    inv = _inventory(fleet, tmp_path)
    session = PsrpSession(inv.host(fleet.hosts[0].name).connection)
    try:
        with pytest.raises(ScriptError, match="not recognized"):
            session.run("# dsrprep-step: no-such-step\nparam()\n", {}, timeout=30)
    finally:
        session.close()
