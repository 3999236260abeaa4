"""arp_check: from a peer on the segment, `arp -d` then a ping and `arp -a <VIP>`: which MAC
answers ARP for the VIP. The load balancer answers for every VIP; a host that holds the VIP on a
real NIC answers too, and logs the address conflict (Tcpip event 4199) since the load balancer's
answer contradicts it. A local address never goes through ARP; an off-link one is the gateway's
business.

It reads other hosts of the segment: registered as a segment step, it runs without the host's lock
and takes each host's lock itself, one at a time, so two hosts checking each other cannot
deadlock."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from orchestrator.facts import normalize_ip
from orchestrator.lab.common import ScriptResult
from orchestrator.lab.net import DEFAULT_LB_MAC, ip_interface_index, is_ipv4, on_link_nic, render_arp
from orchestrator.lab.shell import StepFailed, p_str, result, text
from orchestrator.lab.steps.base import LabStep
from orchestrator.lab.system import ADDRESS_CONFLICT, conflict_message, tcpip_event

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost


def _claimants(host: WindowsHost, target: str) -> list[tuple[WindowsHost, str]]:
    """(host, MAC) of the other hosts holding `target` on a real NIC."""
    segment = host.segment
    claimants: list[tuple[WindowsHost, str]] = []
    for other in list(segment.hosts) if segment is not None else []:
        if other is host:
            continue
        with other.lock:
            nic = next((n for n in other.holders(target) if not n.is_loopback and n.mac), None)
            if nic is not None and nic.mac is not None:
                claimants.append((other, nic.mac))
    return claimants


def _run(host: WindowsHost, params: dict[str, Any], variant: str) -> ScriptResult:
    address = p_str(params, "Address")
    if not is_ipv4(address):
        raise StepFailed(f"'{address}' is not an IPv4 address (ARP is IPv4 only)")
    target = normalize_ip(address)
    with host.lock:
        if not host.elevated:
            raise StepFailed("arp -d needs an elevated session (member of the local Administrators group)")
    lb_mac = host.segment.lb_mac if host.segment is not None else DEFAULT_LB_MAC
    claimants = _claimants(host, target)
    with host.lock:
        local = bool(host.holders(target))
        on_link = on_link_nic(host.nics, target)
        if local or on_link is None:
            arp_text, ping_ok = text(["No ARP Entries Found."]), local
        else:
            mac = claimants[0][1] if claimants else lb_mac
            arp_text = render_arp(on_link.ipv4()[0][0], ip_interface_index(on_link), [(target, mac)])
            ping_ok = True
    for other, _ in claimants:
        # The load balancer answers ARP for the VIP as well: the host holding it on a NIC sees the
        # conflict (the load balancer logs nothing in Windows).
        message = conflict_message(target, lb_mac.replace(":", "-").upper())
        with other.lock:
            other.events.append(tcpip_event(ADDRESS_CONFLICT, message, datetime.now()))
    return result(False, arp_text=arp_text, ping_ok=ping_ok, delete_output="")


STEP = LabStep("arp_check", _run, segment=True)
