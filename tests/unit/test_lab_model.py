"""The lab's Windows host model: fleet building, the facts object of docs/facts.md, text layouts,
step dispatch and locking."""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import time
from collections import Counter
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator import oscaps
from orchestrator.facts import parse_facts
from orchestrator.lab.build import build_fleet
from orchestrator.lab.common import Hashtable, ScriptResult
from orchestrator.lab.firewall import (
    AdvFirewall,
    LegacyFirewall,
    PortOpening,
    render_firewall_opmode,
    render_firewall_portopening,
)
from orchestrator.lab.host import WindowsHost
from orchestrator.lab.iis import Site, render_appcmd_sites, render_httpcfg_iplisten, render_netsh_http_iplisten
from orchestrator.lab.net import Nic, render_netsh_interface
from orchestrator.lab.profiles import FAMILY_SPECS, family_spec, profiles
from orchestrator.lab.shell import StepFailed
from orchestrator.lab.steps import STEPS
from orchestrator.lab.steps.base import LabStep
from orchestrator.steps import http_listen as http_listen_step
from orchestrator.steps import iis_binding as iis_step
from orchestrator.steps import skip_as_source as skip_step
from orchestrator.steps import weak_host as weak_host_step
from orchestrator.steps.weak_host import WeakHost
from tests.unit.test_lab_contract import facts_script_keys

FAMILIES = oscaps.families()
PROFILES = profiles()

NOW = datetime(2025, 3, 14, 9, 30)
DATA = Path(__file__).resolve().parents[1] / "data"

OS_KEYS = {"version", "caption", "service_pack", "architecture", "hotfixes"}
ADAPTER_TYPES: dict[str, tuple[type, ...]] = {
    "index": (int,),
    "interface_index": (int, type(None)),
    "connection_id": (str, type(None)),
    "description": (str,),
    "service_name": (str,),
    "pnp_device_id": (str,),
    "mac": (str, type(None)),
    "ip_enabled": (bool,),
    "ip_addresses": (list,),
    "ip_subnets": (list,),
    "dhcp_enabled": (bool,),
    "gateways": (list,),
    "dns_servers": (list,),
    "metric": (int, type(None)),
    "dns_registration": (bool,),
    "domain_dns_registration": (bool,),
    "netbios": (int,),
}
FIREWALL_KEYS = {"api", "opmode_text", "portopening_text", "profiles", "current_profiles", "rules", "winrm_public"}
RULE_TYPES: dict[str, type] = {
    "name": str,
    "enabled": bool,
    "direction": int,
    "action": int,
    "protocol": int,
    "local_addresses": str,
    "local_ports": str,
    "profiles": int,
}
IIS_KEYS = {"version", "appcmd_sites_text", "metabase_sites"}
EVENT_KEYS = {"event_id", "source", "time", "message"}
NETSH_LINE = re.compile(r"^(?P<label>\S.{34}): (?P<value>.*)$")
APPCMD_LINE = re.compile(
    r'^SITE "(?P<name>[^"]+)" \(id:(?P<id>\d+),bindings:(?P<bindings>.*),state:(?P<state>\w+)\)$'
)


def one_of(family: str, *, seed: int = 1, count: int = 6) -> list[WindowsHost]:
    return build_fleet(count, seed=seed, profile=family, now=NOW)


def lines_of(text: str) -> list[str]:
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")
    return text.split("\r\n")[:-1]


