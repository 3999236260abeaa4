"""The verification judges: the verify step's result, new conflict events, a peer's ARP table.

Every branch that turns a result into a problem has a row here, and so does every way a good
result must pass: a judge that accepts everything, or refuses everything, fails this file.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.desired import Desired, NicSelector, Vip
from orchestrator.errors import ProtocolError
from orchestrator.facts import Facts, parse_facts
from orchestrator.steps import arp_check, verify
from orchestrator.steps.verify import Event, VerifyOutput
from tests.unit.test_facts import adapter, raw_2003, raw_2008r2

VIP = "10.0.0.50"
LOOPBACK_IFINDEX = 39
DESIRED = Desired(vips=(Vip(VIP, (80,), "tcp"),), nic=NicSelector("address", "10.0.0.11"))


def ready_2008r2() -> Facts:
    """The captured 2008 R2 host with its loopback holding the VIP /32."""
    raw = raw_2008r2()
    raw["adapters"][1].update(ip_addresses=[VIP], ip_subnets=["255.255.255.255"], dhcp_enabled=False)
    return parse_facts(raw)


def degraded_2003() -> Facts:
    """A 2003 host whose loopback fell back to the NIC's mask (Windows refused /32)."""
    raw = raw_2003()
    raw["adapters"].append(adapter(index=2, interface_index=None, service_name="msloop",
                                   pnp_device_id="ROOT\\NET\\0000", ip_addresses=[VIP],
                                   ip_subnets=["255.255.255.0"]))
    raw["marker"] = {"LoopbackPnpId": "ROOT\\NET\\0000"}
    return parse_facts(raw)


def result(**changes: Any) -> dict[str, Any]:
    """A verify result of a healthy host, with `changes` applied."""
    good: dict[str, Any] = {
        "changed": False,
        "tcp": [{"address": "10.0.0.11", "port": 80, "ok": True}, {"address": VIP, "port": 80, "ok": True}],
        "ping": [{"address": VIP, "ok": True}],
        "routes": [{"destination": VIP, "mask": "255.255.255.255", "next_hop": VIP,
                    "interface_index": LOOPBACK_IFINDEX, "metric": 254}],
    }
    good.update(changes)
    return good


ROUTE = result()["routes"][0]


@pytest.mark.parametrize(
    ("changes", "problems"),
    [
        ({}, []),
        ({"tcp": [{"address": VIP, "port": 80, "ok": False}]}, [f"TCP connect to {VIP}:80 failed"]),
        ({"tcp": [{"address": "10.0.0.11", "port": 80, "ok": False}]}, ["TCP connect to 10.0.0.11:80 failed"]),
        ({"ping": [{"address": VIP, "ok": False}]}, [f"ping {VIP} failed"]),
        ({"routes": []}, [f"no route for VIP {VIP}"]),
        ({"routes": [{**ROUTE, "destination": "10.0.0.51"}]}, [f"no route for VIP {VIP}"]),
        ({"routes": [{**ROUTE, "mask": "255.255.255.0"}]},
         [f"route for VIP {VIP} is not a /32 host route (masks: 255.255.255.0)"]),
        ({"routes": [{**ROUTE, "interface_index": 9}]}, [f"route for VIP {VIP} is not on the loopback adapter"]),
        ({"routes": [{**ROUTE, "mask": "255.0.0.0", "interface_index": 9}]},
         [f"route for VIP {VIP} is not a /32 host route (masks: 255.0.0.0)",
          f"route for VIP {VIP} is not on the loopback adapter"]),
        # A single check that PowerShell handed over as the element itself still counts.
        ({"ping": {"address": VIP, "ok": False}}, [f"ping {VIP} failed"]),
        # One good route among others is enough.
        ({"routes": [{**ROUTE, "interface_index": 9}, ROUTE]}, []),
    ],
)
def test_judge_2008r2(changes: dict[str, Any], problems: list[str]) -> None:
    assert verify.judge(verify.parse(result(**changes)), ready_2008r2(), DESIRED) == problems


