"""What must change on a host, and how to undo it: pure functions of facts and the desired state.

`plan(facts, desired)` returns the ordered actions that take a host to the DSR state (empty for a
compliant host) plus refusals: reasons that forbid touching the host at all. The same function
serves `plan` (dry run), `rollout`, verification (the plan after applying must be empty) and drift
checks. `rollback_plan(before, now, desired)` returns the actions that take a host from its current facts
back to the facts recorded before a run, for what dsrprep changed only. Step ids, parameters and
their meaning are in docs/steps.md.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from orchestrator.desired import Desired, NicSelector, Vip
from orchestrator.facts import Adapter, Facts, OsFamily, Site

HOST_MASK = "255.255.255.255"
ALL_PROFILES = 0x7FFFFFFF
DEGRADED_METRIC = 9999  # 2003 fallback: the highest metric, so the NIC's subnet route wins
MARKER_PNP = "LoopbackPnpId"
MARKER_CREATED = "LoopbackCreated"
SKIP_AS_SOURCE_HOTFIX = "KB975808"

# The order steps run in; rollback runs its own steps in the reverse order.
STEP_ORDER: tuple[str, ...] = (
    "preflight",
    "firewall_state",
    "firewall_rule",
    "loopback",
    "loopback_config",
    "adapter_settings",
    "skip_as_source",
    "weak_host",
    "iis_binding",
    # Last: it restarts the HTTP service (and WinRM with it) once it has answered.
    "http_listen",
    "marker",
)
@dataclass(frozen=True)
class Action:
    """One template run: which step, with which parameters, and why."""

    step: str
    params: Mapping[str, Any]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "reason": self.reason, "params": _plain(self.params)}


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    refusals: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def compliant(self) -> bool:
        return not self.actions and not self.refusals

    def to_dict(self) -> dict[str, Any]:
        return {
            "actions": [a.to_dict() for a in self.actions],
            "refusals": list(self.refusals),
            "warnings": list(self.warnings),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _action(step: str, reason: str, **params: Any) -> Action:
    return Action(step=step, params=MappingProxyType(params), reason=reason)


# -- lookups ---------------------------------------------------------------------------------------


def find_nic(facts: Facts, selector: NicSelector) -> Adapter | None:
    """The physical adapter the inventory names as the one holding the real IP."""
    if selector.by == "mac":
        found = facts.adapter_by_mac(selector.value)
    elif selector.by == "name":
        found = facts.adapter_by_connection_id(selector.value)
    else:
        found = next((a for a in facts.physical_adapters() if a.has_address(selector.value)), None)
    return found if found is not None and not found.is_loopback else None


def find_loopback(facts: Facts, vips: Iterable[Vip]) -> Adapter | None:
    """dsrprep's loopback: the one in the marker, else a msloop adapter already holding a VIP."""
    pnp = facts.marker.get(MARKER_PNP)
    if pnp:
        marked = facts.adapter_by_pnp_id(pnp)
        if marked is not None and marked.is_loopback:
            return marked
    addresses = [v.address for v in vips]
    return next((lb for lb in facts.loopbacks() if any(lb.has_address(a) for a in addresses)), None)


def skip_as_source_supported(facts: Facts) -> bool:
    family = facts.os.family
    if family is OsFamily.WIN2003:
        return False
    if family is OsFamily.WIN2008:
        return SKIP_AS_SOURCE_HOTFIX in facts.os.hotfixes
    return True


def degraded_mask(facts: Facts, desired: Desired) -> str | None:
    """The subnet mask a 2003 loopback fell back to when /32 was refused, or None when not degraded.

    The fallback is recognisable from the facts alone: a VIP on the loopback with the NIC's own mask.
    """
    if facts.os.family is not OsFamily.WIN2003:
        return None
    nic, loopback = find_nic(facts, desired.nic), find_loopback(facts, desired.vips)
    rip = _nic_ipv4(nic) if nic is not None else None
    if rip is None or loopback is None or rip[1] == HOST_MASK:
        return None
    held = {a.address: a.mask for a in loopback.addresses if a.version == 4}
    vips = [v.address for v in desired.vips if v.version == 4]
    return rip[1] if any(held.get(v) == rip[1] for v in vips) else None