def assert_facts_shape(facts: Any, family: str) -> None:
    """The shape of docs/facts.md, key for key, with the per-version nulls."""
    caps = oscaps.caps(family)
    assert isinstance(facts, Hashtable)
    assert set(facts) == facts_script_keys(family)
    assert facts["schema"] == 1
    assert isinstance(facts["computer_name"], str) and facts["computer_name"].isupper()

    os_ = facts["os"]
    assert set(os_) == OS_KEYS
    assert isinstance(os_["version"], str) and re.fullmatch(r"\d+\.\d+\.\d+", os_["version"])
    assert isinstance(os_["caption"], str) and "Windows" in os_["caption"]
    assert isinstance(os_["service_pack"], int) and not isinstance(os_["service_pack"], bool)
    assert os_["architecture"] in ("32-bit", "64-bit")
    assert all(isinstance(h, str) and h == h.upper() for h in os_["hotfixes"])

    assert facts["powershell_version"] == caps.powershell
    assert isinstance(facts["elevated"], bool)
    assert isinstance(facts["process_64bit"], bool)

    assert facts["adapters"], "every host has at least its NIC"
    for adapter in facts["adapters"]:
        assert isinstance(adapter, Hashtable)
        assert set(adapter) == set(ADAPTER_TYPES)
        for key, types in ADAPTER_TYPES.items():
            assert isinstance(adapter[key], types), key
        assert len(adapter["ip_addresses"]) == len(adapter["ip_subnets"])
        assert adapter["netbios"] in (0, 1, 2)
        if not caps.interface_index:
            assert adapter["interface_index"] is None
        else:
            assert isinstance(adapter["interface_index"], int)
        if not caps.ipv6_vips:
            assert all(":" not in a for a in adapter["ip_addresses"])

    if not caps.netsh_ipv4:
        assert facts["netsh_ipv4"] == {} and facts["netsh_ipv6"] == {}
        assert facts["netsh_ipv4_addresses"] is None and facts["netsh_ipv6_addresses"] is None
    else:
        assert isinstance(facts["netsh_ipv4_addresses"], str) and isinstance(facts["netsh_ipv6_addresses"], str)
        indexes = {str(a["interface_index"]) for a in facts["adapters"]}
        assert set(facts["netsh_ipv4"]) == indexes
        assert set(facts["netsh_ipv6"]) == indexes
        assert all(isinstance(t, str) for t in (*facts["netsh_ipv4"].values(), *facts["netsh_ipv6"].values()))

    fw = facts["firewall"]
    assert set(fw) == FIREWALL_KEYS
    if not caps.advfirewall:
        assert fw["api"] == "netsh-firewall"
        assert isinstance(fw["opmode_text"], str) and "Operational mode" in fw["opmode_text"]
        assert isinstance(fw["portopening_text"], str) and "Port configuration for" in fw["portopening_text"]
        assert fw["profiles"] is None and fw["current_profiles"] is None
        assert fw["rules"] == []
    else:
        assert fw["api"] == "advfirewall"
        assert fw["opmode_text"] is None and fw["portopening_text"] is None
        assert set(fw["profiles"]) == {"domain", "private", "public"}
        assert all(isinstance(v, bool) for v in fw["profiles"].values())
        assert isinstance(fw["current_profiles"], int) and 1 <= fw["current_profiles"] <= 7
        for rule in fw["rules"]:
            assert isinstance(rule, Hashtable)
            assert set(rule) == set(RULE_TYPES)
            assert all(isinstance(rule[k], t) for k, t in RULE_TYPES.items())
            assert rule["name"].startswith("dsrprep")

    iis = facts["iis"]
    assert set(iis) == IIS_KEYS
    assert iis["version"] == caps.iis_version
    if caps.iis is oscaps.IisApi.METABASE:
        assert iis["appcmd_sites_text"] is None
        for site in iis["metabase_sites"]:
            assert isinstance(site, Hashtable)
            assert set(site) == {"id", "name", "bindings"}
            assert site["id"].startswith("W3SVC/")
            assert all(re.fullmatch(r"[\d.]*:\d+:.*", b) for b in site["bindings"])
    else:
        assert isinstance(iis["version"], str) and iis["metabase_sites"] is None
        assert isinstance(iis["appcmd_sites_text"], str)

    assert facts["http_listen_text"] is None or isinstance(facts["http_listen_text"], str)
    if caps.listen_tool is oscaps.ListenTool.NETSH_HTTP:
        assert isinstance(facts["http_listen_text"], str)
    for event in facts["events"]:
        assert isinstance(event, Hashtable)
        assert set(event) == EVENT_KEYS
        assert event["event_id"] in (4198, 4199) and event["source"] in ("Tcpip", "TCP/IP")
        datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%S")
    assert all(
        isinstance(facts[k], Hashtable)
        for k in ("os", "netsh_ipv4", "netsh_ipv6", "firewall", "iis", "marker")
    )
    assert json.loads(json.dumps(facts)) == facts


# --- fleet building ---------------------------------------------------------------------------------


def test_profiles_are_mixed_and_every_family_of_the_table() -> None:
    assert profiles() == ("mixed", *oscaps.families())
    assert "2012" in PROFILES and "2025" in PROFILES


