"""The lab host model executing the DSR steps of docs/steps.md: effects per OS family, idempotency,
rollback, and the refusals a wrong template variant or a wrong order runs into."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from orchestrator import oscaps
from orchestrator.facts import Facts, parse_facts
from orchestrator.lab.build import build_fleet
from orchestrator.lab.common import Hashtable, RequestCounters, ScriptResult
from orchestrator.lab.firewall import AdvFirewall, LegacyFirewall
from orchestrator.lab.fleet import LabFleet, _HostHandler, template_of
from orchestrator.lab.host import WindowsHost
from orchestrator.lab.iis import Site
from orchestrator.lab.net import Nic, render_arp, render_netsh_ipaddresses
from orchestrator.steps import http_listen as http_listen_step
from orchestrator.steps import iis_binding as iis_step
from orchestrator.steps import skip_as_source as skip_step
from orchestrator.steps import verify as verify_step
from orchestrator.steps import weak_host as weak_host_step
from orchestrator.templates import all_templates

FAMILIES = oscaps.families()

NOW = datetime(2025, 3, 14, 9, 30)
VIP = "10.20.0.200"
HOST_MASK = "255.255.255.255"
RULE = f"dsrprep {VIP} TCP 80"

Step = tuple[str, dict[str, Any]]


# --- helpers -----------------------------------------------------------------------------------------


def hosts_of(family: str, *, count: int = 8, seeds: range = range(6), **kwargs: Any) -> Iterator[WindowsHost]:
    for seed in seeds:
        yield from build_fleet(count, seed=seed, profile=family, now=NOW, **kwargs)


def find_host(family: str, predicate: Callable[[WindowsHost], bool]) -> WindowsHost:
    for host in hosts_of(family, count=20, seeds=range(20)):
        if predicate(host):
            return host
    raise LookupError(f"no {family} host matches")


def facts_of(host: WindowsHost) -> Facts:
    return parse_facts(host.facts())


def ok(host: WindowsHost, step: str, params: dict[str, Any], variant: str | None = None) -> Hashtable:
    result = host.run(step, params, variant=variant)
    assert result.failed is None, (host.name, host.os_family, step, result.failed)
    assert not result.cut_connection, (host.name, step)
    assert len(result.output) == 1 and isinstance(result.output[0], Hashtable)
    facts_of(host)  # every step leaves facts that parse
    out = result.output[0]
    assert isinstance(out["changed"], bool)
    return out


def failed(host: WindowsHost, step: str, params: dict[str, Any], variant: str | None = None) -> str:
    result = host.run(step, params, variant=variant)
    assert result.failed is not None, (host.name, step, result.output)
    assert result.output == []
    return result.failed


def loopback_of(host: WindowsHost) -> Nic:
    pnp = host.marker["LoopbackPnpId"]
    return next(n for n in host.nics if n.pnp_device_id == pnp)


def existing_loopback(host: WindowsHost) -> Nic | None:
    return next((n for n in host.nics if n.is_loopback), None)


def rule_params(ensure: str = "Present") -> dict[str, Any]:
    return {"Ensure": ensure, "Name": RULE, "Vip": VIP, "Protocol": "TCP", "Port": 80}


def config_params(host: WindowsHost, **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "PnpDeviceId": "",
        "Name": "DSR Loopback",
        "Addresses": [VIP],
        "Masks": [HOST_MASK],
        "Addresses6": [],
        "SkipAsSource": host.skip_as_source_supported(),
        "FallbackMask": "255.255.255.0",
        "Dhcp": False,
    }
    params.update(overrides)
    return params


def binding_params(ensure: str = "Present", ip: str = VIP) -> dict[str, Any]:
    return {"Ensure": ensure, "Site": "Default Web Site", "Protocol": "http", "Ip": ip, "Port": 80,
            "HostHeader": "", "Restart": True}


def apply_plan(host: WindowsHost) -> list[Step]:
    """The steps a correct plan runs, in the documented order, read from the host's facts; steps
    whose parameters depend on an earlier result (the 2003 fallback metric) are fixed up by
    `run_plan`."""
    facts = facts_of(host)
    nic = facts.physical_adapters()[0]
    adopt = existing_loopback(host)
    steps: list[Step] = [("preflight", {"Vips": [VIP]})]
    steps.append(("firewall_rule", rule_params()))
    steps.append(("loopback", {"Ensure": "Present", "PnpDeviceId": adopt.pnp_device_id if adopt else "",
                               "Vips": [VIP], "DevconPath": ""}))
    steps.append(("loopback_config", config_params(host)))
    steps.append(("adapter_settings", {"PnpDeviceId": "", "Metric": 254, "DnsRegistration": False, "NetBios": 2}))
    if host.caps.weak_host:
        steps.append(("weak_host", {"InterfaceIndex": nic.interface_index, "IpVersion": 4, "Receive": True,
                                    "Send": False}))
        steps.append(("weak_host", {"InterfaceIndex": 0, "IpVersion": 4, "Receive": True, "Send": True}))
    if http_listen_step.listen_list(facts):
        steps.append(("http_listen", {"Ensure": "Present", "Addresses": [VIP]}))
    site = next(s for s in iis_step.iis(facts).sites if s.name == "Default Web Site")
    if not any(b.port == 80 and b.is_all_unassigned for b in site.bindings):
        steps.append(("iis_binding", binding_params()))
    steps.append(("marker", {"Ensure": "Present", "Values": {"Vips": VIP}}))
    return steps


def run_plan(host: WindowsHost, steps: list[Step]) -> dict[str, Hashtable]:
    results: dict[str, Hashtable] = {}
    degraded = False
    for step, params in steps:
        if step == "adapter_settings" and degraded:
            params = {**params, "Metric": 9999}
        out = ok(host, step, params)
        degraded = degraded or bool(out.get("degraded"))
        results[step] = out
    return results


def rollback_plan(host: WindowsHost, before: Facts, created: bool) -> list[Step]:
    """Reverse order, values from the facts read before the rollout."""
    nic = before.physical_adapters()[0]
    steps: list[Step] = []
    site = next(s for s in iis_step.iis(before).sites if s.name == "Default Web Site")
    if not any(b.port == 80 and b.is_all_unassigned for b in site.bindings):
        steps.append(("iis_binding", binding_params("Absent")))
    if http_listen_step.listen_list(before):
        steps.append(("http_listen", {"Ensure": "Absent", "Addresses": [VIP]}))
    if host.caps.weak_host:
        assert nic.interface_index is not None
        original = weak_host_step.flags(before, nic.interface_index, 4)
        assert original is not None
        steps.append(("weak_host", {"InterfaceIndex": nic.interface_index, "IpVersion": 4,
                                    "Receive": original.receive, "Send": original.send}))
    if created:
        steps.append(("loopback", {"Ensure": "Absent", "PnpDeviceId": "", "Vips": [VIP], "DevconPath": ""}))
    else:
        lo = before.loopbacks()[0]
        steps.append(("adapter_settings", {"PnpDeviceId": "", "Metric": lo.metric, "NetBios": lo.netbios,
                                           "DnsRegistration": lo.dns_registration}))
        if host.caps.weak_host:
            assert lo.interface_index is not None
            weak = weak_host_step.flags(before, lo.interface_index, 4)
            assert weak is not None
            steps.append(("weak_host", {"InterfaceIndex": 0, "IpVersion": 4, "Receive": weak.receive,
                                        "Send": weak.send}))
        steps.append(("loopback_config", config_params(host, Name=lo.connection_id, Addresses=[], Masks=[],
                                                       Dhcp=True)))
    steps.append(("firewall_rule", rule_params("Absent")))
    steps.append(("marker", {"Ensure": "Absent", "Values": {}}))
    return steps


def assert_compliant(host: WindowsHost, before: Facts, results: dict[str, Hashtable]) -> None:
    facts = facts_of(host)
    lo = facts.adapter_by_pnp_id(facts.marker["LoopbackPnpId"])
    assert lo is not None and lo.is_loopback
    degraded = bool(results["loopback_config"]["degraded"])
    address = next((a for a in lo.addresses if a.address == VIP), None)
    assert address is not None
    assert address.mask == ("255.255.255.0" if degraded else HOST_MASK)
    assert [a.address for a in lo.addresses if a.version == 4] == [VIP]
    assert lo.metric == (9999 if degraded else 254)
    assert not lo.dhcp_enabled and lo.gateways == () and lo.dns_servers == ()
    assert lo.dns_registration is False and lo.domain_dns_registration is False and lo.netbios == 2
    assert lo.connection_id == "DSR Loopback"
    assert facts.adapters_with_address(VIP) == (lo,)
    if not host.caps.advfirewall:
        openings = {(p.port, p.protocol, p.profile) for p in facts.firewall.port_openings if p.enabled}
        assert {(80, "TCP", "domain"), (80, "TCP", "standard")} <= openings
    else:
        nic = facts.physical_adapters()[0]
        assert nic.interface_index is not None and lo.interface_index is not None
        assert weak_host_step.flags(facts, nic.interface_index, 4) is not None
        assert weak_host_step.flags(facts, nic.interface_index, 4).receive  # type: ignore[union-attr]
        weak = weak_host_step.flags(facts, lo.interface_index, 4)
        assert weak is not None and weak.send and weak.receive
        rules = [r for r in facts.firewall.rules if r.name == RULE]
        assert len(rules) == 1
        assert rules[0].local_addresses == f"{VIP}/{HOST_MASK}" and rules[0].profiles == 0x7FFFFFFF
        assert rules[0].local_ports == "80" and rules[0].protocol == 6 and rules[0].action == 1
        assert facts.firewall.current_profiles is not None and facts.firewall.current_profiles & 4
    site = next(s for s in iis_step.iis(facts).sites if s.name == "Default Web Site")
    if any(b.ip == host.rip for b in site.bindings):
        assert any(b.ip == VIP and b.port == 80 for b in site.bindings)
    if http_listen_step.listen_list(before):
        listen = http_listen_step.listen_list(facts)
        assert listen is not None and VIP in listen
    assert facts.marker["Vips"] == VIP

    verify = ok(host, "verify", {"Vips": [VIP], "Ports": [80], "Rip": host.rip, "TimeoutMs": 1000})
    assert verify["changed"] is False
    assert [(t["address"], t["port"], t["ok"]) for t in verify["tcp"]] == [(host.rip, 80, True), (VIP, 80, True)]
    assert [(p["address"], p["ok"]) for p in verify["ping"]] == [(VIP, True)]
    if degraded and not host.spec.loopback_routes:
        assert verify["routes"] == []
    else:
        (route,) = verify["routes"]
        assert (route["destination"], route["mask"]) == (VIP, HOST_MASK)
        if host.spec.loopback_routes:
            # 2003 routes a local address through 127.0.0.1 on the software loopback, whatever its mask.
            assert (route["next_hop"], route["interface_index"]) == ("127.0.0.1", 1)
        else:
            assert (route["next_hop"], route["metric"], route["interface_index"]) == (
                "0.0.0.0", 254 + 256, lo.interface_index
            )


# --- the whole rollout, per family --------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_correct_rollout_is_compliant_idempotent_and_rolls_back(family: str) -> None:
    seen_created = seen_adopted = 0
    for host in hosts_of(family, count=6, seeds=range(3)):
        before = facts_of(host)
        adopted = existing_loopback(host) is not None
        plan = apply_plan(host)
        results = run_plan(host, plan)
        assert results["loopback"]["created"] is (not adopted)
        assert all(r["changed"] for s, r in results.items() if s in ("loopback", "loopback_config", "marker"))
        assert_compliant(host, before, results)

        applied = host.facts()
        again = run_plan(host, plan)
        assert {s: r["changed"] for s, r in again.items()} == {s: False for s in again}, host.name
        assert host.facts() == applied

        run_plan(host, rollback_plan(host, before, created=not adopted))
        after = facts_of(host)
        assert after.to_dict() == before.to_dict(), host.name
        seen_created += not adopted
        seen_adopted += adopted
    assert seen_created and seen_adopted


def test_new_loopback_is_the_next_msloop_device_of_its_family() -> None:
    host = find_host("2012r2", lambda h: existing_loopback(h) is not None and h.nics[0].interface_index is not None)
    seeded = existing_loopback(host)
    assert seeded is not None
    out = ok(host, "loopback", {"Ensure": "Present", "PnpDeviceId": "", "Vips": [VIP], "DevconPath": ""})
    assert out == {"changed": True, "pnp_device_id": "ROOT\\NET\\0001", "created": True, "reboot_required": False,
                   "output": None}
    new = loopback_of(host)
    assert new.description == "Microsoft KM-TEST Loopback Adapter #2"
    assert new.connection_id == "Ethernet 3"
    assert new.mac == "02:00:4C:4F:4F:50" and new.dhcp_enabled
    assert new.ipv4()[0][0].startswith("169.254.") and new.ipv4()[0][1] == "255.255.0.0"
    assert new.interface_index is not None and seeded.interface_index is not None
    assert new.interface_index > max(n.interface_index or 0 for n in host.nics if n is not new)
    assert host.marker == {"LoopbackPnpId": "ROOT\\NET\\0001", "LoopbackCreated": "1"}

    # Found again by the marker: nothing to do, and still ours.
    again = ok(host, "loopback", {"Ensure": "Present", "PnpDeviceId": "", "Vips": [VIP], "DevconPath": ""})
    assert again["changed"] is False and again["created"] is False
    # The borrowed (seeded) loopback is never removed.
    message = failed(host, "loopback", {"Ensure": "Absent", "PnpDeviceId": seeded.pnp_device_id})
    assert message.startswith("Refusing to remove ROOT\\NET\\0000")
    assert ok(host, "loopback", {"Ensure": "Absent", "PnpDeviceId": ""})["changed"] is True
    assert host.marker == {} and new not in host.nics
    assert ok(host, "loopback", {"Ensure": "Absent", "PnpDeviceId": ""})["changed"] is False


def test_2003_loopback_has_no_interface_index_and_stays_weak_host() -> None:
    host = find_host("2003", lambda h: existing_loopback(h) is None)
    ok(host, "loopback", {"Ensure": "Present", "PnpDeviceId": "", "Vips": [VIP], "DevconPath": ""})
    lo = loopback_of(host)
    assert lo.interface_index is None and lo.description == "Microsoft Loopback Adapter"
    assert lo.connection_id == "Local Area Connection 2"
    assert lo.weak_host_send and lo.weak_host_receive
    assert host.facts()["netsh_ipv4"] == {} and host.facts()["netsh_ipv4_addresses"] is None


# --- wrong template variants ---------------------------------------------------------------------------


def test_default_variants_fail_on_2003() -> None:
    host = find_host("2003", lambda h: not h.httpcfg_installed and existing_loopback(h) is None)
    ok(host, "loopback", {"Ensure": "Present", "PnpDeviceId": "", "Vips": [VIP], "DevconPath": ""})
    before = host.facts()

    message = failed(host, "iis_binding", binding_params(), variant="default")
    assert message == "C:\\WINDOWS\\system32\\inetsrv\\appcmd.exe is missing: IIS 7 or later is not installed"
    # The rule is looked up through the advanced firewall's API, which 2003 does not have.
    no_api = ("The Windows Firewall rules could not be read through HNetCfg.FwPolicy2: Cannot load COM type "
              "HNetCfg.FwPolicy2.")
    assert failed(host, "firewall_rule", rule_params(), variant="default") == no_api
    assert failed(host, "firewall_rule", rule_params("Absent"), variant="default") == no_api
    assert failed(host, "firewall_state", {"Enabled": False, "Profiles": ["domain"]}, variant="default") == (
        "Cannot load COM type HNetCfg.FwPolicy2."
    )
    assert failed(host, "loopback_config", config_params(host), variant="default") == (
        "The adapter has no InterfaceIndex (Windows Server 2003 takes win2003.ps1)"
    )
    assert failed(host, "weak_host", {"InterfaceIndex": 0, "IpVersion": 4, "Receive": True, "Send": True}) == (
        "The loopback has no InterfaceIndex: weak host settings need Windows Server 2008 or later"
    )
    assert failed(host, "weak_host", {"InterfaceIndex": 3, "IpVersion": 4, "Receive": True, "Send": True}) == (
        "netsh.exe interface ipv4 show interface 3 failed (exit 1): "
        "The following command was not found: interface ipv4 show interface 3."
    )
    assert failed(host, "skip_as_source", {"PnpDeviceId": "", "Address": VIP, "Mask": HOST_MASK, "Enabled": True}) == (
        "The adapter has no InterfaceIndex: skipassource needs Windows Server 2008 or later"
    )
    assert failed(host, "http_listen", {"Ensure": "Present", "Addresses": [VIP]}, variant="default") == (
        "netsh.exe http show iplisten failed (exit 1): The following command was not found: http show iplisten."
    )
    # No Support Tools: the 2003 variant has nothing to run either.
    assert failed(host, "http_listen", {"Ensure": "Present", "Addresses": [VIP]}) == (
        "httpcfg.exe was not found (Windows Server 2003 Support Tools)"
    )
    assert host.facts() == before


def test_2003_variants_on_newer_windows() -> None:
    host = find_host("2016", lambda h: True)
    assert host.natural_variant("iis_binding") == "default"
    assert failed(host, "http_listen", {"Ensure": "Present", "Addresses": [VIP]}, variant="win2003") == (
        "httpcfg.exe was not found (Windows Server 2003 Support Tools)"
    )
    message = failed(host, "iis_binding", binding_params(), variant="win2003")
    assert message == 'Invalid namespace "root\\MicrosoftIISv2"'
    old = find_host("2008r2", lambda h: True)
    assert failed(old, "iis_binding", binding_params(), variant="win2003") == "Invalid namespace "

    # netsh firewall still works on 2008+, with its deprecation notice, as an unscoped rule.
    out = ok(host, "firewall_rule", rule_params(), variant="win2003")
    assert out["changed"] is True and '"netsh firewall" is deprecated' in out["output"]
    (rule,) = facts_of(host).firewall.rules
    assert (rule.name, rule.local_addresses, rule.local_ports, rule.profiles & 3) == (RULE, "*", "80", 3)
    assert ok(host, "firewall_rule", rule_params(), variant="win2003")["changed"] is False
    assert ok(host, "firewall_rule", rule_params("Absent"), variant="win2003")["changed"] is True
    assert facts_of(host).firewall.rules == ()

    # WMI EnableStatic exists everywhere: the 2003 variant of loopback_config works on 2016.
    ok(host, "loopback", {"Ensure": "Present", "PnpDeviceId": "", "Vips": [VIP], "DevconPath": ""})
    out = ok(host, "loopback_config", config_params(host, SkipAsSource=False), variant="win2003")
    assert out["changed"] is True and out["degraded"] is False
    assert loopback_of(host).mask_of(VIP) == HOST_MASK


def test_unknown_variant_and_unknown_step() -> None:
    host = find_host("2019", lambda h: True)
    assert failed(host, "preflight", {"Vips": [VIP]}, variant="win2019") == (
        "The lab host does not model variant 'win2019' of step 'preflight'"
    )
    assert failed(host, "no_such_step", {}).startswith("The term 'no_such_step' is not recognized")


# --- SkipAsSource --------------------------------------------------------------------------------------


def _with_loopback(host: WindowsHost, *, rule: bool = True) -> WindowsHost:
    """The loopback created, after the firewall rule as the documented order has it."""
    if rule:
        ok(host, "firewall_rule", rule_params())
    ok(host, "loopback", {"Ensure": "Present", "PnpDeviceId": "", "Vips": [VIP], "DevconPath": ""})
    return host


def test_skipassource_needs_kb975808_on_2008() -> None:
    without = _with_loopback(find_host("2008", lambda h: "KB975808" not in h.hotfixes))
    message = failed(without, "loopback_config", config_params(without, SkipAsSource=True))
    assert message.endswith(f"add address {loopback_of(without).interface_index} {VIP} {HOST_MASK} "
                            "skipassource=true failed (exit 1): The parameter is incorrect.")
    # `set address static` had put the VIP on; the refused re-add with the flag put it back without.
    lo = loopback_of(without)
    assert lo.ipv4() == [(VIP, HOST_MASK)] and not lo.dhcp_enabled and lo.skip_as_source == set()
    text = without.facts()["netsh_ipv4_addresses"]
    assert isinstance(text, str) and f"Address {VIP} Parameters" in text and "Skip as Source" not in text
    assert skip_step.skip_flags(facts_of(without)).of(VIP) is None
    # The template sees that netsh reports no flag here and leaves the address alone.
    message = failed(without, "skip_as_source", {"PnpDeviceId": "", "Address": VIP, "Mask": HOST_MASK,
                                                 "Enabled": True})
    assert message == (
        f"netsh does not report Skip as Source for {VIP}: this Windows lacks the skipassource option "
        "(KB975808 on 2008 SP2)"
    )
    assert loopback_of(without).has_address(VIP)

    with_kb = _with_loopback(find_host("2008", lambda h: "KB975808" in h.hotfixes and existing_loopback(h) is None))
    out = ok(with_kb, "loopback_config", config_params(with_kb, SkipAsSource=True))
    index = loopback_of(with_kb).interface_index
    assert out["commands"] == [
        "netsh.exe interface set interface \"name=Local Area Connection 2\" \"newname=DSR Loopback\"",
        f"netsh.exe interface ipv4 set address {index} static {VIP} {HOST_MASK}",
        f"netsh.exe interface ipv4 delete address {index} {VIP}",
        f"netsh.exe interface ipv4 add address {index} {VIP} {HOST_MASK} skipassource=true",
    ]
    assert skip_step.skip_flags(facts_of(with_kb)).of(VIP) is True
    text = with_kb.facts()["netsh_ipv4_addresses"]
    assert isinstance(text, str)
    block = text.split(f"Address {VIP} Parameters\r\n", 1)[1].split("\r\n\r\n", 1)[0]
    assert "Skip as Source     : true" in block and "Address Type       : Manual" in block
    out = ok(with_kb, "skip_as_source", {"PnpDeviceId": "", "Address": VIP, "Mask": HOST_MASK, "Enabled": False})
    assert out["changed"] is True and skip_step.skip_flags(facts_of(with_kb)).of(VIP) is False
    assert loopback_of(with_kb).mask_of(VIP) == HOST_MASK
    again = ok(with_kb, "skip_as_source", {"PnpDeviceId": "", "Address": VIP, "Mask": HOST_MASK, "Enabled": False})
    assert again["changed"] is False


@pytest.mark.parametrize("version", ["6.1.7600", "6.1.7601"])
def test_2008r2_has_skipassource_from_rtm(version: str) -> None:
    host = _with_loopback(find_host("2008r2", lambda h: h.version == version))
    ok(host, "loopback_config", config_params(host, SkipAsSource=True))
    assert loopback_of(host).skip_as_source == {VIP}


# --- /32 on 2003 ---------------------------------------------------------------------------------------


def test_2003_hosts_accept_or_refuse_the_host_mask_by_seed() -> None:
    flags = {h.accepts_host_mask for h in hosts_of("2003", count=20, seeds=range(3))}
    assert flags == {True, False}
    assert all(h.accepts_host_mask for h in hosts_of("2008", count=10, seeds=range(2)))


def test_2003_enable_static_refuses_the_host_mask_and_the_template_falls_back() -> None:
    host = _with_loopback(find_host("2003", lambda h: not h.accepts_host_mask))
    assert failed(host, "loopback_config", config_params(host, FallbackMask="")) == "EnableStatic returned 66"
    out = ok(host, "loopback_config", config_params(host))
    assert out["degraded"] is True and out["addresses"] == [VIP]
    lo = loopback_of(host)
    assert lo.ipv4() == [(VIP, "255.255.255.0")] and lo.metric == 9999 and not lo.automatic_metric
    again = ok(host, "loopback_config", config_params(host))
    assert again["changed"] is False and again["degraded"] is True

    fine = _with_loopback(find_host("2003", lambda h: h.accepts_host_mask))
    out = ok(fine, "loopback_config", config_params(fine))
    assert out["degraded"] is False and loopback_of(fine).ipv4() == [(VIP, HOST_MASK)]


# --- preflight -----------------------------------------------------------------------------------------


def test_preflight_passes_on_a_healthy_fleet_and_changes_nothing() -> None:
    for host in hosts_of("mixed", count=14, seeds=range(2)):
        before = host.facts()
        out = ok(host, "preflight", {"Vips": [VIP]})
        assert out["changed"] is False and out["checks"]["elevated"] is True
        assert host.facts() == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"elevated": False}, "the session is not elevated"),
        ({"process_64bit": False}, "this is a 32-bit PowerShell on 64-bit Windows"),
        ({"powershell_version": "1.0"}, "PowerShell 1.0 is older than 2.0"),
    ],
)
def test_preflight_refusals(change: dict[str, Any], message: str) -> None:
    host = find_host("2008", lambda h: h.architecture == "64-bit")
    for name, value in change.items():
        setattr(host, name, value)
    text = failed(host, "preflight", {"Vips": [VIP]})
    assert text.startswith("Preflight refused: ") and message in text


def test_preflight_refuses_a_vip_on_a_physical_nic_but_not_on_the_loopback() -> None:
    host = find_host("2012r2", lambda h: True)
    host.nics[0].addresses.insert(1, (VIP, "255.255.255.0"))
    text = failed(host, "preflight", {"Vips": [VIP]})
    assert f"VIP {VIP} is bound to 'Ethernet'" in text and "not a loopback" in text
    host.nics[0].addresses.remove((VIP, "255.255.255.0"))
    _with_loopback(host)
    ok(host, "loopback_config", config_params(host))
    out = ok(host, "preflight", {"Vips": [VIP]})
    assert out["checks"]["vip_holders"] == [{"address": VIP, "adapter": "DSR Loopback", "service_name": "msloop"}]


def test_unhealthy_share_makes_some_hosts_fail_preflight() -> None:
    hosts = list(hosts_of("mixed", count=30, seeds=range(2), unhealthy_share=0.5))
    failures = [h.run("preflight", {"Vips": [VIP]}).failed for h in hosts]
    refused = [f for f in failures if f is not None]
    assert 10 <= len(refused) <= 50
    for part in ("not elevated", "32-bit PowerShell", "older than 2.0"):
        assert any(part in f for f in refused), part
    with pytest.raises(ValueError, match="unhealthy_share"):
        build_fleet(2, seed=1, profile="mixed", unhealthy_share=1.5)


def test_wow64_session_cannot_create_the_loopback() -> None:
    host = find_host("2016", lambda h: existing_loopback(h) is None)
    host.process_64bit = False
    message = failed(host, "loopback", {"Ensure": "Present", "PnpDeviceId": "", "Vips": [VIP], "DevconPath": ""})
    assert message.startswith("ERROR_IN_WOW64")
    assert existing_loopback(host) is None


def test_steps_without_elevation_fail_where_windows_refuses() -> None:
    host = _with_loopback(find_host("2019", lambda h: existing_loopback(h) is None))
    host.elevated = False
    before = host.facts()
    assert failed(host, "firewall_rule", {**rule_params(), "Name": f"dsrprep {VIP} TCP 81", "Port": 81}).endswith(
        "The requested operation requires elevation (Run as administrator)."
    )
    assert failed(host, "adapter_settings", {"PnpDeviceId": "", "Metric": 254, "DnsRegistration": False,
                                             "NetBios": 2}) == "SetIPConnectionMetric returned 91"
    assert "Access to the registry key" in failed(host, "marker", {"Ensure": "Present", "Values": {"A": "1"}})
    assert host.facts() == before


# --- wrong order ---------------------------------------------------------------------------------------


def test_steps_before_the_loopback_exists_fail() -> None:
    host = find_host("2022", lambda h: existing_loopback(h) is None)
    unrecorded = "PnpDeviceId is empty and HKLM\\SOFTWARE\\dsrprep\\DSR has no LoopbackPnpId"
    assert failed(host, "loopback_config", config_params(host)) == unrecorded
    assert failed(host, "weak_host", {"InterfaceIndex": 0, "IpVersion": 4, "Receive": True, "Send": True}) == unrecorded
    assert failed(host, "adapter_settings", {"PnpDeviceId": "ROOT\\NET\\0007", "Metric": 254}).startswith(
        "No network adapter has PNPDeviceID 'ROOT\\NET\\0007'"
    )


def _public_2008_host() -> WindowsHost:
    return find_host(
        "2008",
        lambda h: existing_loopback(h) is None and isinstance(h.firewall, AdvFirewall) and h.firewall.public,
    )


def test_2008_profile_flip_cuts_the_session_without_the_rule_first() -> None:
    host = _with_loopback(_public_2008_host(), rule=False)
    assert facts_of(host).firewall.current_profiles == 1  # an APIPA-only adapter is still "identifying"
    result = host.run("loopback_config", config_params(host))
    assert result.failed is None and result.cut_connection is True
    # The change is made all the same; the machine is on the Public profile now.
    facts = facts_of(host)
    assert facts.firewall.current_profiles == 4
    assert loopback_of(host).mask_of(VIP) == HOST_MASK
    # A later run finds the work done and cuts nothing.
    again = host.run("loopback_config", config_params(host))
    assert again.cut_connection is False and again.output[0]["changed"] is False


def test_2008_profile_flip_is_harmless_with_the_rule_in_place() -> None:
    host = _public_2008_host()
    ok(host, "firewall_rule", rule_params())
    _with_loopback(host)
    result = host.run("loopback_config", config_params(host))
    assert result.failed is None and result.cut_connection is False
    assert facts_of(host).firewall.current_profiles == 4
    # Rollback: without the loopback, NLA identifies the domain again.
    ok(host, "loopback", {"Ensure": "Absent", "PnpDeviceId": ""})
    assert facts_of(host).firewall.current_profiles == 1


def test_2008_flip_with_the_public_profile_off_cuts_nothing() -> None:
    host = _with_loopback(find_host(
        "2008",
        lambda h: existing_loopback(h) is None and isinstance(h.firewall, AdvFirewall) and not h.firewall.public,
    ), rule=False)
    result = host.run("loopback_config", config_params(host))
    assert result.cut_connection is False and facts_of(host).firewall.current_profiles == 4


@pytest.mark.parametrize("family", ["2008r2", "2012r2", "2022"])
def test_later_windows_keep_a_profile_per_network(family: str) -> None:
    host = _with_loopback(find_host(
        family,
        lambda h: existing_loopback(h) is None and isinstance(h.firewall, AdvFirewall) and h.firewall.public,
    ), rule=False)
    result = host.run("loopback_config", config_params(host))
    assert result.cut_connection is False and facts_of(host).firewall.current_profiles == 1 | 4


def test_cut_on_step_knob_cuts_once_after_the_change() -> None:
    host = _with_loopback(find_host("2016", lambda h: existing_loopback(h) is None))
    host.cut_on_step = "loopback_config"
    failing = host.run("loopback_config", config_params(host, Masks=[]))
    assert failing.failed is not None and failing.cut_connection is False and host.cut_on_step is not None
    result = host.run("loopback_config", config_params(host))
    assert result.cut_connection is True and result.output[0]["changed"] is True
    assert host.cut_on_step is None and loopback_of(host).has_address(VIP)
    assert host.run("loopback_config", config_params(host)).cut_connection is False


# --- single steps --------------------------------------------------------------------------------------


def test_2003_port_openings_respect_foreign_ones() -> None:
    host = find_host("2003", lambda h: isinstance(h.firewall, LegacyFirewall) and bool(h.firewall.port_openings))
    assert isinstance(host.firewall, LegacyFirewall)
    before = facts_of(host)
    # "HTTP" already opens 80/TCP in both profiles: nothing to add, and nothing of ours to remove.
    assert ok(host, "firewall_rule", rule_params())["changed"] is False
    assert ok(host, "firewall_rule", rule_params("Absent"))["changed"] is False
    assert facts_of(host).to_dict() == before.to_dict()
    host.firewall.port_openings = [p for p in host.firewall.port_openings if p.profile == "domain"]
    assert "is opened by 'HTTP' in only one profile" in failed(host, "firewall_rule", rule_params())
    host.firewall.port_openings[0].enabled = False
    assert "has a disabled port opening 'HTTP' in the DOMAIN profile" in failed(host, "firewall_rule", rule_params())


def test_firewall_state_per_family() -> None:
    host = find_host("2012r2", lambda h: isinstance(h.firewall, AdvFirewall) and h.firewall.domain)
    out = ok(host, "firewall_state", {"Enabled": False, "Profiles": ["domain", "Public"]})
    assert out["changed"] is True and out["profiles"] == {"domain": False, "public": False}
    assert facts_of(host).firewall.profiles == {"domain": False, "private": True, "public": False}
    assert ok(host, "firewall_state", {"Enabled": False, "Profiles": ["domain", "public"]})["changed"] is False
    assert failed(host, "firewall_state", {"Enabled": True, "Profiles": ["work"]}).startswith(
        "Unknown firewall profile 'work'"
    )

    legacy = find_host("2003", lambda h: isinstance(h.firewall, LegacyFirewall) and h.firewall.domain_enabled
                       and h.firewall.current == "domain")
    out = ok(legacy, "firewall_state", {"Enabled": False, "Profiles": []})
    assert out["changed"] is True and out["current_profile_type"] == 0
    assert facts_of(legacy).firewall.enabled is False
    assert ok(legacy, "firewall_state", {"Enabled": False, "Profiles": []})["changed"] is False


def test_adapter_settings_only_changes_what_differs() -> None:
    host = _with_loopback(find_host("2008r2", lambda h: existing_loopback(h) is None))
    params = {"PnpDeviceId": "", "Metric": 254, "DnsRegistration": False, "NetBios": 2}
    assert ok(host, "adapter_settings", params)["changed"] is True
    assert ok(host, "adapter_settings", params)["changed"] is False
    text = host.facts()["netsh_ipv4"][str(loopback_of(host).interface_index)]
    assert "Metric                             : 254" in text
    assert "Use Automatic Metric               : disabled" in text
    loopback_of(host).ip_enabled = False
    assert failed(host, "adapter_settings", {**params, "Metric": 300}) == "SetIPConnectionMetric returned 84"


def test_weak_host_by_interface_index_and_ip_version() -> None:
    host = _with_loopback(find_host("2019", lambda h: existing_loopback(h) is None))
    nic = host.nics[0]
    assert nic.interface_index is not None
    out = ok(host, "weak_host", {"InterfaceIndex": nic.interface_index, "IpVersion": 6, "Receive": True,
                                 "Send": True})
    assert out["changed"] is True
    facts = facts_of(host)
    assert weak_host_step.flags(facts, nic.interface_index, 6) is not None
    assert (nic.weak_host_send_v6, nic.weak_host_receive_v6, nic.weak_host_send) == (True, True, False)
    message = failed(host, "weak_host", {"InterfaceIndex": 99, "IpVersion": 4, "Receive": True, "Send": True})
    assert message.endswith("failed (exit 1): Element not found.")


def test_http_listen_and_iis_binding_on_iis6_and_iis7() -> None:
    legacy = find_host("2003", lambda h: h.httpcfg_installed and bool(h.http_listen))
    out = ok(legacy, "http_listen", {"Ensure": "Present", "Addresses": [VIP]})
    assert out["output"] == "HttpSetServiceConfiguration completed with 0.\r\n"
    assert http_listen_step.listen_list(facts_of(legacy)) == (legacy.rip, VIP)
    assert ok(legacy, "http_listen", {"Ensure": "Present", "Addresses": [VIP]})["changed"] is False
    assert ok(legacy, "iis_binding", binding_params())["changed"] is True
    metabase = legacy.facts()["iis"]["metabase_sites"]
    assert f"{VIP}:80:" in next(s for s in metabase if s["name"] == "Default Web Site")["bindings"]
    assert failed(legacy, "iis_binding", {**binding_params(), "Site": "Nope"}) == (
        "0 IIsWebServerSetting objects have ServerComment 'Nope'"
    )

    modern = find_host("2012r2", lambda h: True)
    out = ok(modern, "iis_binding", binding_params())
    assert out["restarted"] is True and out["binding"] == f"http/{VIP}:80:"
    assert out["output"] == (
        'SITE object "Default Web Site" changed\r\n"Default Web Site" successfully stopped\r\n'
        '"Default Web Site" successfully started.\r\n'
    )
    assert f"http/{VIP}:80:" in modern.facts()["iis"]["appcmd_sites_text"]
    message = failed(modern, "iis_binding", {**binding_params(), "Site": "Nope"})
    assert message.endswith('failed (exit 1168): ERROR ( message:Cannot find SITE object with identifier "Nope". )')
    assert ok(modern, "http_listen", {"Ensure": "Absent", "Addresses": [VIP]})["changed"] is False


def test_marker_values_and_removal() -> None:
    host = find_host("2016", lambda h: True)
    assert ok(host, "marker", {"Ensure": "Present", "Values": {"Vips": VIP, "Count": 2, "Flag": True}})["changed"]
    assert facts_of(host).marker == {"Vips": VIP, "Count": "2", "Flag": "True"}
    assert ok(host, "marker", {"Ensure": "Present", "Values": {"Vips": VIP}})["changed"] is False
    assert ok(host, "marker", {"Ensure": "Absent", "Values": {}})["changed"] is True
    assert host.marker == {}
    assert "Ensure" in failed(host, "marker", {"Ensure": "Maybe", "Values": {}})


# --- verify --------------------------------------------------------------------------------------------


def test_verify_sees_what_is_missing() -> None:
    host = _with_loopback(find_host("2016", lambda h: not h.http_listen and existing_loopback(h) is None))
    host.sites = [Site(1, "Default Web Site", [("http", f"{host.rip}:80:")])]
    params = {"Vips": [VIP], "Ports": [80, 443], "Rip": host.rip, "TimeoutMs": 500}

    out = ok(host, "verify", params)
    assert [(t["address"], t["port"], t["ok"]) for t in out["tcp"]] == [
        (host.rip, 80, True), (host.rip, 443, False), (VIP, 80, False), (VIP, 443, False)
    ]
    assert out["ping"] == [{"address": VIP, "ok": False}] and out["routes"] == []

    ok(host, "loopback_config", config_params(host))
    ok(host, "adapter_settings", {"PnpDeviceId": "", "Metric": 254, "DnsRegistration": False, "NetBios": 2})
    out = ok(host, "verify", params)
    assert out["ping"] == [{"address": VIP, "ok": True}] and len(out["routes"]) == 1
    assert out["tcp"][2]["ok"] is False  # the site listens on the RIP only
    ok(host, "iis_binding", binding_params())
    assert ok(host, "verify", params)["tcp"][2]["ok"] is True
    # A listen list without the VIP keeps http.sys off it.
    host.http_listen = [host.rip]
    assert ok(host, "verify", params)["tcp"][2]["ok"] is False
    ok(host, "http_listen", {"Ensure": "Present", "Addresses": [VIP]})
    assert ok(host, "verify", params)["tcp"][2]["ok"] is True
    host.sites[0].state = "Stopped"
    assert not any(t["ok"] for t in ok(host, "verify", params)["tcp"])


# --- arp_check on a peer -------------------------------------------------------------------------------


def test_arp_check_sees_the_load_balancer_or_the_offender() -> None:
    hosts = build_fleet(4, seed=3, profile="2016", now=NOW)
    fleet = LabFleet(hosts)
    assert all(h.segment is fleet.segment for h in hosts)
    peer, offender, prepared = hosts[0], hosts[1], hosts[2]

    out = ok(peer, "arp_check", {"Address": VIP})
    assert out["ping_ok"] is True
    nic = peer.nics[0]
    assert out["arp_text"] == (
        f"\r\nInterface: {peer.rip} --- 0x{nic.interface_index:x}\r\n"
        "  Internet Address      Physical Address      Type\r\n"
        f"  {VIP}           00-0c-29-4c-42-01     dynamic   \r\n\r\n"
    )

    offender.nics[0].addresses.insert(1, (VIP, "255.255.255.0"))
    out = ok(peer, "arp_check", {"Address": VIP})
    mac = (offender.nics[0].mac or "").replace(":", "-").lower()
    assert f"  {VIP:<22}{mac:<22}dynamic" in out["arp_text"]
    events = verify_step.events(facts_of(offender))
    assert [(e.event_id, e.source) for e in events][-1:] == [(4199, "Tcpip")]
    assert VIP in events[-1].message and "00-0C-29-4C-42-01" in events[-1].message
    assert all(VIP not in e.message for e in verify_step.events(facts_of(peer)))

    # A real server that already holds the VIP on its loopback answers itself: no ARP at all.
    _with_loopback(prepared)
    ok(prepared, "loopback_config", config_params(prepared))
    out = ok(prepared, "arp_check", {"Address": VIP})
    assert out == {"changed": False, "arp_text": "No ARP Entries Found.\r\n", "ping_ok": True, "delete_output": ""}
    # Off-link addresses go to the gateway, not through ARP for themselves.
    assert ok(peer, "arp_check", {"Address": "192.0.2.7"})["arp_text"] == "No ARP Entries Found.\r\n"


def test_arp_text_layout_on_2003() -> None:
    assert render_arp("10.20.0.12", 0x10003, [(VIP, "00:0C:29:4C:42:01")]) == (
        "\r\nInterface: 10.20.0.12 --- 0x10003\r\n"
        "  Internet Address      Physical Address      Type\r\n"
        f"  {VIP}           00-0c-29-4c-42-01     dynamic   \r\n\r\n"
    )
    assert render_arp("10.20.0.12", 2, []) == "No ARP Entries Found.\r\n"


# --- netsh show ipaddresses ----------------------------------------------------------------------------


def test_netsh_ipaddresses_layout() -> None:
    host = _with_loopback(find_host("2022", lambda h: existing_loopback(h) is None
                                    and any(a.startswith("fe80") for a, _ in h.nics[0].addresses)))
    ok(host, "loopback_config", config_params(host))
    lo = loopback_of(host)
    text = render_netsh_ipaddresses(sorted(host.nics, key=lambda n: n.index), ipv6=False, skip_as_source_shown=True)
    lines = text.split("\r\n")
    assert lines[:10] == [
        "",
        "Address 127.0.0.1 Parameters",
        "-" * 57,
        "Interface Luid     : Loopback Pseudo-Interface 1",
        "Scope Id           : 0.0",
        "Valid Lifetime     : infinite",
        "Preferred Lifetime : infinite",
        "DAD State          : Preferred",
        "Address Type       : Other",
        "Skip as Source     : false",
    ]
    at = lines.index(f"Address {VIP} Parameters")
    assert lines[at + 2] == "Interface Luid     : DSR Loopback"
    assert lines[at + 8] == "Skip as Source     : true"
    v6 = render_netsh_ipaddresses(host.nics, ipv6=True, skip_as_source_shown=True)
    assert "Address ::1 Parameters" in v6
    link_local = next(a for a, _ in host.nics[0].ipv6())
    assert f"Address {link_local}%{host.nics[0].interface_index} Parameters" in v6
    assert f"Scope Id           : 0.{host.nics[0].interface_index}" in v6
    assert lo.interface_index is not None


# --- which template ran --------------------------------------------------------------------------------


def test_templates_are_recognised_by_their_text() -> None:
    templates = all_templates()
    assert templates
    for template in templates:
        assert template_of(template.text) == (template.step, template.variant)
        assert template_of(template.text.replace("\n", "\r\n")) == (template.step, template.variant)
    assert template_of("# dsrprep-step: facts\nparam()\n") == ("facts", None)
    assert template_of("Get-Process") is None


def test_handler_runs_the_variant_the_client_sent() -> None:
    host = find_host("2003", lambda h: True)
    handler = _HostHandler(host, RequestCounters())
    by_key = {(t.step, t.variant): t for t in all_templates()}
    result = handler(by_key[("firewall_rule", "default")].text, rule_params())
    assert isinstance(result, ScriptResult) and result.failed is not None
    assert result.failed.endswith("Cannot load COM type HNetCfg.FwPolicy2.")
    native = by_key[("firewall_rule", "win2003")]
    assert handler(native.text, rule_params()).failed is None
    assert handler("# dsrprep-step: preflight\n", {"Vips": [VIP]}).failed is None  # variant of its family
    assert handler("Get-Process", {}).failed is not None


# --- more of the templates' edges ----------------------------------------------------------------------


def test_site_restart_only_for_a_running_site_and_iis6_keeps_a_binding() -> None:
    modern = find_host("2019", lambda h: True)
    modern.sites[0].state = "Stopped"
    out = ok(modern, "iis_binding", binding_params())
    assert out["changed"] is True and out["restarted"] is False and modern.sites[0].state == "Stopped"

    legacy = find_host("2003", lambda h: True)
    legacy.sites[0].bindings = [("http", f"{VIP}:80:")]
    out = ok(legacy, "iis_binding", {**binding_params(), "Restart": False})
    assert out == {"changed": False, "site": "Default Web Site", "binding": f"{VIP}:80:", "restarted": False,
                   "output": None}
    assert failed(legacy, "iis_binding", binding_params("Absent")) == (
        f"Removing {VIP}:80: would leave site 'Default Web Site' without bindings"
    )
    assert failed(legacy, "iis_binding", {**binding_params(), "Protocol": "https"}).startswith(
        "IIS 6 ServerBindings hold http bindings only"
    )
    out = ok(legacy, "iis_binding", {**binding_params(), "Ip": "*", "Port": 8081})
    assert out["binding"] == ":8081:" and ("http", "*:8081:") in legacy.sites[0].bindings


def test_http_listen_reports_the_scheduled_restart() -> None:
    host = find_host("2012r2", lambda h: bool(h.http_listen))
    out = ok(host, "http_listen", {"Ensure": "Present", "Addresses": [VIP]})
    assert out["restart_scheduled"] is True and out["addresses"] == [VIP]
    assert out["restart"]["services"] == ["W3SVC", "WinRM"]
    assert out["restart"]["log"] == "C:\\Windows\\Temp\\dsrprep-http-restart.log"
    assert out["output"] == "\r\nIP address successfully added\r\n\r\n"
    assert ok(host, "http_listen", {"Ensure": "Present", "Addresses": [VIP]})["restart"] is None
    assert ok(host, "http_listen", {"Ensure": "Absent", "Addresses": [VIP]})["changed"] is True
    assert http_listen_step.listen_list(facts_of(host)) == (host.rip,)


def test_marker_null_value_deletes_it_and_values_are_strings() -> None:
    host = find_host("2022", lambda h: True)
    ok(host, "marker", {"Ensure": "Present", "Values": {"A": "1", "B": ["x", 2]}})
    assert host.marker == {"A": "1", "B": "x 2"}
    out = ok(host, "marker", {"Ensure": "Present", "Values": {"A": None}})
    assert out == {"changed": True, "values": []} and host.marker == {"B": "x 2"}
    assert failed(host, "marker", {"Ensure": "Present", "Values": {"": "x"}}) == "A marker value name is empty"


def test_netsh_firewall_opmode_on_2008_acts_on_the_current_profiles() -> None:
    host = find_host("2008r2", lambda h: isinstance(h.firewall, AdvFirewall) and h.firewall.domain
                     and h.firewall.current_profiles == 1)
    out = ok(host, "firewall_state", {"Enabled": False, "Profiles": []}, variant="win2003")
    assert out["changed"] is True and '"netsh firewall" is deprecated' in out["output"]
    assert isinstance(host.firewall, AdvFirewall)
    assert (host.firewall.domain, host.firewall.private) == (False, True)


def test_verify_without_rip_and_with_bad_input() -> None:
    host = find_host("2016", lambda h: True)
    out = ok(host, "verify", {"Vips": [VIP], "Ports": [80], "Rip": "", "TimeoutMs": 0})
    assert [t["address"] for t in out["tcp"]] == [VIP]
    assert failed(host, "verify", {"Vips": ["not-an-ip"], "Ports": [80]}) == "'not-an-ip' is not an IP address"
    assert failed(host, "arp_check", {"Address": "fe80::1"}) == "'fe80::1' is not an IPv4 address (ARP is IPv4 only)"
    host.elevated = False
    assert failed(host, "arp_check", {"Address": VIP}).startswith("arp -d needs an elevated session")


def test_hand_made_models_get_a_fleet_segment() -> None:
    first = build_fleet(1, seed=1, profile="2016", now=NOW)
    second = build_fleet(1, seed=2, profile="2016", now=NOW)
    fleet = LabFleet([*first, *second])
    assert first[0].segment is fleet.segment and second[0].segment is fleet.segment
    assert fleet.segment.hosts == [first[0], second[0]]


def test_a_rollout_is_deterministic_per_seed() -> None:
    def rolled_out(seed: int) -> list[Hashtable]:
        hosts = build_fleet(7, seed=seed, profile="mixed", now=NOW)
        for host in hosts:
            run_plan(host, apply_plan(host))
        return [h.facts() for h in hosts]

    assert rolled_out(11) == rolled_out(11)


def test_steps_on_peers_run_concurrently_without_deadlock() -> None:
    import threading

    hosts = build_fleet(4, seed=8, profile="2019", now=NOW)
    LabFleet(hosts)
    failures: list[str] = []

    def work(host: WindowsHost) -> None:
        try:
            for _ in range(30):
                for step, params in (("arp_check", {"Address": VIP}), ("facts", {}),
                                     ("verify", {"Vips": [VIP], "Ports": [80], "Rip": host.rip})):
                    result = host.run(step, params)
                    if result.failed is not None:
                        failures.append(result.failed)
        except Exception as exc:  # a thread's exception would otherwise vanish
            failures.append(repr(exc))

    threads = [threading.Thread(target=work, args=(h,)) for h in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not any(t.is_alive() for t in threads) and failures == []
