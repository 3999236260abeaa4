"""Summaries of outcomes for people: the rows of the `facts` table. Pure: data in, strings out."""

from __future__ import annotations

from orchestrator.facts import Adapter, Facts, WeakHost
from orchestrator.inventory import Host
from orchestrator.plan import find_nic


def _flags(weak: WeakHost | None, *, want_send: bool) -> str:
    if weak is None:
        return "?"
    parts = ["recv" if weak.receive else "-"]
    if want_send:
        parts.append("send" if weak.send else "-")
    return "/".join(parts)


def _ipv4(adapter: Adapter) -> str:
    v4 = [f"{a.address}/{a.prefix_length}" for a in adapter.addresses if a.version == 4]
    return ", ".join(v4) if v4 else "no IPv4"


def facts_row(host: Host, facts: Facts) -> dict[str, str]:
    """One `facts` table row: OS, PowerShell, NIC, loopback(s), weak host flags, IIS."""
    nic = find_nic(facts, host.desired.nic)
    loopbacks = facts.loopbacks()
    if nic is None:
        nic_text = f"[red]not found ({host.desired.nic.by} {host.desired.nic.value})[/]"
    else:
        nic_text = f"{nic.connection_id or nic.description}: {_ipv4(nic)}"
    loop_text = "; ".join(f"{lb.connection_id or lb.description}: {_ipv4(lb)}" for lb in loopbacks) or "none"
    if not facts.weak_host_configurable:
        weak_text = "weak (2003)"
    else:
        parts = []
        if nic is not None and nic.interface_index is not None:
            parts.append("NIC " + _flags(facts.weak_host(nic.interface_index), want_send=False))
        for lb in loopbacks:
            if lb.interface_index is not None:
                parts.append("LB " + _flags(facts.weak_host(lb.interface_index), want_send=True))
        weak_text = ", ".join(parts) or "?"
    if facts.iis.installed:
        sites = ", ".join(s.name for s in facts.iis.sites)
        iis_text = f"{facts.iis.version} ({sites})" if sites else f"{facts.iis.version} (no sites)"
    else:
        iis_text = "none"
    sp = f" SP{facts.os.service_pack}" if facts.os.service_pack else ""
    arch = "x64" if facts.os.is_64bit else "x86"
    return {
        "OS": f"{facts.os.family.value}{sp} {arch}",
        "PowerShell": facts.powershell_version + ("" if facts.elevated else " (not elevated)"),
        "NIC": nic_text,
        "loopback": loop_text,
        "weak host": weak_text,
        "IIS": iis_text,
    }