def test_lab_data_is_for_families_of_the_table_and_agrees_with_it() -> None:
    assert set(FAMILY_SPECS) <= set(oscaps.families())
    for family in oscaps.families():
        spec, caps = family_spec(family), oscaps.caps(family)
        assert spec.family == family
        for version, _, _ in spec.builds:
            major, minor, build = (int(x) for x in version.split("."))
            assert (major, minor) == caps.nt_version and build >= caps.first_build
            assert oscaps.family_of(version) == family
        assert bool(spec.nic_ifindex) == caps.interface_index


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_builds_hosts_with_contract_facts(profile: str) -> None:
    hosts = build_fleet(8, seed=3, profile=profile, now=NOW)
    assert len(hosts) == 8
    if profile != "mixed":
        assert {h.os_family for h in hosts} == {profile}
    for host in hosts:
        assert_facts_shape(host.facts(), host.os_family)


@pytest.mark.parametrize("seed", range(5))
def test_mixed_fleet_of_twenty_has_every_family_twice(seed: int) -> None:
    counts = Counter(h.os_family for h in build_fleet(20, seed=seed, profile="mixed", now=NOW))
    assert set(counts) == set(FAMILIES)
    assert min(counts.values()) >= 2


def test_same_seed_gives_the_same_facts() -> None:
    first = [h.facts() for h in build_fleet(20, seed=42, profile="mixed", now=NOW)]
    second = [h.facts() for h in build_fleet(20, seed=42, profile="mixed", now=NOW)]
    assert first == second


def test_different_seeds_give_different_fleets() -> None:
    first = [h.facts() for h in build_fleet(20, seed=1, profile="mixed", now=NOW)]
    second = [h.facts() for h in build_fleet(20, seed=2, profile="mixed", now=NOW)]
    assert first != second
    assert [h.os_family for h in build_fleet(20, seed=1, profile="mixed")] != [
        h.os_family for h in build_fleet(20, seed=2, profile="mixed")
    ]


def test_names_rips_gateway_and_dns_follow_the_host_number() -> None:
    hosts = build_fleet(12, seed=5, profile="mixed", now=NOW)
    assert [h.name for h in hosts] == [f"WEB{i:02d}" for i in range(1, 13)]
    assert hosts[0].inventory_name == "web01"
    for i, host in enumerate(hosts, start=1):
        nic = next(a for a in host.facts()["adapters"] if a["service_name"] != "msloop")
        assert host.rip == f"10.20.0.{10 + i}"
        assert nic["ip_addresses"][0] == host.rip and nic["ip_subnets"][0] == "255.255.255.0"
        assert nic["gateways"] == ["10.20.0.1"] and nic["dns_servers"] == ["10.20.0.2"]
        assert nic["dhcp_enabled"] is False


def test_custom_subnet_and_its_limits() -> None:
    hosts = build_fleet(3, seed=1, profile="2019", subnet="192.168.50.0/23")
    assert [h.rip for h in hosts] == ["192.168.50.11", "192.168.50.12", "192.168.50.13"]
    assert hosts[0].nics[0].addresses[0][1] == "255.255.254.0"
    with pytest.raises(ValueError, match="too small"):
        build_fleet(10, seed=1, profile="mixed", subnet="10.0.0.0/28")
    with pytest.raises(ValueError, match="unknown lab profile"):
        build_fleet(2, seed=1, profile="2010")
    with pytest.raises(ValueError, match="at least one host"):
        build_fleet(0, seed=1, profile="mixed")


def test_account_defaults_and_override() -> None:
    host = build_fleet(1, seed=1, profile="2016")[0]
    assert (host.username, host.password) == ("labadmin", "Lab-Passw0rd!")
    other = build_fleet(1, seed=1, profile="2016", password="S3cret!", username="ops")[0]
    assert (other.username, other.password) == ("ops", "S3cret!")


def test_macs_are_unique_and_pnp_ids_realistic() -> None:
    hosts = build_fleet(100, seed=9, profile="mixed", subnet="10.20.0.0/24", now=NOW)
    physical = [n for h in hosts for n in h.nics if not n.is_loopback]
    macs = [n.mac for n in physical]
    assert len(set(macs)) == len(macs)
    for nic in physical:
        assert nic.mac is not None and re.fullmatch(r"(00:50:56|00:15:5D)(:[0-9A-F]{2}){3}", nic.mac)
        assert re.fullmatch(
            r"(PCI\\VEN_[0-9A-F]{4}&DEV_[0-9A-F]{4}&SUBSYS_[0-9A-F]{8}&REV_\d\d|VMBUS\\\{[0-9A-F-]{36}\})\\\S+",
            nic.pnp_device_id,
        )
    loopbacks = [n for h in hosts for n in h.nics if n.is_loopback]
    assert loopbacks
    assert {n.pnp_device_id for n in loopbacks} == {"ROOT\\NET\\0000"}
    assert {n.mac for n in loopbacks} == {"02:00:4C:4F:4F:50"}


