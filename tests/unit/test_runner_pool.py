"""The worker pool: results in order, and Ctrl-C accounting for every host."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from orchestrator.desired import Desired, NicSelector, Vip
from orchestrator.errors import Unreachable
from orchestrator.inventory import Connection, Host
from orchestrator.results import Command, Status
from orchestrator.retry import NO_RETRY
from orchestrator.rolloutlog import RunLog
from orchestrator.runner import FleetInterrupted, PoolInterrupted, gather_fleet_facts, in_pool
from orchestrator.transport import RunResult


def host(name: str) -> Host:
    connection = Connection(address="127.0.0.1", port=5985, user=None, password=None, auth="negotiate",
                            protocol="http", cert_validation=True, ca_cert=None, connection_timeout=5,
                            read_timeout=10, operation_timeout=5, message_encryption="auto",
                            configuration_name="Microsoft.PowerShell")
    desired = Desired(vips=(Vip("10.0.0.50", (80,), "tcp"),), iis_sites=(), nic=NicSelector("address", "10.0.0.1"))
    return Host(name=name, connection=connection, desired=desired, groups=())


def test_results_keep_the_hosts_order() -> None:
    hosts = [host(f"h{i}") for i in range(20)]
    assert in_pool(lambda h: h.name, hosts, 4, interrupted=lambda h: "x") == [h.name for h in hosts]


def test_ctrl_c_cancels_what_has_not_started_and_waits_for_the_rest() -> None:
    hosts = [host(f"h{i}") for i in range(6)]
    cancel = threading.Event()
    started = threading.Barrier(3)

    def work(h: Host) -> str:
        if h.name == "h0":
            started.wait(timeout=5)
            raise KeyboardInterrupt  # stands in for the signal arriving in the waiting main thread
        if h.name == "h1":
            started.wait(timeout=5)
            assert cancel.wait(timeout=5)  # a running host sees the cancel request
            return "stopped"
        started.wait(timeout=5)
        return "done"

    with pytest.raises(PoolInterrupted) as info:
        in_pool(work, hosts, 3, interrupted=lambda h: "interrupted", cancel=cancel)
    outcomes = info.value.outcomes
    assert len(outcomes) == 6
    assert outcomes[1] == "stopped" and outcomes[2] == "done"
    assert outcomes[3:] == ["interrupted"] * 3


class _Session:
    """Ctrl-C arrives while h0 connects; every other host refuses the connection."""

    def __init__(self, connection: Connection) -> None:
        self.address = connection.address

    def open(self) -> None:
        if self.address == "127.0.0.10":
            raise KeyboardInterrupt
        raise Unreachable("connection refused")

    def run(self, script: str, parameters: Mapping[str, Any], *, timeout: float) -> RunResult:
        raise AssertionError("never opened")

    def close(self) -> None:
        pass


def test_a_fleet_run_interrupted_carries_a_result_for_every_host(tmp_path: Path) -> None:
    hosts = [dataclasses.replace(host(f"h{i}"), connection=dataclasses.replace(host("x").connection,
                                                                                address=f"127.0.0.1{i}"))
             for i in range(3)]
    log = RunLog.create(tmp_path, "run")
    with pytest.raises(FleetInterrupted) as info:
        gather_fleet_facts(hosts, session_factory=_Session, log=log, policy=NO_RETRY, forks=1,
                           sleep=lambda _s: None)
    log.close()
    result = info.value.result
    assert result.command == Command.FACTS and result.covers(["h0", "h1", "h2"])
    assert result.by_host["h0"].status == Status.INTERRUPTED
    assert {r.status for r in result} <= {Status.INTERRUPTED, Status.UNREACHABLE}
    assert not result.succeeded
