"""Summaries of results for people: the rows of the `facts` table and of the plan / rollout /
rollback tables, as rich `Text`. Pure: data in, text out.

Host names, users, adapter and site names and error messages come from inventories and from hosts:
they are never rich markup. Every cell is a `Text` whose styles are set here, so a `[bold]` or a
`:smile:` in a value is printed as it is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from rich.text import Text

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


def facts_row(host: Host, facts: Facts) -> dict[str, Text]:
    """One `facts` table row: OS, PowerShell, NIC, loopback(s), weak host flags, IIS."""
    nic = facts.nic(host.desired.nic.by, host.desired.nic.value)
    loopbacks = facts.loopbacks()
    if nic is None:
        nic_text = Text(f"not found ({host.desired.nic.by} {host.desired.nic.value})", style="red")
    else:
        nic_text = Text(f"{nic.connection_id or nic.description}: {_ipv4(nic)}")
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
        "OS": Text(f"{facts.os.family}{sp} {arch}"),
        "PowerShell": Text(facts.powershell_version + ("" if facts.elevated else " (not elevated)")),
        "NIC": nic_text,
        "loopback": Text(loop_text),
        "weak host": Text(weak_text),
        "IIS": Text(iis_text),
    }


STATUS_STYLE: Mapping[HostStatus, str] = MappingProxyType({
    Status.OK: "green", Status.CHANGED: "yellow", Status.ROLLED_BACK: "cyan", Status.FAILED: "red",
    Status.UNREACHABLE: "red", PlanStatus.COMPLIANT: "green", PlanStatus.CHANGES: "yellow",
})


def styled(status: HostStatus) -> Text:
    return Text(str(status), style=STATUS_STYLE.get(status, "white"))


def steps_cell(steps: Sequence[StepResult]) -> Text:
    """Changed steps in order, repeats counted (`loopback_config x2`); failed attempts spelled out."""
    parts: list[tuple[str, int]] = []  # (step, repeats of a changed step; 0: a failed attempt)
    failures: dict[int, str] = {}  # index in parts -> the failed attempt's error class
    for s in steps:
        if s.status == Status.FAILED:
            failures[len(parts)] = s.error.error_class if s.error else "error"
            parts.append((s.step, 0))
        elif s.status == Status.CHANGED:
            if parts and parts[-1][0] == s.step and parts[-1][1] > 0:
                parts[-1] = (s.step, parts[-1][1] + 1)
            else:
                parts.append((s.step, 1))
    cell = Text()
    for index, (step, repeats) in enumerate(parts):
        if index:
            cell.append(", ")
        if index in failures:
            cell.append(f"{step} failed", style="red").append(f" ({failures[index]})")
        else:
            cell.append(step if repeats < 2 else f"{step} x{repeats}")
    return cell or Text("-")


def result_row(result: HostResult) -> tuple[Text, Text, Text]:
    """host, status, and what it changed (rollout, rollback) or would change (plan), or why it failed."""
    if result.error is not None:
        where = f"{result.failed_step}: " if result.failed_step else ""
        detail = Text(f"{where}{result.error.error_class}: {result.error.message}")
    elif result.command == Command.PLAN:
        detail = Text("\n".join(f"{a.step}: {a.reason}" for a in result.planned if a.step != preflight.NAME) or "-")
    else:
        detail = steps_cell(result.steps)
    for warning in result.warnings:
        detail.append("\n").append("warning:", style="yellow").append(f" {warning}")
    return Text(result.host), styled(result.status), detail