@pytest.mark.parametrize("family", FAMILIES)
def test_per_family_versions_and_names(family: str) -> None:
    caps = oscaps.caps(family)
    major, minor = caps.nt_version
    version = f"{major}.{minor}." + (str(caps.first_build) if major >= 10 else "")
    ps, iis = caps.powershell, caps.iis_version
    # Windows 8 / Server 2012 renamed the connections and the loopback adapter.
    renamed = caps.nt_version >= (6, 2)
    connection = "Ethernet" if renamed else "Local Area Connection"
    loopback = "Microsoft KM-TEST Loopback Adapter" if renamed else "Microsoft Loopback Adapter"
    hosts = build_fleet(40, seed=11, profile=family, now=NOW)
    for host in hosts:
        facts = host.facts()
        assert facts["os"]["version"].startswith(version)
        assert facts["powershell_version"] == ps
        assert facts["iis"]["version"] == iis
        assert facts["process_64bit"] == (facts["os"]["architecture"] == "64-bit")
        for adapter in facts["adapters"]:
            if adapter["service_name"] == "msloop":
                assert adapter["description"] == loopback
                assert adapter["connection_id"] == f"{connection} 2"
            else:
                assert adapter["connection_id"] == connection
    loopbacks = [a for h in hosts for a in h.facts()["adapters"] if a["service_name"] == "msloop"]
    assert loopbacks, "some hosts of every family already have a loopback"
    for adapter in loopbacks:
        assert adapter["dhcp_enabled"] is True
        assert adapter["ip_addresses"][0].startswith("169.254.") and adapter["ip_subnets"][0] == "255.255.0.0"
        assert adapter["gateways"] == [] and adapter["dns_servers"] == []
    if caps.nt_version >= (6, 1):
        assert all(h.architecture == "64-bit" for h in hosts)
    link_local = [
        a for h in hosts for a in h.facts()["adapters"] for x in a["ip_addresses"] if x.startswith("fe80::")
    ]
    if caps.ipv6_vips:
        assert link_local
    else:
        assert not link_local


def test_seeded_variation_covers_the_documented_cases() -> None:
    hosts = [h for seed in range(4) for h in build_fleet(70, seed=seed, profile="mixed", now=NOW)]
    facts = {id(h): h.facts() for h in hosts}
    w2008 = [h for h in hosts if h.os_family == "2008"]
    assert {h.service_pack for h in w2008} == {1, 2}
    assert {h.version for h in w2008 if h.service_pack == 1} == {"6.0.6001"}
    with_kb = [h for h in w2008 if "KB975808" in h.hotfixes]
    assert with_kb and all(h.service_pack == 2 for h in with_kb)
    assert any(h.service_pack == 2 and "KB975808" not in h.hotfixes for h in w2008)
    assert not any("KB975808" in h.hotfixes for h in hosts if h.os_family != "2008")

    defaults = [s for h in hosts for s in h.sites if s.name == "Default Web Site"]
    assert {b for s in defaults for p, b in s.bindings if p == "http"} >= {"*:80:"}
    assert any(b == f"{h.rip}:80:" for h in hosts for s in h.sites for _, b in s.bindings)
    assert any(h.http_listen == [h.rip] for h in hosts) and any(not h.http_listen for h in hosts)
    assert any(facts[id(h)]["http_listen_text"] is None for h in hosts if h.os_family == "2003")

    adv = [h.firewall for h in hosts if isinstance(h.firewall, AdvFirewall)]
    assert any(f.domain and f.private and f.public for f in adv)
    assert any(not (f.domain or f.private or f.public) for f in adv)
    legacy = [h.firewall for h in hosts if isinstance(h.firewall, LegacyFirewall)]
    assert {f.domain_enabled for f in legacy} == {True, False}
    assert {n.service_name for h in hosts for n in h.nics if h.os_family == "2016"} >= {
        "vmxnet3ndis6",
        "netvsc",
    }
    assert any(facts[id(h)]["events"] for h in hosts)


def test_loopback_changes_the_current_firewall_profile_on_2008() -> None:
    for family, expected in (("2008", 4), ("2012r2", 5)):
        hosts = build_fleet(40, seed=2, profile=family, now=NOW)
        for host in hosts:
            has_loopback = any(n.is_loopback for n in host.nics)
            assert host.facts()["firewall"]["current_profiles"] == (expected if has_loopback else 1)


