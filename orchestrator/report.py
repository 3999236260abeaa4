"""Summaries of results for people: the rows of the `facts` table and of the plan / rollout /
rollback tables, as rich markup. Pure: data in, strings out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from rich.markup import escape

from orchestrator.facts import Adapter, Facts
from orchestrator.inventory import Host
from orchestrator.results import Command, HostResult, HostStatus, PlanStatus, Status, StepResult
from orchestrator.steps import iis_binding, preflight, weak_host
from orchestrator.steps.weak_host import WeakHost


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
    nic = facts.nic(host.desired.nic.by, host.desired.nic.value)
    loopbacks = facts.loopbacks()
    if nic is None:
        nic_text = f"[red]not found ({host.desired.nic.by} {host.desired.nic.value})[/]"
    else:
        nic_text = f"{nic.connection_id or nic.description}: {_ipv4(nic)}"
    loop_text = "; ".join(f"{lb.connection_id or lb.description}: {_ipv4(lb)}" for lb in loopbacks) or "none"
    if not facts.os.caps.weak_host:
        weak_text = f"weak ({facts.os.family})"  # weak host by design: nothing to set
    else:
        parts = []
        if nic is not None and nic.interface_index is not None:
            parts.append("NIC " + _flags(weak_host.flags(facts, nic.interface_index), want_send=False))
        for lb in loopbacks:
            if lb.interface_index is not None:
                parts.append("LB " + _flags(weak_host.flags(facts, lb.interface_index), want_send=True))
        weak_text = ", ".join(parts) or "?"
    iis = iis_binding.iis(facts)
    if iis.installed:
        sites = ", ".join(s.name for s in iis.sites)
        iis_text = f"{iis.version} ({sites})" if sites else f"{iis.version} (no sites)"
    else:
        iis_text = "none"
    sp = f" SP{facts.os.service_pack}" if facts.os.service_pack else ""
    arch = "x64" if facts.os.is_64bit else "x86"
    return {
        "OS": f"{facts.os.family}{sp} {arch}",
        "PowerShell": facts.powershell_version + ("" if facts.elevated else " (not elevated)"),
        "NIC": nic_text,
        "loopback": loop_text,
        "weak host": weak_text,
        "IIS": iis_text,
    }


STATUS_STYLE: Mapping[HostStatus, str] = MappingProxyType({
    Status.OK: "green", Status.CHANGED: "yellow", Status.ROLLED_BACK: "cyan", Status.FAILED: "red",
    Status.UNREACHABLE: "red", PlanStatus.COMPLIANT: "green", PlanStatus.CHANGES: "yellow",
})


def styled(status: HostStatus) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def steps_cell(steps: Sequence[StepResult]) -> str:
    """Changed steps in order, repeats counted (`loopback_config x2`); failed attempts spelled out."""
    parts: list[tuple[str, int]] = []  # (text, repeats of a changed step)
    for s in steps:
        if s.status == Status.FAILED:
            parts.append((f"[red]{s.step} failed[/] ({s.error.error_class if s.error else 'error'})", 0))
        elif s.status == Status.CHANGED:
            if parts and parts[-1][0] == s.step and parts[-1][1] > 0:
                parts[-1] = (s.step, parts[-1][1] + 1)
            else:
                parts.append((s.step, 1))
    return ", ".join(text if n < 2 else f"{text} x{n}" for text, n in parts) or "-"


def result_row(result: HostResult) -> tuple[str, str, str]:
    """host, status, and what it changed (rollout, rollback) or would change (plan), or why it failed."""
    if result.error is not None:
        where = f"{result.failed_step}: " if result.failed_step else ""
        detail = escape(f"{where}{result.error.error_class}: {result.error.message}")
    elif result.command == Command.PLAN:
        detail = "\n".join(escape(f"{a.step}: {a.reason}") for a in result.planned if a.step != preflight.NAME) or "-"
    else:
        detail = steps_cell(result.steps)
    if result.warnings:
        detail += "\n" + "\n".join(f"[yellow]warning:[/] {escape(w)}" for w in result.warnings)
    return result.host, styled(result.status), detail
