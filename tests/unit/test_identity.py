"""Whether the host answering is the machine whose facts a rollout recorded (orchestrator/identity.py),
and what a run's log lets a rollback do with each host (orchestrator/fleetops.undo_of). Pure."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from orchestrator.desired import Desired, NicSelector, Vip
from orchestrator.facts import Facts, Machine, parse_facts
from orchestrator.fleetops import undo_of
from orchestrator.identity import differences
from orchestrator.inventory import Connection, Host
from orchestrator.lab.build import build_fleet
from orchestrator.lab.host import WindowsHost
from orchestrator.rolloutlog import HostRecord
from orchestrator.runner import RollbackRefusal, RollbackTarget

LOG = Path("runs/r1/hosts/web01.jsonl")


def facts_of(host: WindowsHost) -> Facts:
    return parse_facts(host.facts())


def two_fleets() -> tuple[WindowsHost, WindowsHost]:
    """web01 of two fleets of other seeds: the same name and address, other machines."""
    return build_fleet(1, seed=4, profile="2016")[0], build_fleet(1, seed=9, profile="2012r2")[0]


def nic(host: WindowsHost, by: str = "address") -> NicSelector:
    value = {"address": host.rip, "mac": host.nics[0].mac or "", "name": host.nics[0].connection_id or ""}[by]
    return NicSelector(by, value)  # type: ignore[arg-type]  # `by` is one of the three


def with_machine(facts: Facts, **changes: Any) -> Facts:
    assert facts.machine is not None
    return dataclasses.replace(facts, machine=dataclasses.replace(facts.machine, **changes))


def test_the_same_machine_shows_no_difference() -> None:
    host = two_fleets()[0]
    assert differences(facts_of(host), facts_of(host), nic(host)) == ()


def test_another_machine_at_the_same_address_differs_in_uuid_product_id_and_mac() -> None:
    a, b = two_fleets()
    assert a.rip == b.rip and a.name == b.name
    found = differences(facts_of(a), facts_of(b), nic(a))
    assert found == (f"SMBIOS UUID is {b.machine_uuid}, recorded {a.machine_uuid}",
                     f"OS product id is {b.os_serial}, recorded {a.os_serial}",
                     f"NIC address {a.rip} has MAC {b.nics[0].mac}, recorded {a.nics[0].mac}")


@pytest.mark.parametrize("by", ["mac", "name"])
def test_the_nic_is_compared_however_the_inventory_selects_it(by: str) -> None:
    a, b = two_fleets()
    before, now = facts_of(a), with_machine(facts_of(b), uuid=a.machine_uuid, os_serial=a.os_serial)
    (found,) = differences(before, now, nic(a, by))
    assert (f"no NIC mac {a.nics[0].mac} now" in found if by == "mac"
            else found.endswith(f"has MAC {b.nics[0].mac}, recorded {a.nics[0].mac}"))


def test_a_swapped_nic_alone_is_a_difference() -> None:
    host = two_fleets()[0]
    was = host.nics[0].mac
    before = facts_of(host)
    host.nics[0].mac = "00:50:56:BF:00:01"
    assert differences(before, facts_of(host), nic(host)) == (
        f"NIC address {host.rip} has MAC 00:50:56:BF:00:01, recorded {was}",)


def test_an_unset_uuid_is_not_compared_and_the_product_id_decides() -> None:
    host = two_fleets()[0]
    unset = "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"
    before = with_machine(facts_of(host), uuid=unset)
    assert differences(before, with_machine(facts_of(host), uuid="00000000-0000-0000-0000-000000000000"),
                       nic(host)) == ()
    (found,) = differences(before, with_machine(facts_of(host), uuid=unset, os_serial="11111-111-1111111-11111"),
                           nic(host))
    assert found == f"OS product id is 11111-111-1111111-11111, recorded {host.os_serial}"


def test_an_identity_readable_then_and_not_now_is_a_difference() -> None:
    host = two_fleets()[0]
    (found,) = differences(facts_of(host), with_machine(facts_of(host), uuid=None), nic(host))
    assert found == f"SMBIOS UUID is not readable, recorded {host.machine_uuid}"


def test_nothing_to_compare_proves_nothing() -> None:
    host = two_fleets()[0]
    blank = with_machine(facts_of(host), uuid=None, os_serial="")
    (found,) = differences(blank, blank, nic(host))
    assert found.startswith("neither the SMBIOS UUID nor the OS product id was readable")
    older = dataclasses.replace(facts_of(host), machine=None)  # facts an older dsrprep recorded
    (found,) = differences(older, facts_of(host), nic(host))
    assert "hold no machine identity (recorded by an older dsrprep)" in found
    assert differences(facts_of(host), older, nic(host)) == (
        "the host's facts hold no machine identity: nothing proves this is the same machine",)


def test_facts_without_the_machine_key_parse_as_unknown_identity() -> None:
    raw = dict(two_fleets()[0].facts())
    del raw["machine"]
    assert parse_facts(raw).machine is None
    assert parse_facts(two_fleets()[0].facts()).machine == Machine(two_fleets()[0].machine_uuid,
                                                                   two_fleets()[0].os_serial)


# -- what the log lets a rollback do -------------------------------------------------------------------


def web01() -> Host:
    """web01 as the inventory has it now: its VIP edited since the rollout."""
    connection = Connection(address="127.0.0.11", port=5985, user=None, password=None, auth="negotiate",
                            protocol="http", cert_validation=True, ca_cert=None, connection_timeout=5,
                            read_timeout=10, operation_timeout=5, message_encryption="auto",
                            configuration_name="Microsoft.PowerShell")
    return Host(name="web01", connection=connection, groups=(),
                desired=Desired(vips=(Vip("10.20.0.201", (80,), "tcp"),), nic=NicSelector("address", "10.20.0.11")))


RECORDED_DESIRED = Desired(vips=(Vip("10.20.0.200", (80,), "tcp"),), nic=NicSelector("address", "10.20.0.11"))


def test_a_host_read_by_the_rollout_is_a_target_whatever_its_steps_said() -> None:
    raw = two_fleets()[0].facts()
    for steps_ran in (False, True):  # no step, or steps none of which said `changed`
        undo = undo_of(web01(), HostRecord(raw, False, RECORDED_DESIRED.to_dict(), steps_ran=steps_ran), LOG)
        assert isinstance(undo.target, RollbackTarget) and undo.skipped is None
        assert undo.target.before == parse_facts(raw)
        assert undo.target.desired == RECORDED_DESIRED  # the run's, not the inventory's 10.20.0.201


def test_a_host_never_read_and_never_touched_is_skipped() -> None:
    undo = undo_of(web01(), HostRecord(None, False), LOG)
    assert undo.target is None and undo.skipped is not None and "nothing to undo" in undo.skipped


@pytest.mark.parametrize(("torn", "what"), [(0, "missing"), (2, "torn (2 unreadable line(s))")])
def test_steps_without_intact_facts_from_before_are_refused(torn: int, what: str) -> None:
    undo = undo_of(web01(), HostRecord(None, True, RECORDED_DESIRED.to_dict(), steps_ran=True, torn_lines=torn), LOG)
    assert isinstance(undo.target, RollbackRefusal)
    assert undo.target.reason.startswith(f"the facts recorded before the rollout are {what} in {LOG}, yet steps ran")


def test_no_recorded_desired_state_or_unparseable_facts_are_refused() -> None:
    raw = two_fleets()[0].facts()
    no_desired = undo_of(web01(), HostRecord(raw, True, None, steps_ran=True), LOG).target
    assert isinstance(no_desired, RollbackRefusal) and f"the rollout log {LOG} records no desired state" in (
        no_desired.reason)
    broken = undo_of(web01(), HostRecord({"schema": 1}, True, RECORDED_DESIRED.to_dict(), steps_ran=True), LOG).target
    assert isinstance(broken, RollbackRefusal) and "do not parse (os: missing)" in broken.reason
    with pytest.raises(ValueError):
        undo_of(web01(), HostRecord(raw, True, {"vips": "10.0.0.50"}, steps_ran=True), LOG)
