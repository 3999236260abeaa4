"""Judging a host after the change: the verify step's result, new conflict events, a peer's ARP table.

Pure: the runner gathers the data on the hosts, these functions say what is wrong with it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator.desired import Desired
from orchestrator.facts import Event, Facts
from orchestrator.plan import HOST_MASK, degraded_mask, find_loopback, find_nic, find_site

_ARP_ROW = re.compile(r"^\s*(?P<ip>[0-9a-fA-F.:]+)\s+(?P<mac>(?:[0-9a-fA-F]{2}[-:]){5}[0-9a-fA-F]{2})\s+\S+")


def verify_ports(facts: Facts, desired: Desired) -> list[int]:
    """The VIP ports some desired IIS site actually serves: those a TCP check can expect to answer."""
    wanted = {port for vip in desired.vips for port in vip.ports}
    served = {b.port for name in desired.iis_sites if (site := find_site(facts, name)) for b in site.bindings}
    return sorted(wanted & served)


def verify_params(facts: Facts, desired: Desired, *, timeout_ms: int = 3000) -> dict[str, Any]:
    nic = find_nic(facts, desired.nic)
    rip = next((a.address for a in nic.addresses if a.version == 4), "") if nic else ""
    ports = verify_ports(facts, desired) if desired.verify_tcp else []
    return {"Vips": [v.address for v in desired.vips], "Ports": ports, "Rip": rip, "TimeoutMs": timeout_ms}


def judge_verify(result: Mapping[str, Any], facts: Facts, desired: Desired) -> list[str]:
    """Problems the verify step's result shows; empty when the host is ready for DSR."""
    problems = []
    for check in _items(result.get("tcp")):
        if not check.get("ok"):
            problems.append(f"TCP connect to {check.get('address')}:{check.get('port')} failed")
    for check in _items(result.get("ping")):
        if not check.get("ok"):
            problems.append(f"ping {check.get('address')} failed")
    loopback = find_loopback(facts, desired.vips)
    routes = _items(result.get("routes"))
    for vip in desired.vips:
        if vip.version != 4:
            continue
        host_routes = [r for r in routes if r.get("destination") == vip.address]
        if not host_routes:
            problems.append(f"no route for VIP {vip.address}")
            continue
        masks = {str(r.get("mask")) for r in host_routes}
        if HOST_MASK not in masks and degraded_mask(facts, desired) not in masks:
            problems.append(f"route for VIP {vip.address} is not a /32 host route (masks: {', '.join(sorted(masks))})")
        if loopback is not None and loopback.interface_index is not None:
            on_loopback = [r for r in host_routes if r.get("interface_index") == loopback.interface_index]
            if not on_loopback:
                problems.append(f"route for VIP {vip.address} is not on the loopback adapter")
    return problems


def new_conflict_events(before: Iterable[Event], after: Iterable[Event]) -> list[Event]:
    """Tcpip 4198/4199 events present after the change and not before."""
    seen = {(e.event_id, e.time, e.message) for e in before}
    return [e for e in after if (e.event_id, e.time, e.message) not in seen]


def parse_arp(text: str) -> dict[str, str]:
    """IP -> MAC (upper case, dashes) from `arp -a` output; the layout is the same in every language."""
    table = {}
    for line in text.splitlines():
        match = _ARP_ROW.match(line)
        if match:
            try:
                ip = str(ipaddress.ip_address(match.group("ip")))
            except ValueError:
                continue
            table[ip] = match.group("mac").upper().replace(":", "-")
    return table


def judge_arp(arp_text: str, vip: str, server_macs: Iterable[str]) -> str | None:
    """A problem when the peer resolved the VIP to one of this server's MACs, else None."""
    mac = parse_arp(arp_text).get(str(ipaddress.ip_address(vip)))
    own = {m.upper().replace(":", "-") for m in server_macs}
    if mac is not None and mac in own:
        return f"the peer resolves VIP {vip} to this server's MAC {mac}: the server answers ARP for the VIP"
    return None


def _items(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, list):
        return [v for v in value if isinstance(v, Mapping)]
    if isinstance(value, Mapping):
        return [value]
    return []
