"""plan() and rollback_plan(): pure functions of facts and the desired state."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

import pytest

from orchestrator.desired import Desired, NicSelector, Vip
from orchestrator.facts import Facts, parse_facts
from orchestrator.lab.build import build_fleet
from orchestrator.lab.host import WindowsHost
from orchestrator.plan import plan, rollback_plan, step_order
from orchestrator.steps import iis_binding

VIP = "10.20.0.200"


def desired_for(host: WindowsHost, **changes: Any) -> Desired:
    base = Desired(vips=(Vip(VIP, (80,), "tcp"),), nic=NicSelector("address", host.rip))
    return dataclasses.replace(base, **changes)


def facts_of(host: WindowsHost) -> Facts:
    return parse_facts(host.facts())


def first_host(profile: str, seed: int = 3, **where: Any) -> WindowsHost:
    for candidate in build_fleet(40, seed=seed, profile=profile):
        if all(getattr(candidate, k) == v for k, v in where.items()):
            return candidate
    raise LookupError(f"no {profile} host with {where}")


@pytest.mark.parametrize("profile", ["2003", "2008", "2008r2", "2012r2", "2016", "2019", "2022"])
def test_a_plain_host_gets_an_ordered_plan_with_reasons(profile: str) -> None:
    host = first_host(profile)
    facts = facts_of(host)
    the_plan = plan(facts, desired_for(host, skip_as_source=profile != "2008"))
    steps = [a.step for a in the_plan.actions]
    assert the_plan.refusals == ()
    assert steps[0] == "preflight"
    assert steps == sorted(steps, key=step_order().index)
    assert "loopback_config" in steps
    assert all(a.reason for a in the_plan.actions)
    if profile == "2003":
        assert "weak_host" not in steps and "skip_as_source" not in steps
    else:
        assert "weak_host" in steps


def test_missing_loopback_is_created_and_then_named_through_the_marker() -> None:
    host = first_host("2008r2")
    host.nics = [n for n in host.nics if n.service_name != "msloop"]
    facts = facts_of(host)
    the_plan = plan(facts, desired_for(host))
    by_step = {a.step: a for a in the_plan.actions}
    assert by_step["loopback"].params["Ensure"] == "Present"
    assert by_step["loopback_config"].params["PnpDeviceId"] == ""
    assert by_step["loopback_config"].params["Addresses"] == [VIP]
    assert by_step["loopback_config"].params["Masks"] == ["255.255.255.255"]
    assert "VIP" not in by_step["loopback"].reason or "create" in by_step["loopback"].reason
    loop_weak = [a for a in the_plan.actions if a.step == "weak_host" and a.params["InterfaceIndex"] == 0]
    assert loop_weak and loop_weak[0].params["Send"] is True


def test_not_elevated_refuses_only_when_something_must_change() -> None:
    host = first_host("2012r2")
    host.elevated = False
    the_plan = plan(facts_of(host), desired_for(host))
    assert any("not elevated" in r for r in the_plan.refusals)


def test_vip_on_a_physical_nic_is_refused() -> None:
    host = first_host("2016")
    host.nics[0].addresses.append((VIP, "255.255.255.0"))
    the_plan = plan(facts_of(host), desired_for(host))
    assert any("physical adapter" in r and VIP in r for r in the_plan.refusals)


def test_skip_as_source_on_2008_without_the_hotfix_is_refused() -> None:
    host = first_host("2008")
    host.hotfixes.discard("KB975808")
    refused = plan(facts_of(host), desired_for(host, skip_as_source=True))
    assert any("KB975808" in r for r in refused.refusals)
    allowed = plan(facts_of(host), desired_for(host, skip_as_source=False))
    assert not allowed.refusals


def test_subnet_check_warns_or_refuses() -> None:
    host = first_host("2019")
    far = (Vip("192.0.2.10", (80,), "tcp"),)
    warned = plan(facts_of(host), desired_for(host, vips=far, subnet_check="warn"))
    assert any("outside" in w for w in warned.warnings) and not warned.refusals
    refused = plan(facts_of(host), desired_for(host, vips=far, subnet_check="error"))
    assert any("outside" in r for r in refused.refusals)


@pytest.mark.parametrize("subnet_check", ["warn", "error", "off"])
@pytest.mark.parametrize("end", ["network", "broadcast"])
def test_the_subnets_network_and_broadcast_addresses_are_refused(subnet_check: str, end: str) -> None:
    host = first_host("2019")
    nic = next(n for n in host.nics if not n.is_loopback)
    nic.addresses = [(host.rip, "255.255.255.0"), *nic.addresses[1:]]
    network = ipaddress.IPv4Network(f"{host.rip}/24", strict=False)
    vip = str(network.network_address if end == "network" else network.broadcast_address)
    refused = plan(facts_of(host), desired_for(host, vips=(Vip(vip, (80,), "tcp"),), subnet_check=subnet_check))
    assert f"VIP {vip} is the {end} address of the NIC's subnet {network}: it cannot be a VIP" in refused.refusals
    inside = str(network.network_address + 200)
    allowed = plan(facts_of(host), desired_for(host, vips=(Vip(inside, (80,), "tcp"),), subnet_check=subnet_check))
    assert not [r for r in allowed.refusals if "address of the NIC's subnet" in r]


def test_the_ipv6_subnet_router_anycast_address_is_refused() -> None:
    host = first_host("2019")
    nic = next(n for n in host.nics if not n.is_loopback)
    nic.addresses = [*nic.addresses, ("2001:db8:5::10", "64")]
    vips = (Vip(VIP, (80,), "tcp"), Vip("2001:db8:5::", (80,), "tcp"))
    refused = plan(facts_of(host), desired_for(host, vips=vips))
    assert "VIP 2001:db8:5:: is the network address of the NIC's subnet 2001:db8:5::/64: it cannot be a VIP" in (
        refused.refusals)


def test_a_point_to_point_subnet_has_no_network_or_broadcast_address() -> None:
    host = first_host("2019")
    nic = next(n for n in host.nics if not n.is_loopback)
    nic.addresses = [(host.rip, "255.255.255.254"), *nic.addresses[1:]]
    network = ipaddress.IPv4Network(f"{host.rip}/31", strict=False)
    other = next(str(a) for a in network if str(a) != host.rip)
    the_plan = plan(facts_of(host), desired_for(host, vips=(Vip(other, (80,), "tcp"),), subnet_check="off"))
    assert not [r for r in the_plan.refusals if "address of the NIC's subnet" in r]


def test_unknown_nic_is_refused() -> None:
    host = first_host("2022")
    the_plan = plan(facts_of(host), desired_for(host, nic=NicSelector("mac", "AA:BB:CC:DD:EE:FF")))
    assert any("dsr_nic" in r for r in the_plan.refusals)
    assert facts_of(host).nic("address", host.rip) is not None


def test_firewall_modes() -> None:
    host = first_host("2016")
    facts = facts_of(host)
    if facts.firewall.profiles and any(facts.firewall.profiles.values()):
        rules = [a for a in plan(facts, desired_for(host)).actions if a.step == "firewall_rule"]
        assert rules and rules[0].params["Name"] == f"dsrprep {VIP} TCP 80"
    skipped = plan(facts, desired_for(host, firewall="skip"))
    assert not [a for a in skipped.actions if a.step.startswith("firewall")]


def test_site_bound_to_all_unassigned_needs_no_binding() -> None:
    for host in build_fleet(30, seed=4, profile="2012r2"):
        facts = facts_of(host)
        site = next(s for s in iis_binding.iis(facts).sites if s.name == "Default Web Site")
        bindings = [a for a in plan(facts, desired_for(host)).actions if a.step == "iis_binding"]
        star = any(b.is_all_unassigned and b.port == 80 for b in site.bindings)
        assert (not bindings) == star


def test_rollback_of_an_unchanged_host_is_empty() -> None:
    host = first_host("2008r2")
    facts = facts_of(host)
    assert rollback_plan(facts, facts, desired_for(host)).actions == ()


def _apply_in_model(host: WindowsHost, the_plan_actions: Any, family: str) -> None:
    from orchestrator.templates import select_template

    for action in the_plan_actions:
        result = host.run(action.step, dict(action.params), variant=select_template(action.step, family).variant)
        assert result.failed is None, (action.step, result.failed)


def test_rollback_leaves_alone_what_dsrprep_did_not_change() -> None:
    host = first_host("2012r2")
    desired = desired_for(host)
    before = facts_of(host)
    family = before.os.family
    _apply_in_model(host, plan(before, desired).actions, family)
    # Someone else adds a binding on another port and turns on weak host send on the NIC.
    site = next(s for s in host.sites if s.name == "Default Web Site")
    site.bindings.append(("http", "*:8081:"))
    now = facts_of(host)
    undo = rollback_plan(before, now, desired)
    bindings = [a for a in undo.actions if a.step == "iis_binding"]
    assert all(a.params["Ip"] == VIP for a in bindings)
    assert not any(a.params.get("Port") == 8081 for a in undo.actions)


def test_a_rule_that_differs_is_replaced_and_the_plan_converges() -> None:
    host = first_host("2019")
    host.firewall.domain = host.firewall.private = host.firewall.public = True
    desired = desired_for(host)
    family = facts_of(host).os.family
    _apply_in_model(host, plan(facts_of(host), desired).actions, family)
    assert plan(facts_of(host), desired).actions == ()
    rule = next(r for r in host.firewall.rules if r.name.startswith("dsrprep "))
    rule.enabled = False
    fix = plan(facts_of(host), desired)
    assert [(a.step, a.params["Ensure"]) for a in fix.actions if a.step == "firewall_rule"] == [
        ("firewall_rule", "Absent"), ("firewall_rule", "Present")]
    _apply_in_model(host, fix.actions, family)
    assert plan(facts_of(host), desired).actions == ()


def test_ipv6_only_vips_are_refused() -> None:
    host = first_host("2016")
    the_plan = plan(facts_of(host), desired_for(host, vips=(Vip("fd00::200", (80,), "tcp"),)))
    assert any("IPv6-only" in r for r in the_plan.refusals)


def test_host_headers_are_kept_for_the_vip_binding() -> None:
    host = first_host("2016")
    site = next(s for s in host.sites if s.name == "Default Web Site")
    site.bindings[:] = [("http", f"{host.rip}:80:www.example.com")]
    bindings = [a for a in plan(facts_of(host), desired_for(host)).actions if a.step == "iis_binding"]
    assert [(a.params["Ip"], a.params["HostHeader"]) for a in bindings] == [(VIP, "www.example.com")]


def test_an_adopted_loopback_keeps_addresses_that_are_not_ours() -> None:
    host = first_host("2016")
    desired = desired_for(host)
    family = facts_of(host).os.family
    _apply_in_model(host, plan(facts_of(host), desired).actions, family)
    loopback = next(n for n in host.nics if n.service_name == "msloop" and any(a == VIP for a, _ in n.addresses))
    loopback.addresses.append(("10.20.0.201", "255.255.255.255"))  # another service's VIP
    loopback.connection_id = "Loopback by hand"
    host.marker.clear()
    the_plan = plan(facts_of(host), desired)
    config = next(a for a in the_plan.actions if a.step == "loopback_config")
    assert config.params["Addresses"] == [VIP, "10.20.0.201"]
    assert any("10.20.0.201" in w for w in the_plan.warnings)


def test_unreadable_firewall_state_is_a_refusal_unless_skipped() -> None:
    host = first_host("2019")
    raw = host.facts()
    raw["firewall"]["profiles"] = None
    raw["firewall"]["current_profiles"] = None
    raw["firewall"]["winrm_public"] = None
    facts = parse_facts(raw)
    assert facts.firewall.profiles is None and facts.firewall.enabled is None
    refused = plan(facts, desired_for(host))
    assert any("Windows Firewall state could not be read" in r for r in refused.refusals)
    assert not plan(facts, desired_for(host, firewall="skip")).refusals


def test_all_missing_vips_go_into_one_listen_list_change() -> None:
    host = next(h for h in build_fleet(40, seed=3, profile="2012r2") if h.http_listen)
    vips = (Vip(VIP, (80,), "tcp"), Vip("10.20.0.201", (80,), "tcp"))
    listen = [a for a in plan(facts_of(host), desired_for(host, vips=vips)).actions if a.step == "http_listen"]
    assert len(listen) == 1
    assert listen[0].params["Addresses"] == [VIP, "10.20.0.201"]