@pytest.mark.parametrize(
    ("mask", "problems"),
    [
        ("255.255.255.255", []),
        ("255.255.255.0", []),  # the recorded fallback is what Windows accepted
        ("255.255.0.0", [f"route for VIP {VIP} is not a /32 host route (masks: 255.255.0.0)"]),
    ],
)
def test_judge_accepts_the_2003_fallback_mask_only(mask: str, problems: list[str]) -> None:
    out = verify.parse(result(routes=[{**ROUTE, "mask": mask, "interface_index": 2}]))
    desired = Desired(vips=DESIRED.vips, nic=NicSelector("address", "10.0.0.21"))
    assert verify.judge(out, degraded_2003(), desired) == problems


def test_ipv6_vips_need_no_ipv4_route() -> None:
    desired = Desired(vips=(*DESIRED.vips, Vip("2001:db8::50", (80,), "tcp")), nic=DESIRED.nic)
    assert verify.judge(verify.parse(result()), ready_2008r2(), desired) == []


@pytest.mark.parametrize("bad", [{"tcp": "x"}, {"routes": [{"destination": VIP}]}, {"changed": "no"}, "text"])
def test_a_result_of_another_shape_is_a_protocol_error(bad: Any) -> None:
    raw = result(**bad) if isinstance(bad, dict) else bad
    with pytest.raises(ProtocolError, match="verify returned an unexpected result"):
        verify.parse(raw)


def test_params_check_only_the_ports_a_site_serves() -> None:
    facts = ready_2008r2()
    desired = Desired(vips=(Vip(VIP, (80, 8443), "tcp"),), nic=DESIRED.nic, iis_sites=("mailout",))
    assert verify.params(facts, desired) == {"Vips": [VIP], "Ports": [80], "Rip": "10.0.0.11", "TimeoutMs": 3000}
    no_tcp = Desired(vips=desired.vips, nic=DESIRED.nic, iis_sites=("mailout",), verify_tcp=False)
    assert verify.params(facts, no_tcp)["Ports"] == []
    assert verify.params(facts, Desired(vips=desired.vips, nic=DESIRED.nic))["Ports"] == []  # no such site


def test_verify_output_is_typed() -> None:
    out = verify.parse(result())
    assert isinstance(out, VerifyOutput) and out.routes[0].interface_index == LOOPBACK_IFINDEX
    assert out.restart_wait() is None and not out.state_moved()


# -- conflict events and the peer's ARP table -------------------------------------------------------


def test_new_conflict_events_are_those_not_seen_before() -> None:
    old = Event(4199, "Tcpip", "2026-11-20T10:00:00", "conflict A")
    new = Event(4199, "Tcpip", "2026-11-27T10:00:00", "conflict B")
    assert verify.new_conflict_events([old], [old, new]) == [new]
    assert verify.new_conflict_events([old], [old]) == []
    assert verify.new_conflict_events([], [old]) == [old]


# The `arp -a` layout of research section 4.5 (Windows 2000-2003), and a 2008+ header.
ARP_2003 = """
Interface: 172.16.11.104 on Interface 0x2
  Internet Address      Physical Address      Type
  172.16.11.100         00-40-95-d1-29-6c     dynamic
"""
ARP_2008 = """
Interface: 10.20.0.12 --- 0xb
  Internet Address      Physical Address      Type
  10.20.0.200           00-0c-29-4c-42-01     dynamic
  10.20.0.255           ff-ff-ff-ff-ff-ff     static
"""


def test_parse_arp_both_layouts() -> None:
    assert arp_check.parse_arp(ARP_2003) == {"172.16.11.100": "00-40-95-D1-29-6C"}
    assert arp_check.parse_arp(ARP_2008)["10.20.0.200"] == "00-0C-29-4C-42-01"
    assert arp_check.parse_arp("No ARP Entries Found.\n") == {}


@pytest.mark.parametrize(
    ("text", "macs", "answers_arp"),
    [
        (ARP_2008, ["00:50:56:80:11:22"], False),  # the load balancer's MAC: as it should be
        (ARP_2008, ["00:0C:29:4C:42:01"], True),  # this server's MAC: the server answers ARP
        (ARP_2008, ["00-0c-29-4c-42-01"], True),  # in any spelling
        ("No ARP Entries Found.", ["00:0C:29:4C:42:01"], False),
    ],
)
def test_judge_arp(text: str, macs: list[str], answers_arp: bool) -> None:
    problem = arp_check.judge(text, "10.20.0.200", macs)
    assert (problem is not None and "answers ARP" in problem) is answers_arp