# --- text layouts -----------------------------------------------------------------------------------


def test_netsh_interface_layout_and_weak_host_flags() -> None:
    host = one_of("2008r2")[0]
    nic = host.nics[0]
    text = host.facts()["netsh_ipv4"][str(nic.interface_index)]
    lines = lines_of(text)
    assert lines[0] == "" and lines[-1] == ""
    assert lines[1] == "Interface Local Area Connection Parameters"
    assert lines[2] == "-" * 46
    fields = {}
    for line in lines[3:-1]:
        match = NETSH_LINE.match(line)
        assert match, line
        fields[match["label"].rstrip()] = match["value"]
    assert fields["IfIndex"] == str(nic.interface_index)
    assert fields["Metric"] == str(nic.metric)
    assert fields["Weak Host Sends"] == fields["Weak Host Receives"] == "disabled"
    assert "Compartment Id" not in fields and "ECN capability" not in fields

    with host.lock:
        nic.weak_host_receive = True
    after = host.facts()
    assert "Weak Host Receives                 : enabled" in after["netsh_ipv4"][str(nic.interface_index)]
    assert "Weak Host Sends                    : disabled" in after["netsh_ipv4"][str(nic.interface_index)]
    assert "Weak Host Receives                 : disabled" in after["netsh_ipv6"][str(nic.interface_index)]


@pytest.mark.parametrize(
    ("family", "present", "absent"),
    [
        ("2008", ["Compartment Id"], ["Advertised Router Lifetime"]),
        ("2008r2", [], ["Compartment Id", "ECN capability"]),
        ("2012r2", ["ECN capability", "Current Hop Limit"], ["RA Based DNS Config (RFC 6106)"]),
        ("2016", ["Force ARPND Wake up patterns"], ["RA Based DNS Config (RFC 6106)", "Compartment Id"]),
        ("2019", ["RA Based DNS Config (RFC 6106)"], ["DHCP/Static IP coexistence"]),
        ("2022", ["RA Based DNS Config (RFC 6106)", "DHCP/Static IP coexistence"], []),
    ],
)
def test_newer_builds_print_more_netsh_lines(family: str, present: list[str], absent: list[str]) -> None:
    text = next(iter(one_of(family)[0].facts()["netsh_ipv4"].values()))
    labels = {line[:35].rstrip() for line in lines_of(text)[3:-1]}
    assert {"IfLuid", "IfIndex", "Weak Host Sends", "Weak Host Receives", "Ignore Default Routes"} <= labels
    assert set(present) <= labels
    assert not set(absent) & labels


def test_netsh_ipv6_block_for_a_loopback() -> None:
    nic = Nic(
        index=12,
        interface_index=17,
        connection_id="Loopback VIP",
        description="Microsoft KM-TEST Loopback Adapter",
        service_name="msloop",
        pnp_device_id="ROOT\\NET\\0000",
        mac="02:00:4C:4F:4F:50",
        addresses=[("10.20.0.100", "255.255.255.255")],
        dhcp_enabled=False,
        gateways=[],
        dns_servers=[],
        metric=254,
        dns_registration=False,
        domain_dns_registration=False,
        netbios=2,
        weak_host_send=True,
        weak_host_receive=True,
        weak_host_send_v6=False,
        weak_host_receive_v6=True,
        automatic_metric=False,
        if_luid="ethernet_32770",
    )
    lines = lines_of(render_netsh_interface(nic, 2, ipv6=True))
    assert lines[1] == "Interface Loopback VIP Parameters"
    assert "Metric                             : 254" in lines
    assert "Use Automatic Metric               : disabled" in lines
    assert "Weak Host Sends                    : disabled" in lines
    assert "Weak Host Receives                 : enabled" in lines
    assert "DAD Transmits                      : 1" in lines


def test_2003_firewall_opmode_and_portopening_layouts() -> None:
    fw = LegacyFirewall(
        domain_enabled=True,
        domain_exceptions=False,
        standard_enabled=False,
        standard_exceptions=True,
        current="standard",
        interface_enabled={"Local Area Connection": True, "Local Area Connection 2": False},
        port_openings=[
            PortOpening(80, "TCP", "HTTP", "domain"),
            PortOpening(137, "UDP", "NetBIOS Name Service", "domain", False),
        ],
    )
    opmode = lines_of(render_firewall_opmode(fw, ["Local Area Connection", "Local Area Connection 2"]))
    assert opmode[:5] == [
        "",
        "Domain profile configuration:",
        "-" * 67,
        "Operational mode                  = Enable",
        "Exception mode                    = Disable",
    ]
    assert "Standard profile configuration (current):" in opmode
    at = opmode.index("Local Area Connection 2 firewall configuration:")
    assert opmode[at + 2] == "Operational mode                  = Disable"

    ports = lines_of(render_firewall_portopening(fw))
    assert ports[1:6] == [
        "Port configuration for Domain profile:",
        "Port   Protocol  Mode     Name",
        "-" * 67,
        "80     TCP       Enable   HTTP",
        "137    UDP       Disable  NetBIOS Name Service",
    ]
    standard = ports.index("Port configuration for Standard profile:")
    assert ports[standard + 3] == ""


