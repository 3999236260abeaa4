"""The lab fleet's addresses: RIPs and their subnet (orchestrator.lab.build), WinRM listeners
(orchestrator.lab.fleet), for fleets from one host to two thousand."""

from __future__ import annotations

import ipaddress

import pytest

from orchestrator.desired import Desired, NicSelector, Vip
from orchestrator.facts import parse_facts
from orchestrator.lab.build import LAB_VIP, build_fleet, lab_subnet, rip_addresses
from orchestrator.lab.fleet import FleetError, LabFleet, listen_addresses
from orchestrator.plan import plan


def test_fleets_up_to_189_hosts_keep_their_slash_24_and_larger_ones_get_a_slash_21_holding_the_vip() -> None:
    assert lab_subnet(1) == lab_subnet(189) == "10.20.0.0/24"
    assert lab_subnet(190) == lab_subnet(2000) == "10.20.0.0/21"
    small = build_fleet(189, seed=1, profile="mixed")
    assert [h.rip for h in small] == [f"10.20.0.{10 + i}" for i in range(1, 190)]
    assert {h.nics[0].mask_of(h.rip) for h in small} == {"255.255.255.0"}


def test_a_large_fleet_skips_the_vip_and_keeps_every_rip_and_the_vip_inside_one_subnet() -> None:
    hosts = build_fleet(400, seed=2, profile="2016")
    rips = [h.rip for h in hosts]
    assert rips[188:191] == ["10.20.0.199", "10.20.0.201", "10.20.0.202"]
    assert LAB_VIP not in rips and len(set(rips)) == len(rips) == 400
    net = ipaddress.IPv4Network("10.20.0.0/21")
    assert all(ipaddress.IPv4Address(r) in net for r in rips) and ipaddress.IPv4Address(LAB_VIP) in net
    assert {h.nics[0].mask_of(h.rip) for h in hosts} == {"255.255.248.0"}
    # The host right past the VIP, and one in the third /24: no refusal, the VIP on-subnet.
    for host in (hosts[189], hosts[399]):
        desired = Desired(vips=(Vip(LAB_VIP, (80,), "tcp"),), nic=NicSelector("address", host.rip),
                          subnet_check="error")
        assert plan(parse_facts(host.facts()), desired).refusals == ()


def test_rips_run_out_before_the_broadcast_address() -> None:
    net = ipaddress.IPv4Network("10.20.0.0/21")
    assert rip_addresses(net, 2035, skip=LAB_VIP)[-1] == "10.20.7.254"
    with pytest.raises(ValueError, match="too small for 2036 hosts"):
        rip_addresses(net, 2036, skip=LAB_VIP)


def test_listeners_fill_127_0_0_then_go_on_in_127_0_1_and_beyond_without_dot_0_or_255() -> None:
    addresses = listen_addresses(11, 1000)
    assert addresses[:2] == ["127.0.0.11", "127.0.0.12"]
    assert addresses[243:246] == ["127.0.0.254", "127.0.1.1", "127.0.1.2"]
    assert len(set(addresses)) == 1000
    assert not any(a.endswith((".0", ".255")) for a in addresses)
    assert listen_addresses(1, 1) == ["127.0.0.1"]
    with pytest.raises(FleetError, match="do not fit"):
        listen_addresses(11, 256 * 254)


def test_a_fleet_of_a_thousand_hosts_is_laid_out_and_its_inventory_says_so() -> None:
    fleet = LabFleet(build_fleet(1000, seed=1, profile="mixed"))
    inventory = fleet.inventory()["all"]
    hosts = {name: entry for group in inventory["children"].values() for name, entry in group["hosts"].items()}
    assert len(hosts) == 1000 and inventory["vars"]["dsr_vips"][0]["address"] == LAB_VIP
    assert hosts["web1000"]["ansible_host"] == "127.0.3.248"
    assert hosts["web1000"]["dsr_nic"] == {"address": "10.20.3.243"}


def test_the_inventory_asks_for_negotiate_unless_the_fleet_says_ntlm() -> None:
    fleet = LabFleet(build_fleet(2, seed=1, profile="mixed"))
    assert fleet.inventory()["all"]["vars"]["ansible_psrp_auth"] == "negotiate"
    fleet = LabFleet(build_fleet(2, seed=1, profile="mixed"), client_auth="ntlm")  # as the demo builds it
    assert fleet.inventory()["all"]["vars"]["ansible_psrp_auth"] == "ntlm"
