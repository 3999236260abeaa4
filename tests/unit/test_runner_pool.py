"""The worker pool: results in order, and Ctrl-C accounting for every host."""

from __future__ import annotations

import threading

import pytest

from orchestrator.desired import Desired, NicSelector, Vip
from orchestrator.inventory import Connection, Host
from orchestrator.runner import PoolInterrupted, in_pool


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
