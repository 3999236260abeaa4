"""verify: the live checks after a change, from the host itself: a TCP connect to the RIP and each
VIP on each port (IIS through http.sys; Windows Firewall does not filter local connections), a
ping of each VIP (answered when an adapter holds it), and the host routes of the VIPs on the
loopback as Win32_IP4RouteTable lists them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestrator.facts import normalize_ip
from orchestrator.lab.common import Hashtable, ScriptResult
from orchestrator.lab.iis import serves
from orchestrator.lab.net import HOST_MASK, Nic, ip_interface_index, is_ip
from orchestrator.lab.shell import StepFailed, p_list, p_str, result
from orchestrator.lab.steps.base import LabStep

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost


def _addresses(params: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(VIPs, every address to connect to: the RIP first), canonical."""
    vips = []
    for vip in p_list(params, "Vips"):
        if not vip:
            continue
        if not is_ip(vip):
            raise StepFailed(f"'{vip}' is not an IP address")
        vips.append(normalize_ip(vip))
    targets = []
    rip = p_str(params, "Rip")
    if rip:
        if not is_ip(rip):
            raise StepFailed(f"Rip '{rip}' is not an IP address")
        targets.append(normalize_ip(rip))
    return vips, targets + vips


def _run(host: WindowsHost, params: dict[str, Any], variant: str) -> ScriptResult:
    vips, targets = _addresses(params)
    ports = [int(p) for p in p_list(params, "Ports")]
    tcp = [
        Hashtable(address=address, port=port, ok=_tcp_connects(host, address, port))
        for address in targets
        for port in ports
    ]
    ping = [Hashtable(address=vip, ok=bool(host.holders(vip))) for vip in vips]
    return result(False, tcp=tcp, ping=ping, routes=_routes(host, vips))


def _tcp_connects(host: WindowsHost, address: str, port: int) -> bool:
    """A local connect to address:port: something listens there (IIS through http.sys)."""
    if host.iis_version is None or not host.holders(address):
        return False
    return serves(host.sites, host.http_listen, address, port)


def _routes(host: WindowsHost, vips: list[str]) -> list[Hashtable]:
    routes = []
    for nic in sorted(host.nics, key=ip_interface_index):
        if not (nic.is_loopback and nic.ip_enabled):
            continue
        for address, mask in nic.ipv4():
            if normalize_ip(address) in vips:
                routes += _route(host, nic, address, mask)
    return routes


def _route(host: WindowsHost, nic: Nic, address: str, mask: str) -> list[Hashtable]:
    metric = nic.metric if nic.metric is not None else 0
    if host.spec.loopback_routes:
        # 2003 routes every local address, whatever its mask, as a host route through
        # 127.0.0.1 on the "MS TCP Loopback interface" (index 1).
        return [Hashtable(destination=address, mask=HOST_MASK, next_hop="127.0.0.1", interface_index=1,
                          metric=metric)]
    if mask != HOST_MASK:
        return []
    # 2008+ keeps on-link routes without a gateway.
    return [Hashtable(destination=address, mask=HOST_MASK, next_hop="0.0.0.0",
                      interface_index=ip_interface_index(nic), metric=metric + 256)]


def _facts(host: WindowsHost) -> Mapping[str, Any]:
    """The Tcpip 4198/4199 events of the System log's last week."""
    return {"events": [Hashtable(e) for e in host.events]}


STEP = LabStep("verify", _run, facts=_facts)
