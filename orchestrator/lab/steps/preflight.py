"""preflight: refuses a host dsrprep cannot prepare (not elevated, a 32-bit session on 64-bit
Windows, PowerShell older than 2.0, a VIP already on an adapter that is not a loopback) before any
change, and reports where the VIPs are."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.facts import normalize_ip
from orchestrator.lab.common import Hashtable, ScriptResult
from orchestrator.lab.net import is_ip
from orchestrator.lab.shell import StepFailed, major, p_list, result
from orchestrator.lab.steps.base import LabStep

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost


def _session_problems(host: WindowsHost, os_64bit: bool) -> list[str]:
    problems: list[str] = []
    if not host.elevated:
        problems.append(
            "the session is not elevated (not a member of the local Administrators group, or UAC "
            "filtered the token of a local account)"
        )
    if os_64bit and not host.process_64bit:
        problems.append(
            "this is a 32-bit PowerShell on 64-bit Windows; connect to the 64-bit endpoint "
            "(Microsoft.PowerShell, not Microsoft.PowerShell32)"
        )
    if major(host.powershell_version) < 2:
        problems.append(f"PowerShell {host.powershell_version} is older than 2.0")
    return problems


def _vip_holders(host: WindowsHost, vips: list[str], problems: list[str]) -> list[Hashtable]:
    """Where each VIP already is; a VIP on an adapter that is not a loopback is a problem."""
    wanted: dict[str, str] = {}
    for vip in vips:
        if not vip:
            continue
        if not is_ip(vip):
            problems.append(f"'{vip}' is not an IP address")
            continue
        wanted[normalize_ip(vip)] = vip
    holders = []
    for nic in sorted(host.nics, key=lambda n: n.index):
        for address, _ in nic.addresses:
            held = wanted.get(normalize_ip(address))
            if held is None:
                continue
            holders.append(Hashtable(address=held, adapter=nic.alias, service_name=nic.service_name))
            if not nic.is_loopback:
                problems.append(
                    f"VIP {held} is bound to '{nic.alias}' (service {nic.service_name}), an adapter that is "
                    "not a loopback; it answers ARP for the VIP on the segment"
                )
    return holders


def _run(host: WindowsHost, params: dict[str, Any], variant: str) -> ScriptResult:
    os_64bit = host.architecture.startswith("64")
    problems = _session_problems(host, os_64bit)
    holders = _vip_holders(host, p_list(params, "Vips"), problems)
    if problems:
        raise StepFailed("Preflight refused: " + "; ".join(problems))
    checks = Hashtable(
        elevated=host.elevated,
        process_64bit=host.process_64bit,
        os_64bit=os_64bit,
        powershell_version=host.powershell_version,
        vip_holders=holders,
    )
    return result(False, checks=checks)


STEP = LabStep("preflight", _run)