def test_appcmd_site_lines() -> None:
    sites = [
        Site(2, "Intranet", [("http", "*:8080:")], "Stopped"),
        Site(1, "Default Web Site", [("http", "*:80:"), ("https", "*:443:"), ("http", "10.20.0.11:80:www")]),
    ]
    lines = lines_of(render_appcmd_sites(sites))
    assert lines == [
        'SITE "Default Web Site" (id:1,bindings:http/*:80:,https/*:443:,http/10.20.0.11:80:www,'
        "state:Started)",
        'SITE "Intranet" (id:2,bindings:http/*:8080:,state:Stopped)',
    ]
    assert all(APPCMD_LINE.match(line) for line in lines)
    assert render_appcmd_sites([]) == ""


def test_http_listen_list_layouts_empty_and_not() -> None:
    assert lines_of(render_netsh_http_iplisten(["10.20.0.11", "127.0.0.1"])) == [
        "",
        "IP addresses present in the IP listen list:",
        "-------------------------------------------",
        "",
        "    10.20.0.11",
        "    127.0.0.1",
        "",
        "",
    ]
    assert lines_of(render_netsh_http_iplisten([])) == [
        "",
        "IP addresses present in the IP listen list:",
        "-------------------------------------------",
        "",
        "",
    ]
    assert lines_of(render_httpcfg_iplisten([])) == ["HttpQueryServiceConfiguration completed with 1168."]
    assert lines_of(render_httpcfg_iplisten(["10.20.0.11", "10.20.0.50"])) == [
        "IP         :10.20.0.11",
        "-" * 78,
        "IP         :10.20.0.50",
        "-" * 78,
    ]


def test_iis6_metabase_bindings_show_all_unassigned_as_an_empty_ip() -> None:
    host = one_of("2003")[0]
    with host.lock:
        host.sites = [Site(1, "Default Web Site", [("http", "*:80:"), ("http", f"{host.rip}:80:www")])]
    assert host.facts()["iis"]["metabase_sites"] == [
        {"id": "W3SVC/1", "name": "Default Web Site", "bindings": [":80:", f"{host.rip}:80:www"]}
    ]


def test_facts_follow_state_and_are_copies() -> None:
    host = one_of("2019")[0]
    facts = host.facts()
    facts["adapters"][0]["ip_addresses"].append("10.99.99.99")
    facts["marker"]["x"] = "y"
    assert "10.99.99.99" not in host.facts()["adapters"][0]["ip_addresses"]
    assert host.facts()["marker"] == {}
    with host.lock:
        host.marker["LoopbackPnpId"] = "ROOT\\NET\\0000"
        host.nics[0].ip_enabled = False
    after = host.facts()
    assert after["marker"] == {"LoopbackPnpId": "ROOT\\NET\\0000"}
    assert after["adapters"][0]["ip_addresses"] == [] and after["adapters"][0]["metric"] is None


def test_only_dsrprep_rules_are_reported() -> None:
    host = one_of("2012r2")[0]
    assert isinstance(host.firewall, AdvFirewall)
    assert host.firewall.rules, "built-in rules exist on the host"
    assert host.facts()["firewall"]["rules"] == []


# --- steps and locking ------------------------------------------------------------------------------


def test_run_facts_returns_one_hashtable() -> None:
    host = one_of("2022")[0]
    result = host.run("facts", {})
    assert isinstance(result, ScriptResult)
    assert result.failed is None and result.errors == []
    assert len(result.output) == 1 and isinstance(result.output[0], Hashtable)
    assert result.output[0] == host.facts()


def test_a_host_that_is_not_elevated_still_answers_facts() -> None:
    host = one_of("2008")[0]
    with host.lock:
        host.elevated = False
    result = host.run("facts", {})
    assert result.failed is None
    assert result.output[0]["elevated"] is False