def _nic_ipv4(nic: Adapter) -> tuple[str, str] | None:
    for a in nic.addresses:
        if a.version == 4:
            return a.address, a.mask
    return None


def _rule_name(vip: Vip, port: int) -> str:
    return f"dsrprep {vip.address} {vip.protocol.upper()} {port}"


def _rule_addresses(text: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses of a firewall rule's LocalAddresses ("10.0.0.5/255.255.255.255,..."); junk drops out."""
    found = set()
    for part in text.split(","):
        try:
            found.add(ipaddress.ip_address(part.split("/")[0].strip()))
        except ValueError:
            continue
    return found


def _is_link_local(address: str) -> bool:
    return ipaddress.ip_address(address).is_link_local


def _pv(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (0,)


# -- the plan --------------------------------------------------------------------------------------


@dataclass
class _Builder:
    facts: Facts
    desired: Desired
    actions: list[Action] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the host's state itself is wrong
    warnings: list[str] = field(default_factory=list)

    def add(self, step: str, reason: str, **params: Any) -> None:
        self.actions.append(_action(step, reason, **params))


def plan(facts: Facts, desired: Desired) -> Plan:
    """The ordered actions that make this host ready for DSR, and why; refusals forbid any change."""
    b = _Builder(facts, desired)
    nic = find_nic(facts, desired.nic)
    if nic is None:
        b.problems.append(f"no physical adapter matches dsr_nic ({desired.nic.by} {desired.nic.value})")
    for vip in desired.vips:
        for adapter in facts.adapters_with_address(vip.address):
            if not adapter.is_loopback:
                b.problems.append(
                    f"VIP {vip.address} is bound to physical adapter "
                    f"'{adapter.connection_id or adapter.description}': it would answer ARP for the VIP"
                )
    if nic is not None:
        _check_subnet(b, nic)
    loopback = find_loopback(facts, desired.vips)
    if nic is not None and not b.problems:
        _plan_firewall(b)
        _plan_loopback(b, loopback, nic)
        _plan_weak_host(b, loopback, nic)
        _plan_http_listen(b)
        _plan_iis(b)
    blockers = _change_blockers(facts, desired) if b.actions else []
    if any(a.step in ("loopback", "loopback_config") for a in b.actions):
        blockers += _profile_flip_blockers(facts, loopback)
    actions = sorted(b.actions, key=lambda a: STEP_ORDER.index(a.step))
    if actions:
        vips = [v.address for v in desired.vips]
        actions.insert(0, _action("preflight", "check the host before changing it", Vips=vips))
    refusals = tuple(b.problems + blockers)
    return Plan(actions=tuple(actions), refusals=refusals, warnings=tuple(b.warnings))


def _change_blockers(facts: Facts, desired: Desired) -> list[str]:
    """What forbids changing the host (a host that needs no change is fine as it is)."""
    reasons = []
    if not facts.elevated:
        reasons.append("not elevated: connect with an account in the local Administrators group "
                       "(for local accounts, UAC remote restrictions apply)")
    if facts.os.is_64bit and not facts.process_64bit:
        reasons.append("32-bit PowerShell on 64-bit Windows: device installation fails there "
                       "(use the 64-bit Microsoft.PowerShell endpoint)")
    if _pv(facts.powershell_version) < (2,):
        reasons.append(f"PowerShell {facts.powershell_version}: 2.0 or newer is needed (install WMF 2.0, KB968930)")
    if not any(v.version == 4 for v in desired.vips):
        reasons.append("dsr_vips has no IPv4 VIP: an IPv6-only loopback is not supported")
    if facts.os.family is OsFamily.WIN2003 and any(v.version == 6 for v in desired.vips):
        reasons.append("IPv6 VIPs on Windows Server 2003 are not supported (its IPv6 stack is separate)")
    if desired.skip_as_source and facts.os.family is OsFamily.WIN2008 and not skip_as_source_supported(facts):
        reasons.append(f"SkipAsSource wanted but {SKIP_AS_SOURCE_HOTFIX} is not installed on this Windows "
                       "Server 2008: install it, or set dsr_skip_as_source: false")
    return reasons


def _profile_flip_blockers(facts: Facts, loopback: Adapter | None) -> list[str]:
    """Windows Server 2008 (not R2) has one firewall profile for the whole machine: the loopback's
    unidentified network switches it to Public. If WinRM is not let in there, the change locks out
    the very session making it."""
    fw = facts.firewall
    if facts.os.family is not OsFamily.WIN2008 or not (fw.profiles or {}).get("public"):
        return []
    already_public = fw.current_profiles is not None and fw.current_profiles & 4
    if already_public or fw.winrm_public is not False:
        return []
    if loopback is not None and any(a.version == 4 and not _is_link_local(a.address) for a in loopback.addresses):
        return []  # the loopback already has an address: its network is already there
    return ["Windows Server 2008: the loopback's unidentified network will switch the whole machine to the "
            "Public firewall profile, where no rule lets WinRM in, cutting off management: allow WinRM "
            "(TCP 5985/5986) on the Public profile first, then run again"]


def _check_subnet(b: _Builder, nic: Adapter) -> None:
    if b.desired.subnet_check == "off":
        return
    rip = _nic_ipv4(nic)
    if rip is None:
        return
    network = ipaddress.IPv4Network(f"{rip[0]}/{rip[1]}", strict=False)
    for vip in b.desired.vips:
        if vip.version == 4 and ipaddress.IPv4Address(vip.address) not in network:
            message = (f"VIP {vip.address} is outside the real server's subnet {network} "
                       "(layer-2 DSR needs the VIP, the load balancer and the real servers on one subnet)")
            (b.problems if b.desired.subnet_check == "error" else b.warnings).append(message)


def _plan_firewall(b: _Builder) -> None:
    fw, mode = b.facts.firewall, b.desired.firewall
    if mode == "skip":
        return
    legacy = b.facts.os.family is OsFamily.WIN2003
    if mode == "disable":
        if legacy:
            if fw.enabled:
                b.add("firewall_state", "Windows Firewall is on (dsr_firewall: disable)", Enabled=False, Profiles=[])
        elif fw.profiles is None:
            b.problems.append("the Windows Firewall state could not be read (is the Windows Firewall service "
                              "running?): start it, or set dsr_firewall: skip")
        else:
            on = sorted(name for name, enabled in fw.profiles.items() if enabled)
            if on:
                b.add("firewall_state", f"firewall profiles on: {', '.join(on)} (dsr_firewall: disable)",
                      Enabled=False, Profiles=on)
        return
    if legacy:
        if fw.enabled is False:
            return
        if fw.exceptions_enabled is False:
            b.problems.append("Windows Firewall is on with 'Don't allow exceptions': port openings have no "
                              "effect (allow exceptions, or set dsr_firewall: disable or skip)")
            return
        for vip in b.desired.vips:
            for port in vip.ports:
                opened = any(p.enabled and p.port == port and p.protocol.upper() == vip.protocol.upper()
                             for p in fw.port_openings)
                if not opened:
                    b.add("firewall_rule", f"no port opening for {vip.protocol.upper()} {port}", Ensure="Present",
                          Name=_rule_name(vip, port), Vip=vip.address, Protocol=vip.protocol.upper(), Port=port)
        return
    if fw.profiles is None:
        b.problems.append("the Windows Firewall state could not be read (is the Windows Firewall service "
                          "running?): start it, or set dsr_firewall: skip")
        return
    if not any(fw.profiles.values()):
        return
    rules = {r.name: r for r in fw.rules}
    for vip in b.desired.vips:
        for port in vip.ports:
            name = _rule_name(vip, port)
            rule = rules.get(name)
            if rule is None:
                b.add("firewall_rule", f"no firewall rule for {vip.address} {vip.protocol.upper()} {port}",
                      Ensure="Present", Name=name, Vip=vip.address, Protocol=vip.protocol.upper(), Port=port)
            elif not (rule.enabled and rule.action == 1 and rule.direction == 1 and rule.profiles == ALL_PROFILES
                      and _rule_addresses(rule.local_addresses) == {ipaddress.ip_address(vip.address)}
                      and rule.local_ports == str(port)):
                # netsh cannot edit a rule in place from a template that checks by name: replace it.
                reason = f"firewall rule '{name}' differs from what DSR needs: replace it"
                b.add("firewall_rule", reason, Ensure="Absent", Name=name, Vip=vip.address,
                      Protocol=vip.protocol.upper(), Port=port)
                b.add("firewall_rule", reason, Ensure="Present", Name=name, Vip=vip.address,
                      Protocol=vip.protocol.upper(), Port=port)


def _plan_loopback(b: _Builder, loopback: Adapter | None, nic: Adapter) -> None:
    d, facts = b.desired, b.facts
    v4 = [v.address for v in d.vips if v.version == 4]
    v6 = [v.address for v in d.vips if v.version == 6]
    rip = _nic_ipv4(nic)
    fallback_mask = rip[1] if rip else HOST_MASK
    skip = d.skip_as_source and skip_as_source_supported(facts)
    degraded = degraded_mask(facts, d) is not None
    if degraded:
        b.warnings.append("degraded: Windows refused the /32 mask, so the VIPs carry the subnet mask "
                          f"{fallback_mask} and the loopback the highest metric ({DEGRADED_METRIC})")
    if loopback is None:
        b.add("loopback", "no loopback adapter holds the VIPs: create one", Ensure="Present", PnpDeviceId="",
              Vips=[v.address for v in d.vips], DevconPath=d.devcon_path or "")
        pnp = ""
        config_reasons = ["configure the new loopback adapter"]
        metric, dns_registration, netbios = None, None, None
    else:
        pnp = loopback.pnp_device_id
        config_reasons = _loopback_config_drift(loopback, d, v4, v6, fallback_mask if degraded else None)
        metric, dns_registration, netbios = loopback.metric, loopback.dns_registration, loopback.netbios
    # Addresses on an adopted loopback that are not ours (another service's VIPs) stay where they are;
    # only the APIPA address DHCP left behind goes.
    kept4 = [a for a in (loopback.addresses if loopback else ()) if a.version == 4
             and a.address not in v4 and not _is_link_local(a.address)]
    kept6 = [a.address for a in (loopback.addresses if loopback else ()) if a.version == 6
             and not _is_link_local(a.address) and not any(_same_ip(a.address, v) for v in v6)]
    if kept4 or kept6:
        b.warnings.append("the loopback also holds " + ", ".join([a.address for a in kept4] + kept6)
                          + ": left as they are")
    if config_reasons:
        b.add("loopback_config", "; ".join(config_reasons), PnpDeviceId=pnp, Name=d.loopback_name,
              Addresses=v4 + [a.address for a in kept4], Masks=[HOST_MASK] * len(v4) + [a.mask for a in kept4],
              Addresses6=v6 + kept6, SkipAsSource=skip, FallbackMask=fallback_mask, Dhcp=False)
    want_metric = DEGRADED_METRIC if degraded else d.metric
    want_dns = False if d.disable_dns_registration else (True if dns_registration is None else dns_registration)
    want_netbios = 2 if d.disable_netbios else (0 if netbios is None else netbios)
    drift = []
    if metric != want_metric:
        drift.append(f"metric {metric if metric is not None else 'automatic'} -> {want_metric}")
    if dns_registration != want_dns:
        drift.append("DNS registration on -> off" if want_dns is False else "DNS registration off -> on")
    if netbios != want_netbios:
        drift.append(f"NetBIOS option {netbios if netbios is not None else 'default'} -> {want_netbios}")
    if drift:
        b.add("adapter_settings", "loopback " + "; ".join(drift), PnpDeviceId=pnp, Metric=want_metric,
              DnsRegistration=want_dns, NetBios=want_netbios)
    if skip and loopback is not None:
        for vip in d.vips:
            if loopback.has_address(vip.address) and not facts.skip_as_source.get(vip.address, False):
                mask = HOST_MASK if vip.version == 4 else "128"
                b.add("skip_as_source", f"VIP {vip.address} may be used as a source address (SkipAsSource off)",
                      PnpDeviceId=pnp, Address=vip.address, Mask=mask, Enabled=True)


def _loopback_config_drift(lb: Adapter, d: Desired, v4: list[str], v6: list[str],
                           degraded_mask: str | None) -> list[str]:
    reasons = []
    if (lb.connection_id or "") != d.loopback_name:
        reasons.append(f"name '{lb.connection_id}' -> '{d.loopback_name}'")
    if lb.dhcp_enabled:
        reasons.append("DHCP on")
    held4 = {a.address: a.mask for a in lb.addresses if a.version == 4}
    held6 = {a.address: a.mask for a in lb.addresses if a.version == 6 and not _is_link_local(a.address)}
    accepted = {HOST_MASK} | ({degraded_mask} if degraded_mask else set())
    for vip in v4:
        if vip not in held4:
            reasons.append(f"VIP {vip} missing on loopback")
        elif held4[vip] not in accepted:
            reasons.append(f"VIP {vip} has mask {held4[vip]}, not {HOST_MASK}")
    for vip in v6:
        wanted = ipaddress.ip_address(vip)
        if not any(ipaddress.ip_address(a) == wanted and m == "128" for a, m in held6.items()):
            reasons.append(f"VIP {vip} missing on loopback (/128)")
    apipa = [a for a in held4 if a not in v4 and _is_link_local(a)]
    if apipa:
        reasons.append("APIPA address on loopback: " + ", ".join(apipa))
    if lb.gateways:
        reasons.append("gateway on loopback: " + ", ".join(lb.gateways))
    if lb.dns_servers:
        reasons.append("DNS servers on loopback: " + ", ".join(lb.dns_servers))
    return reasons


def _plan_weak_host(b: _Builder, loopback: Adapter | None, nic: Adapter) -> None:
    if not b.facts.weak_host_configurable:
        return
    versions = sorted({v.version for v in b.desired.vips})
    if 6 in versions and nic.interface_index is not None and b.facts.weak_host(nic.interface_index, 6) is None:
        b.problems.append(f"IPv6 VIPs but NIC '{nic.connection_id}' has no IPv6 interface (netsh shows none)")
        return
    for version in versions:
        if nic.interface_index is not None:
            current = b.facts.weak_host(nic.interface_index, version)
            want_send = b.desired.weakhost_send_on_nic or (current.send if current else False)
            if current is None or not current.receive or current.send != want_send:
                b.add("weak_host", f"NIC '{nic.connection_id}' IPv{version}: weak host receive off"
                      if current is None or not current.receive else
                      f"NIC '{nic.connection_id}' IPv{version}: weak host send off",
                      InterfaceIndex=nic.interface_index, IpVersion=version, Receive=True, Send=want_send)
        lb_current = (b.facts.weak_host(loopback.interface_index, version)
                      if loopback is not None and loopback.interface_index is not None else None)
        if lb_current is None or not (lb_current.receive and lb_current.send):
            index = loopback.interface_index if loopback is not None and loopback.interface_index else 0
            b.add("weak_host", f"loopback IPv{version}: weak host send/receive off",
                  InterfaceIndex=index, IpVersion=version, Receive=True, Send=True)


def _plan_http_listen(b: _Builder) -> None:
    if not b.desired.http_listen or not b.desired.iis_sites:
        return
    listen = b.facts.http_listen
    if listen is None:
        if b.facts.iis.installed:
            b.warnings.append("the http.sys listen list could not be read (httpcfg.exe missing): "
                              "if it is not empty, add the VIPs by hand")
        return
    if not listen:
        return
    held = {ipaddress.ip_address(a) for a in listen}
    missing = [v.address for v in b.desired.vips if ipaddress.ip_address(v.address) not in held]
    if missing:
        # One action, so that the HTTP service restarts once for all of them.
        b.add("http_listen", f"http.sys listens only on {', '.join(listen)}: add {', '.join(missing)}",
              Ensure="Present", Addresses=missing)


def find_site(facts: Facts, name: str) -> Site | None:
    return next((s for s in facts.iis.sites if s.name.casefold() == name.casefold()), None)


def _plan_iis(b: _Builder) -> None:
    if not b.desired.iis_sites:
        return
    if not b.facts.iis.installed:
        b.problems.append("IIS is not installed but dsr_iis_sites names sites (set dsr_iis_sites: [] to skip IIS)")
        return
    if not b.facts.iis.sites_known:
        b.problems.append(f"IIS {b.facts.iis.version} is installed but its site list could not be read")
        return
    for name in b.desired.iis_sites:
        site = find_site(b.facts, name)
        if site is None:
            known = ", ".join(s.name for s in b.facts.iis.sites) or "none"
            b.problems.append(f"IIS site '{name}' not found (sites: {known})")
            continue
        pending = []
        for vip in b.desired.vips:
            if vip.protocol != "tcp":
                continue  # IIS serves TCP only
            for port in vip.ports:
                served = [x for x in site.bindings if x.port == port]
                if not served:
                    continue  # the site does not serve this port; nothing of the VIP's to add
                if any(x.is_all_unassigned for x in served):
                    continue
                # The VIP answers with the same host headers as the real IP does.
                for binding in served:
                    if any(_same_ip(x.ip, vip.address) and x.host == binding.host for x in served):
                        continue
                    if (vip, port, binding.protocol, binding.host) not in pending:
                        pending.append((vip, port, binding.protocol, binding.host))
                        if binding.protocol == "https":
                            b.warnings.append(f"site '{site.name}': https on {vip.address}:{port} needs a "
                                              "certificate bound to that address (netsh http add sslcert)")
        for i, (vip, port, protocol, host_header) in enumerate(pending):
            b.add("iis_binding", f"site '{site.name}' not bound to {vip.address}:{port}"
                  + (f" for host '{host_header}'" if host_header else ""), Ensure="Present",
                  Site=site.name, Protocol=protocol, Ip=vip.address, Port=port, HostHeader=host_header,
                  Restart=b.desired.restart_site and i == len(pending) - 1)
    served_ports = {x.port for name in b.desired.iis_sites if (site := find_site(b.facts, name))
                    for x in site.bindings}
    for vip in b.desired.vips:
        unserved = [p for p in vip.ports if vip.protocol == "tcp" and p not in served_ports]
        if unserved:
            b.warnings.append(f"VIP {vip.address} port(s) {', '.join(map(str, unserved))}: no site of "
                              "dsr_iis_sites serves them, so nothing is bound or checked there")


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.strip("[]")) == ipaddress.ip_address(b)
    except ValueError:
        return False


# -- rollback --------------------------------------------------------------------------------------


def rollback_plan(before: Facts, now: Facts, desired: Desired) -> Plan:
    """Actions that return a host to `before`, limited to what dsrprep can have changed there.

    Only the VIPs' bindings on the desired sites, VIP entries of a listen list that was not empty,
    the weak host flags of the NIC and of dsrprep's loopback, that loopback, rules and port openings
    named by dsrprep, and firewall profiles when dsrprep was told to switch them off are touched.
    Anything unknown in `before` (an unreadable site list or listen list) is left alone.
    """
    actions: list[Action] = []
    add = actions.append
    vips = {ipaddress.ip_address(v.address) for v in desired.vips}
    pnp = now.marker.get(MARKER_PNP, "")
    lb_now = find_loopback(now, desired.vips)
    created = (lb_now is not None and pnp.casefold() == lb_now.pnp_device_id.casefold()
               and now.marker.get(MARKER_CREATED) == "1" and before.adapter_by_pnp_id(pnp) is None)

    if before.iis.sites_known:
        for name in desired.iis_sites:
            site_now, site_before = find_site(now, name), find_site(before, name)
            if site_now is None or site_before is None:
                continue
            new = [x for x in site_now.bindings
                   if x not in site_before.bindings and _ip_in(x.ip, vips)]
            for i, x in enumerate(new):
                add(_action("iis_binding", f"site '{site_now.name}': remove binding {x.ip}:{x.port}",
                            Ensure="Absent", Site=site_now.name, Protocol=x.protocol, Ip=x.ip, Port=x.port,
                            HostHeader=x.host, Restart=desired.restart_site and i == len(new) - 1))
    if now.http_listen and before.http_listen:  # dsrprep never adds to an empty (or unreadable) list
        added = [a for a in now.http_listen if a not in before.http_listen and _ip_in(a, vips)]
        if added:
            add(_action("http_listen", f"remove {', '.join(added)} from the http.sys listen list",
                        Ensure="Absent", Addresses=added))
    nic = find_nic(before, desired.nic)
    touched = [a for a in (nic, None if created else lb_now) if a is not None and a.interface_index is not None]
    for adapter in touched:
        index = adapter.interface_index
        assert index is not None
        for version, table_before in ((4, before.weak_host_v4), (6, before.weak_host_v6)):
            flags, current = table_before.get(index), now.weak_host(index, version)
            if flags is None or current is None or current == flags:
                continue
            add(_action("weak_host", f"interface {index} IPv{version}: restore weak host flags",
                        InterfaceIndex=index, IpVersion=version, Receive=flags.receive, Send=flags.send))
    if created and lb_now is not None:
        add(_action("loopback", "remove the loopback adapter dsrprep created", Ensure="Absent",
                    PnpDeviceId=lb_now.pnp_device_id, Vips=[], DevconPath=""))
    elif lb_now is not None:
        lb_before = before.adapter_by_pnp_id(lb_now.pnp_device_id)
        if lb_before is not None:
            _restore_loopback(add, lb_before, lb_now, before, now)
    before_rules = {r.name for r in before.firewall.rules}
    for rule in now.firewall.rules:
        if rule.name.startswith("dsrprep ") and rule.name not in before_rules:
            add(_action("firewall_rule", f"remove firewall rule '{rule.name}'", Ensure="Absent", Name=rule.name,
                        Vip="", Protocol={6: "TCP", 17: "UDP"}.get(rule.protocol, "TCP"),
                        Port=int(rule.local_ports) if rule.local_ports.isdigit() else 0))
    before_openings = {(p.protocol, p.port, p.name) for p in before.firewall.port_openings}
    for opening in now.firewall.port_openings:
        key = (opening.protocol, opening.port, opening.name)
        if opening.name.startswith("dsrprep ") and key not in before_openings:
            add(_action("firewall_rule", f"remove port opening '{opening.name}'", Ensure="Absent",
                        Name=opening.name, Vip="", Protocol=opening.protocol, Port=opening.port))
    if desired.firewall == "disable":
        if now.firewall.api == "netsh-firewall":
            if before.firewall.enabled and now.firewall.enabled is False:
                add(_action("firewall_state", "turn Windows Firewall back on", Enabled=True, Profiles=[]))
        else:
            was_on = sorted(n for n, on in (before.firewall.profiles or {}).items()
                            if on and not (now.firewall.profiles or {}).get(n, False))
            if was_on:
                add(_action("firewall_state", f"turn firewall profiles back on: {', '.join(was_on)}",
                            Enabled=True, Profiles=was_on))
    if not before.marker and now.marker:
        add(_action("marker", "remove dsrprep's marker", Ensure="Absent", Values={}))
    # Reverse order, except that the HTTP restart and the marker stay last, as when applying.
    order = [step for step in reversed(STEP_ORDER) if step not in ("http_listen", "marker")]
    order += ["http_listen", "marker"]
    return Plan(actions=tuple(sorted(actions, key=lambda a: order.index(a.step))))


def _ip_in(text: str, addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    try:
        return ipaddress.ip_address(text.strip("[]")) in addresses
    except ValueError:
        return False


def _restore_loopback(add: Any, lb_before: Adapter, lb_now: Adapter, before: Facts, now: Facts) -> None:
    pnp = lb_now.pnp_device_id
    if (lb_before.connection_id != lb_now.connection_id or lb_before.dhcp_enabled != lb_now.dhcp_enabled
            or set(lb_before.addresses) != set(lb_now.addresses)):
        v4 = [a for a in lb_before.addresses if a.version == 4]
        v6 = [a.address for a in lb_before.addresses if a.version == 6 and not _is_link_local(a.address)]
        add(_action("loopback_config", "restore the loopback's name and addresses", PnpDeviceId=pnp,
                    Name=lb_before.connection_id or "", Addresses=[a.address for a in v4],
                    Masks=[a.mask for a in v4], Addresses6=v6, SkipAsSource=False,
                    FallbackMask=HOST_MASK, Dhcp=lb_before.dhcp_enabled))
    if (lb_before.metric, lb_before.dns_registration, lb_before.netbios) != (
            lb_now.metric, lb_now.dns_registration, lb_now.netbios):
        add(_action("adapter_settings", "restore the loopback's metric, DNS registration and NetBIOS",
                    PnpDeviceId=pnp, Metric=lb_before.metric if lb_before.metric is not None else 0,
                    DnsRegistration=lb_before.dns_registration,
                    NetBios=lb_before.netbios if lb_before.netbios is not None else 0))
    for address, was in before.skip_as_source.items():
        if lb_before.has_address(address) and now.skip_as_source.get(address) not in (None, was):
            mask = next((a.mask for a in lb_before.addresses if a.address == address), HOST_MASK)
            add(_action("skip_as_source", f"restore SkipAsSource on {address}", PnpDeviceId=pnp, Address=address,
                        Mask=mask, Enabled=was))