def test_unknown_step_fails_like_powershell() -> None:
    result = one_of("2016")[0].run("no-such-step", {"X": 1})
    assert result.output == []
    assert result.failed is not None
    assert result.failed.startswith("The term 'no-such-step' is not recognized as the name of a cmdlet")


def test_a_step_that_throws_fails_the_pipeline() -> None:
    def boom(host: WindowsHost, params: dict[str, Any], variant: str) -> ScriptResult:
        raise StepFailed(f"cannot do {params['What']}")

    template = one_of("2016")[0]
    kept = {f.name: getattr(template, f.name) for f in fields(template) if f.name not in ("lock", "steps")}
    host = WindowsHost(**kept, steps={**STEPS, "boom": LabStep("boom", boom)})
    assert host.run("boom", {"What": "that"}).failed == "cannot do that"
    assert host.run("facts", {}).failed is None


def test_run_from_many_threads_sees_consistent_state() -> None:
    host = build_fleet(1, seed=4, profile="2019", now=NOW)[0]
    nic = host.nics[0]
    index = str(nic.interface_index)
    stop = threading.Event()
    failures: list[str] = []
    outputs: list[Hashtable] = []

    def mutate() -> None:
        flag = False
        while not stop.is_set():
            with host.lock:
                # Half-changed state is held across a sleep: only the lock keeps readers out of it.
                flag = not flag
                nic.weak_host_send = flag
                time.sleep(0.0002)
                nic.weak_host_receive = flag
                if flag:
                    nic.addresses.append(("10.20.0.200", "255.255.255.255"))
                else:
                    nic.addresses.pop()
            time.sleep(0.0001)

    def read() -> None:
        try:
            for _ in range(40):
                result = host.run("facts", {})
                facts = result.output[0]
                adapter = facts["adapters"][0]
                text = facts["netsh_ipv4"][index]
                sends = "Weak Host Sends                    : enabled" in text
                receives = "Weak Host Receives                 : enabled" in text
                if len(adapter["ip_addresses"]) != len(adapter["ip_subnets"]) or sends != receives:
                    failures.append("torn read")
                if ("10.20.0.200" in adapter["ip_addresses"]) != sends:
                    failures.append("address and flags from different moments")
                outputs.append(facts)
        except Exception as exc:  # a thread's exception would otherwise vanish
            failures.append(repr(exc))

    writer = threading.Thread(target=mutate)
    readers = [threading.Thread(target=read) for _ in range(8)]
    writer.start()
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    stop.set()
    writer.join()
    assert failures == []
    assert len(outputs) == 8 * 40


def test_rip_needs_a_physical_ipv4_address() -> None:
    host = one_of("2016")[0]
    with host.lock:
        host.nics = [n for n in host.nics if n.is_loopback]
    with pytest.raises(LookupError):
        _ = host.rip


def test_subnet_network_address_is_not_required_to_be_aligned() -> None:
    hosts = build_fleet(2, seed=1, profile="2016", subnet="10.30.0.77/24")
    assert ipaddress.ip_address(hosts[0].rip) == ipaddress.ip_address("10.30.0.11")


# --- against captured outputs and the project's parsers ---------------------------------------------


def _labels(text: str) -> list[str]:
    return [line[:35].rstrip() for line in text.splitlines()[3:] if " : " in line]


@pytest.mark.parametrize(
    ("capture", "ipv6"),
    [("netsh/ipv4_show_interface_win10_wsl_en.txt", False), ("netsh/ipv6_show_interface_win10_en.txt", True)],
)
def test_newest_netsh_layout_matches_a_capture(capture: str, ipv6: bool) -> None:
    captured = (DATA / capture).read_text(encoding="utf-8")
    nic = one_of("2022")[0].nics[0]
    rendered = render_netsh_interface(nic, 4, ipv6=ipv6)
    assert _labels(rendered.replace("\r\n", "\n")) == _labels(captured)
    assert rendered.replace("\r\n", "\n").splitlines()[2] == captured.splitlines()[2]


def test_2003_firewall_layouts_match_the_xp_captures() -> None:
    rows = [
        (139, "TCP", "NetBIOS Session Service"),
        (445, "TCP", "SMB over TCP"),
        (137, "UDP", "NetBIOS Name Service"),
        (138, "UDP", "NetBIOS Datagram Service"),
    ]
    fw = LegacyFirewall(
        domain_enabled=True,
        domain_exceptions=True,
        standard_enabled=True,
        standard_exceptions=True,
        current="standard",
        interface_enabled={"Local Area Connection": True},
        port_openings=[PortOpening(p, proto, name, "domain") for p, proto, name in rows]
        + [PortOpening(445, "TCP", "Service Firewall", "standard")]
        + [PortOpening(p, proto, name, "standard") for p, proto, name in rows],
    )
    for rendered, capture in (
        (render_firewall_opmode(fw, ["Local Area Connection"]), "firewall/show_opmode_xp_en.txt"),
        (render_firewall_portopening(fw), "firewall/show_portopening_xp_en.txt"),
    ):
        # the captures were trimmed after their last non-blank line
        expected = (DATA / capture).read_text(encoding="utf-8").rstrip("\n")
        assert rendered.replace("\r\n", "\n").rstrip("\n") == expected


@pytest.mark.parametrize(
    ("addresses", "capture"),
    [
        ([], "http/netsh_http_show_iplisten_empty_constructed.txt"),
        (["192.168.33.1", "127.0.0.0", "127.0.0.1"], "http/netsh_http_show_iplisten_en.txt"),
    ],
)
def test_netsh_http_iplisten_matches_the_samples(addresses: list[str], capture: str) -> None:
    expected = (DATA / capture).read_text(encoding="utf-8")
    assert render_netsh_http_iplisten(addresses).replace("\r\n", "\n") == expected


@pytest.mark.parametrize("profile", PROFILES)
def test_facts_of_every_profile_parse_and_agree_with_the_model(profile: str) -> None:
    for host in build_fleet(12, seed=21, profile=profile, now=NOW):
        parsed = parse_facts(host.facts())
        assert parsed.computer_name == host.name
        assert parsed.os.family == host.os_family
        assert [a.index for a in parsed.adapters] == sorted(n.index for n in host.nics)
        for nic in host.nics:
            if nic.interface_index is None:
                continue
            v4 = weak_host_step.flags(parsed, nic.interface_index, 4)
            v6 = weak_host_step.flags(parsed, nic.interface_index, 6)
            assert v4 is not None and (v4.send, v4.receive) == (nic.weak_host_send, nic.weak_host_receive)
            assert v6 is not None and (v6.send, v6.receive) == (
                nic.weak_host_send_v6,
                nic.weak_host_receive_v6,
            )
        if not host.skip_as_source_supported():
            assert dict(skip_step.skip_flags(parsed).flags) == {}
        else:
            assert skip_step.skip_flags(parsed).of(host.rip) is False
            assert skip_step.skip_flags(parsed).of("127.0.0.1") is False
        if host.caps.listen_tool is oscaps.ListenTool.HTTPCFG and not host.httpcfg_installed:
            assert http_listen_step.listen_list(parsed) is None
        else:
            assert http_listen_step.listen_list(parsed) == tuple(host.http_listen)
        assert iis_step.iis(parsed).version == host.iis_version
        assert {
            (s.name, tuple((b.protocol, b.ip, b.port) for b in s.bindings)) for s in iis_step.iis(parsed).sites
        } == {
            (s.name, tuple((p, *_ip_port(i)) for p, i in s.bindings if p in ("http", "https")))
            for s in host.sites
        }
        fw = host.firewall
        if isinstance(fw, LegacyFirewall):
            current = fw.domain_enabled if fw.current == "domain" else fw.standard_enabled
            assert parsed.firewall.enabled == current
            assert {(p.port, p.protocol, p.name, p.profile) for p in parsed.firewall.port_openings} == {
                (p.port, p.protocol, p.name, p.profile) for p in fw.port_openings
            }
            assert dict(parsed.firewall.interface_modes) == fw.interface_enabled
        else:
            assert dict(parsed.firewall.profiles or {}) == {
                "domain": fw.domain,
                "private": fw.private,
                "public": fw.public,
            }
            assert parsed.firewall.current_profiles == fw.current_profiles


def test_parsed_weak_host_follows_a_changed_flag() -> None:
    host = one_of("2008")[0]
    nic = host.nics[0]
    assert nic.interface_index is not None
    with host.lock:
        nic.weak_host_receive = True
        nic.weak_host_send_v6 = True
    parsed = parse_facts(host.run("facts", {}).output[0])
    assert weak_host_step.flags(parsed, nic.interface_index, 4) == WeakHost(send=False, receive=True)
    assert weak_host_step.flags(parsed, nic.interface_index, 6) == WeakHost(send=True, receive=False)


def _ip_port(info: str) -> tuple[str, int]:
    ip, port, _ = info.split(":", 2)
    return (ip or "*", int(port))
